"""sparsify: magnitude pruning to an exact sparsity or a threshold (of a convolution, in its
kernels), the spikes it keeps, and the synaptic memory it saves, counted as map-cores counts it."""

import json

import numpy as np
import pytest

from snnc import ir
from snnc.backends import _plain, lower
from snnc.errors import SnncError
from snnc.passes import PassManager
from snnc.passes.fuse import FuseSynapses
from snnc.passes.pipeline import PassOptions
from snnc.passes.mapping import index_bits, shared_kernel
from snnc.passes.sparsify import Sparsify, group_memory, kernel_weights, prune, prune_group
from snnc.runtime.simulator import simulate
from snnc.targets import load_target

from graphs import chain, lif, mlp
from test_quantize import digits  # noqa: F401  (the bundled example's test set, a fixture)

LOIHI2 = load_target("loihi2")


def pruned_mlp(sparsity, seed=0, target=LOIHI2):
    step = Sparsify(target, sparsity)
    graph = PassManager([FuseSynapses(), step]).run(mlp(np.random.default_rng(seed)))
    return graph, step.report()


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.8, 0.97])
def test_pruning_reaches_the_requested_sparsity_exactly_and_the_smallest_go_first(sparsity):
    weight = np.random.default_rng(0).normal(0, 1, (30, 40))
    pruned = prune(weight, sparsity)
    assert np.count_nonzero(pruned == 0) == round(sparsity * weight.size)
    kept, removed = pruned != 0, (pruned == 0)
    assert np.array_equal(pruned[kept], weight[kept])  # the survivors are untouched
    if removed.any():
        assert np.abs(weight[removed]).max() <= np.abs(weight[kept]).min()


def test_zeros_already_there_count_toward_the_sparsity():
    weight = np.random.default_rng(1).normal(0, 1, (10, 10))
    weight[:6] = 0.0  # 60% zero already
    assert np.array_equal(prune(weight, 0.5), weight)
    assert np.count_nonzero(prune(weight, 0.75) == 0) == 75


def test_ties_are_broken_in_row_major_order():
    weight = np.array([[1.0, -1.0], [1.0, 2.0]])
    assert np.array_equal(prune(weight, 0.5), [[0.0, 0.0], [1.0, 2.0]])


def test_a_threshold_prunes_every_weight_at_or_below_it():
    weight = np.array([[0.1, -0.2, 0.3], [-0.05, 0.2, -0.4]])
    assert np.array_equal(prune(weight, threshold=0.2), [[0.0, 0.0, 0.3], [0.0, 0.0, -0.4]])


def test_group_memory_is_map_cores_count_of_the_group_on_one_core():
    """Dense: rows x the source neurons that reach them x b bits. Sparse: nnz x (b + the index bits
    of a neuron in a core: 13 on Loihi 2, 8 on SpiNNaker). With 8-bit synapses and 100 rows
    reading 60 sources the crossover is at nnz = 100·60·8/21 = 2285.7."""
    assert index_bits(LOIHI2) == 13 and index_bits(load_target("spinnaker")) == 8
    weight = np.zeros((100, 60))
    flat = weight.ravel()
    flat[:2285] = 1.0
    below = group_memory(weight, (100,), 8, 13)
    assert below == {"dense": 48000, "sparse": 2285 * 21, "least": 2285 * 21}
    flat[2285] = 1.0
    assert group_memory(weight, (100,), 8, 13)["least"] == 48000
    weight[:, :10], weight[:, 10:] = 1.0, 0.0  # 10 source neurons reach the group
    assert group_memory(weight, (100,), 8, 13)["dense"] == 100 * 10 * 8
    assert group_memory(weight, (100,), 32, 8)["sparse"] == 1000 * 40  # SpiNNaker's 32-bit synapse words


def test_without_a_sparsity_the_pass_does_nothing():
    graph = PassManager([FuseSynapses()]).run(mlp(np.random.default_rng(2)))
    step = Sparsify(LOIHI2)
    assert step.run(graph) is graph
    assert step.report() == {"sparsity": None, "threshold": None, "calibration": {}, "layers": {}, "network": {}}


def test_the_pass_prunes_each_layer_and_reports_its_memory_before_and_after():
    """At 50% a synapse with Loihi 2's 13 index bits costs more than the entries dense holds, so
    dense stays the least; the pass fixes no encoding, map-cores picks one per core."""
    graph, report = pruned_mlp(0.5)
    for name in ("fc0", "fc1", "fc2"):
        layer, weight = report["layers"][name], graph[name].op.weight
        assert layer["sparsity"] == 1 - np.count_nonzero(weight) / weight.size == 0.5
        assert layer["sparsity_before"] == 0.0 and layer["pruned"] == weight.size // 2
        assert "encoding" not in graph[name].annotations
        before, after = layer["memory_bits"]["before"], layer["memory_bits"]["after"]
        assert after["sparse"] == weight.size // 2 * 21 > after["dense"] == before["dense"] == weight.size * 8
        assert after["least"] == before["least"] == weight.size * 8
        assert layer["largest_pruned"] <= np.abs(weight[weight != 0]).min()
    json.dumps(report, default=_plain)


def conv_group(rng):
    """A fused 3x3 convolution, 2 -> 3 channels over 8x8 with padding: (192, 128), one kernel per channel."""
    graph = chain(("in", ir.Input(shape=(2, 8, 8))),
                  ("conv", ir.Conv2d(weight=rng.normal(0, 1, (3, 2, 3, 3)), stride=1, padding=1, dilation=1)),
                  ("n", lif(shape=(3, 8, 8))), ("out", ir.Output()))
    fused = PassManager([FuseSynapses()]).run(graph)
    (synapses,) = fused.predecessors("n")
    return fused, synapses


@pytest.mark.parametrize("sparsity", [0.0, 0.2, 0.5, 0.9])
def test_a_convolution_is_pruned_in_its_kernels_and_stays_shared(sparsity):
    """Its matrix is 93% zeros: entry by entry, 50% would prune nothing and 95% would break the
    kernels into synapse lists. In its kernels, 50% zeroes 27 of the 54 kernel weights in every row
    that holds them, and the memory of the shared kernels halves."""
    graph, synapses = conv_group(np.random.default_rng(0))
    weight = graph[synapses].op.weight
    pruned, kernels = prune_group(weight, (3, 8, 8), sparsity)
    assert kernels == {"kernel_weights": 54, "kernel_weights_pruned": round(sparsity * 54)}
    kernel, rows = shared_kernel(pruned, (3, 8, 8))
    assert rows == 64 and kernel.sum() == 54 - round(sparsity * 54)
    kept = np.abs(weight[pruned != 0]).min(initial=np.inf)
    assert np.abs(weight[(weight != 0) & (pruned == 0)]).max(initial=0.0) < kept  # the weakest go, in every row
    before, after = group_memory(weight, (3, 8, 8), 8, 13), group_memory(pruned, (3, 8, 8), 8, 13)
    assert before["least"] == before["shared"] == 54 * 8 and after["least"] == after["shared"] == kernel.sum() * 8


def test_a_threshold_prunes_a_convolution_in_its_kernels_too():
    graph, synapses = conv_group(np.random.default_rng(0))
    weight = graph[synapses].op.weight
    pruned, kernels = prune_group(weight, (3, 8, 8), threshold=0.5)
    assert np.array_equal(pruned, prune(weight, threshold=0.5)) and shared_kernel(pruned, (3, 8, 8)) is not None
    assert kernels["kernel_weights_pruned"] == np.count_nonzero(np.abs(kernel_weights(weight, 64)) <= 0.5) > 0


def test_the_spikes_pruning_costs_are_measured_and_grow_with_the_sparsity():
    """Each layer pruned alone, against the unpruned network on the calibration inputs."""
    agreement = {}
    for sparsity in (0.0, 0.3, 0.5, 0.8):
        _, report = pruned_mlp(sparsity)
        changes = [change for layer in report["layers"].values() for change in layer["alone"].values()]
        agreement[sparsity] = min(change["agreement"] for change in changes)
        if sparsity == 0.0:
            assert all(change["spike_change"] == 0 for change in changes)
            assert report["network"]["out"]["decisions_kept"] == 1.0
    assert agreement[0.0] == 1.0 and agreement[0.3] > 0.95 and agreement[0.5] > 0.92 and agreement[0.8] > 0.88
    assert agreement[0.0] > agreement[0.3] > agreement[0.5] > agreement[0.8]


def test_a_float_target_prunes_without_counting_memory():
    graph, report = pruned_mlp(0.5, target=load_target("sim"))
    assert "memory_bits" not in report["layers"]["fc0"] and "encoding" not in graph["fc0"].annotations


def test_pruned_weights_stay_zero_through_quantization_onto_loihi():
    passes = ["fuse-synapses", "sparsify", "quantize-weights", "quantize-loihi"]
    assert [name for name in LOIHI2.pipeline if name in passes] == passes  # the target's order
    lowered, reports = lower(mlp(np.random.default_rng(3)), LOIHI2, passes=passes,
                             options=PassOptions(sparsity=0.8, weight_bits=4))
    for name in ("fc0", "fc1", "fc2"):
        assert reports["sparsify"]["layers"][name]["sparsity"] == pytest.approx(0.8, abs=1e-9)
        assert np.count_nonzero(lowered[name].annotations["loihi"]["weights"]) <= 0.2 * lowered[name].op.weight.size


@pytest.mark.parametrize("arguments, message", [
    (dict(sparsity=1.0), r"--sparsity 1.0: give a fraction from 0 up to \(not including\) 1"),
    (dict(sparsity=0.5, threshold=0.1), "give a sparsity or a threshold"),
    (dict(threshold=-1.0), "give a sparsity or a threshold >= 0"),
])
def test_settings_it_cannot_follow_are_refused(arguments, message):
    with pytest.raises(SnncError, match=message):
        Sparsify(LOIHI2, **arguments)


def test_compile_with_sparsity_records_it_in_passes_json(tmp_path):
    import subprocess
    import sys

    model = tmp_path / "model.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(4))), model)
    result = subprocess.run([sys.executable, "-m", "snnc", "compile", str(model), "--target", "loihi2", "--sparsity",
                             "0.6", "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "passes.json").read_text())["sparsify"]
    assert report["sparsity"] == 0.6 and {layer["sparsity"] for layer in report["layers"].values()} == {0.6}
    assert all(layer["memory_bits"]["after"]["least"] <= layer["memory_bits"]["before"]["least"]
               for layer in report["layers"].values())


@pytest.mark.parametrize("sparsity, loss", [(0.3, 1.0), (0.5, 2.5)])
def test_the_bundled_digits_network_keeps_its_accuracy_when_pruned(digits, sparsity, loss):
    """docs/benchmarks.md records 50% (-1.6 points) and 80% (the network falls silent)."""
    graph, x, labels = digits

    def accuracy(lowered):
        return 100 * np.mean(simulate(lowered, x)["output"].sum(axis=1).argmax(axis=1) == labels)

    pruned, reports = lower(graph, LOIHI2, passes=["fuse-synapses", "sparsify"], options=PassOptions(sparsity=sparsity))
    assert accuracy(pruned) >= accuracy(graph) - loss
    for name, layer in reports["sparsify"]["layers"].items():  # exact up to one entry of rounding
        assert abs(layer["sparsity"] - sparsity) <= 0.5 / pruned[name].op.weight.size
