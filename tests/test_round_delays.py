"""round-delays: DCLS layers imported with fractional learned positions become one Affine per layer,
each synapse with its position rounded as DCLS rounds it and its whole weight."""

import json

import numpy as np
import pytest
from graphs import mlp

from snnc import ir
from snnc.errors import IRError
from snnc.ir.serialize import from_bytes, to_bytes
from snnc.passes import PassManager
from snnc.passes.canonicalize import Canonicalize
from snnc.passes.quantize import Calibration
from snnc.passes.round_delays import RoundDelays
from snnc.runtime.simulator import simulate

torch = pytest.importorskip("torch")
dcls = pytest.importorskip("DCLS.construct.modules")
neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
from frameworks import DOUBLE, N_HIDDEN, N_IN, N_OUT

from snnc.frontend.torch import from_module

SIZE = 9  # dilated_kernel_size: delays 0 to 8 steps


def _network(version: str, whole: bool, kernel_count: int = 1):
    """Dcls1d -> SpikingJelly LIF, twice; positions anywhere in the kernel, whole or not."""
    torch.manual_seed(11)
    layers = []
    for n_in, n_out in ((N_IN, N_HIDDEN), (N_HIDDEN, N_OUT)):
        synapse = dcls.Dcls1d(n_in, n_out, kernel_count=kernel_count, dilated_kernel_size=SIZE, version=version)
        with torch.no_grad():
            synapse.weight.mul_(6)
            synapse.P.uniform_(-4, 4)
            if whole:
                synapse.P.round_()
            if synapse.SIG is not None:
                synapse.SIG.zero_()
        layers += [synapse, neuron.LIFNode(tau=2.0, decay_input=False, step_mode="m")]
    return torch.nn.Sequential(*layers).to(DOUBLE)


def _synapses(network):
    return [layer for layer in network if isinstance(layer, dcls.Dcls1d)]


def _import(network):
    return from_module(network, torch.zeros(1, N_IN, dtype=DOUBLE))


def _round(graph):
    manager = PassManager([RoundDelays()])
    return manager.run(graph), manager.reports["round-delays"]


def _expected_delay(synapse) -> np.ndarray:
    """DCLS's inference form (the paper's round_pos): P.round_(), clamped to +-SIZE // 2; the position
    P sits at kernel tap P + SIZE // 2, and the importer reads tap k as the delay SIZE - 1 - k."""
    with torch.no_grad():
        position = synapse.P.detach().clone().round_().clamp_(-(SIZE // 2), SIZE // 2)[0]
    return (SIZE - 1 - (position + SIZE // 2)).numpy().astype(np.int64)


def _learned_delay(synapse) -> np.ndarray:
    return SIZE - 1 - (synapse.P.detach()[0].numpy() + SIZE // 2)


def _kernel_sum(synapse) -> np.ndarray:
    with torch.no_grad():
        return synapse.DCK(synapse.weight, synapse.P, synapse.SIG).sum(-1).numpy()


def _measured_agreement(before, after) -> float:
    """The output spike agreement simulated here, on the inputs the pass calibrates on."""
    inputs = Calibration(before).inputs
    (output,) = before.outputs
    return float(np.mean(simulate(before, inputs)[output] == simulate(after, inputs)[output]))


@pytest.mark.parametrize("version", ["v1", "gauss"])
def test_fractional_positions_become_one_affine_per_layer_with_rounded_delays(version):
    network = _network(version, whole=False)
    graph = _import(network)
    assert "0.tap1" in graph.nodes and "2.tap1" in graph.nodes  # the training-form kernel spreads over taps
    rounded, report = _round(graph)
    assert [n.name for n in rounded] == ["input", "0", "1", "2", "3", "output"]
    for name, synapse in zip(["0", "2"], _synapses(network)):
        op = rounded[name].op
        np.testing.assert_array_equal(op.delay, _expected_delay(synapse)[..., 0])
        np.testing.assert_allclose(op.weight, _kernel_sum(synapse), rtol=1e-12)
        np.testing.assert_array_equal(op.bias, synapse.bias.detach().numpy())
        assert "dcls" not in rounded[name].annotations
        rounding = np.abs(_expected_delay(synapse) - _learned_delay(synapse))
        layer = report["layers"][name]
        assert layer["synapses"] == synapse.P[0].numel() and layer["rounded"] == np.count_nonzero(rounding) > 0
        assert layer["max_rounding"] == pytest.approx(rounding.max(), abs=1e-12) and layer["max_rounding"] <= 0.5
        assert layer["mean_rounding"] == pytest.approx(rounding.mean(), abs=1e-12)
        assert (layer["taps_before"], layer["taps_after"]) == (len([n for n in graph.nodes if n.startswith(name)]), 1)
    network_report = report["network"]["output"]
    assert network_report["agreement"] == pytest.approx(_measured_agreement(graph, rounded), abs=1e-12)
    assert 0.5 < network_report["agreement"] < 1.0
    assert network_report["spikes_before"] != network_report["spikes_after"]
    for layer in report["layers"].values():
        assert set(layer["alone"]) == {str(int(layer["node"]) + 1)}  # the LIF it feeds
        assert 0.5 < next(iter(layer["alone"].values()))["agreement"] <= 1.0


def test_whole_positions_change_nothing():
    graph = _import(_network("v1", whole=True))
    rounded, report = _round(graph)
    assert [n.name for n in rounded] == [n.name for n in graph]
    for node in graph:
        if isinstance(node.op, ir.Affine):
            for field, value in node.op.arrays().items():
                np.testing.assert_array_equal(getattr(rounded[node.name].op, field), value, err_msg=field)
    inputs = Calibration(graph).inputs
    np.testing.assert_array_equal(simulate(rounded, inputs)["output"], simulate(graph, inputs)["output"])
    for layer in report["layers"].values():
        assert (layer["rounded"], layer["max_rounding"], layer["mean_rounding"]) == (0, 0.0, 0.0)
        assert all(change["agreement"] == 1.0 for change in layer["alone"].values())
    assert report["network"]["output"]["agreement"] == 1.0
    assert report["network"]["output"]["spike_change"] == 0.0


def test_ties_round_as_dcls_rounds_its_positions():
    """Half-step positions go to the even position P (torch's round, the paper's round_pos), not to
    the even delay: with an even kernel size the two differ at every tie."""
    synapse = dcls.Dcls1d(2, 3, kernel_count=1, dilated_kernel_size=8, version="v1").to(DOUBLE)
    with torch.no_grad():
        synapse.P.copy_(torch.tensor([[-3.5, -0.5], [0.5, 1.5], [2.5, -2.5]], dtype=DOUBLE)[None, ..., None])
    graph = from_module(torch.nn.Sequential(synapse), torch.zeros(1, 2, dtype=DOUBLE))
    rounded, report = _round(graph)
    # positions round to -4, 0, 0, 2, 2, -2: taps P + 4, delays 7 - tap
    np.testing.assert_array_equal(rounded["0"].op.delay, [[7, 3], [3, 1], [1, 5]])
    assert (report["layers"]["0"]["max_rounding"], report["layers"]["0"]["mean_rounding"]) == (0.5, 0.5)


def test_each_kernel_element_keeps_its_weight_at_its_rounded_delay():
    """kernel_count 2: a synapse has two learned positions, each with its own weight ('v1': the
    weight spread linearly over the two nearest taps, normalised by their sum + 1e-7)."""
    network = _network("v1", whole=False, kernel_count=2)
    rounded, _ = _round(_import(network))
    synapse = _synapses(network)[0]
    taps = [n for n in rounded.nodes if n == "0" or n.startswith("0.tap")]
    kernel = np.zeros((N_HIDDEN, N_IN, SIZE))
    for name in taps:
        op = rounded[name].op
        rows, columns = np.indices(op.weight.shape)
        np.add.at(kernel, (rows, columns, op.delay), op.weight)
    expected = np.zeros_like(kernel)
    position = synapse.P.detach()[0].numpy() + SIZE // 2  # (out, in, 2) tap positions
    spread = np.maximum(0.0, 1 - np.abs(np.arange(SIZE)[:, None, None, None] - position)).sum(axis=0)
    share = synapse.weight.detach().numpy() * spread / (spread + 1e-7)
    delay = _expected_delay(synapse)
    rows, columns = np.indices((N_HIDDEN, N_IN))
    for element in range(2):
        np.add.at(expected, (rows, columns, delay[..., element]), share[..., element])
    np.testing.assert_allclose(kernel, expected, rtol=1e-9, atol=1e-12)
    assert len(taps) == 2  # some synapses keep two delays; elements on one tap share a synapse


def test_a_scale_canonicalize_folded_into_the_layer_stays():
    """A Scale after a one-tap layer that ends the network folds into the Affine's rows; the rounded
    layer keeps those weights, not the ones the annotation was imported with."""
    graph = _import(_network("v1", whole=True)[:-1])  # the last Dcls1d feeds the output directly
    gain = np.random.default_rng(2).uniform(0.5, 2.0, N_OUT)
    graph.disconnect("2", "output")
    graph.add("gain", ir.Scale(scale=gain))
    graph.connect("2", "gain")
    graph.connect("gain", "output")
    manager = PassManager([Canonicalize(), RoundDelays()])
    rounded = manager.run(graph)
    assert manager.reports["canonicalize"]["rewrites"] == ["gain: Scale folded into 2"]
    np.testing.assert_array_equal(rounded["2"].op.weight, graph["2"].op.weight * gain[:, None])
    assert manager.reports["round-delays"]["network"]["output"] == {"relative_rms_change": 0.0}


def test_the_annotation_survives_an_ir_file():
    graph = _import(_network("gauss", whole=False))
    reread = from_bytes(to_bytes(graph))
    annotation = reread["0"].annotations["dcls"]
    assert annotation["taps"] == [f"0.tap{r}" if r else "0" for r in range(SIZE)]
    np.testing.assert_array_equal(annotation["delay"], graph["0"].annotations["dcls"]["delay"])
    (direct, _), (from_file, _) = _round(graph), _round(reread)
    for name in ("0", "2"):
        np.testing.assert_array_equal(from_file[name].op.delay, direct[name].op.delay)
        np.testing.assert_array_equal(from_file[name].op.weight, direct[name].op.weight)


def test_a_graph_without_dcls_layers_passes_unchanged():
    graph = mlp(np.random.default_rng(0))
    rounded, report = _round(graph)
    assert [n.name for n in rounded] == [n.name for n in graph]
    assert all(np.array_equal(a, rounded[n.name].op.arrays()[k]) for n in graph for k, a in n.op.arrays().items())
    assert report == {"calibration": {}, "layers": {}, "network": {}}


def test_a_tap_node_gone_is_named():
    graph = _import(_network("v1", whole=False))
    graph.remove("2.tap1")
    with pytest.raises(IRError, match=r"2\.tap1.*round-delays: this tap of DCLS layer '2' is gone"):
        _round(graph)


def test_compiling_for_loihi2_reports_the_rounding_in_passes_json(tmp_path):
    from snnc.backends import compile_graph

    network = _network("v1", whole=False)
    compile_graph(_import(network), "loihi2", tmp_path / "model.pt", tmp_path / "art")
    report = json.loads((tmp_path / "art" / "passes.json").read_text())["round-delays"]
    assert list(report["layers"]) == ["0", "2"]
    rounding = np.abs(_expected_delay(_synapses(network)[0]) - _learned_delay(_synapses(network)[0]))
    assert report["layers"]["0"]["max_rounding"] == pytest.approx(rounding.max(), abs=1e-12)
    assert 0 < report["network"]["output"]["agreement"] < 1
