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

The machine-level simulator (snnc/runtime/spinnaker_machine.py) executes exactly this data. An
artifact's machine data is untrusted input like any file in it, so ``MachineData.load`` checks every
value the simulator uses before it runs: what the target and the IR determine (board, word layout,
shapes, each core's neuron data) must be theirs, and vertices, keys, masks, tables and rows must
be of their types and sizes, with every index and address in range.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path

import numpy as np

from snnc.backends.artifact import IR_FILE, MACHINE_FILES, TARGET_FILE, malformed, read_json
from snnc.backends.spinnaker import routing
from snnc.errors import SnncError, shown
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
#: What the machine data files are, in the errors that refuse them.
WHAT = "the SpiNNaker machine data of this artifact"


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
            **_header(vars(self)),
            "vertices": [{**asdict(v), "chip": list(v.chip), "ranges": [list(r) for r in v.ranges],
                          **({"model": self.neurons[v.id]["model"]} if v.id in self.neurons else {})}
                         for v in self.vertices],
            "routing": [{"chip": [x, y], "generated": self.routing_entries_generated[(x, y)],
                         "entries": len(table)} for (x, y), table in sorted(self.routing_tables.items())],
        }
        (directory / MACHINE_JSON).write_text(json.dumps(description, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path, graph: Graph, target: Target) -> MachineData:
        """The machine data that an artifact in ``directory`` holds for ``graph`` (its IR, quantized
        for SpiNNaker and checked against the spinnaker contract, as ``snnc run`` has) and ``target``
        (its target.toml), checked by ``_Loader`` before anything uses it: the first value that is
        wrong is refused in one line naming the artifact, the file and the field or array."""
        return _Loader(directory, graph, target).machine()


def key_layout(target: Target) -> tuple[int, int, int]:
    """The bits of keys and synaptic words on ``target``: (index_bits, delay_bits, key_shift). A
    neuron index takes enough bits for a core's neurons, a delay those of the ring buffer's slots
    (``max_delay``, a power of two), and both with the type bit fit a word's 16 low bits; a vertex
    id is shifted past the neuron index and the delay-extension stage."""
    slots = target.formats["max_delay"]
    delay_bits = int(math.log2(slots))
    if 1 << delay_bits != slots:
        raise SnncError(f"target {target.name!r}: max_delay {slots} must be a power of two, the ring buffer's slots")
    index_bits = max(1, math.ceil(math.log2(target.core["neurons"])))
    if index_bits + TYPE_BITS + delay_bits > 16:
        raise SnncError(f"target {target.name!r}: {target.core['neurons']} neurons per core and {slots} delay "
                        "slots do not fit the synaptic word's 16 low bits")
    stage_bits = max(1, math.ceil(math.log2(target.formats["delay_extension_stages"])))
    return index_bits, delay_bits, index_bits + stage_bits


def key_mask(kind: str, index_bits: int, key_shift: int) -> int:
    """The mask of a vertex's keys: the bits that name the vertex (and, but for a delay extension,
    its stage bits, which are 0)."""
    return (0xFFFFFFFF << (key_shift if kind == DELAY_EXTENSION else index_bits)) & 0xFFFFFFFF


def _determined(graph: Graph, target: Target) -> dict:
    """The fields of ``MachineData`` that the graph and the target determine."""
    layout = Layout.of(target)
    index_bits, delay_bits, key_shift = key_layout(target)
    return dict(width=layout.board_width, height=layout.board_height, cores_per_chip=layout.cores_per_tile,
                index_bits=index_bits, delay_bits=delay_bits, key_shift=key_shift,
                router_entries=target.chip["router_entries"],
                shapes={node.name: node.output_shape for node in graph
                        if isinstance(node.op, (Input, Output, *NEURONS))},
                outputs={name: graph.predecessors(name)[0] for name in graph.outputs})


def _header(values: dict) -> dict:
    """The fields of ``MACHINE_JSON`` that hold what the graph and the target determine, from
    ``values`` (those of ``_determined``, or all of a MachineData's)."""
    return {"board": {"width": values["width"], "height": values["height"], "cores_per_chip": values["cores_per_chip"]},
            "synaptic_word": {"weight_bits": 16, "delay_bits": values["delay_bits"], "type_bits": TYPE_BITS,
                              "index_bits": values["index_bits"]},
            "key_shift": values["key_shift"], "router_entries": values["router_entries"],
            "shapes": {name: list(shape) for name, shape in values["shapes"].items()},
            "outputs": values["outputs"]}


def core_neurons(fixed: dict, vertex: Vertex) -> dict:
    """The neuron data of a population core: its slice of the population's ``spinnaker`` annotation
    ``fixed`` (per-neuron values; scalars and the ring-buffer shifts whole), and the state it starts
    from, the IR's zero."""
    data = {name: (value if np.ndim(value) == 0 or name == "ring_buffer_shifts"
                   else np.asarray(value).ravel()[vertex.neurons]) for name, value in fixed.items()}
    data.update({f"initial_{name}": np.zeros(vertex.atoms, np.int32) for name in NEURON_STATE})
    return data


def _integer(value, low: int, high: int) -> bool:
    """Whether a value read from JSON is an integer (not a bool) from ``low`` to ``high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class _Loader:
    """Reads an artifact's machine data and checks it, first ``MACHINE_JSON``, then each array of
    ``MACHINE_ARRAYS`` against it; ``fail`` refuses the first value that is wrong. Every value it
    keeps is of the type the simulator computes with: where the file's value only has to equal one
    the target or the IR determine (1.0 equals 1 in JSON), the determined one is kept."""

    def __init__(self, directory: Path, graph: Graph, target: Target):
        if target.arithmetic != "spinnaker":
            raise malformed(directory, TARGET_FILE, "the target of SpiNNaker machine data",
                            f"its arithmetic is {target.arithmetic}")
        if graph.metadata.get("arithmetic") != "spinnaker":
            raise malformed(directory, IR_FILE, "the IR of SpiNNaker machine data",
                            f"its graph is for {shown(graph.metadata.get('arithmetic'))} arithmetic")
        self.directory, self.graph, self.target = directory, graph, target
        self.expected = _determined(graph, target)
        self.populations = {node.name for node in graph if isinstance(node.op, NEURONS)}

    def fail(self, name: str, why: str):
        raise malformed(self.directory, name, WHAT, why)

    def machine(self) -> MachineData:
        description = read_json(self.directory, MACHINE_JSON, WHAT)
        header = _header(self.expected)
        if not isinstance(description, dict) or set(description) != {*header, "vertices", "routing"}:
            self.fail(MACHINE_JSON, f"not an object with the fields {', '.join([*header, 'vertices', 'routing'])}")
        for name, value in header.items():
            found = description[name]
            if found != value:
                # Most of these are tables: name the entry that differs, so the message shows it.
                if isinstance(found, dict) and isinstance(value, dict) and set(found) == set(value):
                    name, found, value = next((f"{name}.{key}", found[key], value[key]) for key in value
                                              if found[key] != value[key])
                self.fail(MACHINE_JSON, f"{name} is {shown(found)}, but {TARGET_FILE} and {IR_FILE} give "
                                        f"{shown(value)}")
        vertices = self._vertices(description["vertices"])
        routing = self._routing(description["routing"], len(vertices))
        neurons = {v.id: core_neurons(self.graph[v.node].annotations["spinnaker"], v)
                   for v in vertices if v.kind == POPULATION}
        arrays = self._arrays(neurons, routing)
        machine = MachineData(**self.expected, vertices=vertices, neurons=neurons, synaptic_matrices={},
                              population_tables={}, routing_tables={},
                              routing_entries_generated={chip: generated for chip, (generated, _) in routing.items()})
        by_key = {v.key: v for v in vertices}
        for vertex_id, data in neurons.items():
            receiver = vertices[vertex_id]
            self._check_neurons(receiver, data, arrays)
            table = self._array(arrays, f"v{vertex_id}.population_table", len(POPULATION_TABLE))
            words = self._array(arrays, f"v{vertex_id}.synaptic_matrix", None)
            self._check_rows(receiver, table, words, by_key)
            machine.population_tables[vertex_id], machine.synaptic_matrices[vertex_id] = table, words
        for chip, (_, entries) in routing.items():
            machine.routing_tables[chip] = self._routing_table(chip, entries, arrays)
        return machine

    # -- MACHINE_JSON

    def _vertices(self, entries) -> list[Vertex]:
        names = [f.name for f in fields(Vertex)]
        if not isinstance(entries, list):
            self.fail(MACHINE_JSON, "vertices is not a list")
        kinds = (POPULATION, SPIKE_SOURCE, DELAY_EXTENSION)
        vertices: list[Vertex] = []
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict) or entry.get("kind") not in kinds:
                self.fail(MACHINE_JSON, f"vertices[{position}] is not an object whose kind is one of "
                                        f"{', '.join(kinds)}")
            wanted = [*names, "model"] if entry["kind"] == POPULATION else names
            if set(entry) != set(wanted):
                self.fail(MACHINE_JSON, f"vertices[{position}] is not an object with the fields {', '.join(wanted)}")
            vertices.append(self._vertex(position, entry, vertices))
        if len({(v.chip, v.core) for v in vertices}) < len(vertices):
            self.fail(MACHINE_JSON, "two vertices run on one core")
        self._check_cover(vertices, POPULATION, self.populations)
        self._check_cover(vertices, SPIKE_SOURCE, self.graph.inputs)
        return vertices

    def _vertex(self, position: int, entry: dict, before: list[Vertex]) -> Vertex:
        """The vertex ``entry`` at ``position``, after the ``before`` ones; each field is checked
        before a later check relies on it."""
        m = self.expected

        def need(name: str, valid: bool, wanted: str):
            if not valid:
                self.fail(MACHINE_JSON, f"vertices[{position}].{name} is {shown(entry[name])}; give {wanted}")

        names = 1 << (32 - m["key_shift"])
        need("id", _integer(entry["id"], position, min(position, names - 1)),
             f"its position, {position}, below the {names} vertices that 32-bit keys can name")
        kind = entry["kind"]
        if kind == DELAY_EXTENSION:
            need("source", _integer(entry["source"], 0, position - 1) and before[entry["source"]].kind != kind,
                 "the id of an earlier population or spike source vertex")
            source = before[entry["source"]]
            need("node", entry["node"] == source.node, f"its source's node, {shown(source.node)}")
            need("ranges", entry["ranges"] == [list(r) for r in source.ranges], "its source's ranges")
            node, ranges, source_id = source.node, source.ranges, source.id
            stage_limit = 1 << (m["key_shift"] - m["index_bits"])
            stages = list(range(1, len(entry["stages"]) + 1)) if isinstance(entry["stages"], list) else None
            need("stages", stages and len(stages) <= stage_limit and entry["stages"] == stages,
                 f"the list 1, 2, ... of at most {stage_limit} stages, which its keys can name")
        else:
            need("source", entry["source"] is None, "null: only a delay extension has a source")
            need("stages", entry["stages"] == [], "[]: only a delay extension has stages")
            nodes = self.populations if kind == POPULATION else self.graph.inputs
            need("node", isinstance(entry["node"], str) and entry["node"] in nodes,
                 f"a {'population' if kind == POPULATION else 'input'} of {IR_FILE}")
            node, source_id, stages = entry["node"], None, []
            size = math.prod(m["shapes"][node])
            need("ranges", isinstance(entry["ranges"], list) and len(entry["ranges"]) > 0 and all(
                isinstance(r, list) and len(r) == 2 and _integer(r[0], 0, size - 1) and _integer(r[1], r[0] + 1, size)
                for r in entry["ranges"]), f"a list of [start, stop] neuron ranges, 0 <= start < stop <= {size}")
            ranges = [tuple(r) for r in entry["ranges"]]
        if kind == POPULATION:
            model = self.graph[node].annotations["spinnaker"]["model"]
            need("model", entry["model"] == model, f"{shown(model)}, the model of {shown(node)} in {IR_FILE}")
        limit = self.target.core["neurons"]
        need("ranges", sum(stop - start for start, stop in ranges) <= limit, f"at most the {limit} neurons of a core")
        chip = entry["chip"]
        need("chip", isinstance(chip, list) and len(chip) == 2 and _integer(chip[0], 0, m["width"] - 1)
             and _integer(chip[1], 0, m["height"] - 1), f"[x, y] on the {m['width']} x {m['height']} board")
        need("core", _integer(entry["core"], 0, m["cores_per_chip"] - 1), f"a core from 0 to {m['cores_per_chip'] - 1}")
        key, mask = position << m["key_shift"], key_mask(kind, m["index_bits"], m["key_shift"])
        need("key", entry["key"] == key, f"{key}, its id << key_shift")
        need("mask", entry["mask"] == mask, f"{mask}, the bits of a {kind}'s keys that name it")
        need("sends", isinstance(entry["sends"], bool), "true or false")
        return Vertex(position, kind, node, ranges, tuple(chip), entry["core"], key, mask, source_id, stages,
                      entry["sends"])

    def _check_cover(self, vertices: list[Vertex], kind: str, nodes) -> None:
        """Every neuron of each of ``nodes`` is on exactly one vertex of ``kind``."""
        held: dict[str, list] = {}
        for vertex in vertices:
            if vertex.kind == kind:
                held.setdefault(vertex.node, []).extend(vertex.ranges)
        for node in nodes:
            ranges = sorted(held.get(node, []))
            size = math.prod(self.expected["shapes"][node])
            if [start for start, _ in ranges] != [0] + [stop for _, stop in ranges[:-1]] or \
                    (ranges[-1][1] if ranges else 0) != size:
                self.fail(MACHINE_JSON, f"the {kind} vertices of {shown(node)} do not hold each of its {size} "
                                        "neurons exactly once")

    def _routing(self, entries, vertices: int) -> dict[tuple[int, int], tuple[int, int]]:
        """Each chip with a routing table: the entries generated for it (one per vertex at most) and
        those of its table (at most a router's)."""
        m = self.expected
        valid = (f"a list of {{chip: [x, y] on the {m['width']} x {m['height']} board, generated: 0 to {vertices}, "
                 f"entries: 0 to {m['router_entries']}}}, each chip once")
        routing: dict[tuple[int, int], tuple[int, int]] = {}
        for entry in entries if isinstance(entries, list) else [entries]:
            if not (isinstance(entry, dict) and set(entry) == {"chip", "generated", "entries"}
                    and isinstance(entry["chip"], list) and len(entry["chip"]) == 2
                    and _integer(entry["chip"][0], 0, m["width"] - 1) and _integer(entry["chip"][1], 0, m["height"] - 1)
                    and tuple(entry["chip"]) not in routing and _integer(entry["generated"], 0, vertices)
                    and _integer(entry["entries"], 0, m["router_entries"])):
                self.fail(MACHINE_JSON, f"routing holds {shown(entry)}; give {valid}")
            routing[tuple(entry["chip"])] = entry["generated"], entry["entries"]
        return routing

    # -- MACHINE_ARRAYS

    def _arrays(self, neurons: dict[int, dict], routing: dict) -> dict[str, np.ndarray]:
        """The arrays, once they are exactly those that the population cores (whose neuron data is
        ``neurons``) and the routing tables need."""
        try:
            arrays = load_arrays(self.directory / MACHINE_ARRAYS, allow_empty=True)  # a chip may route nothing
        except SnncError as e:
            self.fail(MACHINE_ARRAYS, str(e))
        if not isinstance(arrays, dict):
            self.fail(MACHINE_ARRAYS, "an .npy array, not an .npz of arrays")
        needed = {f"chip{x}_{y}.routing_table" for x, y in routing}
        for vertex_id, data in neurons.items():
            needed |= {f"v{vertex_id}.synaptic_matrix", f"v{vertex_id}.population_table"}
            needed |= {f"v{vertex_id}.neuron.{name}" for name in data if name != "model"}
        missing, extra = sorted(needed - set(arrays)), sorted(set(arrays) - needed)
        if missing:
            self.fail(MACHINE_ARRAYS, f"it has no array {missing[0]!r}")
        if extra:
            self.fail(MACHINE_ARRAYS, f"it holds {shown(extra[0])}, which no vertex or chip of {MACHINE_JSON} has")
        return arrays

    def _array(self, arrays: dict, name: str, columns: int | None) -> np.ndarray:
        """The uint32 array ``name``: of shape (n, ``columns``), or (n,) without columns."""
        array = arrays[name]
        if array.dtype != np.uint32 or array.ndim != (1 if columns is None else 2) or \
                (columns is not None and array.shape[1] != columns):
            self.fail(MACHINE_ARRAYS, f"{name!r} is an array of {array.dtype} and shape {array.shape}; give uint32 "
                                      f"of shape {'(n,)' if columns is None else f'(n, {columns})'}")
        return array

    def _check_neurons(self, vertex: Vertex, data: dict, arrays: dict) -> None:
        """A population core's neuron data is its slice of the IR's annotation (``data``), in integers."""
        for name, value in data.items():
            if name == "model":  # in MACHINE_JSON, checked with the vertex
                continue
            stored = arrays[f"v{vertex.id}.neuron.{name}"]
            if stored.dtype.kind not in "iu" or stored.shape != np.shape(value) or not np.array_equal(stored, value):
                self.fail(MACHINE_ARRAYS, f"'v{vertex.id}.neuron.{name}' is not the {name} in {IR_FILE} of the "
                                          f"neurons {vertex.ranges} of {shown(vertex.node)}")

    def _check_rows(self, receiver: Vertex, table: np.ndarray, words: np.ndarray, by_key: dict) -> None:
        """The master population table names each sender once, by its key, mask and atoms, in key
        order; their blocks of rows follow one another from address 0 to the end of the matrix; no
        row holds more synapses than its length, and every synapse names a neuron of the core."""
        name = f"v{receiver.id}.population_table"
        index_mask = (1 << self.expected["index_bits"]) - 1
        address, previous = 0, -1
        for entry, (key, mask, start, row_length, atoms) in enumerate(table.tolist()):
            sender = by_key.get(key)
            if sender is None or key <= previous or (mask, atoms, start) != (sender.mask, sender.atoms, address):
                self.fail(MACHINE_ARRAYS, f"{name!r} row {entry} is {[key, mask, start, row_length, atoms]}; give a "
                                          "vertex's key, mask and atoms, keys in rising order, and the address where "
                                          "the previous block of rows ends")
            rows = sender.atoms * max(1, len(sender.stages))
            size = rows * (ROW_HEADER_WORDS + row_length)
            if address + size > len(words):
                self.fail(MACHINE_ARRAYS, f"{name!r} row {entry}: {rows} rows of {row_length} synapses from word "
                                          f"{address} run past the {len(words)} words of the synaptic matrix")
            block = words[address:address + size].reshape(rows, ROW_HEADER_WORDS + row_length)
            rows_of = f"a row of 'v{receiver.id}.synaptic_matrix' from vertex {sender.id}"
            if (block[:, 1] > row_length).any():
                self.fail(MACHINE_ARRAYS, f"{rows_of} counts {int(block[:, 1].max())} synapses, more than its "
                                          f"length, {row_length}")
            targets = block[:, ROW_HEADER_WORDS:][np.arange(row_length)[None, :] < block[:, 1, None]] & index_mask
            if (targets >= receiver.atoms).any():
                self.fail(MACHINE_ARRAYS, f"{rows_of} holds a synapse onto neuron {int(targets.max())}, but the core "
                                          f"has {receiver.atoms}")
            address, previous = address + size, key
        if address != len(words):
            self.fail(MACHINE_ARRAYS, f"v{receiver.id}.synaptic_matrix has {len(words)} words, but {name!r} "
                                      f"describes {address}")

    def _routing_table(self, chip: tuple[int, int], entries: int, arrays: dict) -> np.ndarray:
        """A chip's routing table: the number of entries ``MACHINE_JSON`` gives, and routes that name
        only links and the chip's cores."""
        name = f"chip{chip[0]}_{chip[1]}.routing_table"
        table = self._array(arrays, name, 3)
        cores = self.expected["cores_per_chip"]
        if len(table) != entries:
            self.fail(MACHINE_ARRAYS, f"{name!r} has {len(table)} entries, but {MACHINE_JSON} gives {entries}")
        if len(table) and int(table[:, 2].max()) >> (routing.FIRST_CORE_BIT + cores):
            self.fail(MACHINE_ARRAYS, f"{name!r} has a route to a core beyond the chip's {cores}")
        return table


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
        self.index_bits, self.delay_bits, self.key_shift = key_layout(target)
        self.vertices: list[Vertex] = []
        self.used_cores = {piece.core for piece in placement.all_pieces()}

    # -- vertices

    def _add(self, kind: str, node: str, ranges: list[tuple[int, int]], core: int, source: int | None = None) -> Vertex:
        vertex_id = len(self.vertices)
        if vertex_id >= 1 << (32 - self.key_shift):
            raise SnncError(f"the network needs more than {1 << (32 - self.key_shift)} cores, which the 32-bit "
                            "routing keys cannot name")
        chip = self.layout.position(core)
        vertex = Vertex(vertex_id, kind, node, ranges, chip, self.layout.locate(core).core_in_tile,
                        vertex_id << self.key_shift, key_mask(kind, self.index_bits, self.key_shift), source)
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
            neurons[vertex.id] = core_neurons(graph[vertex.node].annotations["spinnaker"], vertex)
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
        return MachineData(**_determined(graph, target), vertices=self.vertices, neurons=neurons,
                           synaptic_matrices=matrices, population_tables=tables, routing_tables=routing,
                           routing_entries_generated=generated)

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
