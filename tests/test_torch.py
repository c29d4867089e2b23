"""PyTorch import: chains of framework layers, step modules, DCLS delays, and export to snnc's ONNX domain."""

import numpy as np
import pytest

from snnc import ir
from snnc.errors import FrontendError
from snnc.export import to_onnx
from snnc.frontend.onnx import from_onnx

torch = pytest.importorskip("torch")
from frameworks import DOUBLE, N_HIDDEN, N_IN, N_OUT, inputs, linear, run_chain, run_graph, run_step_module, \
    step_module  # noqa: E402
from snnc.frontend.torch import from_module  # noqa: E402


def _snntorch_chain():
    snn = pytest.importorskip("snntorch")
    return torch.nn.Sequential(linear(N_IN, N_HIDDEN, 0), snn.Leaky(beta=0.9, init_hidden=True),
                               linear(N_HIDDEN, N_HIDDEN, 1), snn.Leaky(beta=0.8, reset_mechanism="zero", init_hidden=True),
                               linear(N_HIDDEN, N_OUT, 2), snn.Synaptic(alpha=0.7, beta=0.85, init_hidden=True)).to(DOUBLE)


def _spikingjelly_chain():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    layer = pytest.importorskip("spikingjelly.activation_based.layer")
    torch.manual_seed(0)
    return torch.nn.Sequential(layer.Linear(N_IN, N_HIDDEN, step_mode="m"), neuron.LIFNode(tau=2.0, v_reset=-0.2),
                               layer.Linear(N_HIDDEN, N_OUT), neuron.IFNode(v_reset=None)).to(DOUBLE).apply(_strong)


def _norse_chain():
    norse = pytest.importorskip("norse.torch")
    box = pytest.importorskip("norse.torch.functional.lif_box")
    parameters = norse.LIFParameters(v_leak=torch.tensor(0.2), v_reset=torch.tensor(0.1), tau_mem_inv=torch.tensor(200.0))
    return norse.SequentialState(linear(N_IN, N_HIDDEN, 0, 8.0), norse.LIFCell(parameters),
                                 linear(N_HIDDEN, N_OUT, 1, 8.0),
                                 norse.LIFBoxCell(box.LIFBoxParameters(tau_mem_inv=torch.tensor(400.0)))).to(DOUBLE)


def _strong(module):
    if isinstance(module, torch.nn.Linear):
        with torch.no_grad():
            module.weight.mul_(8)


@pytest.mark.parametrize("build", [_snntorch_chain, _spikingjelly_chain, _norse_chain],
                         ids=["snntorch", "spikingjelly", "norse"])
def test_chain_spikes_like_the_framework(build):
    """The framework runs its chain with hidden state; snnc imports it through explicit states, shifting
    initial states that are not zero (SpikingJelly's v_reset, Norse's v_leak) to the IR's zero."""
    x = inputs(seed=3)
    graph = from_module(build(), x[0][:1])
    expected = run_chain(build(), x)
    assert expected.sum() > 100
    np.testing.assert_array_equal(run_graph(graph, x), expected)


def test_chain_names_neurons_after_their_layers():
    graph = from_module(_snntorch_chain(), torch.zeros(1, N_IN, dtype=DOUBLE))
    neurons = {node.name: node.op.kind for node in graph if isinstance(node.op, ir.NEURONS)}
    assert neurons == {"1": "LIF", "3": "LIF", "5.mem": "CubaLIF"}
    assert graph.inputs == ["input"] and graph.outputs == ["output"]


def test_step_module_of_plain_pytorch():
    module = step_module("plain")
    x = inputs(seed=4)
    graph = from_module(module, (x[0][:1], *module.zero_states(1)))
    np.testing.assert_array_equal(run_graph(graph, x), run_step_module(module, x))


def test_export_of_a_module_writes_snnc_domain_that_reads_back():
    chain = _snntorch_chain()
    example = torch.zeros(1, N_IN, dtype=DOUBLE)
    model = to_onnx(chain, example)
    assert {n.op_type for n in model.graph.node if n.domain == "ai.snnc"} >= {"LIF", "CubaLIF", "Scale"}
    x = inputs(seed=5)
    np.testing.assert_array_equal(run_graph(from_onnx(model), x), run_chain(_snntorch_chain(), x))


# ----------------------------------------------------------------------------- DCLS learned delays


def _dcls_network(version: str):
    """The paper's network: Dcls1d over time (kernel_count 1) -> SpikingJelly LIF (multi-step), twice."""
    dcls = pytest.importorskip("DCLS.construct.modules")
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    torch.manual_seed(7)
    layers = []
    for n_in, n_out in ((N_IN, N_HIDDEN), (N_HIDDEN, N_OUT)):
        synapse = dcls.Dcls1d(n_in, n_out, kernel_count=1, dilated_kernel_size=9, version=version)
        with torch.no_grad():
            synapse.weight.mul_(6)
            synapse.P.uniform_(-4, 4).round_()  # whole-number positions: the paper's inference form
            if synapse.SIG is not None:
                synapse.SIG.zero_()
        layers += [synapse, neuron.LIFNode(tau=2.0, decay_input=False, step_mode="m")]
    return torch.nn.Sequential(*layers).to(DOUBLE)


def _run_paper_forward(network, x):
    """The paper's forward pass over the whole sequence: (T, B, C) -> (B, C, T), causal left padding
    of dilated_kernel_size - 1, Dcls1d, back to (T, B, C), then the neurons in multi-step mode."""
    with torch.no_grad():
        for synapse, neuron in zip(network[::2], network[1::2]):
            neuron.reset()
            padded = torch.nn.functional.pad(x.permute(1, 2, 0), (synapse.dilated_kernel_size[0] - 1, 0))
            x = neuron(synapse(padded).permute(2, 0, 1)).to(DOUBLE)
    return x.permute(1, 0, 2).numpy()


@pytest.mark.parametrize("version", ["v1", "gauss"])
def test_dcls_delays_spike_like_the_paper_forward(version):
    network = _dcls_network(version)
    x = inputs(seed=6)
    graph = from_module(network, x[0][:1])
    expected = _run_paper_forward(network, x)
    assert expected.sum() > 50
    np.testing.assert_array_equal(run_graph(graph, x), expected)


def test_dcls_taps_become_one_affine_with_the_positions_as_delays():
    network = _dcls_network("v1")
    graph = from_module(network, torch.zeros(1, N_IN, dtype=DOUBLE))
    synapse, affine = network[0], graph["0"].op
    assert [n for n in graph.nodes if n.startswith("0.")] == []  # one tap per synapse: one Affine
    positions = synapse.P.detach().numpy()[0, :, :, 0]  # (out, in); tap = position + 9 // 2
    np.testing.assert_array_equal(affine.delay, 9 - 1 - (positions + 4).astype(int))
    np.testing.assert_allclose(affine.weight, synapse.weight.detach().numpy()[:, :, 0] / (1 + 1e-7), rtol=1e-12)


def test_dcls_with_padding_inside_is_refused():
    dcls = pytest.importorskip("DCLS.construct.modules")
    chain = torch.nn.Sequential(dcls.Dcls1d(N_IN, N_OUT, kernel_count=1, dilated_kernel_size=5, padding=2))
    with pytest.raises(FrontendError, match="Dcls1d '0': needs padding 0"):
        from_module(chain, torch.zeros(1, N_IN))


def test_export_failure_is_one_line_naming_the_model():
    class Data(torch.nn.Module):
        def forward(self, x, v):
            if x.sum() > 0:  # data-dependent control flow: no exporter records it
                v = v + x
            return v, v

    with pytest.raises(FrontendError, match="^Data: torch.onnx.export cannot export one step of the model: [^\n]*$"):
        from_module(Data(), (torch.zeros(1, 3), torch.zeros(1, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_is_refused_naming_the_model_node_and_field(bad):
    module = step_module("plain")
    with torch.no_grad():
        module.l2.fc.weight[0, 0] = bad
    with pytest.raises(FrontendError, match="^PlainTwoLayers: node '[^']*l2[^']*fc': .*weight holds NaN or infinite"):
        from_module(module, (torch.zeros(1, N_IN, dtype=DOUBLE), *module.zero_states(1)))


@pytest.mark.parametrize("dt", [float("nan"), float("inf"), 0.0, -1e-3])
def test_a_time_step_that_is_not_finite_and_positive_is_refused_before_export(dt):
    chain = torch.nn.Sequential(linear(N_IN, N_OUT, 0))
    with pytest.raises(FrontendError, match="^dt=.*finite number of seconds > 0"):
        from_module(chain, torch.zeros(1, N_IN, dtype=DOUBLE), dt=dt)
