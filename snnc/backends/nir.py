"""Export an snnc IR graph to NIR (``nir.NIRGraph`` or a ``.nir`` file).

The inverse of ``snnc.frontend.nir``: discrete neuron parameters become NIR's continuous ones by
inverting the forward Euler formulas of ``docs/semantics.md`` section 5 with the graph's ``dt``,
which the file also records as graph metadata so that re-importing restores the same step.
What NIR cannot say is either rewritten exactly (per-synapse delays, Add) or refused with an
``ExportError`` that names the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nir
import numpy as np

from snnc import ir
from snnc.errors import ExportError


def to_nir(graph: ir.Graph) -> nir.NIRGraph:
    """The NIR graph equivalent to ``graph`` (verified first, since shapes are needed)."""
    ir.verify(graph)
    parts = {node.name: _export_node(node, graph.dt) for node in graph if not isinstance(node.op, ir.Add)}

    def entries(name: str) -> list[str]:
        """Where an edge into ``name`` lands; NIR sums a node's inputs, so an Add passes them on."""
        if name in parts:
            return parts[name].entries
        return [entry for successor in graph.successors(name) for entry in entries(successor)]

    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    for name, part in parts.items():
        for key in part.nodes:
            if key in nodes:
                raise ExportError(f"node {name!r}: its NIR node {key!r} clashes with another node's name")
        nodes.update(part.nodes)
        edges += part.edges
    for source, target in graph.edges:
        if source not in parts:  # out of an Add: its inputs were connected past it
            continue
        for edge in ((a, b) for a in parts[source].exits for b in entries(target)):
            if edge in edges:
                raise ExportError(f"node {edge[1]!r}: NIR cannot receive {edge[0]!r} twice (once through an Add)")
            edges.append(edge)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": graph.dt})


def write_nir(graph: ir.Graph, path: str | Path) -> None:
    """Write ``graph`` as a NIR file that ``nir.read`` (with type checking) accepts."""
    nir.write(path, to_nir(graph))


@dataclass
class _Part:
    """The NIR nodes one IR node becomes, the edges among them, and where outside edges attach."""

    nodes: dict[str, nir.NIRNode]
    entries: list[str]
    exits: list[str]
    edges: list[tuple[str, str]] = field(default_factory=list)


def _export_node(node: ir.Node, dt: float) -> _Part:
    op = node.op
    if isinstance(op, ir.Affine) and (len(node.input_shape) != 1 or len(node.output_shape) != 1):
        raise ExportError(f"node {node.name!r}: NIR's Affine maps vectors to vectors; this one maps "
                          f"{node.input_shape} to {node.output_shape}")
    if isinstance(op, ir.Affine) and op.delay is not None and op.delay.any():
        return _delayed_affine(node, dt)
    if type(op) in _EXPORTERS:
        return _Part({node.name: _EXPORTERS[type(op)](node, dt)}, [node.name], [node.name])
    raise ExportError(f"node {node.name!r}: NIR has no {op.kind}")


def _affine(weight: np.ndarray, bias: np.ndarray | None) -> nir.NIRNode:
    return nir.Linear(weight=weight) if bias is None else nir.Affine(weight=weight, bias=bias)


def _delayed_affine(node: ir.Node, dt: float) -> _Part:
    """Per-synapse delays, exactly: per distinct delay d, Delay(d) -> the synapses with delay d.

    Every group reads the same inputs and feeds the same targets, so the targets receive
    sum_d W_d x[t - d] = sum_j W_ij x_j[t - D_ij]. The bias goes on the first group only.
    """
    op: ir.Affine = node.op
    part = _Part({}, [], [])
    for i, d in enumerate(np.unique(op.delay)):
        synapse = f"{node.name}.synapse{d}"
        part.nodes[synapse] = _affine(np.where(op.delay == d, op.weight, 0).astype(op.weight.dtype),
                                      op.bias if i == 0 else None)
        part.exits.append(synapse)
        if d == 0:
            part.entries.append(synapse)
            continue
        delay = f"{node.name}.delay{d}"
        part.nodes[delay] = nir.Delay(delay=np.full(op.weight.shape[1:], d * dt))
        part.entries.append(delay)
        part.edges.append((delay, synapse))
    return part


def _full(node: ir.Node, value: np.ndarray) -> np.ndarray:
    """NIR derives a node's shape from its parameters, so scalars are spread to the node's shape."""
    return np.broadcast_to(np.asarray(value, dtype=np.float64), node.output_shape).copy()


def _conv(node: ir.Node, dt: float) -> nir.NIRNode:
    op = node.op
    spatial = node.input_shape[1:]
    cls, input_shape = (nir.Conv1d, spatial[0]) if isinstance(op, ir.Conv1d) else (nir.Conv2d, spatial)
    bias = op.bias if op.bias is not None else np.zeros(op.weight.shape[:1], dtype=op.weight.dtype)
    return cls(input_shape=input_shape, weight=op.weight, bias=bias, stride=np.array(op.stride),
               padding=np.array(op.padding), dilation=np.array(op.dilation), groups=op.groups)


def _pool(cls: type[nir.SumPool2d] | type[nir.AvgPool2d]) -> Callable[[ir.Node, float], nir.NIRNode]:
    return lambda node, dt: cls(kernel_size=np.array(node.op.kernel_size), stride=np.array(node.op.stride),
                                padding=np.array(node.op.padding))


# -- neurons: the inverse of forward Euler with a = 1 - decay (docs/semantics.md, section 5)


def _rate(node: ir.Node, decay: np.ndarray, state: str) -> np.ndarray:
    """``a = dt / tau`` from the per-step ``decay = 1 - a``; NIR's time constants must be finite."""
    a = 1 - decay
    if np.any(a == 0):
        raise ExportError(f"node {node.name!r} ({node.op.kind}): {state} does not decay (decay = 1) in some "
                          "neurons; NIR needs finite time constants (only a whole layer without leak or synaptic "
                          "current exports, as IF or I)")
    return a


def _neuron(node: ir.Node, dt: float) -> nir.NIRNode:
    dyn = node.op.dynamics()
    v_decay, v_gain, bias = _full(node, dyn.v_decay), _full(node, dyn.v_gain), _full(node, dyn.bias)
    spiking = {"v_threshold": _full(node, dyn.v_threshold), "v_reset": _full(node, dyn.v_reset)} if dyn.spiking else {}
    metadata = {"reset": "subtract"} if dyn.reset == "subtract" else {}
    if dyn.i_decay is None and np.all(v_decay == 1):
        if np.any(bias != 0):
            raise ExportError(f"node {node.name!r} ({node.op.kind}): a neuron without leak exports as NIR's "
                              "IF or I, which have no bias, but its bias is non-zero")
        return (nir.IF if dyn.spiking else nir.I)(r=v_gain, **spiking, metadata=metadata)
    a = _rate(node, v_decay, "v")
    leaky = {"r": v_gain / a, "v_leak": bias / a}
    if dyn.i_decay is None:
        return (nir.LIF if dyn.spiking else nir.LI)(tau=dt / a, **leaky, **spiking, metadata=metadata)
    b = _rate(node, _full(node, dyn.i_decay), "i")
    current = {"tau_syn": dt / b, "w_in": _full(node, dyn.i_gain) / b}
    return (nir.CubaLIF if dyn.spiking else nir.CubaLI)(tau_mem=dt / a, **current, **leaky, **spiking,
                                                       metadata=metadata)


#: Exporters of the ops that become one NIR node; MaxPool2d (and anything new) is missing on purpose.
_EXPORTERS: dict[type[ir.Op], Callable[[ir.Node, float], nir.NIRNode]] = {
    ir.Input: lambda node, dt: nir.Input(input_type=np.array(node.output_shape)),
    ir.Output: lambda node, dt: nir.Output(output_type=np.array(node.input_shape)),
    ir.Affine: lambda node, dt: _affine(node.op.weight, node.op.bias),
    ir.Conv1d: _conv,
    ir.Conv2d: _conv,
    ir.SumPool2d: _pool(nir.SumPool2d),
    ir.AvgPool2d: _pool(nir.AvgPool2d),
    ir.Flatten: lambda node, dt: nir.Flatten(input_type={"input": np.array(node.input_shape)},
                                             start_dim=node.op.start_dim, end_dim=node.op.end_dim),
    ir.Scale: lambda node, dt: nir.Scale(scale=_full(node, node.op.scale)),
    ir.Threshold: lambda node, dt: nir.Threshold(threshold=_full(node, node.op.threshold)),
    ir.Delay: lambda node, dt: nir.Delay(delay=_full(node, node.op.delay) * dt),
    **dict.fromkeys(ir.NEURONS, _neuron),
}
