"""map-cores: every limit of every target, placement against the greedy fill, routing, and its use.

Each limit is checked with a network that just fits and one that just does not: one neuron more
either takes one more piece (a core's neurons, fan-out and memory, which cutting can satisfy) or is
refused with the resource, where, the demand, the capacity and what would help (a single neuron's
fan-in or memory, the cores of the board).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from snnc import ir
from snnc.errors import SnncError
from snnc.passes import PassManager
from snnc.passes.fuse import FuseSynapses
from snnc.passes.mapping import HOST, MapCores, mapping_text
from snnc.runtime.cost import cost_model
from snnc.runtime.placement import Piece, Placement, default_placement
from snnc.runtime.simulator import Simulator, simulate
from snnc.targets import load_target

from graphs import lif, mlp, recurrent_mlp, spikes
from test_cost import populations, toy_target

HARDWARE = ("loihi", "loihi2", "spinnaker")


def mapped(graph, target, calibration=None):
    """The graph map-cores annotated, and the pass (whose summary and placements tests read)."""
    mapper = MapCores(target, calibration)
    return mapper.run(ir.verify(graph)), mapper


def pieces(graph, name):
    return [(p["core"], p["start"], p["stop"]) for p in graph[name].annotations["placement"]]


def fan_graph(n_source, n_target):
    """in (1) -> s (n_source) -> t (n_target), t's neuron i reading s's neuron i mod n_source:
    each s neuron reaches every core t spans when n_source is at most a core's share of t."""
    w = np.zeros((n_target, n_source))
    w[np.arange(n_target), np.arange(n_target) % n_source] = 1
    return populations({"in": 1, "s": n_source, "t": n_target}, {("in", "s"): np.ones((n_source, 1)),
                                                                ("s", "t"): w})


# ----------------------------------------------------------------------------- every limit of every target


@pytest.mark.parametrize("name", HARDWARE)
def test_neurons_per_core(name):
    n = load_target(name).core["neurons"]
    fits, _ = mapped(populations({"in": 1, "a": n}, {("in", "a"): np.ones((n, 1))}), load_target(name))
    assert [(start, stop) for _, start, stop in pieces(fits, "a")] == [(0, n)]
    over, _ = mapped(populations({"in": 1, "a": n + 1}, {("in", "a"): np.ones((n + 1, 1))}), load_target(name))
    assert [(start, stop) for _, start, stop in pieces(over, "a")] == [(0, n), (n, n + 1)]


@pytest.mark.parametrize("name", HARDWARE)
def test_fan_in_axons_of_one_neuron(name):
    target = load_target(name)
    limit = target.core["fan_in_axons"]
    _, mapper = mapped(populations({"in": limit, "a": 1}, {("in", "a"): np.ones((1, limit))}), target)
    assert mapper.summary["per_core"][0]["fan_in_axons"] == limit
    with pytest.raises(SnncError, match=rf"^population 'a', neuron 0: needs {limit + 1} fan in axons, more than the "
                                        rf"{limit} of a core of target '{name}' \(over by 1\); a neuron cannot be "
                                        r"split across cores: try --sparsity"):
        mapped(populations({"in": limit + 1, "a": 1}, {("in", "a"): np.ones((1, limit + 1))}), target)


@pytest.mark.parametrize("name", HARDWARE)
def test_synaptic_memory(name):
    """Neurons of as many dense synapses as fan-in allows: memory holds 32 of them on every target."""
    target = load_target(name)
    limit, bits = target.core["fan_in_axons"], target.core["synapse_bits"]
    per_core = target.core["synaptic_memory_bits"] // (limit * bits)
    assert per_core == 32
    _, mapper = mapped(populations({"in": limit, "a": per_core}, {("in", "a"): np.ones((per_core, limit))}), target)
    (core,) = mapper.summary["per_core"]
    assert core["synaptic_memory_bits"] == target.core["synaptic_memory_bits"]
    assert core["pieces"][0]["encodings"] == {"in->a": "dense"}
    over, _ = mapped(populations({"in": limit, "a": per_core + 1}, {("in", "a"): np.ones((per_core + 1, limit))}),
                     target)
    assert [(start, stop) for _, start, stop in pieces(over, "a")] == [(0, per_core), (per_core, per_core + 1)]


@pytest.mark.parametrize("name, fits, over", [("loihi", (1024, 4096), (1024, 4097)),
                                              ("loihi2", (4096, 4096), (4097, 4097)),
                                              ("spinnaker", (256, 256 * 256), (256, 256 * 256 + 1))])
def test_fan_out_axons(name, fits, over):
    """A core's fan-out is the destination cores of each of its neurons, added up. At the limit s
    stays on one core; one neuron more (of t, which then reaches one more core, or of s on Loihi 2,
    where s and t share a core) and s is cut in two."""
    target = load_target(name)
    limit = target.core["fan_out_axons"]
    graph, mapper = mapped(fan_graph(*fits), target)
    assert len(pieces(graph, "s")) == 1
    assert max(core["fan_out_axons"] for core in mapper.summary["per_core"]) == limit
    graph, mapper = mapped(fan_graph(*over), target)
    assert len(pieces(graph, "s")) == 2
    assert max(core["fan_out_axons"] for core in mapper.summary["per_core"]) <= limit
    with_room = toy_target(fan_out_axons=10**9, neurons=target.core["neurons"], board=(64, 1))
    assert max(c["fan_out_axons"] for c in mapped(fan_graph(*over), with_room)[1]
               .summary["per_core"]) > limit  # without the limit, the same network would break it


@pytest.mark.parametrize("name, chips", [("loihi", 1), ("loihi2", 1), ("spinnaker", 48)])
def test_cores_of_the_board(name, chips):
    target = load_target(name)
    n = target.core["neurons"] * target.cores_per_chip * chips
    fits, mapper = mapped(populations({"in": 1, "a": n}, {("in", "a"): np.ones((n, 1))}), target)
    assert mapper.summary["cores"] == target.cores_per_chip * chips == len(pieces(fits, "a"))
    assert mapper.summary["chips"] == chips
    message = (rf"^the network needs {target.cores_per_chip * chips + 1} cores, {chips + 1} chips of "
               rf"{target.cores_per_chip}, but target '{name}' has {chips} chips? \({target.cores_per_chip * chips} "
               rf"cores\): neurons run out first \({n + 1} in all, {target.core['neurons']} per core: "
               rf"{target.cores_per_chip * chips + 1} cores at least, 1 more than the board has\); use a target with "
               rf"more chips \(board_width x board_height of {chips + 1} or more\)$")
    with pytest.raises(SnncError, match=message):
        mapped(populations({"in": 1, "a": n + 1}, {("in", "a"): np.ones((n + 1, 1))}), target)


def test_memory_and_fan_out_of_one_neuron_are_refused_with_what_would_help():
    graph = populations({"in": 3, "a": 1}, {("in", "a"): np.ones((1, 3))})
    with pytest.raises(SnncError, match=r"neuron 0: needs 24 bits of synaptic memory, more than the 16 .* \(over by "
                                        r"8\); .* try --sparsity or --weight-bits"):
        mapped(graph, toy_target(synaptic_memory_bits=16))
    wide = populations({"in": 1, "s": 1, "t": 3}, {("in", "s"): [[1]], ("s", "t"): np.ones((3, 1))})
    with pytest.raises(SnncError, match=r"fan out axons, more than the 2 .*try --sparsity \(fewer destination cores"):
        mapped(wide, toy_target(neurons=1, fan_out_axons=2))


def test_a_board_too_small_for_the_synapses_names_memory_and_the_options():
    graph = populations({"in": 100, "a": 40}, {("in", "a"): np.ones((40, 100))})
    # 800 bits per neuron, 1000 per core: one neuron a core; the totals alone would allow 32 cores.
    with pytest.raises(SnncError, match=r"^the network needs 40 cores, 5 chips of 8, but target 'toy' has 2 chips "
                                        r"\(16 cores\): bits of synaptic memory run out first \(32000 in all, 1000 "
                                        r"per core: 32 cores at least, 16 more than the board has\); use a target with "
                                        r"more chips \(board_width x board_height of 5 or more\), or --sparsity or "
                                        r"--weight-bits"):
        mapped(graph, toy_target(synaptic_memory_bits=1000))


# ----------------------------------------------------------------------------- packing, encodings, bound


def test_small_populations_share_cores_and_the_bound_counts_every_resource():
    graph = populations({"in": 2, "a": 3, "b": 2, "c": 3}, {("in", "a"): np.ones((3, 2)), ("a", "b"): np.ones((2, 3)),
                                                           ("b", "c"): np.ones((3, 2))})
    out, mapper = mapped(graph, toy_target(neurons=4))
    assert mapper.summary["cores"] == 2 == mapper.summary["lower_bound"]["cores"]  # 8 neurons, 4 per core
    assert mapper.summary["greedy"]["cores"] == 3  # a, b and c each on a fresh core
    assert [[(p["population"], p["start"], p["stop"]) for p in core["pieces"]] for core in mapper.summary["per_core"]] \
        == [[("a", 0, 3), ("b", 0, 1)], [("b", 1, 2), ("c", 0, 3)]]
    bound = mapper.summary["lower_bound"]["by_resource"]
    assert bound["neurons"] == {"demand": 8, "cores": 2}
    assert bound["synaptic_memory_bits"]["demand"] == (6 + 6 + 6) * 8
    assert bound["fan_out_axons"]["demand"] == 3 + 2  # a and b: every neuron sends somewhere
    assert bound["fan_in_axons"]["cores"] == 1
    placed = Placement.from_graph(out, toy_target(neurons=4))
    assert sum(p.neurons for p in placed.all_pieces()) == 8


def test_a_small_population_fills_the_gap_an_earlier_core_left():
    """a, b and c each fill one limit of a core (fan-in 4 for a and c); d, one neuron reading one
    of c's, fits only beside b, two cores back: first-fit puts it there, one core fewer."""
    graph = populations({"in": 4, "a": 2, "b": 4, "c": 4, "d": 1},
                        {("in", "a"): np.ones((2, 4)), ("a", "b"): np.ones((4, 2)), ("b", "c"): np.ones((4, 4)),
                         ("c", "d"): [[1, 0, 0, 0]]})
    _, mapper = mapped(graph, toy_target(neurons=8, fan_in_axons=4))
    summary = mapper.summary
    assert summary["policy"] == "first-fit" and summary["cores"] == 3 and summary["greedy"]["cores"] == 4
    assert [[p["population"] for p in core["pieces"]] for core in summary["per_core"]] == [["a"], ["b", "d"], ["c"]]
    assert [core["fan_in_axons"] for core in summary["per_core"]] == [4, 3, 4]


def conv_chain(channels=4, size=16):
    """in (2, size, size) -> 3 x 3 convolution -> a (channels, size, size) -> 3 x 3 convolution -> b."""
    rng = np.random.default_rng(5)
    graph = ir.Graph(dt=1e-3)
    graph.add("in", ir.Input(shape=(2, size, size)))
    previous, c_in = "in", 2
    for name in "ab":
        graph.add(f"conv_{name}", ir.Conv2d(weight=rng.normal(0, 0.5, (channels, c_in, 3, 3)), stride=1, padding=1,
                                            dilation=1))
        graph.add(name, lif(shape=(channels, size, size), v_threshold=0.5))
        graph.connect(previous, f"conv_{name}")
        graph.connect(f"conv_{name}", name)
        previous, c_in = name, channels
    graph.add("out", ir.Output())
    graph.connect("b", "out")
    return PassManager([FuseSynapses()]).run(graph)


def test_convolutions_are_cut_into_blocks_of_pixels_with_all_their_channels(tmp_path):
    """A piece of one whole channel reads every input channel over the whole image (512 or 1024
    sources, over the fan-in of 400), so runs in C order take 22 cores; a block of 4 rows of pixels
    with all 4 channels reads 6 rows of every input channel (192 or 384), so 4 blocks hold a layer:
    8 cores, the bound."""
    graph = conv_chain()
    inputs = spikes(np.random.default_rng(6), (2, 30, 2, 16, 16), rate=0.3)
    np.save(tmp_path / "x.npy", inputs)
    target = toy_target(neurons=256, fan_in_axons=400, mesh=(4, 4))
    out, mapper = mapped(graph, target, str(tmp_path / "x.npy"))
    summary = mapper.summary
    assert summary["channel_last"] == ["a", "b"]
    assert summary["cores"] == 8 == summary["lower_bound"]["cores"] < summary["greedy"]["cores"]
    first = summary["per_core"][0]["pieces"]
    assert [(p["population"], p["stop"] - p["start"]) for p in first] == [("a", 64)] * 4  # 4 rows, each channel
    assert len({p["start"] % 256 for p in first}) == 1
    placed = Placement.from_graph(out, target)
    placed.check({"a": 1024, "b": 1024}, 256)
    simulator = Simulator(graph)
    simulator.run(inputs, count=True)
    report = cost_model(out, target, simulator.activity)
    assert summary["traffic_hops_per_step"] * 30 == pytest.approx(sum(report.total_hops().values()), rel=1e-9)
    for core, counted in zip(summary["per_core"], report.cores, strict=True):
        assert (core["core"], core["fan_in_axons"], core["fan_out_axons"]) == \
            (counted.core, counted.fan_in_axons, counted.fan_out_axons)


def test_a_core_that_runs_one_population_gets_pieces_of_one_population():
    """sPyNNaker's cores run one population slice each (populations_per_core = 1)."""
    graph = populations({"in": 2, "a": 3, "b": 2, "c": 3}, {("in", "a"): np.ones((3, 2)), ("a", "b"): np.ones((2, 3)),
                                                           ("b", "c"): np.ones((3, 2))})
    out, mapper = mapped(graph, toy_target(neurons=4, populations_per_core=1))
    assert [[p["population"] for p in core["pieces"]] for core in mapper.summary["per_core"]] == [["a"], ["b"], ["c"]]
    assert load_target("spinnaker").core["populations_per_core"] == 1


def test_the_sparsify_encoding_annotation_is_honoured_and_convolutions_share_their_kernels():
    rng = np.random.default_rng(0)
    graph = ir.Graph(dt=1e-3)
    graph.add("in", ir.Input(shape=(2, 8, 8)))
    graph.add("conv", ir.Conv2d(weight=rng.normal(size=(3, 2, 3, 3)), stride=1, padding=1, dilation=1))
    graph.add("a", lif(shape=(3, 8, 8)))
    graph.add("out", ir.Output())
    for edge in [("in", "conv"), ("conv", "a"), ("a", "out")]:
        graph.connect(*edge)
    graph = PassManager([FuseSynapses()]).run(graph)
    (synapses,) = graph.predecessors("a")
    target = load_target("loihi")
    _, mapper = mapped(graph, target)
    (core,) = mapper.summary["per_core"]
    assert core["pieces"][0]["encodings"] == {synapses: "shared"}
    assert core["synaptic_memory_bits"] == 3 * 2 * 9 * 8  # three kernels of 2 x 3 x 3 weights
    graph[synapses].annotations["encoding"] = "sparse"
    _, mapper = mapped(graph, target)
    (core,) = mapper.summary["per_core"]
    assert core["synaptic_memory_bits"] == np.count_nonzero(graph[synapses].op.weight) * (8 + 10)
    graph[synapses].annotations["encoding"] = "csr"
    with pytest.raises(SnncError, match=r"annotation encoding is 'csr' \(str\); give one of 'dense', 'sparse', 'shared'"):
        mapped(graph, target)


def test_a_graph_not_in_population_form_is_refused():
    graph = recurrent_mlp(np.random.default_rng(0))
    graph.add("gain", ir.Scale(scale=np.array(2.0)))
    graph.disconnect("hidden", "fc2")
    graph.connect("hidden", "gain")
    graph.connect("gain", "fc2")
    with pytest.raises(SnncError, match="map-cores needs a graph in population form: run fuse-synapses first"):
        mapped(graph, load_target("loihi"))
    with pytest.raises(SnncError, match="target 'sim' models no hardware"):
        MapCores(load_target("sim"))


# ----------------------------------------------------------------------------- placement and routing


def test_routes_and_link_loads_by_hand():
    """in -> a -> b -> c, one neuron each, on a 2 x 2 mesh of one-core tiles: the chain lies along
    the mesh from the host's tile, one message per spike crossing one link per hop."""
    graph = populations({"in": 1, "a": 1, "b": 1, "c": 1}, {("in", "a"): [[1]], ("a", "b"): [[1]], ("b", "c"): [[1]]})
    target = toy_target(neurons=1, cores_per_tile=1, board=(1, 1))
    out, mapper = mapped(graph, target)
    summary = mapper.summary
    # 0.1 spikes per step from each of in, a and b; in enters at (0, 0) where a sits, b and c one hop on.
    assert summary["traffic_per_step"] == pytest.approx(0.3)
    assert summary["traffic_hops_per_step"] == pytest.approx(0.2)
    layout = Placement.from_graph(out, target).layout
    where = {name: layout.position(pieces(out, name)[0][0]) for name in "abc"}
    assert where["a"] == (0, 0)
    assert [abs(where[p][0] - where[q][0]) + abs(where[p][1] - where[q][1]) for p, q in ("ab", "bc")] == [1, 1]
    assert sorted(link["messages_per_step"] for link in summary["links"]) == pytest.approx([0.1, 0.1])
    core = {name: pieces(out, name)[0][0] for name in "abc"}
    assert mapper.flows == pytest.approx({(HOST, core["a"]): 0.1, (core["a"], core["b"]): 0.1,
                                          (core["b"], core["c"]): 0.1})
    assert {(tuple(link["from"]), tuple(link["to"])) for link in summary["links"]} == \
        {(layout.tile_at(*where["a"]), layout.tile_at(*where["b"])),
         (layout.tile_at(*where["b"]), layout.tile_at(*where["c"]))}


def test_placement_beats_the_greedy_fill_and_the_cost_model_agrees():
    """A chain of layers of 1024 neurons that synaptic memory cuts into 128-neuron pieces: the
    greedy fill lays the layers along rows of tiles; map-cores folds the chain into a compact block."""
    rng = np.random.default_rng(1)
    sizes = {"in": 64, **{f"l{i}": 1024 for i in range(8)}}
    names = list(sizes)
    graph = populations(sizes, {(a, b): rng.normal(size=(sizes[b], sizes[a])) for a, b in zip(names, names[1:])})
    target = load_target("loihi")
    out, mapper = mapped(graph, target)
    summary = mapper.summary
    assert summary["lower_bound"]["cores"] == 57 and summary["cores"] == 58 == summary["greedy"]["cores"]
    assert summary["traffic_hops_vs_greedy"] < 0.7
    simulator = Simulator(graph)
    simulator.run(spikes(rng, (1, 20, 64)), count=True)
    ours = cost_model(out, target, simulator.activity)  # the annotations' placement
    greedy = cost_model(out, target, simulator.activity, mapper.baseline)
    assert ours.placement.pieces == mapper.placement.pieces
    assert sum(ours.total_hops().values()) < 0.7 * sum(greedy.total_hops().values())


def test_measured_rates_make_the_expected_traffic_the_cost_models_count(tmp_path):
    rng = np.random.default_rng(2)
    graph = PassManager([FuseSynapses()]).run(recurrent_mlp(rng, n_in=6, n_hidden=30, n_out=5))
    inputs = spikes(rng, (3, 40, 6), rate=0.5)
    np.save(tmp_path / "x.npy", inputs)
    target = toy_target(neurons=8)
    out, mapper = mapped(graph, target, str(tmp_path / "x.npy"))
    simulator = Simulator(graph)
    simulator.run(inputs, count=True)
    report = cost_model(out, target, simulator.activity)
    assert mapper.summary["rates"]["source"] == str(tmp_path / "x.npy")
    assert mapper.summary["traffic_hops_per_step"] * 40 == pytest.approx(sum(report.total_hops().values()), rel=1e-9)
    assert mapper.summary["traffic_per_step"] * 40 == pytest.approx(
        sum(layer.counts["message_in"] for layer in report.layers), rel=1e-9)
    for core, counted in zip(mapper.summary["per_core"], report.cores, strict=True):
        assert (core["core"], core["fan_in_axons"], core["fan_out_axons"]) == \
            (counted.core, counted.fan_in_axons, counted.fan_out_axons)


# ----------------------------------------------------------------------------- the IR and its users


def test_map_cores_only_annotates():
    rng = np.random.default_rng(3)
    graph = PassManager([FuseSynapses()]).run(recurrent_mlp(rng))
    out, _ = mapped(graph, load_target("loihi"))
    inputs = spikes(rng, (2, 30, 5))
    for name, value in simulate(graph, inputs).items():
        np.testing.assert_array_equal(simulate(out, inputs)[name], value)
    assert [n.name for n in out] == [n.name for n in graph] and out.edges == graph.edges
    for node in graph:
        assert set(out[node.name].annotations) - set(node.annotations) <= {"placement"}
    assert "placement" not in next(iter(graph)).annotations and "mapping" not in graph.metadata


def test_the_cost_model_uses_the_annotations_and_refuses_another_targets():
    rng = np.random.default_rng(4)
    graph = PassManager([FuseSynapses()]).run(recurrent_mlp(rng))
    out, mapper = mapped(graph, load_target("loihi"))
    simulator = Simulator(graph)
    simulator.run(spikes(rng, (1, 10, 5)), count=True)
    report = cost_model(out, load_target("loihi"), simulator.activity)
    assert report.placement.pieces == mapper.placement.pieces == {
        "hidden": [Piece("hidden", 0, 0, 7)], "out_lif": [Piece("out_lif", 0, 0, 3)]}  # one core: both fit
    assert len(cost_model(graph, load_target("loihi"), simulator.activity).cores) == 2  # default: one each
    assert default_placement(graph, load_target("loihi")).cores == [0, 1]
    with pytest.raises(SnncError, match=r"placement was made by map-cores for target 'loihi', not 'spinnaker'"):
        cost_model(out, load_target("spinnaker"), simulator.activity)


def test_inspect_prints_the_mapping_of_an_artifact(tmp_path):
    ir.save(ir.verify(mlp(np.random.default_rng(5), sizes=(5, 12, 3))), tmp_path / "m.snnir")

    def snnc(*args):
        return subprocess.run([sys.executable, "-m", "snnc", *args], capture_output=True, text=True, cwd=tmp_path)

    assert snnc("compile", "m.snnir", "--target", "loihi", "-o", "art").returncode == 0
    shown = snnc("inspect", "art", "--mapping")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("mapping of main on loihi: 1 core on 1 tile of 1 chip\n")
    assert "lower bound: 1 core (neurons)" in shown.stdout and "lif0[0:12] lif1[0:3]" in shown.stdout
    passes = json.loads((tmp_path / "art" / "passes.json").read_text())
    assert passes["map-cores"]["cores"] == 1 and "per_core" not in passes["map-cores"]
    assert snnc("compile", "m.snnir", "-o", "plain").returncode == 0
    refused = snnc("inspect", "plain", "--mapping")
    assert refused.returncode == 2 and "holds no mapping" in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_mapping_text_lists_every_core_with_its_fill():
    graph = populations({"in": 2, "a": 6}, {("in", "a"): np.ones((6, 2))})
    out, _ = mapped(graph, toy_target(neurons=4))
    text = mapping_text(out)
    assert "a[0:4]" in text and "a[4:6]" in text and "4 100%" in text and "2 50%" in text
