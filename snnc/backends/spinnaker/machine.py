"""SpiNNaker machine data: what each core of the board holds, in sPyNNaker's formats (docs/spinnaker.md).

``build_machine`` turns a graph lowered for a ``spinnaker`` target (quantize-spinnaker's integers,
map-cores' placement) into a ``MachineData``:

- **Vertices**, one per core in use, as sPyNNaker's machine vertices: a slice of a population (at
  most ``core.neurons`` neurons; map-cores cut it and chose its core), a slice of an Input's spike
  source, or a delay extension that re-sends a source slice's spikes 16, 32, ... ticks later.
  Spike sources and delay extensions take the free cores, lowest index first (chip (0, 0), where
  the host's spikes enter, comes first).
- **Keys.** Vertex ``v`` sends neuron ``i``'s spike as the multicast key ``v << KEY_SHIFT | i``;
  a delay extension sends stage ``s`` as ``v << KEY_SHIFT | (s - 1) << index_bits | i``. A vertex's
  ``mask`` covers the bits that name it, so one routing entry carries all of its keys.
- **Synaptic matrices** per population core, in sPyNNaker's static row format: for every vertex that
  sends to the core, one row per key, ``[0, n_fixed, 0, word, ...]`` padded to the block's longest
  row; a word is ``weight << 16 | (delay & 15) << (type_bits + index_bits) | type << index_bits |
  index`` (neuron/synapse_row.h; a delay of 16 is stored as 0, which the 16-slot ring buffer reads
  16 ticks later). Synapses longer than 16 ticks are reached through the source's delay extension,
  ``delay = 16 * stage + rest``, in a separate block keyed by the extension.
- **Master population table** per population core: ``(key, mask, address, row_length, atoms)``
  sorted by key; a packet's entry gives the row ``stage * atoms + neuron`` at ``address + row *
  (row_length + 3)`` words.
- **Neuron data** per population core: quantize-spinnaker's s16.15 parameters of its slice, and the
  state it starts from (``initial_v``, ``initial_exc``, ``initial_inh``).
- **Routing tables** per chip, built, default-route-reduced and compressed by
  ``snnc.backends.spinnaker.routing`` to fit the router.

The machine-level simulator (snnc/runtime/spinnaker_machine.py) executes exactly this data.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from snnc.backends.artifact import MACHINE_FILES, TARGET_FILE
from snnc.backends.spinnaker import routing
from snnc.errors import SnncError
from snnc.files import load_arrays
from snnc.ir import NEURONS, Affine, Graph, Input, Output
from snnc.runtime.placement import Layout, Placement, neuron_populations
from snnc.targets import Target, parse_target

MACHINE_JSON, MACHINE_ARRAYS = MACHINE_FILES
#: Words before the synapses of a static row: plastic-region size, fixed synapses, fixed-plastic ones.
ROW_HEADER_WORDS = 3
#: Bits of a synaptic word that name the synapse type: excitatory 0, inhibitory 1.
TYPE_BITS = 1
#: Columns of a master population table.
POPULATION_TABLE = ("key", "mask", "address", "row_length", "atoms")
POPULATION, SPIKE_SOURCE, DELAY_EXTENSION = "population", "spike_source", "delay_extension"
#: A neuron's state variables in s16.15 (sPyNNaker's synaptic inputs and V_membrane).
NEURON_STATE = ("exc", "inh", "v")


@dataclass
class Vertex:
    """What one core runs: the neurons of node ``node`` (a population, or an Input for a spike
    source) in ``ranges``, ``[start, stop)`` pairs of flat neuron indices in the order the core
    numbers them (map-cores may give a core blocks of an image, not one run); a delay extension
    delays the spikes of vertex ``source``."""

    id: int
    kind: str
    node: str
    ranges: list[tuple[int, int]]
    chip: tuple[int, int]
    core: int
    key: int
    mask: int
    source: int | None = None
    #: delay extension: the stages it sends, each 16 ticks more than the one before
    stages: list[int] = field(default_factory=list)
    #: whether its spikes go anywhere: as on sPyNNaker, a core without outgoing synapses sends no
    #: packets (its spikes are only recorded)
    sends: bool = True

    @property
    def atoms(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    @cached_property
    def neurons(self) -> np.ndarray:
        """The node's flat neuron index of each of the core's neurons."""
        return np.concatenate([np.arange(start, stop) for start, stop in self.ranges])

    def keys(self, index_bits: int) -> np.ndarray:
        """Every key the vertex sends, in the order of its emission: a delay extension stage by stage."""
        neurons = np.arange(self.atoms, dtype=np.uint32)
        if self.kind != DELAY_EXTENSION:
            return self.key | neurons
        return np.concatenate([self.key | (s - 1) << index_bits | neurons for s in self.stages]).astype(np.uint32)


@dataclass
class MachineData:
    """A board's worth of machine data: vertices on cores, their data, and the routers' tables."""

    width: int
    height: int
    cores_per_chip: int
    index_bits: int
    delay_bits: int
    #: bits per vertex id's shift in a key: neuron index and delay stage
    key_shift: int
    vertices: list[Vertex]
    #: population vertex id -> neuron parameters (the s16.15 values of its slice; ``model`` a str)
    neurons: dict[int, dict]
    #: population vertex id -> uint32 words of its synaptic matrices
    synaptic_matrices: dict[int, np.ndarray]
    #: population vertex id -> (entries, 5) uint32 master population table, columns POPULATION_TABLE
    population_tables: dict[int, np.ndarray]
    #: chip (x, y) -> (entries, 3) uint32 routing table rows (key, mask, route), in match order
    routing_tables: dict[tuple[int, int], np.ndarray]
    #: chip (x, y) -> entries before default-route removal and compression
    routing_entries_generated: dict[tuple[int, int], int]
    router_entries: int
    #: node name -> shape, for every Input, population and Output
    shapes: dict[str, tuple[int, ...]]
    #: Output node -> the node it reads
    outputs: dict[str, str]

    @property
    def ring_buffer_slots(self) -> int:
        return 1 << self.delay_bits

    def vertex_at(self) -> dict[tuple[tuple[int, int], int], Vertex]:
        return {(v.chip, v.core): v for v in self.vertices}

    def save(self, directory: Path) -> None:
        """Write ``MACHINE_JSON`` (layout, vertices, tables' sizes) and ``MACHINE_ARRAYS`` (every word)."""
        arrays = {}
        for vertex_id, words in self.synaptic_matrices.items():
            arrays[f"v{vertex_id}.synaptic_matrix"] = words
            arrays[f"v{vertex_id}.population_table"] = self.population_tables[vertex_id]
            for name, value in self.neurons[vertex_id].items():
                if name != "model":
                    arrays[f"v{vertex_id}.neuron.{name}"] = np.asarray(value)
        for (x, y), table in self.routing_tables.items():
            arrays[f"chip{x}_{y}.routing_table"] = table
        np.savez(directory / MACHINE_ARRAYS, **arrays)
        description = {
            "board": {"width": self.width, "height": self.height, "cores_per_chip": self.cores_per_chip},
            "synaptic_word": {"weight_bits": 16, "delay_bits": self.delay_bits, "type_bits": TYPE_BITS,
                              "index_bits": self.index_bits},
            "key_shift": self.key_shift, "router_entries": self.router_entries,
            "vertices": [{**asdict(v), "chip": list(v.chip), "ranges": [list(r) for r in v.ranges],
                          **({"model": self.neurons[v.id]["model"]} if v.id in self.neurons else {})}
                         for v in self.vertices],
            "routing": [{"chip": [x, y], "generated": self.routing_entries_generated[(x, y)],
                         "entries": len(table)} for (x, y), table in sorted(self.routing_tables.items())],
            "shapes": {name: list(shape) for name, shape in self.shapes.items()},
            "outputs": self.outputs,
        }
        (directory / MACHINE_JSON).write_text(json.dumps(description, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path) -> MachineData:
        try:
            description = json.loads((directory / MACHINE_JSON).read_text())
        except OSError:
            raise SnncError(f"{directory}: has no SpiNNaker machine data ({MACHINE_JSON}); compile it with "
                            "--target spinnaker") from None
        arrays = load_arrays(directory / MACHINE_ARRAYS, allow_empty=True)  # a chip may route nothing
        models = {v["id"]: v.pop("model") for v in description["vertices"] if "model" in v}
        vertices = [Vertex(**{**v, "chip": tuple(v["chip"]), "ranges": [tuple(r) for r in v["ranges"]]})
                    for v in description["vertices"]]
        neurons = {i: {"model": model} for i, model in models.items()}
        for name, value in arrays.items():
            if ".neuron." in name:
                vertex, parameter = name.split(".neuron.")
                neurons[int(vertex[1:])][parameter] = value
        board, word = description["board"], description["synaptic_word"]
        return cls(
            width=board["width"], height=board["height"], cores_per_chip=board["cores_per_chip"],
            index_bits=word["index_bits"], delay_bits=word["delay_bits"], key_shift=description["key_shift"],
            vertices=vertices, neurons=neurons,
            synaptic_matrices={i: arrays[f"v{i}.synaptic_matrix"] for i in models},
            population_tables={i: arrays[f"v{i}.population_table"] for i in models},
            routing_tables={tuple(r["chip"]): arrays[f"chip{r['chip'][0]}_{r['chip'][1]}.routing_table"]
                            for r in description["routing"]},
            routing_entries_generated={tuple(r["chip"]): r["generated"] for r in description["routing"]},
            router_entries=description["router_entries"],
            shapes={name: tuple(shape) for name, shape in description["shapes"].items()},
            outputs=description["outputs"])


def encode_words(weights: np.ndarray, delays: np.ndarray, types: np.ndarray, indices: np.ndarray,
                 index_bits: int, delay_bits: int) -> np.ndarray:
    """sPyNNaker's synaptic words (synapse_row.h): weight, delay (mod 2**delay_bits), type, index."""
    delay_field = delays.astype(np.uint32) & ((1 << delay_bits) - 1)
    return (weights.astype(np.uint32) << 16 | delay_field << (TYPE_BITS + index_bits)
            | types.astype(np.uint32) << index_bits | indices.astype(np.uint32))


def decode_words(words: np.ndarray, index_bits: int, delay_bits: int):
    """(weight, delay in ticks, type, index) of synaptic words; a stored delay of 0 is the full ring."""
    words = words.astype(np.uint32)
    delay = (words >> (TYPE_BITS + index_bits)) & ((1 << delay_bits) - 1)
    return (words >> 16, np.where(delay == 0, 1 << delay_bits, delay), (words >> index_bits) & ((1 << TYPE_BITS) - 1),
            words & ((1 << index_bits) - 1))


@dataclass
class _Synapses:
    """The synapses from one source slice into one target slice: parallel arrays."""

    source: np.ndarray  # neuron within the source slice
    target: np.ndarray  # neuron within the target slice
    weight: np.ndarray
    type: np.ndarray
    delay: np.ndarray  # ticks


class _Builder:
    def __init__(self, graph: Graph, target: Target):
        if graph.metadata.get("arithmetic") != "spinnaker":
            raise SnncError("the SpiNNaker backend needs a graph quantized for a SpiNNaker target (pass "
                            "quantize-spinnaker)")
        self.graph, self.target = graph, target
        placement = Placement.from_graph(graph, target)
        if placement is None:
            raise SnncError("the SpiNNaker backend needs the placement of map-cores; keep map-cores in --passes")
        placement.check(neuron_populations(graph), target.core["neurons"])
        self.placement = placement
        self.layout = Layout.of(target)
        self.slots = target.formats["max_delay"]
        self.delay_bits = int(math.log2(self.slots))
        if 1 << self.delay_bits != self.slots:
            raise SnncError(f"target {target.name!r}: max_delay {self.slots} must be a power of two, the ring "
                            "buffer's slots")
        self.index_bits = max(1, math.ceil(math.log2(target.core["neurons"])))
        if self.index_bits + TYPE_BITS + self.delay_bits > 16:
            raise SnncError(f"target {target.name!r}: {target.core['neurons']} neurons per core and "
                            f"{self.slots} delay slots do not fit the synaptic word's 16 low bits")
        stage_bits = max(1, math.ceil(math.log2(target.formats["delay_extension_stages"])))
        self.key_shift = self.index_bits + stage_bits
        self.vertices: list[Vertex] = []
        self.used_cores = {piece.core for piece in placement.all_pieces()}

    # -- vertices

    def _add(self, kind: str, node: str, ranges: list[tuple[int, int]], core: int, source: int | None = None) -> Vertex:
        vertex_id = len(self.vertices)
        if vertex_id >= 1 << (32 - self.key_shift):
            raise SnncError(f"the network needs more than {1 << (32 - self.key_shift)} cores, which the 32-bit "
                            "routing keys cannot name")
        chip = self.layout.position(core)
        width = self.index_bits if kind != DELAY_EXTENSION else self.key_shift
        vertex = Vertex(vertex_id, kind, node, ranges, chip, self.layout.locate(core).core_in_tile,
                        vertex_id << self.key_shift, (0xFFFFFFFF << width) & 0xFFFFFFFF, source)
        self.vertices.append(vertex)
        return vertex

    def _free_core(self, what: str) -> int:
        core = next((c for c in range(self.layout.cores) if c not in self.used_cores), None)
        if core is None:
            raise SnncError(f"target {self.target.name!r}: no free core for {what} (all {self.layout.cores} are "
                            "in use); use a target with more chips (board_width x board_height)")
        self.used_cores.add(core)
        return core

    def _place_vertices(self) -> dict[str, list[Vertex]]:
        """Every spike-sending slice of every node: a population's pieces on each core where map-cores
        put them, input slices of at most ``core.neurons`` on free cores."""
        slices: dict[str, list[Vertex]] = {}
        for name, pieces in self.placement.pieces.items():
            on_core: dict[int, list[tuple[int, int]]] = {}
            for piece in pieces:
                on_core.setdefault(piece.core, []).append((piece.start, piece.stop))
            slices[name] = [self._add(POPULATION, name, ranges, core) for core, ranges in on_core.items()]
        limit = self.target.core["neurons"]
        for name in self.graph.inputs:
            size = int(np.prod(self.graph[name].output_shape))
            slices[name] = [self._add(SPIKE_SOURCE, name, [(start, min(size, start + limit))],
                                      self._free_core(f"the spikes of input {name!r}"))
                            for start in range(0, size, limit)]
        return slices

    # -- synapses

    def _projections(self) -> dict[tuple[str, str], list[str]]:
        """(source node, target population) -> the synapse nodes between them."""
        projections: dict[tuple[str, str], list[str]] = {}
        for node in self.graph:
            if isinstance(node.op, Affine):
                (source,) = self.graph.predecessors(node.name)
                for population in self.graph.successors(node.name):
                    projections.setdefault((source, population), []).append(node.name)
        return projections

    def _synapses(self, names: list[str], source: Vertex, target: Vertex) -> _Synapses:
        parts = []
        for name in names:
            fixed = self.graph[name].annotations["spinnaker"]
            block = np.ix_(target.neurons, source.neurons)
            delays = fixed["delays"][block]
            for synapse_type, key in enumerate(("excitatory", "inhibitory")):
                weights = fixed[key][block]
                post, pre = np.nonzero(weights)
                parts.append((pre, post, weights[post, pre], np.full(len(pre), synapse_type), delays[post, pre]))
        return _Synapses(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    def _block(self, synapses: _Synapses, rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, int]:
        """The synapses as ``n_rows`` static rows (``rows`` gives each synapse's), padded to the longest."""
        order = np.argsort(rows, kind="stable")
        counts = np.bincount(rows, minlength=n_rows)
        row_length = int(counts.max(initial=0))
        block = np.zeros((n_rows, ROW_HEADER_WORDS + row_length), np.uint32)
        block[:, 1] = counts
        position = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
        block[rows[order], ROW_HEADER_WORDS + position] = encode_words(
            synapses.weight[order], synapses.delay[order], synapses.type[order], synapses.target[order],
            self.index_bits, self.delay_bits)
        return block.ravel(), row_length

    def build(self) -> MachineData:
        graph, target = self.graph, self.target
        slices = self._place_vertices()
        projections = self._projections()
        extensions: dict[int, Vertex] = {}
        blocks: dict[int, list] = {v.id: [] for vs in slices.values() for v in vs if v.kind == POPULATION}
        destinations: dict[int, set] = {}  # sending vertex -> receiving vertices
        delayed: dict[tuple[int, int], _Synapses] = {}
        for (source, population), names in projections.items():
            for sender in slices[source]:
                for receiver in slices[population]:
                    synapses = self._synapses(names, sender, receiver)
                    if not len(synapses.weight):
                        continue
                    direct = synapses.delay <= self.slots
                    if direct.any():
                        chosen = _Synapses(*(a[direct] for a in vars(synapses).values()))
                        blocks[receiver.id].append((sender, chosen, chosen.source, sender.atoms))
                        destinations.setdefault(sender.id, set()).add(receiver.id)
                    if not direct.all():
                        delayed[(sender.id, receiver.id)] = _Synapses(*(a[~direct] for a in vars(synapses).values()))
        for (sender_id, receiver_id), synapses in delayed.items():
            sender = self.vertices[sender_id]
            if sender_id not in extensions:
                stages = sorted({int(s) for (i, _), syn in delayed.items() if i == sender_id
                                 for s in np.unique((syn.delay - 1) // self.slots)})
                extension = self._add(DELAY_EXTENSION, sender.node, sender.ranges,
                                      self._free_core(f"the delay extension of {sender.node!r}"), source=sender_id)
                extension.stages = list(range(1, stages[-1] + 1))
                extensions[sender_id] = extension
                destinations.setdefault(sender_id, set()).add(extension.id)
            extension = extensions[sender_id]
            stage = (synapses.delay - 1) // self.slots
            synapses.delay = synapses.delay - stage * self.slots
            rows = (stage - 1) * sender.atoms + synapses.source
            blocks[receiver_id].append((extension, synapses, rows, len(extension.stages) * sender.atoms))
            destinations.setdefault(extension.id, set()).add(receiver_id)

        neurons, matrices, tables = {}, {}, {}
        for vertex in self.vertices:
            if vertex.kind != POPULATION:
                continue
            fixed = graph[vertex.node].annotations["spinnaker"]
            neurons[vertex.id] = {name: (value if np.ndim(value) == 0 or name == "ring_buffer_shifts"
                                         else np.asarray(value).ravel()[vertex.neurons])
                                  for name, value in fixed.items()}
            # The state the core starts from: the IR's zero, in the population's s16.15 scale.
            neurons[vertex.id].update({f"initial_{name}": np.zeros(vertex.atoms, np.int32)
                                       for name in NEURON_STATE})
            words, entries, address = [], [], 0
            for sender, synapses, rows, n_rows in sorted(blocks[vertex.id], key=lambda b: b[0].key):
                block, row_length = self._block(synapses, rows, n_rows)
                entries.append((sender.key, sender.mask, address, row_length, sender.atoms))
                words.append(block)
                address += len(block)
            matrices[vertex.id] = np.concatenate(words) if words else np.zeros(0, np.uint32)
            tables[vertex.id] = np.array(entries, np.uint32).reshape(-1, len(POPULATION_TABLE))
            bits = 32 * len(matrices[vertex.id])
            if bits > target.core["synaptic_memory_bits"]:
                raise SnncError(f"population {vertex.node!r}, neurons {vertex.ranges} on core {vertex.core} of chip "
                                f"{vertex.chip}: its "
                                f"synaptic matrices need {bits} bits, more than a core's "
                                f"{target.core['synaptic_memory_bits']}; use --sparsity, or fewer neurons per core")
        for vertex in self.vertices:
            vertex.sends = bool(destinations.get(vertex.id))
        routing, generated = self._routing(destinations)
        return MachineData(
            width=self.layout.board_width, height=self.layout.board_height, cores_per_chip=self.layout.cores_per_tile,
            index_bits=self.index_bits, delay_bits=self.delay_bits, key_shift=self.key_shift,
            vertices=self.vertices, neurons=neurons, synaptic_matrices=matrices, population_tables=tables,
            routing_tables=routing, routing_entries_generated=generated,
            router_entries=target.chip["router_entries"],
            shapes={node.name: node.output_shape for node in graph
                    if isinstance(node.op, (Input, Output, *NEURONS))},
            outputs={name: graph.predecessors(name)[0] for name in graph.outputs})

    def _routing(self, destinations: dict[int, set]):
        """Each chip's routing table, minimised to fit its router, and its size before that."""
        mesh = routing.Machine.from_target(self.target)
        sources = [routing.MulticastSource(v.key, v.mask, v.chip, frozenset(
            (self.vertices[r].chip, self.vertices[r].core) for r in destinations.get(v.id, ())))
            for v in self.vertices]
        generated = routing.routing_tables(mesh, sources)
        minimised = routing.minimise_tables(mesh, generated)
        return ({chip: np.array([(e.key, e.mask, e.route) for e in table], np.uint32).reshape(-1, 3)
                 for chip, table in minimised.items()},
                {chip: len(table) for chip, table in generated.items()})


def build_machine(graph: Graph, target: Target) -> MachineData:
    return _Builder(graph, target).build()


def emit(graph: Graph, writer) -> None:
    """Write the machine data of ``graph`` for the target the artifact was compiled for."""
    build_machine(graph, parse_target(writer.path(TARGET_FILE))).save(writer.directory)
