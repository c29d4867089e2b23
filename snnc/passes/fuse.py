"""Fuse every linear path between neuron populations into one synapse matrix.

Hardware has neurons and synapses, nothing else: a convolution, a pooling window, a flatten, a
scale, an Add and a per-channel Delay between two populations are all one linear, time-invariant map
from the source's spikes to the target's input. This pass measures that map by its impulse
response (one unit impulse per source neuron, run through the linear nodes by the simulator), so
it is exact for every combination of linear operations without a rule per combination, and it
writes it as ``Affine`` nodes with per-synapse delays.

The result is in *population form*: Input, neuron and Output nodes joined by Affine nodes whose
input is a spike source (an Input or a neuron) and whose output is a neuron or an Output; an
Output may also read a source directly.
"""

from __future__ import annotations

import numpy as np

from snnc.errors import IRError
from snnc.ir import NEURONS, Add, Affine, AvgPool2d, Conv1d, Conv2d, Delay, Flatten, Graph, Input, Output, Scale, SumPool2d
from snnc.passes import Pass

#: Operations that are linear and time-invariant, so they fold into synapses.
LINEAR = (Affine, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Scale, Add, Delay)


def is_source(node) -> bool:
    return isinstance(node.op, (Input, *NEURONS))


def is_population_form(graph: Graph) -> bool:
    for node in graph:
        if isinstance(node.op, Affine):
            if not all(is_source(graph[p]) for p in graph.predecessors(node.name)) or len(graph.predecessors(node.name)) != 1:
                return False
            if not all(isinstance(graph[s].op, (*NEURONS, Output)) for s in graph.successors(node.name)):
                return False
        elif not isinstance(node.op, (Input, Output, *NEURONS)):
            return False
    return all(isinstance(graph[p].op, Affine) for n in graph if isinstance(n.op, NEURONS) for p in graph.predecessors(n.name))


def _without_bias(op):
    """A copy of a linear op with its bias removed: impulse responses measure weights alone."""
    fields = op.fields()
    if "bias" in fields:
        fields["bias"] = None
    return type(op)(**fields)


class FuseSynapses(Pass):
    """Fuse every linear path between neuron populations into one synapse matrix (population form)."""

    name = "fuse-synapses"

    def __init__(self):
        self.synapses: dict[str, dict] = {}

    def run(self, graph: Graph) -> Graph:
        self.synapses = {}
        for node in graph:
            if not (is_source(node) or isinstance(node.op, (Output, *LINEAR))):
                raise IRError(node.name, f"{node.op.kind} is not linear, so it cannot become synapses between "
                                         "neuron populations; hardware targets cannot compute it")
        fused = Graph(dt=graph.dt, name=graph.name, metadata=graph.metadata)
        for name in graph.schedule:
            if not isinstance(graph[name].op, LINEAR):
                fused.add(name, graph[name].op, graph[name].annotations)
        # An Affine that alone joins one source to one sink is kept as it is, bias and all.
        kept = {name for name in graph.nodes if self._is_plain_synapse(graph, name)}
        biases = self._biases(graph, kept)
        for source in (n for n in graph.schedule if is_source(graph[n])):
            for name in graph.successors(source):
                if name in kept:
                    (sink,) = graph.successors(name)
                    fused.add(name, graph[name].op, graph[name].annotations)
                    fused.connect(source, name)
                    fused.connect(name, sink)
                    self.synapses[name] = {"source": source, "target": sink, "from": [name]}
            for sink, (taps, region) in self._impulse_responses(graph, source, kept).items():
                self._connect(graph, fused, source, sink, taps, biases.pop(sink, None), region)
        return fused.sort()

    def report(self) -> dict:
        return {"synapses": self.synapses}

    @staticmethod
    def _is_plain_synapse(graph: Graph, name: str) -> bool:
        predecessors, successors = graph.predecessors(name), graph.successors(name)
        return (isinstance(graph[name].op, Affine) and len(predecessors) == 1 and len(successors) == 1
                and is_source(graph[predecessors[0]]) and not isinstance(graph[successors[0]].op, LINEAR))

    # -- measuring the linear maps

    def _region(self, graph: Graph, source: str, kept: set[str]) -> tuple[list[str], list[str], bool]:
        """The linear nodes reachable from ``source`` through linear nodes (not the kept Affines), the
        sinks they reach (a sink the source feeds directly among them)."""
        region, sinks, frontier = [], [], [n for n in graph.successors(source) if n not in kept]
        while frontier:
            name = frontier.pop()
            if isinstance(graph[name].op, LINEAR):
                if name not in region:
                    region.append(name)
                    frontier += graph.successors(name)
            elif name not in sinks:
                sinks.append(name)
        return region, sinks

    def _linear_graph(self, graph: Graph, sources: list[str], region: list[str], sinks: list[str],
                      keep_bias: bool) -> tuple[Graph, int]:
        """The region as a graph of its own: an Input per source, an Output per sink.

        A Delay that closes a recurrent edge in the full graph carries one more step there
        (docs/semantics.md, section 2), so it does here. Returns the graph and the longest delay.
        """
        sub = Graph(dt=graph.dt)
        longest = 0
        for name in sources:
            sub.add(name, Input(shape=graph[name].output_shape))
        for name in graph.schedule:
            if name not in region:
                continue
            op = graph[name].op if keep_bias else _without_bias(graph[name].op)
            if isinstance(op, Delay):
                extra = int(any((name, s) in graph.recurrent_edges for s in graph.successors(name)))
                op = Delay(delay=op.delay + extra)
                longest += int(op.delay.max(initial=0))
            elif isinstance(op, Affine) and op.delay is not None:
                longest += int(op.delay.max(initial=0))
            sub.add(name, op)
        for name in sinks:
            sub.add(f"{name}:input", Output())
        for s, t in graph.edges:
            if (s in sources or s in region) and (t in region or t in sinks):
                sub.connect(s, f"{t}:input" if t in sinks else t)
        return sub, longest

    def _impulse_responses(self, graph: Graph, source: str, kept: set[str]) -> dict[str, tuple[list[np.ndarray], list[str]]]:
        """For each sink the source reaches other than through a kept Affine: the matrices M_d
        (sink x source) of each delay d, and the linear nodes they came from."""
        from snnc.runtime.simulator import simulate  # the simulator interprets the IR; passes use it as a tool

        region, sinks = self._region(graph, source, kept)
        if not sinks:
            return {}
        sub, longest = self._linear_graph(graph, [source], region, sinks, keep_bias=False)
        size = int(np.prod(graph[source].output_shape))
        impulses = np.zeros((size, longest + 1, size))
        impulses[np.arange(size), 0, np.arange(size)] = 1.0
        result = simulate(sub, impulses.reshape(size, longest + 1, *graph[source].output_shape))
        return {sink: ([result[f"{sink}:input"][:, d].reshape(size, -1).T for d in range(longest + 1)], region)
                for sink in sinks}

    def _biases(self, graph: Graph, kept: set[str]) -> dict[str, np.ndarray]:
        """The constant input each sink receives from the biases of the linear nodes before it
        (the kept Affines keep their own)."""
        from snnc.runtime.simulator import simulate

        region = [n.name for n in graph if isinstance(n.op, LINEAR) and n.name not in kept]
        if not any(getattr(graph[n].op, "bias", None) is not None for n in region):
            return {}
        sources = [n.name for n in graph if is_source(n)]
        sinks = [n.name for n in graph if not isinstance(n.op, (Input, *LINEAR))
                 and any(p in region for p in graph.predecessors(n.name))]
        sub, longest = self._linear_graph(graph, sources, region, sinks, keep_bias=True)
        zeros = {name: np.zeros((1, longest + 1, *graph[name].output_shape)) for name in sources}
        result = simulate(sub, zeros)
        biases = {}
        for sink in sinks:
            response = result[f"{sink}:input"][0].reshape(longest + 1, -1)
            if not np.all(response == response[-1]):
                raise IRError(sink, "a bias reaches it through a Delay, so its input is not constant from step 0; "
                                    "move the bias after the Delay")
            if response[-1].any():
                biases[sink] = response[-1]
        return biases

    # -- writing the synapses

    def _connect(self, graph: Graph, fused: Graph, source: str, sink: str, taps: list[np.ndarray],
                 bias: np.ndarray | None, region: list[str]) -> None:
        stack = np.stack(taps)  # (delays, sink, source)
        present = stack != 0
        if isinstance(graph[sink].op, Output) and sink in graph.successors(source) and len(graph.predecessors(sink)) == 1:
            fused.connect(source, sink)  # an Output that reads a population directly keeps doing so
            return
        if not present.any() and bias is None:
            return
        # A synapse holds one delay: a pair (i, j) reached with several delays needs several layers.
        rank = np.cumsum(present, axis=0) * present
        layers = max(int(rank.max()), 1)
        origin = [n for n in region if sink in self._region(graph, n, set())[1] or sink in graph.successors(n)]
        for layer in range(1, layers + 1):
            mask = rank == layer
            weight = (stack * mask).sum(axis=0)
            delay = (np.arange(stack.shape[0])[:, None, None] * mask).sum(axis=0)
            name = f"{source}->{sink}" + (f"#{layer}" if layers > 1 else "")
            fused.add(name, Affine(weight=weight, bias=bias if layer == 1 else None,
                                   delay=delay.astype(np.int64) if delay.any() else None,
                                   out_shape=graph[sink].input_shape), {"fused_from": origin})
            fused.connect(source, name)
            fused.connect(name, sink)
            self.synapses[name] = {"source": source, "target": sink, "from": origin}
