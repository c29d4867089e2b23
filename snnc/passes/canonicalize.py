"""Canonicalisation: the same computation in fewer, simpler nodes.

Rewrites, each exact up to float rounding, applied until none applies:

- ``AvgPool2d`` becomes ``SumPool2d`` followed by ``Scale(1 / (K_h K_w))``;
- a uniform ``Scale`` moves past Flatten, SumPool2d and (when positive) MaxPool2d, and then
  folds into the node after it when that is a neuron (into its input gain) or an
  Affine (into its columns), or into the Affine before it (into its rows and bias); batch
  normalisation reaches the IR as such a Scale (plus a bias) and folds the same way;
- identities disappear: a ``Scale`` of ones, a ``Delay`` of zeros, a ``Flatten`` that changes no
  shape, an ``Add`` with one input;
- two Affines in a row with nothing else attached merge into one (``W2 W1``, ``W2 b1 + b2``), and
  two Delays in a row into one.

A rewrite only happens where the node's output feeds exactly one place, so no other reader sees
a changed value.
"""

from __future__ import annotations

import numpy as np

from snnc.ir import NEURONS, Add, Affine, AvgPool2d, CubaLI, CubaLIF, Delay, Flatten, Graph, MaxPool2d, Scale, SumPool2d, verify
from snnc.passes import Pass


class Canonicalize(Pass):
    """The same computation in fewer, simpler nodes: rewrites exact up to float rounding, until none applies."""

    name = "canonicalize"

    def __init__(self):
        self.rewrites: list[str] = []

    def report(self) -> dict:
        return {"rewrites": self.rewrites}

    def run(self, graph: Graph) -> Graph:
        graph = graph.copy()
        self.rewrites = []
        rules = (self._avgpool, self._identity, self._scale_forward, self._scale_backward, self._scale_through,
                 self._merge_affines, self._merge_delays)
        changed = True
        while changed:
            changed = False
            for name in list(graph.schedule):
                if name in graph.nodes and any(rule(graph, name) for rule in rules):
                    verify(graph)  # the next rules read fresh shapes and recurrent edges
                    changed = True
        return graph.sort()

    # -- helpers

    @staticmethod
    def _only(graph: Graph, name: str, direction) -> str | None:
        """The single neighbour in ``direction`` (successors or predecessors), if there is exactly one."""
        neighbours = direction(name)
        return neighbours[0] if len(neighbours) == 1 else None

    def _bypass(self, graph: Graph, name: str, note: str) -> bool:
        """Remove a node that passes its input on unchanged, joining its input to its outputs."""
        (source,) = graph.predecessors(name)
        targets = graph.successors(name)
        if any((source, t) in graph.edges for t in targets):
            return False  # the target would receive the source twice; keep the node
        if any((name, t) in graph.recurrent_edges for t in targets):
            return False  # its step of recurrent latency would go with it (docs/semantics.md, section 2)
        graph.remove(name)
        for target in targets:
            graph.connect(source, target)
        self.rewrites.append(note)
        return True

    # -- the rules; each returns True if it changed the graph

    def _avgpool(self, graph: Graph, name: str) -> bool:
        op = graph[name].op
        if not isinstance(op, AvgPool2d):
            return False
        targets = graph.successors(name)
        scale_name = f"{name}.scale"
        if scale_name in graph.nodes:
            return False
        graph[name].op = SumPool2d(kernel_size=op.kernel_size, stride=op.stride, padding=op.padding)
        graph.add(scale_name, Scale(scale=np.array(1.0 / np.prod(op.kernel_size))))
        for target in targets:
            graph.disconnect(name, target)
            graph.connect(scale_name, target)
        graph.connect(name, scale_name)
        self.rewrites.append(f"{name}: AvgPool2d -> SumPool2d + Scale")
        return True

    def _identity(self, graph: Graph, name: str) -> bool:
        node = graph[name]
        op = node.op
        single_input = len(graph.predecessors(name)) == 1
        if not single_input:
            return False
        if isinstance(op, Scale) and np.all(op.scale == 1):
            return self._bypass(graph, name, f"{name}: Scale of ones removed")
        if isinstance(op, Delay) and not np.any(op.delay):
            return self._bypass(graph, name, f"{name}: Delay of zero steps removed")
        if isinstance(op, Flatten) and node.input_shape == node.output_shape:
            return self._bypass(graph, name, f"{name}: Flatten that changes no shape removed")
        if isinstance(op, Add):
            return self._bypass(graph, name, f"{name}: Add of one input removed")
        return False

    def _scale_forward(self, graph: Graph, name: str) -> bool:
        """Scale -> neuron (into its input gain) or Scale -> Affine (into its columns)."""
        op = graph[name].op
        target = self._only(graph, name, graph.successors)
        if not isinstance(op, Scale) or target is None or len(graph.predecessors(name)) != 1:
            return False
        if len(graph.predecessors(target)) != 1 or target == name:
            return False
        scale = np.broadcast_to(op.scale, graph[name].output_shape)
        target_op = graph[target].op
        if isinstance(target_op, NEURONS):
            gain = "i_gain" if isinstance(target_op, (CubaLIF, CubaLI)) else "v_gain"
            setattr(target_op, gain, getattr(target_op, gain) * scale)
        elif isinstance(target_op, Affine) and target_op.delay is None:
            target_op.weight = target_op.weight * scale.reshape(1, -1)
        else:
            return False
        return self._bypass(graph, name, f"{name}: Scale folded into {target}")

    def _scale_backward(self, graph: Graph, name: str) -> bool:
        """Affine -> Scale: into the Affine's rows and bias."""
        op = graph[name].op
        source = self._only(graph, name, graph.predecessors)
        if not isinstance(op, Scale) or source is None or not isinstance(graph[source].op, Affine):
            return False
        if graph.successors(source) != [name]:
            return False
        affine = graph[source].op
        scale = np.broadcast_to(op.scale, graph[name].output_shape).reshape(-1)
        affine.weight = affine.weight * scale[:, None]
        if affine.bias is not None:
            affine.bias = affine.bias * scale
        return self._bypass(graph, name, f"{name}: Scale folded into {source}")

    def _scale_through(self, graph: Graph, name: str) -> bool:
        """A uniform Scale moves past Flatten and SumPool2d (linear), and past MaxPool2d when
        positive (max(s x) = s max(x)), towards a node it can fold into."""
        op = graph[name].op
        after = self._only(graph, name, graph.successors)
        source = self._only(graph, name, graph.predecessors)
        if not isinstance(op, Scale) or op.scale.size != 1 or after is None or source is None:
            return False
        movable = (Flatten, SumPool2d) + ((MaxPool2d,) if op.scale.item() > 0 else ())
        if not isinstance(graph[after].op, movable) or graph.predecessors(after) != [name]:
            return False
        targets = graph.successors(after)
        graph.disconnect(source, name)
        graph.disconnect(name, after)
        for target in targets:
            graph.disconnect(after, target)
            graph.connect(name, target)
        graph.connect(source, after)
        graph.connect(after, name)
        self.rewrites.append(f"{name}: Scale moved past {after}")
        return True

    def _merge_affines(self, graph: Graph, name: str) -> bool:
        """Affine -> Affine with nothing else attached: one matrix."""
        first = graph[name].op
        second_name = self._only(graph, name, graph.successors)
        if not isinstance(first, Affine) or second_name is None or second_name == name:
            return False
        second = graph[second_name].op
        if not isinstance(second, Affine) or graph.predecessors(second_name) != [name]:
            return False
        if first.delay is not None or second.delay is not None:
            return False
        bias = None
        if first.bias is not None or second.bias is not None:
            bias = (second.weight @ first.bias if first.bias is not None else 0) + (
                second.bias if second.bias is not None else 0)
        graph[name].op = Affine(weight=second.weight @ first.weight, bias=bias, out_shape=second.out_shape)
        for target in graph.successors(second_name):
            graph.connect(name, target)
        graph.remove(second_name)
        self.rewrites.append(f"{name}, {second_name}: two Affines merged")
        return True

    def _merge_delays(self, graph: Graph, name: str) -> bool:
        first = graph[name].op
        second_name = self._only(graph, name, graph.successors)
        if not isinstance(first, Delay) or second_name is None or not isinstance(graph[second_name].op, Delay):
            return False
        if graph.predecessors(second_name) != [name] or graph.recurrent_edges & {(name, second_name)}:
            return False
        graph[name].op = Delay(delay=first.delay + graph[second_name].op.delay)
        for target in graph.successors(second_name):
            graph.connect(name, target)
        graph.remove(second_name)
        self.rewrites.append(f"{name}, {second_name}: two Delays merged")
        return True
