"""The cost model against counts, times and energies worked out by hand, and against SANA-FE."""

from pathlib import Path

import numpy as np
import pytest

from snnc import ir
from snnc.errors import SnncError
from snnc.runtime.activity import Activity, PopulationActivity, synaptic_ops
from snnc.runtime.cost import CORE_KINDS, HOP_KINDS, PAPER_CONVENTION, cost_model
from snnc.runtime.placement import CoreLocation, Layout, Piece, Placement, default_placement
from snnc.runtime.simulator import Simulator
from snnc.targets import Cost, Target, load_target

from graphs import lif, recurrent_mlp, spikes

#: Distinct primes, so that a count charged to the wrong kind cannot give the right total.
ENERGY_PJ = dict(zip((*CORE_KINDS, *HOP_KINDS), (1, 2, 3, 5, 7, 11, 13, 17, 19), strict=True))
TIME_NS = dict(zip((*CORE_KINDS, *HOP_KINDS), (2, 3, 5, 7, 11, 13, 17, 19, 23), strict=True))
BARRIER_BASE_NS, BARRIER_PER_TILE_NS = 100, 10


def toy_target(neurons=4, cores_per_tile=2, mesh=(2, 2), board=(2, 1), step_time_min_s=0.0, **core):
    """A small chip with simple numbers: 2 cores per tile, 2 x 2 tiles per chip, 2 x 1 chips."""
    return Target(
        name="toy", description="a toy chip for hand-computed tests", arithmetic="loihi", path=Path("toy.toml"),
        core={"neurons": neurons, "fan_in_axons": 1000, "fan_out_axons": 1000, "synaptic_memory_bits": 10**6,
              "synapse_bits": 8, **core},
        chip={"cores_per_tile": cores_per_tile, "mesh_width": mesh[0], "mesh_height": mesh[1],
              "board_width": board[0], "board_height": board[1]},
        costs={kind: Cost(ENERGY_PJ[kind] * 1e-12, TIME_NS[kind] * 1e-9, f"toy {kind}") for kind in ENERGY_PJ},
        barrier_base_s=BARRIER_BASE_NS * 1e-9, barrier_per_tile_s=BARRIER_PER_TILE_NS * 1e-9,
        step_time_min_s=step_time_min_s, static_power_w=0.5, sources={"core.neurons": "toy"})


def populations(sizes, weights, direct=()):
    """Input "in" and LIF populations; ``weights`` maps (source, target) to a weight (n_target, n_source)."""
    graph = ir.Graph(dt=1e-3)
    for name, n in sizes.items():
        graph.add(name, ir.Input(shape=(n,)) if name == "in" else lif(shape=(n,)))
    for (source, target), weight in weights.items():
        graph.add(f"{source}->{target}", ir.Affine(weight=np.asarray(weight, dtype=float)))
        graph.connect(source, f"{source}->{target}")
        graph.connect(f"{source}->{target}", target)
    for source, target in direct:
        graph.connect(source, target)
    graph.add("out", ir.Output())
    graph.connect(list(sizes)[-1], "out")
    return graph


def activity(batch=1, **records):
    """An Activity from (spikes, active) per population (active None for inputs)."""
    steps = len(next(iter(records.values()))[0])
    return Activity(batch, steps, {name: PopulationActivity(np.asarray(s, np.int32), None if a is None else
                                                             np.asarray(a, np.int32))
                                   for name, (s, a) in records.items()})


# ----------------------------------------------------------------------------- two cores, one tile

W1 = [[1, 0], [1, 1], [0, 1]]  # in (2) -> a (3): 2 synapses from each input neuron
W2 = [[1, 0, 1], [0, 1, 0]]  # a (3) -> b (2): 1 synapse from each a neuron
IN_SPIKES = [[1, 0], [1, 1], [0, 0]]
A_SPIKES, A_ACTIVE = [[1, 0, 0], [0, 1, 1], [1, 1, 1]], [[1, 1, 0], [1, 1, 1], [1, 1, 1]]
B_SPIKES, B_ACTIVE = [[0, 0], [1, 0], [0, 1]], [[1, 0], [1, 1], [1, 1]]


@pytest.fixture
def two_cores():
    graph = populations({"in": 2, "a": 3, "b": 2}, {("in", "a"): W1, ("a", "b"): W2})
    record = activity(**{"in": (IN_SPIKES, None), "a": (A_SPIKES, A_ACTIVE), "b": (B_SPIKES, B_ACTIVE)})
    return graph, record


def test_two_populations_on_two_cores_of_one_tile(two_cores):
    graph, record = two_cores
    report = cost_model(graph, toy_target(), record)
    a, b = report.cores
    assert (a.core, b.core) == (0, 1)
    assert (a.location, b.location) == (CoreLocation(0, 0, 0, 0), CoreLocation(0, 0, 0, 1))
    assert [p.population for p in a.pieces + b.pieces] == ["a", "b"]
    # Core a: input spikes 1, 2, 0 reach 2 synapses each; it sends one message per spike to core b.
    assert a.counts == {"synaptic_op": 6, "neuron_update_active": 8, "neuron_update_inactive": 1, "spike_out": 6,
                        "message_out": 6, "message_in": 3}
    assert b.counts == {"synaptic_op": 6, "neuron_update_active": 5, "neuron_update_inactive": 1, "spike_out": 2,
                        "message_out": 0, "message_in": 6}
    assert report.total_hops() == dict.fromkeys(HOP_KINDS, 0.0) and report.links == []
    # Busy time per step (ns): each count times its time; a step lasts the busier core plus the barrier.
    busy_a = np.array([2 * 2 + 2 * 3 + 1 * 5 + 1 * 7 + 1 * 11 + 1 * 13,
                       4 * 2 + 3 * 3 + 0 * 5 + 2 * 7 + 2 * 11 + 2 * 13,
                       0 * 2 + 3 * 3 + 0 * 5 + 3 * 7 + 3 * 11 + 0 * 13])
    busy_b = np.array([1 * 2 + 1 * 3 + 1 * 5 + 0 * 7 + 1 * 13,
                       2 * 2 + 2 * 3 + 0 * 5 + 1 * 7 + 2 * 13,
                       3 * 2 + 2 * 3 + 0 * 5 + 1 * 7 + 3 * 13])
    assert busy_a.tolist() == [46, 79, 63] and busy_b.tolist() == [23, 43, 58]
    barrier = BARRIER_BASE_NS + BARRIER_PER_TILE_NS * 1
    np.testing.assert_allclose(report.step_time_s, (np.maximum(busy_a, busy_b) + barrier) * 1e-9, rtol=1e-12)
    np.testing.assert_allclose(report.network_time_s, 0)
    assert report.latency_s == pytest.approx((46 + 79 + 63 + 3 * barrier) * 1e-9, rel=1e-12)
    assert a.busy_mean_s == pytest.approx(busy_a.mean() * 1e-9) and a.busy_max_s == pytest.approx(79e-9)
    # Energy: every count times its energy, plus static power of the one chip over the run.
    counts = {kind: a.counts[kind] + b.counts[kind] for kind in CORE_KINDS}
    for kind in CORE_KINDS:
        assert report.energy_j[kind] == pytest.approx(counts[kind] * ENERGY_PJ[kind] * 1e-12, rel=1e-12)
    assert report.energy_j["static"] == pytest.approx(0.5 * 1 * report.latency_s, rel=1e-12)
    dynamic = sum(counts[kind] * ENERGY_PJ[kind] for kind in CORE_KINDS) * 1e-12
    assert report.total_energy_j == pytest.approx(dynamic + 0.5 * report.latency_s, rel=1e-12)
    assert (report.chips, report.tiles) == (1, 1)


def test_layers_split_energy_by_who_causes_it(two_cores):
    graph, record = two_cores
    report = cost_model(graph, toy_target(), record)
    layers = {layer.name: layer for layer in report.layers}
    assert [layer.name for layer in report.layers] == ["in", "a", "b"]
    assert layers["in"].counts["message_in"] == 3 and layers["in"].counts["message_out"] == 0
    assert layers["in"].counts["spikes"] == 3 and layers["in"].counts["spike_out"] == 0
    assert layers["a"].counts["synaptic_op"] == 6 and layers["a"].counts["message_in"] == 6
    assert layers["b"].rate == pytest.approx(2 / (2 * 3))
    per_layer = sum(sum(layer.energy_j.values()) for layer in report.layers)
    assert per_layer == pytest.approx(report.total_energy_j - report.energy_j["static"], rel=1e-12)
    assert sum(core.energy_j for core in report.cores) == pytest.approx(
        sum(report.energy_j[kind] for kind in CORE_KINDS), rel=1e-12)


def test_counts_are_per_sample(two_cores):
    """Two identical samples summed over the batch cost what one sample costs."""
    graph, one = two_cores
    two = Activity(2, one.steps, {name: PopulationActivity(2 * p.spikes, None if p.active is None else 2 * p.active)
                                  for name, p in one.populations.items()})
    single, double = cost_model(graph, toy_target(), one), cost_model(graph, toy_target(), two)
    assert double.energy_j == pytest.approx(single.energy_j, rel=1e-12)
    np.testing.assert_allclose(double.step_time_s, single.step_time_s, rtol=1e-12)
    assert [c.counts for c in double.cores] == [c.counts for c in single.cores]


def test_the_minimum_step_time_holds_steps_back(two_cores):
    graph, record = two_cores
    report = cost_model(graph, toy_target(step_time_min_s=1e-3), record)
    np.testing.assert_array_equal(report.step_time_s, [1e-3] * 3)
    assert report.energy_j["static"] == pytest.approx(0.5 * 3e-3)


# ----------------------------------------------------------------------------- routing


def test_messages_across_tiles_and_chips_route_x_then_y():
    """Source on core 0, tile (0, 0) of chip 0; three destination cores on the board-wide 4 x 2 mesh."""
    graph = populations({"in": 1, "s": 2, "d": 3}, {("in", "s"): [[1], [1]], ("s", "d"): np.ones((3, 2))})
    target = toy_target(cores_per_tile=1)
    layout = Layout.of(target)
    # core 3: chip 0 tile (1, 1); core 5: chip 1 tile (1, 0) = mesh (3, 0); core 6: chip 1 tile (0, 1) = mesh (2, 1)
    assert [layout.position(c) for c in (0, 3, 5, 6)] == [(0, 0), (1, 1), (3, 0), (2, 1)]
    placement = Placement(layout, {"s": [Piece("s", 0, 0, 2)],
                                   "d": [Piece("d", 3, 0, 1), Piece("d", 5, 1, 2), Piece("d", 6, 2, 3)]})
    record = activity(**{"in": ([[0], [0]], None), "s": ([[1, 1], [1, 0]], [[1, 1], [1, 1]]),
                         "d": ([[0, 0, 0], [0, 0, 0]], [[1, 1, 1], [1, 1, 1]])})
    report = cost_model(graph, target, record, placement)
    source = report.cores[0]
    assert source.counts["message_out"] == 9  # 3 spikes x 3 destination cores
    assert [c.counts["message_in"] for c in report.cores[1:]] == [3, 3, 3]
    # Per spike: to core 3 east + south, to core 5 east + chip + east, to core 6 east + chip + south.
    assert report.total_hops() == {"hop_east_west": 12.0, "hop_north_south": 6.0, "chip_hop": 6.0}
    links = {(link.source, link.destination): link for link in report.links}
    assert set(links) == {((0, 0, 0), (0, 1, 0)), ((0, 1, 0), (0, 1, 1)), ((0, 1, 0), (1, 0, 0)),
                          ((1, 0, 0), (1, 1, 0)), ((1, 0, 0), (1, 0, 1))}
    first = links[((0, 0, 0), (0, 1, 0))]
    assert (first.kind, first.messages, first.max_per_step) == ("hop_east_west", 9, 6)
    assert links[((0, 1, 0), (1, 0, 0))].kind == "chip_hop" and links[((0, 1, 0), (1, 0, 0))].messages == 6
    assert report.links[0] is first  # most loaded first
    # Network time: busiest link (6 messages x 17 ns east-west, against 4 x 23 ns over the chip link)
    # plus the slowest route (east 17 + chip 23 + south 19 ns).
    np.testing.assert_allclose(report.network_time_s, [(6 * 17 + 59) * 1e-9, (3 * 17 + 59) * 1e-9], rtol=1e-12)
    assert (report.chips, report.tiles) == (2, 4)
    assert report.barrier_s == pytest.approx((BARRIER_BASE_NS + 4 * BARRIER_PER_TILE_NS) * 1e-9)
    hops = report.total_hops()
    for kind in HOP_KINDS:
        assert report.energy_j[kind] == pytest.approx(hops[kind] * ENERGY_PJ[kind] * 1e-12, rel=1e-12)
    assert {layer.name: layer.counts["chip_hop"] for layer in report.layers} == {"in": 0, "s": 6, "d": 0}


def test_input_spikes_enter_at_the_first_tile():
    graph = populations({"in": 2, "a": 1}, {("in", "a"): [[1, 1]]})
    target = toy_target(cores_per_tile=1)
    placement = Placement(Layout.of(target), {"a": [Piece("a", 3, 0, 1)]})  # tile (1, 1)
    record = activity(**{"in": ([[1, 1]], None), "a": ([[0]], [[1]])})
    report = cost_model(graph, target, record, placement)
    assert report.total_hops() == {"hop_east_west": 2.0, "hop_north_south": 2.0, "chip_hop": 0.0}
    assert report.cores[0].counts["message_in"] == 2 and report.energy_j["message_out"] == 0


# ----------------------------------------------------------------------------- placement


def split_graph():
    """in (3) -> a (10) -> b (2); a is cut over three cores of 4 neurons."""
    w = np.zeros((10, 3))
    w[[0, 1], 0] = 1  # input 0 -> a0, a1: both on core 0
    w[[3, 4, 9], 1] = 1  # input 1 -> a3, a4, a9: cores 0, 1, 2
    # input 2 has no synapses
    return populations({"in": 3, "a": 10, "b": 2}, {("in", "a"): w, ("a", "b"): np.ones((2, 10))})


def test_default_placement_cuts_populations_at_the_core_limit():
    placement = default_placement(split_graph(), toy_target())
    assert placement.pieces == {"a": [Piece("a", 0, 0, 4), Piece("a", 1, 4, 8), Piece("a", 2, 8, 10)],
                                "b": [Piece("b", 3, 0, 2)]}  # b starts on a fresh core, not beside a[8:10]
    assert placement.cores == [0, 1, 2, 3]
    assert [placement.layout.locate(c) for c in (1, 2, 3)] == [CoreLocation(0, 0, 0, 1), CoreLocation(0, 1, 0, 0),
                                                              CoreLocation(0, 1, 0, 1)]


def test_messages_go_once_to_each_destination_core():
    graph = split_graph()
    record = activity(**{"in": ([[1, 1, 1], [0, 1, 0]], None), "a": (np.zeros((2, 10)), np.zeros((2, 10))),
                         "b": (np.zeros((2, 2)), np.zeros((2, 2)))})
    report = cost_model(graph, toy_target(), record)
    cores = {core.core: core.counts for core in report.cores}
    # input 0: 1 message (core 0) with 2 synaptic ops; input 1: 3 messages (cores 0, 1, 2) with 1 op each.
    assert [cores[c]["message_in"] for c in (0, 1, 2)] == [3, 2, 2]
    assert [cores[c]["synaptic_op"] for c in (0, 1, 2)] == [2 + 2, 2, 2]
    assert {layer.name: layer.counts["message_in"] for layer in report.layers}["in"] == 7
    assert [cores[c]["neuron_update_inactive"] for c in (0, 1, 2, 3)] == [8, 8, 4, 4]
    core0 = report.cores[0]
    # core 0 holds a[0:4]: synapses a0 <- in0, a1 <- in0, a3 <- in1; each of its neurons feeds b's one core.
    assert (core0.synapses, core0.fan_in_axons, core0.fan_out_axons) == (3, 2, 4)


def test_pieces_that_share_a_core_receive_one_message_per_spike():
    graph = populations({"in": 1, "a": 2, "b": 1}, {("in", "a"): [[1], [1]], ("in", "b"): [[1]]})
    target = toy_target()
    placement = Placement(Layout.of(target), {"a": [Piece("a", 0, 0, 2)], "b": [Piece("b", 0, 0, 1)]})
    record = activity(**{"in": ([[1], [1]], None), "a": ([[0, 0]] * 2, [[1, 1]] * 2), "b": ([[0]] * 2, [[1]] * 2)})
    report = cost_model(graph, target, record, placement)
    (core,) = report.cores
    assert [p.population for p in core.pieces] == ["a", "b"]
    assert core.counts["message_in"] == 2 and core.counts["synaptic_op"] == 6
    assert {layer.name: layer.counts["synaptic_op"] for layer in report.layers} == {"in": 0, "a": 4, "b": 2}


def test_a_network_too_big_for_the_board_is_refused():
    graph = populations({"in": 1, "a": 40, "b": 30}, {("in", "a"): np.ones((40, 1)), ("a", "b"): np.ones((30, 40))})
    with pytest.raises(SnncError, match=r"needs 18 cores of 4 neurons but target 'toy' has 16 \(2 chips of 8 cores\)"):
        default_placement(graph, toy_target())


def test_a_placement_made_by_hand_is_checked(two_cores):
    graph, record = two_cores
    layout = Layout.of(toy_target())
    cases = [({"a": [Piece("a", 0, 0, 3)]}, r"node 'b': placement is missing"),
             ({"a": [Piece("a", 0, 0, 2)], "b": [Piece("b", 1, 0, 2)]}, r"node 'a': placement: pieces must cover"),
             ({"a": [Piece("a", 99, 0, 3)], "b": [Piece("b", 1, 0, 2)]}, r"core 99 does not exist"),
             ({"a": [Piece("a", 0, 0, 3)], "b": [Piece("b", 0, 0, 2)]},
              r"core 0 holds 5 neurons, more than the core's 4")]
    for pieces, message in cases:
        with pytest.raises(SnncError, match=message):
            cost_model(graph, toy_target(), record, Placement(layout, pieces))


def test_cores_over_the_synapse_memory_are_reported(two_cores):
    graph, record = two_cores
    report = cost_model(graph, toy_target(synaptic_memory_bits=24), record)  # core b's 3 synapses of 8 bits fit
    assert report.warnings == ["core 0: 4 synapses need 32 bits of synaptic memory, more than 24"]


# ----------------------------------------------------------------------------- graphs and targets


def test_sim_target_has_counts_but_no_latency_or_energy(two_cores):
    graph, record = two_cores
    report = cost_model(graph, load_target("sim"), record)
    assert report.latency_s is None and report.energy_j is None and report.step_time_s is None
    assert report.cores == [] and report.placement is None
    assert report.total("synaptic_op") == 12 and report.total("spikes") == 8
    assert report.total("neuron_update_active") == 13 and report.total("neuron_update_inactive") == 2
    with pytest.raises(SnncError, match="models no hardware"):
        cost_model(graph, load_target("sim"), record, default_placement(graph, toy_target()))


def test_simulated_activity_matches_the_synaptic_operations_of_the_activity_module():
    """A recurrent network run in the simulator: the model's synaptic operations equal those of
    ``activity.synaptic_ops`` summed over every Affine, on every target."""
    rng = np.random.default_rng(3)
    graph = recurrent_mlp(rng, n_in=6, n_hidden=9, n_out=4)
    graph["rec"].op.weight[rng.random((9, 9)) < 0.5] = 0  # sparse recurrent weights
    simulator = Simulator(graph)
    simulator.run(spikes(rng, (3, 30, 6)), count=True)
    record = simulator.activity
    expected = sum(synaptic_ops(record.populations[graph.predecessors(n.name)[0]].spikes, n.op.weight).sum()
                   for n in graph if isinstance(n.op, ir.Affine)) / record.batch
    for name in ("sim", "loihi", "spinnaker"):
        report = cost_model(graph, load_target(name), record)
        assert report.total("synaptic_op") == pytest.approx(expected, rel=1e-12)
        assert report.macs == sum(np.count_nonzero(n.op.weight) for n in graph if isinstance(n.op, ir.Affine))
    assert expected > 0


def test_direct_edges_are_one_to_one_synapses():
    graph = populations({"in": 3, "a": 3}, {}, direct=[("in", "a")])
    record = activity(**{"in": ([[1, 0, 1]], None), "a": ([[0, 0, 0]], [[1, 0, 1]])})
    report = cost_model(graph, toy_target(), record)
    assert report.cores[0].counts["synaptic_op"] == 2 and report.cores[0].counts["message_in"] == 2


@pytest.mark.parametrize("build, message", [
    (lambda g: (g.add("pool", ir.Scale(scale=np.array(2.0))), g.connect("a", "pool"), g.connect("pool", "out")),
     r"node 'pool': Scale is not allowed in population form"),
    (lambda g: (g.add("li", ir.LI(v_decay=np.array(0.9), v_gain=np.array(1.0), bias=np.array(0.0))),
                g.connect("in->a", "li"), g.add("from_li", ir.Affine(weight=np.ones((3, 3)))),
                g.connect("li", "from_li"), g.connect("from_li", "a")),
     r"node 'from_li': reads 'li' \(LI\), not a spike source"),
])
def test_graphs_not_in_population_form_are_refused(build, message):
    graph = populations({"in": 3, "a": 3}, {("in", "a"): np.eye(3)})
    build(graph)
    with pytest.raises(SnncError, match=message):
        cost_model(graph, toy_target(), activity(**{"in": ([[0, 0, 0]], None), "a": ([[0, 0, 0]], [[0, 0, 0]])}))


def test_an_activity_of_another_graph_is_refused(two_cores):
    graph, record = two_cores
    full = record.populations["a"].spikes
    record.populations["a"].spikes = full[:2]
    with pytest.raises(SnncError, match=r"node 'a': the activity has no spike counts of 3 steps x 3 neurons for it "
                                        r"\(got shape \(2, 3\)\); run the simulator with count=True"):
        cost_model(graph, toy_target(), record)
    record.populations["a"].spikes = full
    del record.populations["b"]
    with pytest.raises(SnncError, match=r"node 'b': .* \(got none\)"):
        cost_model(graph, toy_target(), record)


def test_paper_convention_constants_are_horowitz():
    assert (PAPER_CONVENTION["ac_energy_j"], PAPER_CONVENTION["mac_energy_j"]) == (0.9e-12, 4.6e-12)


# ----------------------------------------------------------------------------- SANA-FE


def test_energy_matches_sanafe_for_the_same_mapped_network():
    """Run a small network in SANA-FE on its calibrated Loihi (examples/loihi.yaml), mapped as our
    placement maps it, and price SANA-FE's own spikes with our model and the bundled loihi target.

    SANA-FE charges an access to every neuron every step and an update to those with input or a
    non-zero potential, as the Activity's active/inactive split does; its input arrives one step
    after the spike, where snnc's arrives within the step, so activity is taken from SANA-FE's own
    spike and potential traces. Its input neurons live on core 0 and pay message_out, which our
    host does not (docs/cost-model.md). Latency is not compared: SANA-FE's barrier table is
    another model.
    """
    sanafe = pytest.importorskip("sanafe")
    rng = np.random.default_rng(7)
    steps, sizes = 12, {"in": 6, "a": 10, "b": 7}
    weights = {("in", "a"): rng.uniform(0.3, 1.0, (10, 6)) * (rng.random((10, 6)) < 0.6),
               ("a", "b"): rng.uniform(0.2, 0.8, (7, 10)) * (rng.random((7, 10)) < 0.5),
               ("b", "b"): rng.uniform(0.1, 0.5, (7, 7)) * (rng.random((7, 7)) < 0.4)}
    graph = populations(sizes, weights)
    target = load_target("loihi")
    layout = Layout.of(target)
    # a over two tiles, b over two more: (0, 0) core 0 and (2, 0) core 1; (1, 1) core 2 and (3, 2) core 3.
    placement = Placement(layout, {"a": [Piece("a", 0, 0, 6), Piece("a", (2 * 4) + 1, 6, 10)],
                                   "b": [Piece("b", (1 * 8 + 1) * 4 + 2, 0, 4), Piece("b", (2 * 8 + 3) * 4 + 3, 4, 7)]})

    arch = sanafe.load_loihi()
    cores = arch.cores()
    height = layout.mesh_height

    def sanafe_core(core):  # SANA-FE numbers tiles column by column: id = x * height + y
        where = layout.locate(core)
        return cores[(where.tile_x * height + where.tile_y) * layout.cores_per_tile + where.core_in_tile]

    input_spikes = rng.random((steps, sizes["in"])) < 0.5
    network = sanafe.Network()
    groups = {"in": network.create_neuron_group("in", sizes["in"], log_spikes=True)}
    for i, neuron in enumerate(groups["in"].neurons):
        neuron.set_attributes(soma_hw_name=f"loihi_inputs[{i}]", log_spikes=True,
                              model_attributes={"spikes": input_spikes[:, i].tolist()})
        neuron.map_to_core(cores[0])
    for name in ("a", "b"):
        groups[name] = network.create_neuron_group(
            name, sizes[name], model_attributes={"threshold": 0.9, "reset": 0.0, "leak_decay": 0.5, "bias": 0.0},
            soma_hw_name="loihi_lif", default_synapse_hw_name="loihi_dense_synapse", log_spikes=True,
            log_potential=True)
        for piece in placement.pieces[name]:
            for i in range(piece.start, piece.stop):
                groups[name].neurons[i].map_to_core(sanafe_core(piece.core))
    for (source, target_name), weight in weights.items():
        pairs = [(int(j), int(i)) for i, j in zip(*np.nonzero(weight), strict=True)]
        groups[source].connect_neurons_sparse(groups[target_name], {"weight": [float(weight[i, j]) for j, i in pairs]},
                                              pairs)
    chip = sanafe.SpikingChip(arch)
    chip.load(network)
    result = chip.sim(steps, timing_model="simple", spike_trace=True, potential_trace=True, perf_trace=True)

    fired = {name: np.zeros((steps, n), np.int32) for name, n in sizes.items()}
    for t, addresses in enumerate(result["spike_trace"]):
        for address in addresses:
            fired[address.group_name][t, address.neuron_offset] = 1
    np.testing.assert_array_equal(fired["in"], input_spikes)
    potential = np.array(result["potential_trace"])  # (T, a's neurons then b's), after each step
    before = np.concatenate([np.zeros((1, potential.shape[1])), potential[:-1]]) != 0
    active = {"a": before[:, :sizes["a"]], "b": before[:, sizes["a"]:]}
    for (source, target_name), weight in weights.items():
        active[target_name][1:] |= (fired[source][:-1] @ (weight != 0).T) > 0
    record = Activity(1, steps, {"in": PopulationActivity(fired["in"]),
                                 **{n: PopulationActivity(fired[n], active[n].astype(np.int32)) for n in ("a", "b")}})
    report = cost_model(graph, target, record, placement)

    energy, hops = report.energy_j, report.total_hops()
    assert fired["a"].sum() > 0 and fired["b"].sum() > 0 and hops["hop_north_south"] > 0
    assert sum(result["perf_trace"]["hops"]) == sum(hops.values())
    assert result["energy"]["synapse"] == pytest.approx(energy["synaptic_op"], rel=1e-9)
    assert result["energy"]["soma"] == pytest.approx(
        energy["neuron_update_active"] + energy["neuron_update_inactive"] + energy["spike_out"], rel=1e-9)
    input_messages = {layer.name: layer.counts["message_in"] for layer in report.layers}["in"]
    ours = sum(energy[kind] for kind in ("message_out", "message_in", *HOP_KINDS))
    assert result["energy"]["network"] == pytest.approx(
        ours + input_messages * target.costs["message_out"].energy_j, rel=1e-9)
