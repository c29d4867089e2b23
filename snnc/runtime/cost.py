"""The cycle-level latency and energy model: what each core and link does in each step, and its cost.

The input is a graph in population form (Input, neuron, Affine and Output nodes; every Affine reads
one spike source and feeds neurons or Outputs), the ``Activity`` of a simulator run, and a
``Placement``. From the spikes of every source neuron and the non-zero weights of its synapses the
model counts, per core and step, the events a Loihi-class core performs (docs/cost-model.md has the
formulas and their limits): neuron updates, spikes, messages out and in (one message per spike and
destination core), synaptic operations at the destination, and hops of dimension-order routing on
the mesh. Times and energies per event come from the target file, so every number carries its
source; nothing hardware-specific is written here.

Counts in an ``Activity`` are summed over the batch; everything this module reports is per sample.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from snnc.errors import SnncError
from snnc.ir import NEURONS, Affine, Graph, Input, Output, verify
from snnc.runtime.activity import Activity
from snnc.runtime.placement import CoreLocation, Layout, Piece, Placement, default_placement
from snnc.targets import Target

#: Events a core performs, charged to that core's time and energy.
CORE_KINDS = ("synaptic_op", "neuron_update_active", "neuron_update_inactive", "spike_out", "message_out",
              "message_in")
#: Events of the network between tiles.
HOP_KINDS = ("hop_east_west", "hop_north_south", "chip_hop")
#: Every kind of energy in a report, in the order reports list them.
ENERGY_KINDS = (*CORE_KINDS, *HOP_KINDS, "static")

#: The convention of SNN papers, shown beside the hardware model so that readers can compare with
#: published claims. It belongs to no target, so it is kept here with its source.
PAPER_CONVENTION = {
    "ac_energy_j": 0.9e-12,
    "mac_energy_j": 4.6e-12,
    "source": "Horowitz, ISSCC 2014, 45 nm: 32-bit float add (AC) 0.9 pJ, multiply-accumulate (MAC) 4.6 pJ",
    "note": "SNN energy = synaptic ops x 0.9 pJ, ANN energy = MACs x 4.6 pJ (one pass of the equivalent ANN "
            "per sample). This convention ignores memory access and bit width, which can favour SNNs unfairly "
            "(the STEP benchmark's critique): it is shown beside the hardware model, never instead of it.",
}

#: Where a spike from the host enters the mesh: tile (0, 0) of chip 0.
HOST_POSITION = (0, 0)


@dataclass
class LayerCost:
    """One population's work per sample: its own updates and spikes, the messages and hops of the
    spikes it sends, and the synaptic operations of the synapses it receives."""

    name: str
    op: str
    neurons: int
    cores: list[int]
    counts: dict[str, float]
    energy_j: dict[str, float] | None
    #: spikes per neuron per step
    rate: float


@dataclass
class CoreCost:
    """One core's work per sample, its busy time per step and what it stores."""

    core: int
    location: CoreLocation
    pieces: list[Piece]
    counts: dict[str, float]
    busy_mean_s: float
    busy_max_s: float
    energy_j: float
    synapses: int
    fan_in_axons: int
    fan_out_axons: int


@dataclass
class LinkLoad:
    """Messages per sample over one directed link between neighbouring tiles."""

    source: tuple[int, int, int]  # (chip, tile_x, tile_y)
    destination: tuple[int, int, int]
    kind: str
    messages: float
    max_per_step: float


@dataclass
class CostReport:
    """Per-sample counts, times and energies. Time and energy fields are None for a target
    without hardware, which has counts only."""

    target: Target
    graph: str
    steps: int
    batch: int
    layers: list[LayerCost]
    macs: int
    placement: Placement | None = None
    cores: list[CoreCost] = field(default_factory=list)
    links: list[LinkLoad] = field(default_factory=list)
    #: (T,) time of each step, and its parts: the busiest core, the network, the barrier
    step_time_s: np.ndarray | None = None
    compute_time_s: np.ndarray | None = None
    network_time_s: np.ndarray | None = None
    barrier_s: float | None = None
    chips: int | None = None
    tiles: int | None = None
    energy_j: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def latency_s(self) -> float | None:
        return None if self.step_time_s is None else float(self.step_time_s.sum())

    @property
    def total_energy_j(self) -> float | None:
        return None if self.energy_j is None else float(sum(self.energy_j.values()))

    def total(self, kind: str) -> float:
        """A count summed over the neuron layers; Inputs are left out, since their spikes and
        messages are the host's (``total_hops`` and the report's ``messages`` include them)."""
        return float(sum(layer.counts.get(kind, 0.0) for layer in self.layers if layer.op != "Input"))

    def total_hops(self) -> dict[str, float]:
        """Hops by kind, those of input spikes from the host included."""
        return {kind: float(sum(layer.counts.get(kind, 0.0) for layer in self.layers)) for kind in HOP_KINDS}


@dataclass
class _Projection:
    """Synapses from a spike source to a neuron population: ``mask`` (n_target, n_source) marks them."""

    source: str
    target: str
    mask: np.ndarray


@dataclass
class _Network:
    """A graph in population form, as the model reads it."""

    name: str
    #: op kind and number of neurons of every spike source and neuron node, in schedule order
    kinds: dict[str, str]
    sizes: dict[str, int]
    projections: list[_Projection]
    #: non-zero weights of all Affines: the MACs of one pass of the equivalent ANN
    macs: int

    @property
    def neurons(self) -> dict[str, int]:
        """The populations that live on cores: all but the Inputs."""
        return {name: n for name, n in self.sizes.items() if self.kinds[name] != "Input"}


def _population_form(graph: Graph) -> _Network:
    """Read ``graph`` as populations and projections; raise, naming the node, on any other graph."""
    verify(graph)
    populations = [name for name in graph.schedule if isinstance(graph[name].op, (Input, *NEURONS))]
    network = _Network(graph.name, {name: graph[name].op.kind for name in populations},
                       {name: int(np.prod(graph[name].output_shape)) for name in populations}, [], 0)

    def spike_source(node: str, source: str) -> None:
        op = graph[source].op
        if not (isinstance(op, Input) or (isinstance(op, NEURONS) and op.dynamics().spiking)):
            raise SnncError(f"node {node!r}: reads {source!r} ({op.kind}), not a spike source; the cost model needs "
                            "every synapse to read an Input or a spiking neuron (population form)")

    for node in graph:
        name, op = node.name, node.op
        if isinstance(op, Affine):
            sources = graph.predecessors(name)
            if len(sources) != 1:
                raise SnncError(f"node {name!r}: an Affine in population form reads exactly one spike source, "
                                f"got {sources}")
            spike_source(name, sources[0])
            for target in graph.successors(name):
                if not isinstance(graph[target].op, (*NEURONS, Output)):
                    raise SnncError(f"node {name!r}: an Affine in population form feeds neurons or Outputs, "
                                    f"not {target!r} ({graph[target].op.kind})")
                if isinstance(graph[target].op, NEURONS):
                    network.projections.append(_Projection(sources[0], target, op.weight != 0))
            network.macs += int(np.count_nonzero(op.weight))
        elif isinstance(op, NEURONS):
            for source in graph.predecessors(name):
                if not isinstance(graph[source].op, Affine):
                    # A direct edge: one synapse from each source neuron to the neuron of the same index.
                    spike_source(name, source)
                    network.projections.append(_Projection(source, name, np.eye(network.sizes[name], dtype=bool)))
        elif not isinstance(op, (Input, Output)):
            raise SnncError(f"node {name!r}: {op.kind} is not allowed in population form (Input, neurons, Affine, "
                            "Output); run snnc.passes.fuse_synapses first")
    return network


def _activity_arrays(network: _Network, activity: Activity):
    """Spikes of every population and active-neuron counts of every neuron population, as (T, n) floats."""
    spikes, active = {}, {}
    for name, n in network.sizes.items():
        record = activity.populations.get(name)
        if record is None or record.spikes.size != activity.steps * n or len(record.spikes) != activity.steps:
            got = "none" if record is None else f"shape {record.spikes.shape}"
            raise SnncError(f"node {name!r}: the activity has no spike counts of {activity.steps} steps x {n} neurons "
                            f"for it (got {got}); run the simulator with count=True on this graph")
        spikes[name] = record.spikes.reshape(activity.steps, n).astype(np.float64)
        if name in network.neurons:
            if record.active is None:
                raise SnncError(f"node {name!r}: the activity has no active-neuron counts for it")
            active[name] = record.active.reshape(activity.steps, n).astype(np.float64)
    return spikes, active


def _route(source: tuple[int, int], destination: tuple[int, int], layout: Layout):
    """The directed links of dimension-order routing, x first then y, each with its hop kind: a
    step that crosses a chip boundary is a chip hop, any other an on-chip hop."""
    links = []
    (x, y), (to_x, to_y) = source, destination
    while x != to_x:
        step = 1 if to_x > x else -1
        crosses = (x // layout.mesh_width) != ((x + step) // layout.mesh_width)
        links.append((((x, y), (x + step, y)), "chip_hop" if crosses else "hop_east_west"))
        x += step
    while y != to_y:
        step = 1 if to_y > y else -1
        crosses = (y // layout.mesh_height) != ((y + step) // layout.mesh_height)
        links.append((((x, y), (x, y + step)), "chip_hop" if crosses else "hop_north_south"))
        y += step
    return links


def cost_model(graph: Graph, target: Target, activity: Activity, placement: Placement | None = None) -> CostReport:
    """Count, time and price what ``graph`` does on ``target`` for the spikes of ``activity``.

    ``placement`` defaults to the one map-cores wrote into the graph (``Placement.from_graph``), else
    ``default_placement``. For a target without hardware (``sim``) the report has counts only
    (spikes, synaptic operations, neuron updates), with time and energy None.
    """
    network = _population_form(graph)
    if target.has_hardware:
        if placement is not None:
            placement.check(network.neurons, target.core["neurons"])
        # Placement.from_graph checks the one it reads; the default one is made to fit.
        placement = placement or Placement.from_graph(graph, target) or default_placement(graph, target)
        pieces = placement.all_pieces()
    elif placement is not None:
        raise SnncError(f"target {target.name!r} models no hardware: a placement has no meaning for it")
    else:
        # Counts only: one notional piece per population, never shown as a core.
        pieces = [Piece(name, i, 0, n) for i, (name, n) in enumerate(network.neurons.items())]
    model = _Model(target, network, activity, placement, pieces)
    return model.price() if placement is not None else model.counts_only()


class _Model:
    """The counting and pricing of one ``cost_model`` call. Arrays are summed over the batch;
    what it reports is divided by the batch."""

    def __init__(self, target: Target, network: _Network, activity: Activity, placement: Placement | None,
                 pieces: list[Piece]):
        self.target, self.network, self.placement, self.pieces = target, network, placement, pieces
        self.spikes, self.active = _activity_arrays(network, activity)
        self.steps, self.batch = activity.steps, activity.batch
        #: piece indices of every neuron population, in neuron order
        self.of_population: dict[str, list[int]] = {}
        for i, piece in enumerate(pieces):
            self.of_population.setdefault(piece.population, []).append(i)
        self.core_ids = sorted({p.core for p in pieces})
        self.column = {core: j for j, core in enumerate(self.core_ids)}
        #: (T, pieces) events of each piece; message_in is counted per core (one message may serve several pieces)
        self.piece_counts = {kind: np.zeros((self.steps, len(pieces))) for kind in CORE_KINDS if kind != "message_in"}
        self.synapses = np.zeros(len(pieces))
        self.message_in = np.zeros((self.steps, len(self.core_ids)))
        self.fan_in = np.zeros(len(self.core_ids))
        self.fan_out = np.zeros(len(self.core_ids))
        #: per source population: messages it sends and its hops by kind, summed over steps
        self.sent = defaultdict(lambda: defaultdict(float))
        #: (source tile, destination tile) -> (T,) messages, and the messages of each source population
        self.traffic: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(self.steps))
        self.traffic_by_source: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._count_neurons()
        for source in network.sizes:
            self._count_synapses(source)

    # -- counting

    def _starts(self, population: str) -> list[int]:
        return [self.pieces[i].start for i in self.of_population[population]]

    def _count_neurons(self) -> None:
        for name, indices in self.of_population.items():
            starts = self._starts(name)
            self.piece_counts["spike_out"][:, indices] = np.add.reduceat(self.spikes[name], starts, axis=1)
            updated = np.add.reduceat(self.active[name], starts, axis=1)
            self.piece_counts["neuron_update_active"][:, indices] = updated
            sizes = np.array([self.pieces[i].neurons for i in indices])
            self.piece_counts["neuron_update_inactive"][:, indices] = self.batch * sizes - updated

    def _count_synapses(self, source: str) -> None:
        """Synaptic operations of the spikes of ``source`` at every piece they reach, and, on
        hardware, its messages: one per spike and distinct destination core."""
        outgoing = [p for p in self.network.projections if p.source == source]
        if not outgoing:
            return
        destinations = sorted({i for p in outgoing for i in self.of_population[p.target]})
        column = {piece: k for k, piece in enumerate(destinations)}
        # fan[j, k]: synapses from source neuron j to the neurons of destination piece k
        fan = np.zeros((self.network.sizes[source], len(destinations)))
        for projection in outgoing:
            columns = [column[i] for i in self.of_population[projection.target]]
            fan[:, columns] += np.add.reduceat(projection.mask, self._starts(projection.target), axis=0,
                                               dtype=np.float64).T
        spikes = self.spikes[source]
        self.piece_counts["synaptic_op"][:, destinations] += spikes @ fan
        self.synapses[destinations] += fan.sum(axis=0)
        if self.placement is None:
            return

        cores = sorted({self.pieces[i].core for i in destinations})
        core_column = {core: c for c, core in enumerate(cores)}
        on_core = np.zeros((len(destinations), len(cores)))
        on_core[np.arange(len(destinations)), [core_column[self.pieces[i].core] for i in destinations]] = 1
        reach = (fan @ on_core) > 0  # reach[j, c]: neuron j has a synapse on destination core c
        fan_out = reach.sum(axis=1)
        columns = [self.column[core] for core in cores]
        self.message_in[:, columns] += spikes @ reach
        self.fan_in[columns] += reach.sum(axis=0)
        layout = self.placement.layout
        if source in self.of_population:
            senders = [(i, slice(self.pieces[i].start, self.pieces[i].stop), layout.position(self.pieces[i].core))
                       for i in self.of_population[source]]
        else:  # an Input: the host sends one message per spike and destination core
            senders = [(None, slice(None), HOST_POSITION)]
        for i, part, origin in senders:
            if i is not None:
                self.piece_counts["message_out"][:, i] = spikes[:, part] @ fan_out[part]
                self.fan_out[self.column[self.pieces[i].core]] += fan_out[part].sum()
            messages = spikes[:, part] @ reach[part]
            for c, core in enumerate(cores):
                key = (origin, layout.position(core))
                self.traffic[key] += messages[:, c]
                self.traffic_by_source[key][source] += messages[:, c].sum()
                self.sent[source]["message_in"] += messages[:, c].sum()

    def _network(self):
        """Hops by kind, the loads of links, and the network time of each step: the busiest link's
        messages times its hop time, plus the slowest route's hop latencies."""
        costs, layout = self.target.costs, self.placement.layout
        hops = dict.fromkeys(HOP_KINDS, 0.0)
        loads: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(self.steps))
        link_kind = {}
        slowest_route = np.zeros(self.steps)
        for key, messages in self.traffic.items():
            route = _route(*key, layout)
            for link, kind in route:
                loads[link] += messages
                link_kind[link] = kind
                hops[kind] += float(messages.sum())
                for source, sent in self.traffic_by_source[key].items():
                    self.sent[source][kind] += sent
            latency = sum(costs[kind].time_s for _, kind in route)
            slowest_route = np.maximum(slowest_route, np.where(messages > 0, latency, 0.0))
        busiest = np.zeros(self.steps)
        for link, load in loads.items():
            busiest = np.maximum(busiest, load / self.batch * costs[link_kind[link]].time_s)
        links = [LinkLoad(layout.tile_at(*a), layout.tile_at(*b), link_kind[(a, b)], float(load.sum() / self.batch),
                          float(load.max() / self.batch)) for (a, b), load in loads.items()]
        links.sort(key=lambda link: -link.messages)
        return hops, links, busiest + slowest_route

    # -- reporting

    def _layers(self, kinds) -> list[LayerCost]:
        layers = []
        for name, n in self.network.sizes.items():
            indices = self.of_population.get(name, [])
            counts = {"spikes": float(self.spikes[name].sum() / self.batch)}
            counts.update({kind: float(self.piece_counts[kind][:, indices].sum() / self.batch) for kind in kinds})
            cores = sorted({self.pieces[i].core for i in indices}) if self.placement else []
            layers.append(LayerCost(name, self.network.kinds[name], n, cores, counts, None,
                                    counts["spikes"] / (n * self.steps)))
        return layers

    def counts_only(self) -> CostReport:
        layers = self._layers(("synaptic_op", "neuron_update_active", "neuron_update_inactive"))
        return CostReport(self.target, self.network.name, self.steps, self.batch, layers, self.network.macs)

    def price(self) -> CostReport:
        target, batch, costs = self.target, self.batch, self.target.costs
        report = CostReport(target, self.network.name, self.steps, batch, self._layers(self.piece_counts),
                            self.network.macs, self.placement)
        hops, report.links, network_time = self._network()
        for layer in report.layers:
            layer.counts.update({kind: self.sent[layer.name][kind] / batch for kind in ("message_in", *HOP_KINDS)})
            layer.energy_j = {kind: layer.counts[kind] * costs[kind].energy_j for kind in (*CORE_KINDS, *HOP_KINDS)}

        # (T, cores) counts: the pieces on each core added up, and the messages each core receives
        to_core = np.zeros((len(self.pieces), len(self.core_ids)))
        to_core[np.arange(len(self.pieces)), [self.column[p.core] for p in self.pieces]] = 1
        counts = {kind: values @ to_core for kind, values in self.piece_counts.items()}
        counts["message_in"] = self.message_in
        busy = sum(counts[kind] * costs[kind].time_s for kind in CORE_KINDS) / batch

        locations = [self.placement.layout.locate(core) for core in self.core_ids]
        report.tiles = len({(w.chip, w.tile_x, w.tile_y) for w in locations})
        report.chips = len({w.chip for w in locations})
        report.compute_time_s = busy.max(axis=1, initial=0.0)
        report.network_time_s = network_time
        report.barrier_s = target.barrier_base_s + target.barrier_per_tile_s * report.tiles
        report.step_time_s = np.maximum(report.compute_time_s + network_time + report.barrier_s,
                                        target.step_time_min_s)
        report.energy_j = {kind: float(counts[kind].sum() / batch * costs[kind].energy_j) for kind in CORE_KINDS}
        report.energy_j.update({kind: hops[kind] / batch * costs[kind].energy_j for kind in HOP_KINDS})
        report.energy_j["static"] = target.static_power_w * report.chips * report.latency_s

        synapses = self.synapses @ to_core
        for j, core in enumerate(self.core_ids):
            core_counts = {kind: float(counts[kind][:, j].sum() / batch) for kind in CORE_KINDS}
            report.cores.append(CoreCost(
                core, locations[j], [p for p in self.pieces if p.core == core], core_counts,
                float(busy[:, j].mean()), float(busy[:, j].max()),
                sum(count * costs[kind].energy_j for kind, count in core_counts.items()),
                int(synapses[j]), int(self.fan_in[j]), int(self.fan_out[j])))
        report.warnings = self._limits(report.cores)
        return report

    def _limits(self, cores: list[CoreCost]) -> list[str]:
        """Cores whose synapses or axons exceed the target's limits, which the default placement
        does not check: the counts still stand, but such a mapping would not fit on the chip."""
        limits = self.target.core
        warnings = []
        for core in cores:
            bits = core.synapses * limits["synapse_bits"]
            if bits > limits["synaptic_memory_bits"]:
                warnings.append(f"core {core.core}: {core.synapses} synapses need {bits} bits of synaptic memory, "
                                f"more than {limits['synaptic_memory_bits']}")
            for kind in ("fan_in_axons", "fan_out_axons"):
                if getattr(core, kind) > limits[kind]:
                    warnings.append(f"core {core.core}: {getattr(core, kind)} {kind.replace('_', ' ')}, "
                                    f"more than {limits[kind]}")
        return warnings
