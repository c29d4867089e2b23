"""The verifier: structural rules, parameter checks and shape inference.

It runs after every import and after every pass. It fills in each node's input and output shape
and raises an ``IRError`` that names the first node at fault: every array parameter must hold
finite real numbers, and every node's output must fit snnc's memory budget (a model that declares
a larger one is refused here, before any simulation or backend allocates it), whichever format or
pass the graph came from.
"""

from __future__ import annotations

import math

import numpy as np

from snnc.errors import IRError, SnncError
from snnc.files import check_declared_array
from snnc.ir.graph import Graph
from snnc.ir.ops import Input, Output, ShapeError


def verify(graph: Graph) -> Graph:
    """Check ``graph`` and infer its shapes in place; return it."""
    if not (math.isfinite(graph.dt) and graph.dt > 0):
        raise IRError(None, f"the graph's time step dt={graph.dt} must be a positive number of seconds")
    if not graph.inputs:
        raise IRError(None, "the graph has no Input node")
    if not graph.outputs:
        raise IRError(None, "the graph has no Output node")
    for node in graph:
        incoming, outgoing = graph.predecessors(node.name), graph.successors(node.name)
        if node.op.is_source and incoming:
            raise IRError(node.name, f"an {node.op.kind} node takes no input edges, but {incoming} lead into it")
        if not node.op.is_source and not incoming:
            raise IRError(node.name, "has no input edges")
        if isinstance(node.op, Output) and outgoing:
            raise IRError(node.name, f"an Output node has no output edges, but it leads to {outgoing}")
        try:
            node.op.check_arrays()
            node.op.validate()
        except ShapeError as e:
            raise IRError(node.name, f"({node.op.kind}) {e}") from None
    graph.schedule  # raises on a cycle without a stateful node
    _infer_shapes(graph)
    return graph


def _infer_shapes(graph: Graph) -> None:
    # Shapes flow forward along the schedule; a recurrent edge's source may come later, so repeat
    # until nothing changes (each pass resolves at least one more node or stops).
    for node in graph:
        node.input_shape = node.output_shape = None
    pending = list(graph.schedule)
    while pending:
        still_pending = []
        for name in pending:
            node = graph[name]
            if isinstance(node.op, Input):
                node.input_shape = None
            else:
                known = [(p, graph[p].output_shape) for p in graph.predecessors(name) if graph[p].output_shape is not None]
                if not known:
                    still_pending.append(name)
                    continue
                for source, shape in known:
                    if shape != known[0][1]:
                        raise IRError(name, f"its inputs disagree in shape: {known[0][0]!r} sends {known[0][1]}, "
                                            f"{source!r} sends {shape}")
                node.input_shape = known[0][1]
            try:
                node.output_shape = tuple(int(s) for s in node.op.output_shape(node.input_shape))
                check_declared_array(node.output_shape, np.float64, "its output (one step of one sample)")
            except (ShapeError, SnncError) as e:
                raise IRError(name, f"({node.op.kind}) {e}") from None
        if len(still_pending) == len(pending):
            raise IRError(still_pending[0], "its shape cannot be inferred: no input reaches it from an Input node")
        pending = still_pending
    # Every input must agree, including those resolved after the node itself.
    for node in graph:
        for p in graph.predecessors(node.name):
            if graph[p].output_shape != node.input_shape:
                raise IRError(node.name, f"input {p!r} sends shape {graph[p].output_shape}, expected {node.input_shape}")
