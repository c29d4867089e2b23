"""map-cores: cut every population into core-sized pieces, place the pieces on the mesh, route the spikes.

A chip runs a population only if every core that holds a piece of it stays within the core's limits
(neurons, fan-in axons, fan-out axons, synaptic memory), and it runs it fast and cheaply only if the
spikes travel few hops. This pass decides both for the target, and writes the result into the IR
without changing the network: ``annotations["placement"]`` on every neuron population (its pieces
``{core, start, stop}``, in neuron order), and ``metadata["mapping"]``, a summary that
``snnc inspect ARTIFACT --mapping`` prints. The cost model reads the annotations
(``Placement.from_graph``), so its latency and energy are those of this mapping.

The steps (docs/mapping.md gives the resource model and the measured quality):

1. **Cut and pack.** Populations are taken in schedule order and cut into consecutive pieces, each
   the longest run of neurons that still fits the room left on the current core in every resource;
   a full core closes and the next opens, so small populations share cores (four policies of
   where a population starts are tried; the fewest cores win). A convolution layer is walked
   channel-last, so that its pieces are blocks of pixels with all their channels, where that
   takes fewer cores. Fan-out depends on where the destinations land, so the cut is repeated
   with each neuron's fan-out of the previous round until every core fits.
2. **Place.** The cores go onto the fewest chips, filling tiles in the greedy's index order and,
   separately, nearest the host first; moves and pairwise swaps between tiles then lower the sum
   of spike traffic times hops (Manhattan distance, which is what dimension-order routing
   travels), and the cheaper result is kept. Traffic is spikes per step (measured in the
   simulator on ``--calibration`` inputs, else ``ESTIMATED_RATE``) times the distinct destination
   cores.
3. **Route.** Every core-to-core flow follows the cost model's x-then-y route, giving the load of
   every directed link.

The greedy fill that sPyNNaker and Nengo-Loihi use by default (each population on fresh cores in
index order) is computed too, as the baseline the summary compares against.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from snnc.errors import IRError, SnncError
from snnc.ir import NEURONS, Affine, Graph, Input
from snnc.ir.contracts import ENCODINGS, RESOURCES, check_encoding, check_mapping, check_quant
from snnc.ir.printer import show_name
from snnc.passes import Pass
from snnc.passes.fuse import is_population_form
from snnc.runtime.cost import HOST_POSITION, _route
from snnc.runtime.placement import Layout, Piece, Placement
from snnc.targets import Target

#: Spikes per neuron per step assumed where no calibration inputs measure them.
ESTIMATED_RATE = 0.1
#: Run lengths the cut measures first: ``_demand`` prices every run up to its width at once, so a
#: population this small is priced in one call, and a larger one in a few doublings.
FIRST_WIDTH = 256
#: Rounds of cutting again with the fan-out the previous round's destinations gave each neuron.
FAN_OUT_ROUNDS = 8
#: Placement refinement: at most this many sweeps over the cores, each core trying the tiles that
#: are cheapest for it alone; sweeps stop early once one gains less than ``SWEEP_GAIN``.
SWEEPS, CANDIDATE_TILES, SWEEP_GAIN = 30, 6, 1e-4
#: The most loaded links a summary lists.
TOP_LINKS = 10

_HELP = {"neurons": "a target with more chips (board_width/board_height)",
         "fan_in_axons": "--sparsity (fewer source neurons per neuron)",
         "fan_out_axons": "--sparsity (fewer destination cores per neuron)",
         "synaptic_memory_bits": "--sparsity or --weight-bits (fewer or narrower synapses)"}


# ----------------------------------------------------------------------------- the network as mapping sees it


@dataclass
class _Synapses:
    """One synapse group (an Affine of population form) into a population.

    ``kernel`` is set for a shared-weight convolution (``shared_kernel``): the number of weights of
    each output channel's kernel, and ``row_channel`` the output channel of every row (neuron)."""

    name: str
    source: str
    target: str
    weight: np.ndarray
    bits: int
    encoding: str | None
    kernel: np.ndarray | None
    row_channel: np.ndarray | None
    #: synapses of rows 0 .. i - 1, for i = 0 .. rows
    synapses_before: np.ndarray = field(init=False)
    #: the synapses as column x rows + row, ascending: a column's synapses in row order
    keys: np.ndarray = field(init=False)

    def __post_init__(self):
        present = self.weight != 0
        self.synapses_before = np.r_[0, np.cumsum(np.count_nonzero(present, axis=1))]
        column, row = np.nonzero(present.T)
        self.keys = column.astype(np.int64) * self.weight.shape[0] + row

    def first_rows(self, start: int) -> np.ndarray:
        """Per source neuron (column), its first synapse at or after row ``start``; ``rows`` if none."""
        rows, columns = self.weight.shape
        base = np.arange(columns, dtype=np.int64) * rows
        position = np.searchsorted(self.keys, base + start)
        found = self.keys[np.minimum(position, len(self.keys) - 1)] - base if len(self.keys) else np.full(columns, rows)
        return np.where((position < len(self.keys)) & (found < rows), found, rows)


@dataclass
class _Population:
    name: str
    shape: tuple[int, ...]
    rate: np.ndarray
    incoming: list[_Synapses] = field(default_factory=list)
    #: the neuron (flattened, C order) at each position the cut walks; None for C order itself
    order: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.rate)

    def runs(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Positions ``start .. stop - 1`` as runs of neurons in C order (what a placement holds)."""
        if self.order is None:
            return [(start, stop)]
        neurons = np.sort(self.order[start:stop])
        return [(int(run[0]), int(run[-1]) + 1) for run in np.split(neurons, np.flatnonzero(np.diff(neurons) != 1) + 1)]


@dataclass
class _Network:
    """Neuron populations in schedule order, the Inputs' rates, and the synapse groups each source feeds."""

    populations: dict[str, _Population]
    inputs: dict[str, np.ndarray]
    outgoing: dict[str, list[_Synapses]]

    def rate(self, name: str) -> np.ndarray:
        return self.populations[name].rate if name in self.populations else self.inputs[name]


def index_bits(target: Target) -> int:
    """Bits of a neuron's index within a core of ``target``, which a sparse synapse holds beside its weight."""
    return max(1, math.ceil(math.log2(target.core["neurons"])))


def memory_bits(bits: int, index_bits: int, rows, columns, synapses, kernel_weights=None) -> dict:
    """The synaptic memory of a synapse group (or a piece of one: arrays give many) in each of
    ENCODINGS: dense holds every entry of its ``rows`` neurons x the ``columns`` source neurons
    that reach them, sparse each of its ``synapses`` with its target's ``index_bits``, shared the
    ``kernel_weights`` of its channels' kernels once (None: not a convolution); ``bits`` per weight.
    map-cores cuts and prices pieces by it, and sparsify reports a whole group by it."""
    return {"dense": rows * columns * bits, "sparse": synapses * (bits + index_bits),
            "shared": None if kernel_weights is None else kernel_weights * bits}


def synapse_bits(node, target: Target) -> int:
    """Bits of one stored weight: the target's, or the bits quantize-weights chose where the
    target's synapse word is just its weight (Loihi; a SpiNNaker word keeps its 32 bits)."""
    bits = target.core["synapse_bits"]
    quant = check_quant(node)
    if quant is not None and bits == target.formats.get("weight_bits"):
        return min(bits, int(quant["bits"]))
    return bits


def shared_kernel(weight: np.ndarray, out_shape: tuple[int, ...]) -> tuple[np.ndarray, int] | None:
    """The weights in each output channel's kernel and the rows per channel, if the group is a
    convolution; else None.

    Population form keeps only matrices, so a convolution is recognised by what makes it one:
    within each output channel (the first axis of a shape of two or more axes) every row with the
    most synapses holds the same weights at the same column offsets, one kernel translated. Such
    a group can be stored as its kernels, once per core (Loihi's shared connectivity, sPyNNaker's
    local-only convolution); it is offered only where that halves the memory at least."""
    if len(out_shape) < 2 or weight.shape[0] < 2:
        return None
    channels = out_shape[0]
    rows = weight.shape[0] // channels
    taps = np.count_nonzero(weight, axis=1).reshape(channels, rows)
    kernel = taps.max(axis=1)
    for c in range(channels):
        full = weight[c * rows:(c + 1) * rows][taps[c] == kernel[c]]
        if kernel[c] == 0 or len(full) < 2:
            continue
        row, column = np.nonzero(full)
        values = full[row, column].reshape(len(full), kernel[c])
        column = column.reshape(len(full), kernel[c])
        if not (np.array_equal(column - column[:, :1], np.broadcast_to(column[0] - column[0, 0], column.shape))
                and np.array_equal(values, np.broadcast_to(values[0], values.shape))):
            return None
    if taps.sum() < 2 * kernel.sum():
        return None
    return kernel, rows


def _read(graph: Graph, target: Target, rates: dict[str, np.ndarray]) -> _Network:
    """The populations (neurons in C order) and synapse groups of a graph in population form."""
    network = _Network({}, {}, {})
    for name in graph.schedule:
        op = graph[name].op
        if isinstance(op, Input):
            network.inputs[name] = rates[name]
        elif isinstance(op, NEURONS):
            network.populations[name] = _Population(name, tuple(graph[name].output_shape), rates[name])
    for name in graph.schedule:
        node = graph[name]
        if not isinstance(node.op, Affine):
            continue
        (source,) = graph.predecessors(name)
        if not (isinstance(graph[source].op, Input) or graph[source].op.dynamics().spiking):
            raise IRError(name, f"reads {source!r}, which does not spike; cores send each other spikes only")
        encoding = check_encoding(node)
        shared = shared_kernel(node.op.weight, node.output_shape)
        if encoding == "shared" and shared is None:
            raise IRError(name, "is annotated encoding='shared', but its weights are not one kernel per channel")
        kernel, row_channel = (shared[0], np.arange(node.op.weight.shape[0]) // shared[1]) if shared else (None, None)
        for sink in graph.successors(name):
            if sink in network.populations:
                group = _Synapses(name, source, sink, node.op.weight, synapse_bits(node, target), encoding, kernel,
                                  row_channel)
                network.populations[sink].incoming.append(group)
                network.outgoing.setdefault(source, []).append(group)
    return network


def _channel_last(shape: tuple[int, ...]) -> np.ndarray | None:
    """The channel-last order of a population of shape (channels, *space): a run of positions is
    a block of pixels with all their channels. None where that is no different from C order."""
    if len(shape) < 2 or shape[0] < 2 or math.prod(shape[1:]) < 2:
        return None
    return np.arange(math.prod(shape)).reshape(shape[0], -1).T.ravel()


def _reordered(network: _Network, orders: dict[str, np.ndarray]) -> _Network:
    """``network`` with the populations of ``orders`` in that order: their rates, the rows of the
    synapse groups into them and the columns of the groups out of them permuted alike."""
    if not orders:
        return network
    populations = {name: _Population(name, p.shape, p.rate[orders[name]] if name in orders else p.rate,
                                     order=orders.get(name)) for name, p in network.populations.items()}
    moved: dict[int, _Synapses] = {}
    for name, population in network.populations.items():
        for group in population.incoming:
            rows = orders.get(group.target, slice(None))
            weight = group.weight[rows]
            if group.source in orders:
                weight = weight[:, orders[group.source]]
            moved[id(group)] = _Synapses(group.name, group.source, group.target, weight, group.bits, group.encoding,
                                         group.kernel, None if group.row_channel is None else group.row_channel[rows])
            populations[name].incoming.append(moved[id(group)])
    return _Network(populations, network.inputs,
                    {source: [moved[id(g)] for g in groups] for source, groups in network.outgoing.items()})


def _orders(network: _Network, limits: _Limits) -> dict[str, np.ndarray]:
    """Channel-last order for every population that it cuts into fewer cores when cut alone, or
    into as many with less fan-in in all. A convolution's piece in C order is part of one channel
    and reads every input channel over the whole image; a block of pixels reads only the pixels
    around it, so fan-in binds later, and each source neuron reaches fewer cores (fan-in summed
    over a population's cores is the messages into it per spike of every source neuron)."""
    orders = {}
    for name, population in network.populations.items():
        order = _channel_last(population.shape)
        if order is None:
            continue
        alone = _Network({name: population}, {}, {})
        cost = {}
        for key, candidate in (("c", alone), ("channel-last", _reordered(alone, {name: order}))):
            pieces = _cut(candidate, limits, {name: np.zeros(population.size)}, "fresh")
            cost[key] = (len(pieces), sum(p.demand[1] for p in pieces))
        if cost["channel-last"] < cost["c"]:
            orders[name] = order
    return orders


def _rates(graph: Graph, calibration: str | None, target: Target) -> tuple[dict[str, np.ndarray], dict]:
    """Spikes per neuron per step of every Input and population: measured by running the graph (on
    ``target``'s arithmetic) on the calibration inputs, else ``ESTIMATED_RATE`` everywhere."""
    sources = [n.name for n in graph if isinstance(n.op, (Input, *NEURONS))]
    if calibration is None:
        return ({name: np.full(int(np.prod(graph[name].output_shape)), ESTIMATED_RATE) for name in sources},
                {"source": "estimate", "rate": ESTIMATED_RATE})
    from snnc.passes.quantize import Calibration
    from snnc.runtime.simulator import Simulator

    simulator = Simulator(graph, target=target)
    simulator.run(Calibration(graph, calibration).inputs, count=True)
    activity = simulator.activity
    return ({name: activity.populations[name].spikes.reshape(activity.steps, -1).sum(axis=0)
             / (activity.steps * activity.batch) for name in sources},
            {"source": calibration, "batch": activity.batch, "steps": activity.steps})


# ----------------------------------------------------------------------------- cutting and packing


@dataclass
class _Limits:
    target: str
    #: per RESOURCES
    capacity: np.ndarray
    #: bits of a neuron's index within its core, which a sparse synapse stores beside its weight
    index_bits: int


@dataclass
class _Piece:
    population: str
    start: int
    stop: int
    #: what the cut counted, per RESOURCES; axons are summed over a core's pieces, an upper bound
    #: of their union, so a core the cut filled fits whatever its pieces share
    demand: np.ndarray
    encodings: dict[str, str]
    #: the core in the order the cut opened them (a virtual core, before placement)
    core: int


def _columns_used(first: np.ndarray, start: int, width: int) -> np.ndarray:
    """For k = 1 .. width: the columns whose first synapse at or after ``start`` lies before start + k."""
    return np.cumsum(np.bincount(first[first < start + width] - start, minlength=width))


def _demand(population: _Population, start: int, width: int, fan_out: np.ndarray, limits: _Limits):
    """The demand of the pieces ``start .. start + k`` for k = 1 .. width, shape (width, RESOURCES),
    and per synapse group the encoding (index into ENCODINGS) each of those pieces would use.

    Memory per group is the cheapest of its ``memory_bits`` (dense, sparse and, for a convolution,
    shared), unless the group's ``encoding`` annotation fixes one. Fan-in counts the distinct
    source neurons per source."""
    k = np.arange(1, width + 1, dtype=np.float64)
    memory, fan_in = np.zeros(width), np.zeros(width)
    choices, by_source = {}, {}
    for group in population.incoming:
        first = group.first_rows(start)
        synapses = group.synapses_before[start + 1:start + width + 1] - group.synapses_before[start]
        kernels = None
        if group.kernel is not None:
            channel = group.row_channel[start:start + width]
            opens = np.zeros(width, bool)
            opens[np.unique(channel, return_index=True)[1]] = True
            kernels = np.cumsum(np.where(opens, group.kernel[channel], 0))
        by_encoding = memory_bits(group.bits, limits.index_bits, k, _columns_used(first, start, width), synapses,
                                  kernels)
        options = np.array([np.full(width, np.inf) if by_encoding[e] is None else by_encoding[e] for e in ENCODINGS],
                           dtype=np.float64)
        choice = np.full(width, ENCODINGS.index(group.encoding)) if group.encoding else options.argmin(axis=0)
        memory += options[choice, np.arange(width)]
        choices[group.name] = choice
        by_source[group.source] = np.minimum(by_source[group.source], first) if group.source in by_source else first
    for first in by_source.values():
        fan_in += _columns_used(first, start, width)
    return np.column_stack([k, fan_in, np.cumsum(fan_out[start:start + width]), memory]), choices


def _resource(r: str) -> str:
    return {"synaptic_memory_bits": "bits of synaptic memory"}.get(r, r.replace("_", " "))


#: How a population starts: in the room the previous one left on its last core ("split"), there
#: only if it fits there whole ("whole"), always on a fresh core ("fresh", the greedy fill), or
#: whole on the first core with room for it, else on a fresh core ("first-fit": a small population
#: fills the gap that a population full in one resource left behind).
POLICIES = ("split", "whole", "fresh", "first-fit")


def _cut(network: _Network, limits: _Limits, fan_out: dict[str, np.ndarray], policy: str) -> list[_Piece]:
    """Cut the populations, in schedule order, into pieces packed onto cores: each piece is the
    longest run of neurons that fits the room left on the current core, so a core closes only when
    its next neuron does not fit; ``policy`` (one of POLICIES) says where a population starts."""
    pieces: list[_Piece] = []
    #: what each core holds, per RESOURCES; the last core is the one being filled
    loads = [np.zeros(len(RESOURCES))]
    for population in network.populations.values():
        if policy == "first-fit" and 0 < population.size <= limits.capacity[0]:
            whole, choices = _demand(population, 0, population.size, fan_out[population.name], limits)
            room = np.flatnonzero(np.all(whole[-1] <= limits.capacity - np.array(loads), axis=1))
            if room.size:
                core = int(room[0])
                loads[core] = loads[core] + whole[-1]
                pieces.append(_Piece(population.name, 0, population.size, whole[-1],
                                     {name: ENCODINGS[c[-1]] for name, c in choices.items()}, core))
                continue
        if loads[-1][0] and (policy in ("fresh", "first-fit") or policy == "whole"
                             and not _fits_whole(population, loads[-1], fan_out, limits)):
            loads.append(np.zeros(len(RESOURCES)))
        start, guess = 0, FIRST_WIDTH
        while start < population.size:
            room = limits.capacity - loads[-1]
            limit = int(min(population.size - start, room[0]))
            fits, width = 0, min(limit, guess)
            while width:
                demand, choices = _demand(population, start, width, fan_out[population.name], limits)
                fits = int(np.count_nonzero(np.all(demand <= room, axis=1)))  # demand grows with k
                if fits < width or width == limit:
                    break
                width = min(limit, 2 * width)
            if fits == 0:
                if not loads[-1][0]:
                    neuron = start if population.order is None else int(population.order[start])
                    raise _too_big(population.name, neuron, demand[0], limits)
                loads.append(np.zeros(len(RESOURCES)))
                continue
            pieces.append(_Piece(population.name, start, start + fits, demand[fits - 1],
                                 {name: ENCODINGS[c[fits - 1]] for name, c in choices.items()}, len(loads) - 1))
            loads[-1] = loads[-1] + demand[fits - 1]
            start, guess = start + fits, max(FIRST_WIDTH, 2 * fits)
            if start < population.size:
                loads.append(np.zeros(len(RESOURCES)))
    return pieces


def _fits_whole(population: _Population, used: np.ndarray, fan_out: dict[str, np.ndarray], limits: _Limits) -> bool:
    if population.size > limits.capacity[0] - used[0]:
        return False
    demand, _ = _demand(population, 0, population.size, fan_out[population.name], limits)
    return bool(np.all(demand[-1] <= limits.capacity - used))


def _too_big(population: str, neuron: int, demand: np.ndarray, limits: _Limits) -> SnncError:
    over = [i for i in range(len(RESOURCES)) if demand[i] > limits.capacity[i]]
    needs = "; ".join(f"{demand[i]:.0f} {_resource(RESOURCES[i])}, more than the {limits.capacity[i]:.0f} of a core "
                      f"of target {limits.target!r} (over by {demand[i] - limits.capacity[i]:.0f})" for i in over)
    helps = " or ".join(dict.fromkeys(_HELP[RESOURCES[i]] for i in over))
    return SnncError(f"population {population!r}, neuron {neuron}: needs {needs}; a neuron cannot be split "
                     f"across cores: try {helps}")


# ----------------------------------------------------------------------------- exact use and traffic


@dataclass
class _Usage:
    """What the pieces on their cores use exactly, as the cost model counts it, and the traffic."""

    #: per core: distinct source neurons whose spikes reach it, summed over source populations
    fan_in: np.ndarray
    #: per core: over its neurons, the distinct destination cores of each
    fan_out: np.ndarray
    #: per population: each neuron's distinct destination cores
    neuron_fan_out: dict[str, np.ndarray]
    #: (source core, destination core) -> messages per step; source -1 is the host
    flows: dict[tuple[int, int], float]


HOST = -1


def _usage(network: _Network, pieces: list[_Piece], cores: int) -> _Usage:
    """A spike of a source neuron goes once to each distinct core holding one of its synapses."""
    of_population: dict[str, list[_Piece]] = {}
    for piece in pieces:
        of_population.setdefault(piece.population, []).append(piece)
    usage = _Usage(np.zeros(cores), np.zeros(cores), {}, {})
    for source, groups in network.outgoing.items():
        column: dict[int, int] = {}
        parts = []
        for group in groups:
            targets = of_population[group.target]
            columns = np.array([column.setdefault(p.core, len(column)) for p in targets])
            rows = group.weight.shape[0]
            piece = np.searchsorted([p.start for p in targets], group.keys % rows, side="right") - 1
            parts.append((group.keys // rows, columns[piece]))
        reach = np.zeros((len(network.rate(source)), len(column)), bool)
        for neuron, c in parts:
            reach[neuron, c] = True
        destinations = np.fromiter(column, np.int64, len(column))
        usage.fan_in[destinations] += reach.sum(axis=0)
        rate = network.rate(source)
        if source in network.inputs:
            senders = [(HOST, slice(None))]
        else:
            usage.neuron_fan_out[source] = counts = reach.sum(axis=1)
            senders = [(p.core, slice(p.start, p.stop)) for p in of_population[source]]
            for core, part in senders:
                usage.fan_out[core] += counts[part].sum()
        for core, part in senders:
            for destination, messages in zip(destinations, rate[part] @ reach[part], strict=True):
                if messages > 0:
                    usage.flows[core, destination] = usage.flows.get((core, destination), 0.0) + messages
    return usage


def _pack(network: _Network, limits: _Limits, policy: str) -> tuple[list[_Piece], _Usage]:
    """Cut and pack until every core's fan-out fits: a round cuts with each neuron's fan-out (its
    destination cores) as the previous round left it, since it depends on where those landed."""
    fan_out = {name: np.zeros(p.size) for name, p in network.populations.items()}
    for _ in range(FAN_OUT_ROUNDS):
        pieces = _cut(network, limits, fan_out, policy)
        usage = _usage(network, pieces, _cores(pieces))
        over = np.flatnonzero(usage.fan_out > limits.capacity[2])
        if not over.size:
            return pieces, usage
        for name, counts in usage.neuron_fan_out.items():
            fan_out[name] = np.maximum(fan_out[name], counts)
    core = int(over[0])
    held = ", ".join(f"{p.population}[{p.start}:{p.stop}]" for p in pieces if p.core == core)
    raise SnncError(f"core {core} ({held}) still needs {usage.fan_out[core]:.0f} fan-out axons after "
                    f"{FAN_OUT_ROUNDS} rounds of cutting, more than the {limits.capacity[2]:.0f} of a core of target "
                    f"{limits.target!r}; try {_HELP['fan_out_axons']}")


def _cores(pieces: list[_Piece]) -> int:
    return max(p.core for p in pieces) + 1 if pieces else 0


def _lower_bound(orders: list[_Network], limits: _Limits) -> dict:
    """Cores no mapping can do with, per resource, and the largest of them; ``orders`` holds the
    network in each order of its neurons that map-cores cuts in.

    Neurons add up over cores. Synaptic memory is at least a bit width per synapse (dense with no
    zero, which one-neuron pieces reach), or a convolution's kernels once. Fan-out is at least one
    axon per neuron that sends anywhere. Fan-in is a union over a core's neurons, so it adds up over
    nothing; but a population whose pieces are runs of one of those orders, at most one run per
    core (what map-cores makes), needs at least as many cores as the fewest runs that each fit the
    fan-in limit, and cutting at the last neuron that fits gives the fewest in each order."""
    network = orders[0]
    demand = dict.fromkeys(RESOURCES, 0.0)
    for population in network.populations.values():
        demand["neurons"] += population.size
        for group in population.incoming:
            synapses = group.synapses_before[-1]
            floor = {"dense": synapses * group.bits, "sparse": synapses * (group.bits + limits.index_bits),
                     "shared": None if group.kernel is None else int(group.kernel.sum()) * group.bits}
            demand["synaptic_memory_bits"] += floor[group.encoding] if group.encoding else \
                min(v for k, v in floor.items() if v is not None and k != "sparse")
    for source, groups in network.outgoing.items():
        if source in network.populations:
            sends = np.zeros(len(network.rate(source)), bool)
            for group in groups:
                sends[group.keys // group.weight.shape[0]] = True
            demand["fan_out_axons"] += int(sends.sum())
    by_resource = {r: {"demand": float(demand[r]), "cores": math.ceil(demand[r] / limits.capacity[i])}
                   for i, r in enumerate(RESOURCES) if r != "fan_in_axons"}
    largest = max((p.size for p in network.populations.values()), default=0)
    fan_in_only = _Limits(limits.target, np.array([largest, limits.capacity[1], np.inf, np.inf]), limits.index_bits)
    by_resource["fan_in_axons"] = {"demand": 0.0, "cores": 0}
    for name, population in network.populations.items():
        if not population.size:
            continue
        silent = np.zeros(population.size)
        whole = _demand(population, 0, population.size, silent, fan_in_only)[0][-1]
        # A population whose fan-in fits one core needs one core for it; only a larger one is cut.
        pieces = [whole] if whole[1] <= limits.capacity[1] else min(
            ([p.demand for p in _cut(_Network({name: each.populations[name]}, {}, {}), fan_in_only, {name: silent},
                                     "fresh")] for each in orders), key=len)
        if len(pieces) > by_resource["fan_in_axons"]["cores"]:
            by_resource["fan_in_axons"] = {"demand": float(sum(d[1] for d in pieces)), "cores": len(pieces),
                                           "population": name}
    binding = max(by_resource, key=lambda r: by_resource[r]["cores"])
    return {"cores": max(1, by_resource[binding]["cores"]), "binding": binding, "by_resource": by_resource}


# ----------------------------------------------------------------------------- placement on the mesh


def _tile_sets(layout: Layout, cores: int) -> list[np.ndarray]:
    """The tiles of the fewest chips that hold ``cores`` cores, as positions (x, y) on the board-wide
    mesh, in two orders that cores fill them in: the greedy fill's (index order: the chips in
    index order, each chip's tiles row by row), and nearest the host first (the chips nearest it,
    their tiles along anti-diagonals in a snake, so that consecutive tiles are neighbours)."""
    per_chip = layout.cores_per_tile * layout.mesh_width * layout.mesh_height
    chips = math.ceil(cores / per_chip)
    tiles = layout.mesh_width * layout.mesh_height
    in_order = [layout.position(t * layout.cores_per_tile) for t in range(chips * tiles)]
    nearest_chips = sorted(range(layout.board_width * layout.board_height),
                           key=lambda c: ((c % layout.board_width) * layout.mesh_width
                                          + (c // layout.board_width) * layout.mesh_height, c))[:chips]
    nearest = [layout.position((c * tiles + t) * layout.cores_per_tile) for c in nearest_chips for t in range(tiles)]
    host_x, host_y = HOST_POSITION
    nearest.sort(key=lambda p: (d := abs(p[0] - host_x) + abs(p[1] - host_y), p[0] if d % 2 else -p[0]))
    return [np.array(in_order), np.array(nearest)]


def _symmetric(flows: dict[tuple[int, int], float], cores: int):
    """Traffic between distinct cores in both directions, as adjacency lists (CSR), and the host's."""
    host = np.zeros(cores)
    pairs: dict[tuple[int, int], float] = {}
    for (a, b), messages in flows.items():
        if a == HOST:
            host[b] += messages
        elif a != b:
            pairs[a, b] = pairs.get((a, b), 0.0) + messages
            pairs[b, a] = pairs.get((b, a), 0.0) + messages
    order = sorted(pairs)
    source = np.array([a for a, _ in order], np.int64)
    indptr = np.searchsorted(source, np.arange(cores + 1))
    neighbours = np.array([b for _, b in order], np.int64)
    weights = np.array([pairs[key] for key in order])
    return indptr, neighbours, weights, host


def _place(usage: _Usage, cores: int, layout: Layout) -> np.ndarray:
    """The physical core of every virtual core: in each order of ``_tile_sets`` the cores fill the
    first tiles in cut order, and ``_refine`` improves that, free to use every tile of those chips;
    the cheaper result wins."""
    graph = _symmetric(usage.flows, cores)
    best = None
    for positions in _tile_sets(layout, cores):
        cost, tile = _refine(graph, positions, layout.cores_per_tile, np.arange(cores) // layout.cores_per_tile)
        if best is None or cost < best[0] - 1e-9:
            best = cost, positions, tile
    _, positions, tile = best
    physical, slots = np.empty(cores, np.int64), np.zeros(len(positions), np.int64)
    for core, t in enumerate(tile):
        physical[core] = layout.core_at(*positions[t], slots[t])
        slots[t] += 1
    return physical


def _refine(graph, positions: np.ndarray, per_tile: int, tile: np.ndarray) -> tuple[float, np.ndarray]:
    """Move cores to tiles with room and swap pairs of cores between tiles while that lowers the sum
    of traffic x hops; each core tries the ``CANDIDATE_TILES`` tiles cheapest for it alone. Returns
    the sum and the tile of every core."""
    indptr, neighbours, weights, host = graph
    cores = len(tile)
    distance = np.abs(positions[:, None, :] - positions[None, :, :]).sum(axis=2).astype(np.float64)
    to_host = np.abs(positions - np.array(HOST_POSITION)).sum(axis=1).astype(np.float64)
    tile = tile.copy()
    members = [set(np.flatnonzero(tile == t)) for t in range(len(positions))]

    def cost(core: int, at) -> np.ndarray | float:
        """Traffic x hops of ``core``'s flows were it at tile(s) ``at``, the others staying put."""
        near = slice(indptr[core], indptr[core + 1])
        return distance[at][..., tile[neighbours[near]]] @ weights[near] + host[core] * to_host[at]

    total = sum(cost(c, tile[c]) for c in range(cores)) / 2 + host @ to_host[tile] / 2
    busiest = np.argsort(-(np.bincount(neighbours, weights, cores) + host), kind="stable")
    for _ in range(SWEEPS):
        gain = 0.0
        for a in busiest:
            here = tile[a]
            alone = cost(a, slice(None))
            best, move = 0.0, None
            for u in np.argsort(alone, kind="stable")[:CANDIDATE_TILES]:
                if u == here:
                    continue
                if len(members[u]) < per_tile:
                    candidates = [(alone[u] - alone[here], None)]
                else:
                    candidates = []
                    for b in members[u]:
                        near = slice(indptr[b], indptr[b + 1])
                        shared = weights[near][neighbours[near] == a].sum()
                        candidates.append((alone[u] - alone[here] + cost(b, here) - cost(b, u)
                                           + 2 * shared * distance[here, u], b))
                for delta, b in candidates:
                    if delta < best - 1e-12:
                        best, move = delta, (u, b)
            if move is not None:
                u, b = move
                members[here].discard(a), members[u].add(a)
                tile[a] = u
                if b is not None:
                    members[u].discard(b), members[here].add(b)
                    tile[b] = here
                gain -= best
        total -= gain
        if gain <= SWEEP_GAIN * total:
            break
    return total, tile


def _placement(pieces: list[_Piece], physical: np.ndarray, layout: Layout, network: _Network) -> Placement:
    placed: dict[str, list[Piece]] = {}
    for p in pieces:
        placed.setdefault(p.population, []).extend(Piece(p.population, int(physical[p.core]), start, stop)
                                                   for start, stop in network.populations[p.population].runs(p.start, p.stop))
    return Placement(layout, {name: sorted(each, key=lambda piece: piece.start) for name, each in placed.items()})


def _routes(usage: _Usage, physical: np.ndarray, layout: Layout) -> tuple[float, float, dict]:
    """Messages per step, their hops, and the load of every directed link, routed as the cost model
    routes them (x first, then y; docs/cost-model.md)."""
    between: dict[tuple, float] = {}
    for (a, b), messages in usage.flows.items():
        key = (HOST_POSITION if a == HOST else layout.position(int(physical[a])), layout.position(int(physical[b])))
        between[key] = between.get(key, 0.0) + messages
    loads: dict[tuple, list] = {}
    hops = 0.0
    for (origin, destination), messages in between.items():
        route = _route(origin, destination, layout)
        hops += messages * len(route)
        for link, kind in route:
            loads.setdefault(link, [kind, 0.0])[1] += messages
    return float(sum(usage.flows.values())), hops, loads


# ----------------------------------------------------------------------------- the pass


def _board_error(cores: int, bound: dict, layout: Layout, limits: _Limits) -> SnncError:
    per_chip = layout.cores_per_tile * layout.mesh_width * layout.mesh_height
    chips, needed = layout.board_width * layout.board_height, math.ceil(cores / per_chip)
    binding = bound["binding"]
    total = bound["by_resource"][binding]
    capacity = limits.capacity[RESOURCES.index(binding)]
    helps = "" if binding == "neurons" else f", or {_HELP[binding]}"
    return SnncError(f"the network needs {cores} cores, {needed} chips of {per_chip}, but target {limits.target!r} "
                     f"has {chips} chip{'s' if chips > 1 else ''} ({layout.cores} cores): {_resource(binding)} run out "
                     f"first ({total['demand']:.0f} in all, {capacity:.0f} per core: {total['cores']} cores at least, "
                     f"{total['cores'] - layout.cores} more than the board has); use a target with more chips "
                     f"(board_width x board_height of {needed} or more){helps}")


class MapCores(Pass):
    """Partition, place and route a population-form graph for the target; annotate, change nothing."""

    name = "map-cores"

    def __init__(self, target: Target, calibration: str | None = None):
        if not target.has_hardware:
            raise SnncError(f"map-cores: target {target.name!r} models no hardware, so there are no cores to map onto")
        self.target, self.calibration = target, calibration
        self.summary: dict = {}
        #: what the last run chose, and the greedy fill it compares against (None if that does not fit)
        self.placement: Placement | None = None
        self.baseline: Placement | None = None
        #: messages per step between the cores of the placement, by (source core, destination core),
        #: the host as source HOST: what a bound on traffic x hops over other placements starts from
        self.flows: dict[tuple[int, int], float] = {}

    def report(self) -> dict:
        return {key: value for key, value in self.summary.items() if key != "per_core"}

    def run(self, graph: Graph) -> Graph:
        if not is_population_form(graph):
            raise IRError(None, "map-cores needs a graph in population form: run fuse-synapses first")
        target = self.target
        rates, measured = _rates(graph, self.calibration, target)
        network = _read(graph, target, rates)
        layout = Layout.of(target)
        limits = _Limits(target.name, np.array([target.core[r] for r in RESOURCES], np.float64), index_bits(target))
        orders = _orders(network, limits)
        networks = {"c": network, "channel-last": _reordered(network, orders)} if orders else {"c": network}
        bound = _lower_bound(list(networks.values()), limits)
        packings, failures = {}, []
        # A core that runs one population (sPyNNaker's cores) only takes the fresh-core policy.
        for order, policy in itertools.product(networks, ("fresh",) if target.core.get("populations_per_core") == 1
                                               else POLICIES):
            try:
                packings[order, policy] = _pack(networks[order], limits, policy)
            except SnncError as e:
                failures.append(e)
        if not packings:
            raise failures[0]
        # The fewest cores, then the fewest messages: a population cut across a shared core sends more.
        order, policy = min(packings, key=lambda k: (_cores(packings[k][0]), sum(packings[k][1].flows.values())))
        pieces, usage = packings[order, policy]
        network = networks[order]
        cores = _cores(pieces)
        if cores > layout.cores:
            raise _board_error(cores, bound, layout, limits)
        physical = _place(usage, cores, layout) if cores else np.zeros(0, np.int64)
        messages, hops, loads = _routes(usage, physical, layout)

        self.placement = _placement(pieces, physical, layout, network)
        self.flows = {(a if a == HOST else int(physical[a]), int(physical[b])): messages
                      for (a, b), messages in usage.flows.items()}
        fresh = packings.get(("c", "fresh"))
        fits = fresh is not None and _cores(fresh[0]) <= layout.cores
        self.baseline = _placement(fresh[0], np.arange(_cores(fresh[0])), layout, networks["c"]) if fits else None
        mapped = graph.copy(share_arrays=True)  # only annotations are written
        for name, placed in self.placement.pieces.items():
            mapped[name].annotations["placement"] = [{"core": p.core, "start": p.start, "stop": p.stop} for p in placed]
        self.summary = {
            "target": target.name,
            "rates": {**measured, "mean_per_population": {name: float(np.mean(rates[name])) if rates[name].size else 0.0
                                                          for name in rates}},
            "capacity": {r: int(c) for r, c in zip(RESOURCES, limits.capacity, strict=True)},
            "policy": policy, "channel_last": sorted(orders) if order == "channel-last" else [],
            "cores": cores, "tiles": len({layout.position(int(c)) for c in physical}),
            "chips": len({layout.locate(int(c)).chip for c in physical}),
            "lower_bound": bound, "cores_over_lower_bound": cores / bound["cores"],
            "traffic_per_step": messages, "traffic_hops_per_step": hops,
            "greedy": self._greedy(fresh, layout),
            "links": [{"from": list(layout.tile_at(*a)), "to": list(layout.tile_at(*b)), "kind": kind,
                       "messages_per_step": load}
                      for (a, b), (kind, load) in sorted(loads.items(), key=lambda item: -item[1][1])[:TOP_LINKS]],
            "per_core": self._cores(pieces, usage, physical, layout, network),
        }
        greedy_hops = self.summary["greedy"].get("traffic_hops_per_step")
        self.summary["traffic_hops_vs_greedy"] = hops / greedy_hops if greedy_hops else None
        mapped.metadata = {**mapped.metadata, "mapping": self.summary}
        return mapped

    @staticmethod
    def _greedy(packing: tuple[list[_Piece], _Usage] | None, layout: Layout) -> dict:
        """The baseline: every population on fresh cores, cut by the same limits, cores in index order."""
        if packing is None:
            return {"cores": None, "fits": False}
        pieces, usage = packing
        cores = _cores(pieces)
        if cores > layout.cores:
            return {"cores": cores, "fits": False}
        return {"cores": cores, "fits": True, "traffic_hops_per_step": _routes(usage, np.arange(cores), layout)[1]}

    @staticmethod
    def _cores(pieces: list[_Piece], usage: _Usage, physical: np.ndarray, layout: Layout,
               network: _Network) -> list[dict]:
        sent, received = np.zeros(len(physical)), np.zeros(len(physical))
        for (a, b), messages in usage.flows.items():
            received[b] += messages
            if a != HOST:
                sent[a] += messages
        on_core: dict[int, list[_Piece]] = {}
        for piece in pieces:
            on_core.setdefault(piece.core, []).append(piece)
        cores = []
        for v in np.argsort(physical, kind="stable"):
            held = on_core[v]
            where = layout.locate(int(physical[v]))
            cores.append({"core": int(physical[v]), "chip": where.chip, "tile": [where.tile_x, where.tile_y],
                          "core_in_tile": where.core_in_tile,
                          "pieces": [{"population": p.population, "start": start, "stop": stop,
                                      "encodings": p.encodings}
                                     for p in held for start, stop in network.populations[p.population].runs(p.start,
                                                                                                             p.stop)],
                          "neurons": sum(p.stop - p.start for p in held), "fan_in_axons": int(usage.fan_in[v]),
                          "fan_out_axons": int(usage.fan_out[v]),
                          "synaptic_memory_bits": int(sum(p.demand[3] for p in held)),
                          "messages_out_per_step": float(sent[v]), "messages_in_per_step": float(received[v])})
        return cores


# ----------------------------------------------------------------------------- the text report


def mapping_text(graph: Graph) -> str:
    """The mapping map-cores wrote into ``graph``, as ``snnc inspect ARTIFACT --mapping`` prints it,
    once ``check_mapping`` found it whole; the file's strings (names, the calibration file, link
    kinds) through ``show_name``."""
    mapping = check_mapping(graph)
    if mapping is None:
        raise SnncError("the graph holds no mapping: compile it for a hardware target whose pipeline runs map-cores "
                        "(or add map-cores to --passes)")
    bound, greedy, capacity = mapping["lower_bound"], mapping["greedy"], mapping["capacity"]
    rates = mapping["rates"]
    measured = (f"estimated at {rates['rate']} spikes per neuron per step" if rates["source"] == "estimate" else
                f"measured on {show_name(rates['source'])} ({rates['batch']} samples x {rates['steps']} steps)")
    hops = mapping["traffic_hops_per_step"]
    per_message = hops / mapping["traffic_per_step"] if mapping["traffic_per_step"] else 0.0
    baseline = ("does not fit" if greedy["cores"] is None else
                f"{_count(greedy['cores'], 'core')}, which do not fit" if not greedy["fits"] else
                f"{_count(greedy['cores'], 'core')}, {greedy['traffic_hops_per_step']:.6g} message hops per step"
                + (f" (this mapping: {mapping['traffic_hops_vs_greedy']:.3g}x)"
                   if mapping["traffic_hops_vs_greedy"] is not None else ""))
    lines = [f"mapping of {show_name(graph.name or 'main')} on {show_name(mapping['target'])}: "
             f"{_count(mapping['cores'], 'core')} on "
             f"{_count(mapping['tiles'], 'tile')} of {_count(mapping['chips'], 'chip')}",
             f"  lower bound: {_count(bound['cores'], 'core')} ({_resource(bound['binding'])}); used / bound = "
             f"{mapping['cores_over_lower_bound']:.3f}",
             f"  spike rates: {measured}",
             f"  spike traffic: {mapping['traffic_per_step']:.6g} messages per step, {hops:.6g} message hops per step "
             f"({per_message:.3g} hops per message)",
             f"  greedy fill in layer order: {baseline}"]
    if mapping["links"]:
        top = mapping["links"][0]
        lines.append(f"  most loaded link: {tuple(top['from'])} -> {tuple(top['to'])} ({show_name(top['kind'])}), "
                     f"{top['messages_per_step']:.6g} messages per step")
    header = ("core", "chip", "tile", "pieces", "neurons", "fan-in", "fan-out", "memory bits", "out/step", "in/step")
    rows = [(str(c["core"]), str(c["chip"]), f"({c['tile'][0]},{c['tile'][1]})#{c['core_in_tile']}",
             " ".join(f"{show_name(p['population'])}[{p['start']}:{p['stop']}]" for p in c["pieces"]),
             *(f"{c[r]} {c[r] / capacity[r]:.0%}" for r in RESOURCES),
             f"{c['messages_out_per_step']:.4g}", f"{c['messages_in_per_step']:.4g}") for c in mapping["per_core"]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines.append("cores (each limit: use and fill of the core):")
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
              for row in [header, *rows]]
    lines.append("links (most loaded; tiles as (chip, x, y)):" if mapping["links"] else
                 "links: none used (every message stays within its tile)")
    lines += [f"  {tuple(link['from'])} -> {tuple(link['to'])}  {show_name(link['kind'])}  "
              f"{link['messages_per_step']:.6g} messages per step" for link in mapping["links"]]
    return "\n".join(lines) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
