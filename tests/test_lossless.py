"""No silent change of a network by compiling it: quantization fits every parameter or says which
it cannot, pass options that no pass reads are refused, and pruning never costs synaptic memory.

The fixed-point passes pick one state scale per population that holds its weights, biases and
threshold together; a parameter no scale holds is an error naming the node, the parameter, its
value and the range the chip holds, or, with ``--allow-lossy``, is clipped with one warning per
node in the pass report and on stderr.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from snnc import ir
from snnc.backends import lower
from snnc.errors import IRError, SnncError
from snnc.passes.mapping import RESOURCES
from snnc.passes.pipeline import PassOptions, build_pipeline
from snnc.runtime.simulator import simulate
from snnc.targets import load_target

from graphs import chain, cuba_chain, lif, mlp

LOIHI2, SPINNAKER, SIM = load_target("loihi2"), load_target("spinnaker"), load_target("sim")


def snnc(*args):
    return subprocess.run([sys.executable, "-m", "snnc", *map(str, args)], capture_output=True, text=True)


# ----------------------------------------------------------------------------- SANA-FE's DVS gesture network


def dvs_network(layers: int):
    """SANA-FE's DVS gesture network (``sanafe.tutorial.get_dvs_data()``, built as its
    tutorial_5_dvs builds it) up to conv layer ``layers``: 32x32 input neurons driven by biases of
    0 to 255 alone, then 3x3 valid convolutions (the first with stride 2) of integer weights, IF
    neurons with integer thresholds, reset to 0. SANA-FE stores neurons channel-first and kernels
    as [y, x, in, out]. An snnc graph takes its batch and steps from an Input, which here adds
    nothing to the first layer (a scale of 0)."""
    sanafe = pytest.importorskip("sanafe.tutorial")
    with np.load(sanafe.get_dvs_data()) as data:
        thresholds, biases = data["thresholds"].astype(np.float64), data["inputs"].astype(np.float64)
        kernels = [data[f"conv{i}"].astype(np.float64).transpose(3, 2, 0, 1) for i in range(1, layers + 1)]

    def neurons(i, shape, bias=0.0):
        return ir.IF(v_gain=np.array(1.0), bias=np.broadcast_to(bias, shape).copy(),
                     v_threshold=np.full(shape, thresholds[i]), v_reset=np.zeros(shape))

    graph = ir.Graph(dt=1e-3, name="dvs")
    graph.add("in", ir.Input(shape=(1, 32, 32)))
    graph.add("silent", ir.Scale(scale=np.zeros((1, 32, 32))))
    graph.add("layer0", neurons(0, (1, 32, 32), biases.reshape(1, 32, 32)))
    graph.connect("in", "silent")
    graph.connect("silent", "layer0")
    size = 32
    for i, kernel in enumerate(kernels, start=1):
        stride = 2 if i == 1 else 1
        size = (size - 3) // stride + 1
        graph.add(f"conv{i}", ir.Conv2d(weight=kernel, stride=stride, padding=0, dilation=1))
        graph.add(f"layer{i}", neurons(i, (kernel.shape[0], size, size)))
        graph.connect(f"layer{i - 1}", f"conv{i}")
        graph.connect(f"conv{i}", f"layer{i}")
    graph.add("out", ir.Output())
    graph.connect(f"layer{layers}", "out")
    return ir.verify(graph)


@pytest.fixture(scope="module")
def dvs():
    return dvs_network(2)


def test_the_dvs_networks_biases_fit_loihi_and_its_first_layer_spikes_as_in_float(dvs):
    """vth was chosen for the weights alone and clipped layer0's biases to a 13-bit mantissa x 2^7:
    the first layer lost 45% of its spikes. Now vth holds them and the bias-driven layer spikes as
    the float network does (Loihi's synapses add one step per layer, so only layer0 is compared
    step for step; deeper layers by their counts)."""
    passes = ["canonicalize", "fuse-synapses", "quantize-loihi"]
    lowered, reports = lower(dvs, LOIHI2, passes=passes)
    report = reports["quantize-loihi"]
    assert report["warnings"] == []
    for name, population in report["populations"].items():  # rounding only: half the coarsest bias step
        assert population["bias_error"] <= 2 ** 6 / population["state_scale_per_unit_threshold"], name
    x = np.zeros((1, 300, 1, 32, 32))
    probes = ["layer0", "layer1", "layer2"]
    ours, reference = simulate(lowered, x, probes=probes), simulate(dvs, x, probes=probes)
    spikes = {p: (int(ours[f"{p}:spikes"].sum()), int(reference[f"{p}:spikes"].sum())) for p in probes}
    assert spikes["layer0"][1] > 5000
    assert abs(spikes["layer0"][0] - spikes["layer0"][1]) <= 0.002 * spikes["layer0"][1], spikes
    assert np.mean(ours["layer0:spikes"] != reference["layer0:spikes"]) < 1e-3
    for name in ("layer1", "layer2"):
        assert abs(spikes[name][0] - spikes[name][1]) <= 0.05 * spikes[name][1], spikes


def test_the_dvs_networks_first_layer_spikes_on_spinnaker_as_in_float(dvs):
    lowered, reports = lower(dvs, SPINNAKER, passes=["canonicalize", "fuse-synapses", "quantize-spinnaker"])
    assert reports["quantize-spinnaker"]["warnings"] == []
    x = np.zeros((1, 300, 1, 32, 32))
    ours, reference = simulate(lowered, x, probes=["layer0"]), simulate(dvs, x, probes=["layer0"])
    assert np.mean(ours["layer0:spikes"] != reference["layer0:spikes"]) < 1e-3


# ----------------------------------------------------------------------------- what Loihi cannot hold


def biased(bias, threshold=1.0, weight=0.5):
    """Input -> fc -> 3 LIF neurons with these biases -> Output."""
    return chain(("in", ir.Input(shape=(2,))), ("fc", ir.Affine(weight=np.full((3, 2), weight))),
                 ("n", lif(v_decay=0.9, bias=0.0, v_threshold=threshold, shape=(3,))), ("out", ir.Output()))


def with_biases(graph, biases):
    graph["n"].op.bias = np.asarray(biases, np.float64)
    return graph


def test_a_bias_no_vth_holds_is_refused_naming_the_node_the_value_and_the_range():
    """At vth = 1 Loihi's bias holds 13-bit mantissas x 2^7 in units of 1/64 of the threshold:
    -8192 to 8190 thresholds per step."""
    graph = with_biases(biased(0.0, threshold=0.5), [1.0, 2.0, 5000.0])
    with pytest.raises(IRError, match=r"node 'n': bias 5000 \(10000 thresholds per step\) is beyond what loihi2 "
                                      r"holds: -8192 to 8190 thresholds per step.*--allow-lossy"):
        lower(graph, LOIHI2, passes=["fuse-synapses", "quantize-loihi"])


def test_with_allow_lossy_the_bias_is_clipped_and_the_pass_warns_with_the_effect():
    graph = with_biases(biased(0.0, threshold=0.5), [1.0, 2.0, 5000.0])
    lowered, reports = lower(graph, LOIHI2, passes=["fuse-synapses", "quantize-loihi"],
                             options=PassOptions(allow_lossy=True))
    (warning,) = reports["quantize-loihi"]["warnings"]
    assert warning.startswith("node 'n': bias clipped to -8192 to 8190 thresholds per step in 1 of 3 neurons (33.3%), "
                              "largest error 1810 thresholds per step")
    fixed = lowered["n"].annotations["loihi"]
    assert fixed["vth"] == 1 and fixed["bias_mant"][2] * 2 ** fixed["bias_exp"][2] == 4095 * 128


def test_the_largest_vth_that_holds_every_bias_is_chosen():
    graph = with_biases(biased(0.0), [0.01, -3.0, 2.5])
    lowered, reports = lower(graph, LOIHI2, passes=["fuse-synapses", "quantize-loihi"])
    fixed = lowered["n"].annotations["loihi"]
    assert fixed["vth"] == 8192 // 3  # the negative bias binds: -4096 x 2^7 / 64 / 3
    held = fixed["bias_mant"] * 2.0 ** fixed["bias_exp"]
    assert held.min() >= -4096 * 128 and np.abs(fixed["bias_mant"]).max() < 4096
    np.testing.assert_allclose(held / (fixed["vth"] * 64), [0.01, -3.0, 2.5], atol=1 / fixed["vth"])


def test_a_weight_no_vth_holds_is_refused_naming_the_synapses():
    graph = biased(0.0, threshold=1.0, weight=40000.0)
    with pytest.raises(IRError, match=r"node 'fc': weight 40000 \(40000 thresholds per spike\) is beyond what "
                                      r"loihi2 holds: -32768 to 32512 thresholds per spike"):
        lower(graph, LOIHI2, passes=["fuse-synapses", "quantize-loihi"])
    _, reports = lower(graph, LOIHI2, passes=["fuse-synapses", "quantize-loihi"], options=PassOptions(allow_lossy=True))
    assert reports["quantize-loihi"]["warnings"] == [
        "node 'fc': weight clipped to -32768 to 32512 thresholds per spike in 6 of 6 synapses (100.0%), largest "
        "error 7488 thresholds per spike"]


@pytest.mark.parametrize("decay, value", [("v_decay", 1.2), ("v_decay", -0.1), ("i_decay", -0.5)])
def test_a_decay_loihi_cannot_hold_is_refused_not_clipped(decay, value):
    graph = cuba_chain()
    setattr(graph["n"].op, decay, np.array(value))
    held = "0 to 1"
    with pytest.raises(IRError, match=f"node 'n': {decay} {value:g} is beyond what loihi2 holds: {held}"):
        lower(graph, LOIHI2)
    _, reports = lower(graph, LOIHI2, options=PassOptions(allow_lossy=True))
    assert reports["quantize-loihi"]["warnings"][0].startswith(f"node 'n': {decay} clipped to {held}")


def test_a_population_its_input_does_not_reach_still_gets_a_vth():
    """A gain of 0 (an input scaled by 0, folded into v_gain) left quantize-loihi dividing by a
    zero step."""
    graph = chain(("in", ir.Input(shape=(3,))), ("fc", ir.Affine(weight=np.eye(3))),
                  ("n", lif(v_gain=0.0, bias=0.3, shape=(3,))), ("out", ir.Output()))
    lowered, reports = lower(graph, LOIHI2)
    assert reports["quantize-loihi"]["warnings"] == []
    x = np.ones((1, 20, 3))
    assert simulate(lowered, x)["out"].sum() == simulate(graph, x)["out"].sum() > 0


def test_compile_and_inspect_refuse_in_one_line_or_warn_with_allow_lossy(tmp_path):
    model = tmp_path / "model.snnir"
    ir.save(ir.verify(with_biases(biased(0.0, threshold=0.5), [1.0, 2.0, 5000.0])), model)
    refused = snnc("compile", model, "--target", "loihi2", "-o", tmp_path / "out")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "node 'n': bias 5000" in refused.stderr and not (tmp_path / "out").exists()
    lossy = snnc("compile", model, "--target", "loihi2", "--allow-lossy", "-o", tmp_path / "out")
    assert lossy.returncode == 0, lossy.stderr
    warnings = [line for line in lossy.stderr.splitlines() if line.startswith("snnc: warning:")]
    assert warnings == ["snnc: warning: quantize-loihi: node 'n': bias clipped to -8192 to 8190 thresholds per step "
                        "in 1 of 3 neurons (33.3%), largest error 1810 thresholds per step"]
    assert json.loads((tmp_path / "out" / "passes.json").read_text())["quantize-loihi"]["warnings"] == [
        warnings[0].removeprefix("snnc: warning: quantize-loihi: ")]
    lowered = snnc("inspect", model, "--target", "loihi2", "--allow-lossy")
    assert lowered.returncode == 0 and warnings[0] in lowered.stderr.splitlines(), lowered.stderr


# ----------------------------------------------------------------------------- what SpiNNaker cannot hold


def test_a_synaptic_decay_below_u032s_resolution_is_refused_not_rounded_to_no_input():
    """exp(-dt/tau_syn) below 2^-32 rounded to a decay of 0, whose init is 0: the synapses
    delivered nothing."""
    graph = cuba_chain()
    graph["n"].op.i_decay = np.array(1e-12)
    with pytest.raises(IRError, match=r"node 'n': i_decay 1e-12 is beyond what spinnaker holds: 2.32831e-10 to 1"):
        lower(graph, SPINNAKER)
    lowered, reports = lower(graph, SPINNAKER, options=PassOptions(allow_lossy=True))
    assert reports["quantize-spinnaker"]["warnings"][0].startswith("node 'n': i_decay clipped to 2.32831e-10 to 1")
    graph["n"].op.i_decay = np.array(1e-6)  # held: the same network, as far as 10 steps can tell
    held, _ = lower(graph, SPINNAKER)
    x = np.zeros((1, 10, 2))
    x[0, ::2] = 1
    np.testing.assert_array_equal(simulate(lowered, x)["out"], simulate(held, x)["out"])
    assert simulate(lowered, x)["out"].sum() > 0


@pytest.mark.parametrize("value", [1.5, -0.2])
def test_a_membrane_decay_spinnaker_cannot_hold_names_its_value_and_range(value):
    graph = mlp(np.random.default_rng(2))
    graph["lif1"].op.v_decay = np.full(20, value)
    with pytest.raises(IRError, match=f"node 'lif1': v_decay {value:g} is beyond what spinnaker holds: 0 to 1"):
        lower(graph, SPINNAKER)


def test_large_biases_and_weights_fit_spinnaker_by_the_state_scale():
    """sPyNNaker's state scale is any power of two, so no magnitude is beyond it."""
    graph = with_biases(biased(0.0, threshold=0.5, weight=3000.0), [1.0, 2.0, 5000.0])
    lowered, reports = lower(graph, SPINNAKER)
    assert reports["quantize-spinnaker"]["warnings"] == []
    x = (np.random.default_rng(0).random((2, 30, 2)) < 0.3).astype(np.float64)
    np.testing.assert_array_equal(simulate(lowered, x)["out"], simulate(graph, x)["out"])


# ----------------------------------------------------------------------------- options no pass reads


@pytest.mark.parametrize("options, flag", [
    (PassOptions(weight_bits=4), "--weight-bits 4"),
    (PassOptions(quantization="error"), "--quantization error"),
    (PassOptions(granularity="channel"), "--granularity channel"),
    (PassOptions(sparsity=0.5), "--sparsity 0.5"),
    (PassOptions(calibration="x.npz"), "--calibration x.npz"),
    (PassOptions(allow_lossy=True), "--allow-lossy"),
])
def test_an_option_the_sim_pipeline_does_not_read_is_refused_naming_who_would(options, flag):
    with pytest.raises(SnncError) as refused:
        build_pipeline(SIM, None, options)
    message = str(refused.value)
    assert message.startswith(f"{flag}: no pass of target sim's pipeline (none) reads it; ")
    assert "spinnaker" in message and "loihi2" in message


def test_an_option_no_pass_of_passes_reads_is_refused():
    with pytest.raises(SnncError, match=r"^--weight-bits 4: no pass of --passes \(fuse-synapses, sparsify\) reads "
                                        r"it; quantize-weights reads it, in the pipelines of targets loihi, loihi2, "
                                        r"spinnaker; choose such a target, or name that pass in --passes$"):
        build_pipeline(LOIHI2, ["fuse-synapses", "sparsify"], PassOptions(weight_bits=4))
    with pytest.raises(SnncError, match=r"^--allow-lossy: .* quantize-loihi, quantize-spinnaker read it"):
        build_pipeline(LOIHI2, ["fuse-synapses"], PassOptions(allow_lossy=True))
    assert [p.name for p in build_pipeline(LOIHI2, ["fuse-synapses", "quantize-weights"], PassOptions(weight_bits=4))] \
        == ["fuse-synapses", "quantize-weights"]


@pytest.mark.parametrize("command", [["compile", "--target", "sim", "-o", "OUT"], ["inspect"]])
def test_the_command_line_refuses_pass_flags_the_target_ignores(tmp_path, command):
    model = tmp_path / "model.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(1))), model)
    command = [str(tmp_path / "out") if part == "OUT" else part for part in command]
    result = snnc(command[0], model, *command[1:], "--weight-bits", "4")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--weight-bits 4: no pass of target sim's pipeline (none) reads it" in result.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- pruning and synaptic memory


def conv_network(rng):
    """Input (2, 12, 12) -> padded 3x3 conv -> LIF -> valid 3x3 conv -> LIF -> Output."""
    graph = chain(("in", ir.Input(shape=(2, 12, 12))),
                  ("c1", ir.Conv2d(weight=rng.normal(0, 1, (4, 2, 3, 3)), stride=1, padding=1, dilation=1)),
                  ("l1", lif(shape=(4, 12, 12))),
                  ("c2", ir.Conv2d(weight=rng.normal(0, 1, (6, 4, 3, 3)), stride=1, padding=0, dilation=1)),
                  ("l2", lif(shape=(6, 10, 10))), ("out", ir.Output()))
    return graph


def mapped_memory(graph, target, sparsity):
    lowered, _ = lower(graph, target, passes=["fuse-synapses", "sparsify", "map-cores"],
                       options=PassOptions(sparsity=sparsity))
    mapping = lowered.metadata["mapping"]
    assert mapping["capacity"].keys() == set(RESOURCES)
    return sum(core["synaptic_memory_bits"] for core in mapping["per_core"])


@pytest.mark.parametrize("target", [LOIHI2, SPINNAKER], ids=lambda t: t.name)
@pytest.mark.parametrize("build", [mlp, conv_network])
def test_pruning_never_increases_synaptic_memory_as_map_cores_counts_it(target, build):
    """sparsify chose sparse by an index width of its own (the group's rows) and forced it on
    map-cores, which counts a core's index width: 50% pruning grew Loihi's memory by 31%, and
    any sparsity turned a convolution's shared kernels into synapse lists, 280 times larger."""
    graph = build(np.random.default_rng(0))
    memory = {sparsity: mapped_memory(graph, target, sparsity) for sparsity in (None, 0.1, 0.3, 0.5, 0.7, 0.9)}
    assert all(bits <= memory[None] for bits in memory.values()), memory
    assert memory[0.9] < memory[None]
