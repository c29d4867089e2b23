"""The graph: named nodes holding operations, directed edges, and the time step.

Like torch.fx, the graph is data and the simulator an interpreter over it. A node with several
input edges receives their sum. Edges out of a stateful node that lie on a cycle carry the
previous step's value (``recurrent_edges``); every other edge carries the current step's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np

from snnc.errors import IRError
from snnc.ir.ops import Input, Op, Output, Shape

#: The time step NIR files imply when they give none: the NIR paper's experiments use 0.1 ms.
DEFAULT_DT = 1e-4


@dataclass(eq=False)
class Node:
    """A named operation in a graph, with the annotations that passes add and its inferred shapes."""

    name: str
    op: Op
    annotations: dict = field(default_factory=dict)
    input_shape: Shape | None = None
    output_shape: Shape | None = None


class Graph:
    """A dataflow graph of named nodes in a fixed order, with edges and the time step ``dt`` in seconds."""

    def __init__(self, dt: float = DEFAULT_DT, name: str = "", metadata: dict | None = None):
        self.dt = float(dt)
        self.name = name
        self.metadata = dict(metadata or {})
        self.nodes: dict[str, Node] = {}
        self.edges: list[tuple[str, str]] = []
        # Each node's neighbours in edge order, kept with the edges: passes ask for them once per
        # node, and scanning the edge list each time made large graphs quadratic.
        self._predecessors: dict[str, list[str]] = {}
        self._successors: dict[str, list[str]] = {}

    # -- building

    def add(self, name: str, op: Op, annotations: dict | None = None) -> Node:
        if not isinstance(name, str) or not name:
            raise IRError(None, f"node names must be non-empty strings, got {name!r}")
        if name in self.nodes:
            raise IRError(name, "a node of this name exists already")
        node = Node(name, op, dict(annotations or {}))
        self.nodes[name] = node
        self._predecessors[name], self._successors[name] = [], []
        self._changed()
        return node

    def connect(self, source: str, target: str) -> None:
        for name in (source, target):
            if name not in self.nodes:
                raise IRError(name, f"edge {source!r} -> {target!r} names a node that does not exist")
        if source in self._predecessors[target]:
            raise IRError(target, f"edge {source!r} -> {target!r} exists already")
        self.edges.append((source, target))
        self._predecessors[target].append(source)
        self._successors[source].append(target)
        self._changed()

    def remove(self, name: str) -> None:
        """Remove a node and every edge that touches it."""
        del self.nodes[name]
        self.edges = [e for e in self.edges if name not in e]
        for source in self._predecessors.pop(name):
            self._successors[source] = [t for t in self._successors[source] if t != name]
        for target in self._successors.pop(name):
            if target in self._predecessors:
                self._predecessors[target] = [s for s in self._predecessors[target] if s != name]
        self._changed()

    def disconnect(self, source: str, target: str) -> None:
        self.edges.remove((source, target))
        self._predecessors[target].remove(source)
        self._successors[source].remove(target)
        self._changed()

    def _changed(self) -> None:
        for cached in ("_nx", "recurrent_edges", "schedule"):
            self.__dict__.pop(cached, None)

    def sort(self) -> Graph:
        """Put the nodes in schedule order, which makes dumps read from inputs to outputs."""
        self.nodes = {name: self.nodes[name] for name in self.schedule}
        self._changed()
        return self

    def copy(self, share_arrays: bool = False) -> Graph:
        """A copy to change without changing this graph. With ``share_arrays`` the nodes, ops,
        annotations and metadata are still the copy's own, but every numpy array in them is this
        graph's: for a pass that adds annotations or replaces arrays and never writes into one,
        which then costs no copy of the network's weights (800 MB in docs/benchmarks.md's scale run).

        The copy is made field by field, not by ``copy.deepcopy``, whose generic walk over every
        node's objects took seconds on a graph of 20,000 nodes even with no array to copy."""
        def duplicate(value):
            if isinstance(value, np.ndarray):
                return value if share_arrays else value.copy()
            if isinstance(value, dict):
                return {key: duplicate(each) for key, each in value.items()}
            if isinstance(value, (list, tuple)):
                return type(value)(duplicate(each) for each in value)
            if value is None or isinstance(value, (bool, int, float, str, np.generic)):
                return value
            return copy.deepcopy(value)

        graph = Graph(self.dt, self.name, duplicate(self.metadata))
        for name, node in self.nodes.items():
            op = copy.copy(node.op)
            for field_name, value in node.op.fields().items():
                setattr(op, field_name, duplicate(value))
            graph.nodes[name] = Node(name, op, duplicate(node.annotations), node.input_shape, node.output_shape)
        graph.edges = list(self.edges)
        graph._predecessors = {name: list(each) for name, each in self._predecessors.items()}
        graph._successors = {name: list(each) for name, each in self._successors.items()}
        # The same structure has the same schedule and recurrent edges: keep them rather than sort again.
        for cached in ("recurrent_edges", "schedule"):
            if cached in self.__dict__:
                graph.__dict__[cached] = duplicate(self.__dict__[cached])
        return graph

    # -- queries

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self):
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def predecessors(self, name: str) -> list[str]:
        return list(self._predecessors[name])

    def successors(self, name: str) -> list[str]:
        return list(self._successors[name])

    @property
    def inputs(self) -> list[str]:
        return [n.name for n in self if isinstance(n.op, Input)]

    @property
    def outputs(self) -> list[str]:
        return [n.name for n in self if isinstance(n.op, Output)]

    @cached_property
    def _nx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(self.edges)
        return g

    def strongly_connected_components(self) -> list[list[str]]:
        """The cycles' node sets and the single nodes, in an order where every edge goes forward
        except the recurrent ones; within a component nodes follow ``schedule``."""
        position = {name: i for i, name in enumerate(self.schedule)}
        condensed = nx.condensation(self._nx)
        order = nx.lexicographical_topological_sort(
            condensed, key=lambda c: min(position[n] for n in condensed.nodes[c]["members"]))
        return [sorted(condensed.nodes[c]["members"], key=position.__getitem__) for c in order]

    @cached_property
    def recurrent_edges(self) -> frozenset[tuple[str, str]]:
        """Edges out of a stateful node that lie on a cycle: they carry the previous step's value."""
        component = {}
        for i, members in enumerate(nx.strongly_connected_components(self._nx)):
            component.update(dict.fromkeys(members, i))
        return frozenset((s, t) for s, t in self.edges
                         if component[s] == component[t] and self.nodes[s].op.stateful)

    @cached_property
    def schedule(self) -> list[str]:
        """The order in which one step evaluates the nodes: every same-step edge goes forward.

        Ties keep the order in which nodes were added, so the schedule is deterministic.
        """
        same_step = nx.DiGraph()
        same_step.add_nodes_from(self.nodes)
        same_step.add_edges_from(e for e in self.edges if e not in self.recurrent_edges)
        try:
            index = {name: i for i, name in enumerate(self.nodes)}
            return list(nx.lexicographical_topological_sort(same_step, key=index.__getitem__))
        except nx.NetworkXUnfeasible:
            cycle = [s for s, _ in nx.find_cycle(same_step)]
            raise IRError(cycle[0], "is on a cycle of stateless nodes (" + " -> ".join(cycle + cycle[:1])
                          + "); a cycle must pass through a neuron or a Delay") from None
