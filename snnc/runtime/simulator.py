"""The reference simulator, float mode: the interpreter of the IR's semantics (docs/semantics.md).

Nodes outside cycles run a whole sequence at a time, so numpy sees (batch x T) rows at once; the
nodes of a recurrent cycle run step by step, in schedule order, reading recurrent edges from the
previous step. Both give the same result: the split only decides how much numpy work each Python
call carries.

A graph quantized for a fixed-point arithmetic runs that chip's integers, read from its annotations,
which a ``.snnir`` file or an artifact may hold in any form: they are checked once, when the
simulator is built, against the arithmetic's contract (``snnc.ir.contracts``) with the number
formats of the graph's target. The kernels then read them unchecked, step after step.
"""

from __future__ import annotations

import importlib

from collections.abc import Iterable, Mapping

import numba
import numpy as np

from snnc.errors import IRError, SnncError, shown
from snnc.ir import Graph, verify
from snnc.ir.contracts import check_fixed_point
from snnc.ir.ops import NEURONS, Affine, Output
from snnc.progress import Progress
from snnc.runtime.activity import Activity, PopulationActivity
from snnc.runtime.kernels import Neuron, make_kernel
from snnc.targets import Target, available_targets, load_target


#: Each fixed-point arithmetic: the module whose KERNELS are its (synapse, neuron) kernels, and the
#: dtype that holds its integers exactly (Lava's in float64, where its sums and 24-bit states are
#: exact; sPyNNaker's raw s16.15 words in int64, for its bit operations). Spikes travel between
#: kernels as int8.
FIXED_POINT = {"loihi": ("snnc.runtime.loihi", np.float64), "spinnaker": ("snnc.runtime.spinnaker", np.int64)}


@numba.njit(cache=True)
def _only_spikes(values) -> bool:
    """Whether every value of the flat ``values`` is 0 or 1: one pass, no temporary arrays, and no
    early exit, so that it vectorizes."""
    others = 0
    for i in range(values.size):
        others += (values[i] != 0) & (values[i] != 1)
    return others == 0


def arithmetic_of(graph: Graph) -> str:
    """The arithmetic the graph's metadata names (float if none), if the simulator runs it."""
    arithmetic = graph.metadata.get("arithmetic", "float")
    if not (isinstance(arithmetic, str) and (arithmetic == "float" or arithmetic in FIXED_POINT)):
        raise SnncError(f"the graph is compiled for {shown(arithmetic)} arithmetic, which the simulator does not "
                        f"run; it runs float, {', '.join(FIXED_POINT)}")
    return arithmetic


def graph_target(graph: Graph, default: str | None = None) -> Target:
    """The bundled target the graph's metadata names (``default`` if it names none). A name that is
    no bundled target is refused rather than read as a path: a model file may name any file."""
    name = graph.metadata.get("target", default)
    if not (isinstance(name, str) and name in available_targets()):
        raise SnncError(f"the graph is compiled for target {shown(name)}, which is not a bundled one "
                        f"({', '.join(available_targets())}); run the artifact compiled for it, which holds its "
                        "target.toml")
    return load_target(name)


def fixed_point_target(graph: Graph, arithmetic: str, target: Target | None) -> Target:
    """The target whose formats bound a graph quantized for ``arithmetic``: ``target`` (the
    artifact's own), else the bundled target the graph's metadata names (``graph_target``); one of
    another arithmetic is refused."""
    target = target or graph_target(graph)
    if target.arithmetic != arithmetic:
        raise SnncError(f"the graph is quantized for {arithmetic} arithmetic, but its target {target.name} has "
                        f"{target.arithmetic} arithmetic; compile it for that target again")
    return target


class Simulator:
    """Runs a graph for T steps on a batch of inputs."""

    def __init__(self, graph: Graph, dtype=np.float64, stepwise: bool = False, target: Target | None = None):
        """``stepwise`` runs every node step by step, as cycles run; tests use it to check that
        both ways of running give the same result. ``target`` is the target a fixed-point graph
        was compiled for (an artifact's ``target.toml``); without it, the bundled one the graph
        names. The graph's annotations are checked against its formats here, once."""
        self.graph = verify(graph)
        self.stepwise = stepwise
        self.arithmetic = arithmetic_of(graph)
        self.target = target
        if self.arithmetic == "float":
            self.dtype = np.dtype(dtype)
            self.kernels = {node.name: make_kernel(node, self.dtype) for node in graph}
        else:
            self.target = fixed_point_target(graph, self.arithmetic, target)
            check_fixed_point(graph, self.target.formats)
            module, state_dtype = FIXED_POINT[self.arithmetic]
            self.dtype = np.dtype(state_dtype)
            synapse, neuron = importlib.import_module(module).KERNELS
            self.kernels = {node.name: self._fixed_point_kernel(node, synapse, neuron) for node in graph}
        self.components = graph.strongly_connected_components()
        self.activity: Activity | None = None

    def _fixed_point_kernel(self, node, synapse, neuron):
        """The kernel of a node of a checked fixed-point graph: a synapse group, a spiking
        population, or an input or output, which passes spikes on."""
        graph = self.graph
        if isinstance(node.op, Affine):
            recurrent = any((p, node.name) in graph.recurrent_edges for p in graph.predecessors(node.name))
            return synapse(node, self.dtype, recurrent_input=recurrent)
        if isinstance(node.op, NEURONS):
            return neuron(node, self.dtype)
        return make_kernel(node, self.dtype)

    def check_inputs(self, inputs, steps: int | None = None) -> dict[str, np.ndarray]:
        """Inputs by node name, checked against the graph, cast, and padded or cut to ``steps``."""
        graph = self.graph
        if not isinstance(inputs, Mapping):
            if len(graph.inputs) != 1:
                raise SnncError(f"the graph has {len(graph.inputs)} inputs {graph.inputs}: give an .npz keyed by input node name")
            inputs = {graph.inputs[0]: inputs}
        missing, unknown = set(graph.inputs) - set(inputs), set(inputs) - set(graph.inputs)
        if missing or unknown:
            raise SnncError(f"inputs must be exactly the input nodes {graph.inputs}; "
                            + (f"missing {sorted(missing)}" if missing else f"unknown {sorted(unknown)}"))
        checked, lengths = {}, set()
        for name, array in inputs.items():
            array = np.asarray(array)
            shape = graph[name].output_shape
            if array.shape[2:] != shape or array.ndim != len(shape) + 2:
                raise SnncError(f"input {name!r} must have shape (batch, T, {', '.join(map(str, shape))}), got {array.shape}")
            lengths.add(array.shape[:2])
            if self.arithmetic in FIXED_POINT and (
                    array.dtype.kind not in "biuf" or not _only_spikes(np.ascontiguousarray(array).reshape(-1))):
                raise SnncError(f"input {name!r} holds values other than 0 and 1; {self.arithmetic} inputs are spikes")
            checked[name] = array.astype(self.dtype, copy=False)
        if len(lengths) > 1:
            raise SnncError(f"all inputs must share batch and T, got {sorted(lengths)}")
        if steps is not None:
            if steps < 1:
                raise SnncError(f"steps must be >= 1, got {steps}")
            for name, array in checked.items():
                have = array.shape[1]
                # Steps past the given input receive no input; fewer steps cut it.
                checked[name] = array[:, :steps] if have >= steps else np.concatenate(
                    [array, np.zeros((array.shape[0], steps - have, *array.shape[2:]), self.dtype)], axis=1)
        return checked

    def run(self, inputs, steps: int | None = None, probes: Iterable[str] = (), count: bool = False,
            progress: Progress | None = None) -> dict[str, np.ndarray]:
        """Return each Output node's sequence by name, and ``NODE:spikes``/``NODE:v``/``NODE:i``
        (neurons) or ``NODE:output`` (other nodes) for each probed node, shaped (batch, T, *shape).

        With ``count``, ``self.activity`` afterwards holds the spike and update counts of every
        Input and neuron node. ``progress`` hears of the steps done after each block of steps."""
        graph = self.graph
        probes = list(dict.fromkeys(probes))
        for name in probes:
            if name not in graph.nodes:
                raise SnncError(f"--probe {name!r}: no such node; nodes are {list(graph.nodes)}")
        inputs = self.check_inputs(inputs, steps)
        batch, length = next(iter(inputs.values())).shape[:2]
        for name, kernel in self.kernels.items():
            if isinstance(kernel, Neuron):
                kernel.record(name in probes, count)
            kernel.reset(batch)

        keep = [*graph.outputs, *(p for p in probes if p not in graph.outputs)]
        kept = {name: np.empty((batch, length, *graph[name].output_shape), np.int8 if self.sends_spikes(name) else self.dtype)
                for name in keep}
        block = self.block_length(batch, length)
        self._block = block
        self._buffers: dict[str, np.ndarray] = {}
        self._outside: dict[str, np.ndarray] = {}
        self._last_row: dict[str, int] = {}
        input_spikes: dict[str, list[np.ndarray]] = {name: [] for name in inputs}
        for start in range(0, length, block):
            # Fixed-point inputs, checked to be spikes, travel as int8 from here on: converted a
            # block at a time, the copy stays in cache.
            block_inputs = {name: array[:, start:start + block].astype(np.int8) if self.arithmetic in FIXED_POINT
                            else array[:, start:start + block] for name, array in inputs.items()}
            if count:
                for name, array in block_inputs.items():
                    input_spikes[name].append(np.count_nonzero(array, axis=0).astype(np.int32))
            values = self._run_block(block_inputs, batch, set(keep))
            for name in keep:
                kept[name][:, start:start + block] = values[name]
            if progress is not None:
                progress(min(start + block, length), length, "steps")
        values = kept

        if count:
            self.activity = Activity(batch, length, {
                **{name: PopulationActivity(spikes=np.concatenate(blocks)) for name, blocks in input_spikes.items()},
                **{name: k.activity() for name, k in self.kernels.items() if isinstance(k, Neuron)}})
        results = {name: values[name] for name in graph.outputs}
        for name in probes:
            node = graph[name]
            if isinstance(node.op, NEURONS):
                traces = self.kernels[name].traces()
                if self.kernels[name].spiking:
                    results[f"{name}:spikes"] = values[name]
                results.update({f"{name}:{state}": trace for state, trace in traces.items()})
            else:
                results[f"{name}:output"] = values[name]
        return results

    def sends_spikes(self, name: str) -> bool:
        """True for a spiking neuron and for a node that only passes on spikes (an Output of a
        spiking population): results hold those as int8, an eighth of float64's memory and disk."""
        op = self.graph[name].op
        if isinstance(op, NEURONS):
            return self.kernels[name].spiking
        return isinstance(op, Output) and all(self.sends_spikes(p) for p in self.graph.predecessors(name))

    #: The bytes of node outputs one block of steps may hold: enough rows for fast matrix products,
    #: few enough to stay clear of page faults and memory bandwidth (measured in tools/bench).
    BLOCK_BYTES = 32 << 20

    def block_length(self, batch: int, length: int) -> int:
        """How many steps run at a time: the graph runs in blocks of steps, each node's kernel
        carrying its state from block to block, so memory stays bounded however long the run."""
        widest = max(int(np.prod(node.output_shape)) for node in self.graph)
        return int(np.clip(self.BLOCK_BYTES // (batch * widest * self.dtype.itemsize), 1, length))

    def _run_block(self, inputs: dict[str, np.ndarray], batch: int, keep: set[str]) -> dict[str, np.ndarray]:
        """Run every component over one block of steps; returns the outputs of the nodes in ``keep``
        (and of any others still held)."""
        graph = self.graph
        steps = next(iter(inputs.values())).shape[1]
        remaining_reads = {name: len(graph.successors(name)) for name in graph.nodes}
        values: dict[str, np.ndarray] = {}
        for component in self.components:
            name = component[0]
            if name in inputs:
                values[name] = inputs[name]
            else:
                self._run_component(component, values, batch, steps)
            for member in component:
                for source in graph.predecessors(member):
                    remaining_reads[source] -= 1
                    if remaining_reads[source] == 0 and source not in keep:
                        del values[source]
        return values

    def _run_component(self, component: list[str], values: dict, batch: int, steps: int) -> None:
        """One component over one block: a cycle (or any node, when ``stepwise``) step by step, else
        the whole block at once. Finite parameters can still make a state grow without bound (a
        forward-Euler decay below -1): that is said once, naming the node, instead of numpy's
        warnings followed by NaN outputs."""
        name = component[0]
        try:
            with np.errstate(over="raise", invalid="raise"):
                if self.stepwise or len(component) > 1 or (name, name) in self.graph.edges:
                    self._run_steps(component, values, batch, steps)
                else:
                    values[name] = self.kernels[name].sequence(self._sum_inputs(name, values))
        except FloatingPointError:
            raise IRError(name, "its state overflows the float simulation: the network diverges (a decay below -1, "
                                "as a time step over twice a time constant gives, or weights too large for the "
                                "float range); give a shorter time step") from None

    def _sum_inputs(self, name: str, values: dict[str, np.ndarray]) -> np.ndarray:
        sources = self.graph.predecessors(name)
        total = values[sources[0]]
        for source in sources[1:]:
            total = total + values[source]
        return total

    def _run_steps(self, component: list[str], values: dict, batch: int, steps: int) -> None:
        """Run a cycle step by step over one block.

        This loop is the simulator's hottest code. Buffers are time-major, so that every step reads
        and writes contiguous memory, and they are allocated once per run and reused by every
        block (fresh pages would fault on first touch). A member's row 0 holds its last step of the
        previous block (zeros at first), which is what a recurrent edge reads at the block's first
        step; its row t + 1 holds step t.
        """
        graph = self.graph
        buffers = {}
        for name in component:
            if name not in self._buffers:
                dtype = np.int8 if self.arithmetic in FIXED_POINT and self.sends_spikes(name) else self.dtype
                self._buffers[name] = np.zeros((self._block + 1, batch, *graph[name].output_shape), dtype)
            buffers[name] = self._buffers[name][: steps + 1]
            buffers[name][0] = self._buffers[name][self._last_row.get(name, 0)]
        recurrent = graph.recurrent_edges
        plans = []
        for name in component:
            inside, outside = [], []
            for source in graph.predecessors(name):
                if source in buffers:
                    inside.append((buffers[source], 0 if (source, name) in recurrent else 1))
                else:  # an earlier component, read at the same step
                    outside.append(np.moveaxis(values[source], 1, 0))
            # The sum of the inputs from earlier components, for the whole block at once and
            # time-major: a step reads one contiguous row instead of gathering strided ones. A
            # single input keeps its dtype (spikes stay int8).
            if outside:
                if name not in self._outside:
                    dtype = outside[0].dtype if len(outside) == 1 else self.dtype
                    self._outside[name] = np.empty((self._block, batch, *graph[name].input_shape), dtype)
                np.copyto(self._outside[name][:steps], outside[0])
                for array in outside[1:]:
                    self._outside[name][:steps] += array
                inside.insert(0, (self._outside[name], 0))
            total = np.empty((batch, *graph[name].input_shape), self.dtype) if len(inside) > 1 else None
            plans.append((buffers[name], self.kernels[name], inside, total))
        for t in range(steps):
            for output, kernel, sources, total in plans:
                (first, offset), rest = sources[0], sources[1:]
                x = first[t + offset]
                if rest:
                    (second, second_offset), rest = rest[0], rest[1:]
                    np.add(x, second[t + second_offset], out=total)
                    for buffer, offset in rest:
                        total += buffer[t + offset]
                    x = total
                output[t + 1] = kernel.step(x)
        for name in component:
            values[name] = np.moveaxis(buffers[name][1:], 0, 1)
            self._last_row[name] = steps


def simulate(graph: Graph, inputs, steps: int | None = None, probes: Iterable[str] = (), dtype=np.float64,
             stepwise: bool = False, target: Target | None = None):
    """Run ``graph`` on ``inputs`` (an array for a single input node, else a dict by name), a
    fixed-point graph on ``target`` (default: the bundled target it names)."""
    return Simulator(graph, dtype, stepwise, target).run(inputs, steps, probes)
