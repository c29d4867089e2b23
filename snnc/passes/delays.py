"""Delays: fold Delay nodes into the synapses after them, and split delays a target cannot hold.

``fold-delays`` turns ``Delay(d) -> Affine`` into the Affine alone with per-synapse delays
``D_ij + d_j``: hardware holds delays in synapses, not as nodes. Where the Delay closed a recurrent
edge, the step that edge carried (docs/semantics.md, section 2) is folded in too, so the network
computes exactly what it did.

``split-delays`` handles synapses whose delay exceeds the longest the target holds, M (its
``max_delay``; on SpiNNaker with its delay-extension stages, ``Target.longest_delay``): the source's
spikes are relayed through a chain of relay populations (one IF neuron per relayed source neuron,
firing exactly when its input spiked), each hop holding at most M steps, and the long synapses read
the last relay with the rest of the delay. In the IR's semantics a relay adds no latency, so the
spikes are unchanged; on Loihi each relay hop adds the one step every synapse group takes there.
"""

from __future__ import annotations

import numpy as np

from snnc.errors import IRError
from snnc.ir import IF, NEURONS, Affine, Delay, Graph, Input
from snnc.passes import Pass
from snnc.targets import Target


class FoldDelays(Pass):
    """Fold each Delay node into the synapses after it, as per-synapse delays."""

    name = "fold-delays"

    def __init__(self):
        self.folded: list[dict] = []

    def report(self) -> dict:
        return {"folded": self.folded}

    def run(self, graph: Graph) -> Graph:
        graph = graph.copy()
        self.folded = []
        for name in list(graph.schedule):
            node = graph.nodes.get(name)
            if node is None or not isinstance(node.op, Delay) or len(graph.successors(name)) != 1:
                continue
            (target,) = graph.successors(name)
            if not isinstance(graph[target].op, Affine) or graph.predecessors(target) != [name]:
                continue
            (source,) = graph.predecessors(name)
            affine = graph[target].op
            extra = int((name, target) in graph.recurrent_edges)
            per_channel = np.broadcast_to(node.op.delay, node.output_shape).reshape(-1) + extra
            existing = np.zeros(affine.weight.shape, np.int64) if affine.delay is None else affine.delay
            affine.delay = (existing + per_channel[None, :]).astype(np.int64)
            graph.remove(name)
            graph.connect(source, target)
            self.folded.append({"delay": name, "into": target, "max_delay": int(affine.delay.max(initial=0))})
        return graph


class SplitDelays(Pass):
    """Relay synapses whose delay exceeds the target's longest through chains of relay populations."""

    name = "split-delays"

    def __init__(self, target: Target):
        self.limit = target.longest_delay
        self.target = target
        self.relays: list[dict] = []

    def report(self) -> dict:
        return {"max_delay": self.limit, "relays": self.relays}

    def run(self, graph: Graph) -> Graph:
        graph = graph.copy()
        self.relays = []
        if not self.limit:
            return graph
        for name in list(graph.schedule):
            op = graph[name].op
            if isinstance(op, Affine) and op.delay is not None and op.delay.max(initial=0) > self.limit:
                self._split(graph, name)
        return graph.sort()

    def _split(self, graph: Graph, name: str) -> None:
        op = graph[name].op
        (source,) = graph.predecessors(name)
        if any(name in component and len(component) > 1 for component in graph.strongly_connected_components()):
            raise IRError(name, f"has delays up to {int(op.delay.max())} steps, beyond {self.target.name}'s "
                                f"{self.limit}, inside a recurrent loop, where relays would add a step; shorten them")
        source_op = graph[source].op
        spiking = isinstance(source_op, Input) or (isinstance(source_op, NEURONS) and source_op.dynamics().spiking)
        if not spiking:
            raise IRError(name, f"has delays up to {int(op.delay.max())} steps, beyond {self.target.name}'s "
                                f"{self.limit}, and its source {source!r} does not spike, so relays cannot carry it")
        size = op.weight.shape[1]
        hop = self.limit
        previous, remaining = source, op.delay.copy()
        hops = 0
        while remaining.max(initial=0) > self.limit:
            # Relay the source neurons that still have synapses too long, by a full hop.
            relayed = np.flatnonzero((remaining > self.limit).any(axis=0))
            hops += 1
            relay, link = f"{name}.relay{hops}", f"{name}.relay{hops}.synapses"
            selection = np.zeros((size, size))
            selection[relayed, relayed] = 1.0
            graph.add(link, Affine(weight=selection, delay=np.where(selection != 0, hop, 0).astype(np.int64),
                                   out_shape=None))
            graph.add(relay, IF(v_gain=np.array(1.0), bias=np.array(0.0), v_threshold=np.array(0.5),
                                v_reset=np.array(0.0)))
            graph.connect(previous, link)
            graph.connect(link, relay)
            # Synapses that fit stay where they are; the long ones now read the relay.
            long = remaining > self.limit
            self._keep_short(graph, name, previous, np.where(long, 0.0, op.weight), np.where(long, 0, remaining), hops)
            remaining = np.where(long, remaining - hop, 0)
            op.weight = np.where(long, op.weight, 0.0)
            previous = relay
        graph.disconnect(source, name)
        graph.connect(previous, name)
        op.delay = remaining.astype(np.int64)
        self.relays.append({"synapses": name, "source": source, "hops": hops, "hop_delay": hop})

    def _keep_short(self, graph: Graph, name: str, reader: str, weight: np.ndarray, delay: np.ndarray, hops: int):
        """The synapses of ``name`` that already fit, as their own group reading ``reader``."""
        if not weight.any():
            return
        op = graph[name].op
        short = f"{name}.short{hops}"
        graph.add(short, Affine(weight=weight, bias=op.bias, delay=delay.astype(np.int64) if delay.any() else None,
                                out_shape=op.out_shape))
        op.bias = None
        graph.connect(reader, short)
        for target in graph.successors(name):
            graph.connect(short, target)
