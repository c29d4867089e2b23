"""quantize-weights: b-bit mantissas times a scale per layer or channel, what the scale methods keep,
the spikes the quantized network keeps, and how quantize-loihi keeps the mantissas on Lava's grid."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from snnc import ir
from snnc.backends import _plain, lower
from snnc.errors import IRError, SnncError
from snnc.frontend import load_model
from snnc.passes import PassManager
from snnc.passes.fuse import FuseSynapses
from snnc.passes.pipeline import PassOptions
from snnc.passes.quantize import METHODS, QuantizeWeights, entropy_bits, quantize
from snnc.runtime.simulator import simulate
from snnc.targets import load_target

from graphs import mlp, spikes

LOIHI2 = load_target("loihi2")
SIM = load_target("sim")


def bimodal(rng, size=4000):
    """Two tight modes at +-1 and one outlier: min-max spends its levels on the outlier's range."""
    return np.concatenate([rng.normal(-1, 0.1, size // 2), rng.normal(1, 0.1, size // 2), [6.0]])[None, :]


def mse(weight, result):
    synapses = weight != 0
    return float(np.mean((result.weight - weight)[synapses] ** 2))


def quantized_mlp(bits, method="entropy"):
    step = QuantizeWeights(LOIHI2, bits, method)
    graph = PassManager([FuseSynapses(), step]).run(mlp(np.random.default_rng(0)))
    return graph, step.report()


def float_copy(graph):
    """The same IR run by the float simulator, even after quantize-loihi marked it for Lava's integers."""
    copy = graph.copy()
    copy.metadata = {k: v for k, v in copy.metadata.items() if k != "arithmetic"}
    return copy


# -- the quantizer


@pytest.mark.parametrize("granularity", ["layer", "channel"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_mantissas_fit_their_bits_and_rounding_errs_by_at_most_half_a_step(bits, method, granularity):
    weight = np.random.default_rng(bits).normal(0, 1, (20, 30))
    result = quantize(weight, bits, method, granularity)
    top = 2 ** (bits - 1) - 1
    assert result.mantissa.dtype == np.int8 and np.abs(result.mantissa).max() == top
    assert np.array_equal(result.weight, result.mantissa * result.scale[:, None])
    inside = np.abs(weight) <= top * result.scale[:, None]  # within the clip range: rounding only
    assert np.all(np.abs(result.weight - weight)[inside] <= result.scale[:, None].repeat(30, 1)[inside] / 2 + 1e-12)
    if method == "minmax":
        assert inside.all() and np.all(result.clip_ratio == 1.0)
    if granularity == "layer":
        assert np.all(result.scale == result.scale[0])


def test_two_bit_mantissas_are_ternary():
    result = quantize(np.random.default_rng(0).normal(0, 1, (8, 50)), 2, "entropy")
    assert set(np.unique(result.mantissa)) == {-1, 0, 1}
    assert entropy_bits(result.mantissa, 2) > 1.5  # close to log2(3) = 1.58: the three levels used evenly


@pytest.mark.parametrize("bits, gain", [(2, 1.5), (4, 0.5), (8, 0.0)])
def test_entropy_keeps_more_information_than_minmax_on_a_bimodal_layer(bits, gain):
    """QSD's observation: low-bit min-max quantization collapses a bimodal distribution onto few
    levels. The entropy scale gains most where levels are few; at 8 bits, where min-max is already
    fine, its bound on the error leaves it close to min-max."""
    weight = bimodal(np.random.default_rng(1))
    minmax, entropy = quantize(weight, bits, "minmax"), quantize(weight, bits, "entropy")
    h_minmax, h_entropy = entropy_bits(minmax.mantissa, bits), entropy_bits(entropy.mantissa, bits)
    assert h_entropy > h_minmax + gain
    assert mse(weight, entropy) <= mse(weight, minmax)  # and it is no less faithful
    if bits == 2:
        # Min-max puts both modes on 0. The entropy scale spreads them over all three levels (entropy
        # also counts how a mode's noise splits between two levels); the error search keeps their signs.
        assert h_minmax < 0.01 and h_entropy > 1.5
        error = quantize(weight, bits, "error")
        assert np.all(np.sign(error.mantissa[0, :-1]) == np.sign(weight[0, :-1]))


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("shape", ["normal", "laplace", "bimodal"])
def test_error_search_has_the_lowest_error_of_the_methods(bits, shape):
    rng = np.random.default_rng(2)
    weight = {"normal": rng.normal(0, 1, (1, 3000)), "laplace": rng.laplace(0, 1, (1, 3000)),
              "bimodal": bimodal(rng)}[shape]
    errors = {method: mse(weight, quantize(weight, bits, method)) for method in METHODS}
    assert errors["error"] == min(errors.values())
    assert errors["entropy"] <= errors["minmax"]


def test_channel_scales_follow_each_rows_range():
    rng = np.random.default_rng(3)
    weight = rng.normal(0, 1, (6, 40)) * np.logspace(-2, 1, 6)[:, None]  # rows three decades apart
    layer, channel = quantize(weight, 4, "minmax", "layer"), quantize(weight, 4, "minmax", "channel")
    np.testing.assert_allclose(channel.scale, np.abs(weight).max(axis=1) / 7)
    assert np.count_nonzero(layer.mantissa[0]) == 0  # the weakest row vanishes under one layer scale
    assert np.count_nonzero(channel.mantissa[0]) > 30 and mse(weight, channel) < mse(weight, layer)
    relative = np.abs(channel.weight - weight).max(axis=1) / np.abs(weight).max(axis=1)
    assert relative.max() <= 0.5 / 7 + 1e-12  # every row keeps half a step of its own range


def test_zero_weights_are_absent_synapses_and_stay_zero():
    rng = np.random.default_rng(4)
    weight = rng.normal(0, 1, (10, 10)) * (rng.random((10, 10)) < 0.3)
    weight[3] = 0.0  # a row without synapses
    for granularity in ("layer", "channel"):
        result = quantize(weight, 4, "entropy", granularity)
        assert np.all(result.mantissa[weight == 0] == 0) and np.all(np.isfinite(result.scale))
    # the choice depends on the synapses alone: padding the matrix with zeros changes nothing
    padded = np.hstack([weight, np.zeros((10, 90))])
    assert np.array_equal(quantize(padded, 4, "entropy").scale, quantize(weight, 4, "entropy").scale)


# -- the pass


def test_the_pass_rewrites_weights_to_mantissa_times_scale_and_annotates_them():
    graph, report = quantized_mlp(4, "error")
    affines = [n for n in graph if isinstance(n.op, ir.Affine)]
    assert [n.name for n in affines] == list(report["layers"]) == ["fc0", "fc1", "fc2"]
    for node in affines:
        quant = node.annotations["quant"]
        assert quant["bits"] == 4 and quant["method"] == "error" and quant["granularity"] == "layer"
        assert np.array_equal(node.op.weight, quant["mantissa"] * quant["scale"])
        layer = report["layers"][node.name]
        assert layer["entropy"] == quant["entropy"] and 0 < layer["error"]["relative_rms"] < 0.2
        assert layer["entropy_minmax"] <= layer["entropy"] + 0.5 and 0 < layer["clip_ratio"] <= 1
    assert report["calibration"] == {"source": "random", "rate": 0.1, "batch": 8, "steps": 100, "seed": 0}
    json.dumps(report, default=_plain)  # it lands in passes.json


def test_spikes_kept_are_measured_and_fall_with_the_bits():
    """Each layer quantized alone, against the float network on the calibration inputs: at 8 bits
    the target populations spike as before, and every halving of the bits costs agreement."""
    agreement = {}
    for bits in (8, 4, 2):
        _, report = quantized_mlp(bits)
        agreement[bits] = min(change["agreement"] for layer in report["layers"].values()
                              for change in layer["alone"].values())
        if bits == 8:
            (out,) = report["network"].values()
            assert out["decisions_kept"] == 1.0 and abs(out["spike_change"]) < 0.05 and out["agreement"] > 0.95
    assert agreement[8] > 0.99 and agreement[4] > 0.95 and agreement[2] > 0.85
    assert agreement[8] > agreement[4] > agreement[2]


def test_the_float_simulator_runs_the_quantized_network():
    graph, report = quantized_mlp(2, "minmax")
    x = spikes(np.random.default_rng(0), (8, 100, 40), rate=0.1)  # the pass's own calibration draw
    reference = simulate(mlp(np.random.default_rng(0)), x)["out"]
    quantized = simulate(graph, x)["out"]
    assert report["network"]["out"]["spikes_after"] == quantized.sum() != reference.sum()
    assert report["network"]["out"]["spikes_before"] == reference.sum()


def test_calibration_inputs_come_from_the_file_given(tmp_path):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "x.npy", spikes(rng, (3, 50, 40), rate=0.4))
    step = QuantizeWeights(LOIHI2, 8, calibration=str(tmp_path / "x.npy"))
    PassManager([FuseSynapses(), step]).run(mlp(rng))
    assert step.report()["calibration"] == {"source": str(tmp_path / "x.npy"), "batch": 3, "steps": 50}
    np.save(tmp_path / "wrong.npy", np.zeros((3, 50, 7)))
    with pytest.raises(SnncError, match=r"--calibration .*wrong.npy: input 'in' must have shape"):
        PassManager([FuseSynapses(), QuantizeWeights(LOIHI2, 8, calibration=str(tmp_path / "wrong.npy"))]).run(mlp(rng))


def test_labelled_calibration_inputs_give_the_accuracy_before_and_after(tmp_path):
    rng = np.random.default_rng(13)
    graph = mlp(rng)
    x = spikes(rng, (16, 60, 40), rate=0.3)
    decisions = simulate(graph, x)["out"].sum(axis=1).argmax(axis=1)
    labels = np.where(np.arange(16) < 12, decisions, (decisions + 1) % 10)  # the float network: 12 of 16 right
    np.savez(tmp_path / "calibration.npz", **{"in": x, "labels": labels})
    step = QuantizeWeights(LOIHI2, 2, calibration=str(tmp_path / "calibration.npz"))
    PassManager([FuseSynapses(), step]).run(graph)
    out = step.report()["network"]["out"]
    assert out["accuracy_before"] == 0.75 and 0 <= out["accuracy_after"] <= 1
    assert step.report()["calibration"]["labels"] is True
    np.savez(tmp_path / "bad.npz", **{"in": x, "labels": labels[:3]})
    with pytest.raises(SnncError, match="labels must be 16 integer classes"):
        PassManager([FuseSynapses(), QuantizeWeights(LOIHI2, 2, calibration=str(tmp_path / "bad.npz"))]).run(graph)


@pytest.mark.parametrize("arguments, message", [
    (dict(bits=16), "--weight-bits 16: target loihi2 holds at most 8-bit weights"),
    (dict(bits=8, method="kl"), "--quantization kl: choose one of entropy, error, minmax"),
    (dict(bits=8, granularity="tensor"), "--granularity tensor: choose one of layer, channel"),
])
def test_settings_it_cannot_follow_are_refused_by_flag(arguments, message):
    with pytest.raises(SnncError, match=message):
        QuantizeWeights(LOIHI2, **arguments)


def test_bits_default_to_the_targets_and_a_float_target_needs_them():
    assert QuantizeWeights(LOIHI2).bits == 8 and QuantizeWeights(load_target("spinnaker")).bits == 16
    with pytest.raises(SnncError, match="--weight-bits: target sim has no weight format"):
        QuantizeWeights(SIM)
    assert QuantizeWeights(SIM, 4).bits == 4


def test_it_needs_population_form():
    graph = ir.Graph(dt=1e-3)
    graph.add("in", ir.Input(shape=(1, 4, 4)))
    graph.add("conv", ir.Conv2d(weight=np.ones((1, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1))
    graph.add("n", ir.IF(v_gain=np.array(1.0), bias=np.array(0.0), v_threshold=np.array(1.0), v_reset=np.array(0.0)))
    graph.add("out", ir.Output())
    for edge in [("in", "conv"), ("conv", "n"), ("n", "out")]:
        graph.connect(*edge)
    with pytest.raises(IRError, match="quantize-weights needs a graph in population form: run fuse-synapses first"):
        PassManager([QuantizeWeights(LOIHI2)]).run(graph)


# -- on Loihi: quantize-loihi keeps the mantissas


LOIHI_PASSES = ["fuse-synapses", "quantize-weights", "quantize-loihi"]


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_lavas_weights_are_twice_the_mantissas_and_vth_carries_the_scale(bits):
    """A layer scale s becomes vth ≈ 2^(e+1) / r, r = g·s/θ the step in units of threshold: Lava's
    integers then hold the quantized network up to vth's rounding."""
    graph = mlp(np.random.default_rng(7))
    lowered, reports = lower(graph, LOIHI2, passes=LOIHI_PASSES, options=PassOptions(weight_bits=bits))
    for population, synapse in [("lif0", "fc0"), ("lif1", "fc1"), ("lif2", "fc2")]:
        quant, fixed = lowered[synapse].annotations["quant"], lowered[synapse].annotations["loihi"]
        assert np.array_equal(fixed["weights"], 2 * quant["mantissa"].astype(np.int32))
        report = reports["quantize-loihi"]["populations"][population]
        assert report["synapses"][synapse]["mantissas_kept"]
        step = quant["scale"] * 1.0 / 0.5  # v_gain / v_threshold of mlp's populations
        vth = lowered[population].annotations["loihi"]["vth"]
        assert abs(vth - 2 ** (fixed["weight_exp"] + 1) / step) < 1 and vth > 100
        assert report["synapses"][synapse]["max_error_per_unit_threshold"] <= 2 ** (bits - 1) * step / vth


def test_channel_scales_cannot_all_keep_their_mantissas_and_the_extra_error_is_reported():
    graph = mlp(np.random.default_rng(8))
    lowered, reports = lower(graph, LOIHI2, passes=LOIHI_PASSES,
                             options=PassOptions(weight_bits=4, granularity="channel"))
    synapse = reports["quantize-loihi"]["populations"]["lif0"]["synapses"]["fc0"]
    assert not synapse["mantissas_kept"]
    # rounded onto Lava's 8-bit mantissas instead: within half an 8-bit step of the largest weight
    largest = np.abs(lowered["fc0"].op.weight).max() / 0.5
    assert 0 < synapse["max_error_per_unit_threshold"] <= largest / 127


def test_the_fixed_point_network_follows_the_quantized_one():
    rng = np.random.default_rng(9)
    lowered, _ = lower(mlp(rng), LOIHI2, passes=LOIHI_PASSES, options=PassOptions(weight_bits=4))
    x = spikes(rng, (8, 200, 40), rate=0.3)
    depth = 3  # Lava's one step per synapse layer
    floating = simulate(float_copy(lowered), x)["out"][:, : 200 - depth]
    fixed = simulate(lowered, x)["out"][:, depth:]
    assert floating.sum() > 100 and (fixed == floating).mean() > 0.995


def test_a_stale_quantization_is_refused():
    quantized = lower(mlp(np.random.default_rng(10)), LOIHI2, passes=LOIHI_PASSES[:2])[0]
    quantized["fc1"].op.weight = quantized["fc1"].op.weight * 1.01
    with pytest.raises(IRError, match="'fc1': its weights are no longer its quantization"):
        lower(quantized, LOIHI2, passes=["quantize-loihi"])


def test_a_four_bit_network_matches_lava(tmp_path):
    from snnc.backends import compile_graph
    from snnc.runtime.lava_env import ensure_environment
    from snnc.runtime.lava_run import run_lava

    ensure_environment(log=lambda line: None)
    rng = np.random.default_rng(11)
    graph = mlp(rng)
    ir.save(ir.verify(graph), tmp_path / "model.snnir")
    artifact = compile_graph(graph, "loihi2", tmp_path / "model.snnir", tmp_path / "art",
                             options=PassOptions(weight_bits=4))
    lowered = ir.load(artifact / "model.snnir")
    assert all(n.annotations["quant"]["bits"] == 4 for n in lowered if isinstance(n.op, ir.Affine))
    x = spikes(rng, (2, 60, 40)).astype(np.int64)
    ours, theirs = simulate(lowered, x, probes=["lif1"]), run_lava(artifact, x, probes=["lif1"], log=lambda line: None)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    assert ours["out"].sum() > 0


# -- the command line


def test_compile_records_the_bits_and_method_in_passes_json_and_inspect_shows_them(tmp_path):
    import subprocess
    import sys

    model = tmp_path / "model.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(12))), model)

    def snnc(*args):
        return subprocess.run([sys.executable, "-m", "snnc", *map(str, args)], capture_output=True, text=True)

    result = snnc("compile", model, "--target", "loihi2", "--weight-bits", "4", "--quantization", "error",
                  "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    passes = json.loads((tmp_path / "out" / "passes.json").read_text())
    report = passes["quantize-weights"]
    assert report["bits"] == 4 and report["method"] == "error"
    assert all(layer["bits"] == 4 and layer["method"] == "error" for layer in report["layers"].values())
    assert all(s["mantissas_kept"] for p in passes["quantize-loihi"]["populations"].values()
               for s in p["synapses"].values())
    shown = snnc("inspect", tmp_path / "out")
    assert "@quant={bits=4 method=error" in shown.stdout
    default = snnc("compile", model, "--target", "loihi2", "-o", tmp_path / "default")
    assert default.returncode == 0
    assert json.loads((tmp_path / "default" / "passes.json").read_text())["quantize-weights"]["bits"] == 8
    refused = snnc("compile", model, "--target", "sim", "--passes", "fuse-synapses,quantize-weights",
                   "-o", tmp_path / "x")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--weight-bits: target sim has no weight format" in refused.stderr


# -- the bundled example


DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(DIGITS))
    try:
        import data
    finally:
        sys.path.remove(str(DIGITS))
    return load_model(DIGITS / "model.nir"), *data.load("test")


@pytest.mark.parametrize("bits, method, loss", [(8, "entropy", 1.0), (8, "error", 1.0), (8, "minmax", 1.0),
                                                (4, "error", 1.5), (2, "error", 10.0)])
def test_the_bundled_digits_network_keeps_its_accuracy(digits, bits, method, loss):
    """docs/benchmarks.md records all of them; 8 bits may lose at most one point, on the float
    simulation of the quantized IR and on loihi2's fixed point."""
    graph, x, labels = digits

    def accuracy(lowered, steps):
        return 100 * np.mean(simulate(lowered, x, steps=steps)["output"].sum(axis=1).argmax(axis=1) == labels)

    floating = accuracy(graph, 16)
    options = PassOptions(weight_bits=bits, quantization=method)
    quantized, _ = lower(graph, LOIHI2, passes=LOIHI_PASSES[:2], options=options)
    fixed, _ = lower(graph, LOIHI2, passes=LOIHI_PASSES, options=options)
    assert accuracy(quantized, 16) >= floating - loss and accuracy(fixed, 18) >= floating - loss
