"""Import NIR graphs (``.nir`` HDF5 files or in-memory ``nir.NIRGraph``) into the snnc IR.

Files are read with h5py into a nested dict rather than with ``nir.read``: ``nir.read`` type-checks
while it builds its objects and rejects real files from the NIR paper (Rockpool's wrong Output
shape, the older nested-subgraph layout). An in-memory graph goes through ``to_dict()`` into the
same dict, so both paths share one converter.

NIR neurons are differential equations; the IR's are discrete. The conversion is forward Euler with
the time step ``dt``, exactly as ``docs/semantics.md`` section 5 states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import h5py
import numpy as np

from snnc import ir
from snnc.errors import FrontendError
from snnc.ir.graph import DEFAULT_DT
from snnc.ir.ops import RESET_MODES, Shape

if TYPE_CHECKING:
    import nir

_PORTS = ("Input", "Output")


def load_nir(path: str | Path, dt: float | None = None, reset: str | None = None) -> ir.Graph:
    """Import the NIR file at ``path``.

    ``dt`` (seconds) overrides the file's ``dt`` metadata and the default 1e-4 s; ``reset``
    ("value" or "subtract") applies to spiking neurons whose metadata does not name a reset mode.
    """
    try:
        with h5py.File(path, "r") as file:
            if not isinstance(file.get("node"), h5py.Group):
                raise FrontendError(f"{path}: not a NIR file (it has no 'node' group)")
            document = _read_group(file["node"])
    except OSError as e:
        raise FrontendError(f"{path}: not a readable NIR (HDF5) file ({e})") from None
    return _convert(document, str(path), Path(path).stem, dt, reset)


def from_nir(nir_graph: nir.NIRGraph, dt: float | None = None, reset: str | None = None) -> ir.Graph:
    """Import an in-memory ``nir.NIRGraph``; ``dt`` and ``reset`` as for ``load_nir``."""
    return _convert(nir_graph.to_dict(), "<NIRGraph>", "", dt, reset)


# ----------------------------------------------------------------------------- reading


def _read_group(group: h5py.Group) -> dict:
    return {key: _read_group(item) if isinstance(item, h5py.Group) else _decode(item[()])
            for key, item in group.items()}


def _decode(value):
    """h5py returns strings as bytes (also inside object arrays, as in ``edges``); NIR means str."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return np.array([_decode(v) for v in value.ravel()], dtype=object).reshape(value.shape)
    return value


# ----------------------------------------------------------------------------- nested graphs


def _flatten(graph: dict, prefix: str, source: str) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """The nodes (by full name) and edges of ``graph`` with nested NIRGraph nodes inlined.

    The graph's own Input and Output nodes stay; the caller removes those of a nested graph after
    routing the edges that reach the subgraph through them.
    """
    if not isinstance(graph.get("nodes"), dict):
        where = f"subgraph {prefix[:-1]!r}" if prefix else "the root node"
        raise FrontendError(f"{source}: {where} is not a NIRGraph (it has no 'nodes')")
    nodes: dict[str, dict] = {}
    edges: list[tuple[str, str]] = []
    entries: dict[str, list[str]] = {}  # subgraph name -> the inner nodes its incoming edges reach
    exits: dict[str, list[str]] = {}  # subgraph name -> the inner nodes its outgoing edges leave
    for name, node in graph["nodes"].items():
        if _type(node, prefix + name, source) != "NIRGraph":
            nodes[prefix + name] = node
            continue
        inner_nodes, inner_edges = _flatten(node, f"{prefix}{name}.", source)
        ports = {n for n, d in inner_nodes.items() if d["type"] in _PORTS}
        entries[name] = [t for s, t in inner_edges if inner_nodes[s]["type"] == "Input"]
        exits[name] = [s for s, t in inner_edges if inner_nodes[t]["type"] == "Output"]
        nodes.update((n, d) for n, d in inner_nodes.items() if n not in ports)
        edges += [(s, t) for s, t in inner_edges if s not in ports and t not in ports]
    for s, t in _edges(graph, prefix, source):
        edges += [(a, b) for a in exits.get(s, [prefix + s]) for b in entries.get(t, [prefix + t])]
    return nodes, edges


def _edges(graph: dict, prefix: str, source: str) -> list[tuple[str, str]]:
    """The edges of one graph level, with endpoints that name no node resolved.

    Files in the older subgraph layout name 'lif' where the node is 'lif1'. Such an endpoint is the
    one node whose name starts with it, else the one node (other than Input/Output) that no edge
    names.
    """
    nodes = graph["nodes"]
    edges = [(str(s), str(t)) for s, t in np.asarray(graph.get("edges", []), dtype=object).reshape(-1, 2)]
    named = {n for edge in edges for n in edge}
    unnamed = [n for n in nodes if n not in named and nodes[n].get("type") not in _PORTS]

    def resolve(endpoint: str, edge: tuple[str, str]) -> str:
        if endpoint in nodes:
            return endpoint
        candidates = [n for n in nodes if n.startswith(endpoint)]
        if len(candidates) != 1:
            candidates = unnamed
        if len(candidates) != 1:
            where = f" in subgraph {prefix[:-1]!r}" if prefix else ""
            raise FrontendError(f"{source}: edge {edge}{where} names node {endpoint!r}, which does not exist "
                                f"and matches no single node of {sorted(nodes)}")
        return candidates[0]

    return [(resolve(s, (s, t)), resolve(t, (s, t))) for s, t in edges]


def _type(node, name: str, source: str) -> str:
    if not isinstance(node, dict) or "type" not in node:
        raise FrontendError(f"{source}: node {name!r} has no NIR type")
    return str(node["type"])


# ----------------------------------------------------------------------------- conversion


def _convert(document: dict, source: str, name: str, dt: float | None, reset: str | None) -> ir.Graph:
    if reset is not None and reset not in RESET_MODES:
        raise FrontendError(f"reset must be one of {RESET_MODES}, got {reset!r}")
    if dt is None:
        dt = document.get("metadata", {}).get("dt", DEFAULT_DT)
    nodes, edges = _flatten(document, "", source)
    graph = ir.Graph(dt=float(dt), name=name)
    pending: list[_PendingConv] = []
    for node_name, fields in nodes.items():
        node = _Node(source, node_name, fields, graph.dt, reset)
        if node.type not in _CONVERTERS:
            raise node.error(f"unsupported NIR type; supported: {', '.join(sorted([*_CONVERTERS, 'NIRGraph']))}")
        op = _CONVERTERS[node.type](node)
        graph.add(node_name, op)
        if isinstance(op, _PendingConv):
            pending.append(op)
    for s, t in edges:
        graph.connect(s, t)
    if pending:
        ir.verify(graph)  # the first shape pass: each pending convolution learns its input size
        for op in pending:
            graph[op.node.name].op = op.conv
    return ir.verify(graph).sort()


@dataclass
class _Node:
    """One NIR node's fields, with the context its conversion needs and errors that name it."""

    source: str
    name: str
    fields: dict
    dt: float
    reset: str | None

    @property
    def type(self) -> str:
        return str(self.fields["type"])

    def error(self, message: str) -> FrontendError:
        return FrontendError(f"{self.source}: node {self.name!r} ({self.type}): {message}")

    def require(self, key: str):
        if key not in self.fields:
            raise self.error(f"has no {key!r} field")
        return self.fields[key]

    def array(self, key: str) -> np.ndarray:
        return np.asarray(self.require(key))

    def optional_array(self, key: str) -> np.ndarray | None:
        return None if self.fields.get(key) is None else np.asarray(self.fields[key])

    def ints(self, key: str, default: int) -> tuple[int, ...]:
        return tuple(int(v) for v in np.atleast_1d(np.asarray(self.fields.get(key, default))).ravel())

    def neuron(self, *required: str, **defaults: float) -> dict[str, np.ndarray]:
        """The neuron's parameters as float64 arrays of one common shape.

        Exporters write some parameters with shape (1,) beside full-shape ones; broadcasting them
        all together gives the IR the per-neuron (or all-scalar) parameters it requires.
        """
        values = {key: self.require(key) for key in required}
        values.update((key, self.fields.get(key, default)) for key, default in defaults.items())
        try:
            arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values.values()))
        except ValueError:
            shapes = {key: np.shape(v) for key, v in values.items()}
            raise self.error(f"parameter shapes {shapes} do not broadcast to one shape") from None
        return {key: array.copy() for key, array in zip(values, arrays)}

    def reset_mode(self) -> str:
        """NIR has no reset mode: our exporter records one in metadata, else the caller chooses."""
        mode = str(self.fields.get("metadata", {}).get("reset", self.reset or "value"))
        if mode not in RESET_MODES:
            raise self.error(f"metadata reset={mode!r} is not one of {RESET_MODES}")
        return mode


def _input(node: _Node) -> ir.Input:
    shape = node.fields["shape"] if "shape" in node.fields else node.require("input_type")
    if isinstance(shape, dict):  # the older in-memory layout {"input": shape}
        shape = shape["input"]
    return ir.Input(shape=tuple(np.atleast_1d(np.asarray(shape)).tolist()))


def _weight(node: _Node) -> np.ndarray:
    weight = node.array("weight")
    if weight.ndim != 2:
        raise node.error(f"only 2-D weights (out, in) are supported, got shape {weight.shape}")
    return weight


# -- convolution padding


@dataclass(kw_only=True, eq=False)
class _PendingConv(ir.Op):
    """Stands in for a convolution with padding 'same' whose input size NIR did not record.

    The first shape pass (``verify``) calls ``output_shape`` with the inferred input shape; that
    resolves the padding, after which the real convolution replaces this node's op.
    """

    conv: ir.Conv1d | ir.Conv2d
    node: _Node

    @property
    def kind(self) -> str:
        return self.conv.kind

    def output_shape(self, input_shape: Shape) -> Shape:
        self.conv.padding = _same_padding(self.node, self.conv, input_shape[1:])
        return self.conv.output_shape(input_shape)


def _same_padding(node: _Node, conv: ir.Conv1d | ir.Conv2d, size: Shape) -> tuple[int, ...]:
    """The symmetric padding that 'same' means for input ``size``.

    'same' outputs ceil(size / stride) positions (PyTorch allows it only with stride 1, where the
    padding is dilation*(k-1)/2 whatever the size; JAX and TensorFlow use this rule for any stride).
    An odd total would pad one side more than the other, which the IR cannot express.
    """
    padding = []
    for n, k, s, d in zip(size, conv.weight.shape[2:], conv.stride, conv.dilation):
        total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
        if total % 2:
            raise node.error(f"padding 'same' needs {total} padding positions for input size {n}, "
                             "more on one side than the other, which is not supported")
        padding.append(total // 2)
    return tuple(padding)


def _conv(cls: type[ir.Conv1d] | type[ir.Conv2d]) -> Callable[[_Node], ir.Op]:
    def convert(node: _Node) -> ir.Op:
        padding = node.fields.get("padding", 0)
        named = isinstance(padding, str)
        if named and padding not in ("same", "valid"):
            raise node.error(f"padding must be integers, 'same' or 'valid', got {padding!r}")
        conv = cls(weight=node.array("weight"), bias=node.optional_array("bias"), stride=node.ints("stride", 1),
                   padding=0 if named else node.ints("padding", 0), dilation=node.ints("dilation", 1),
                   groups=int(node.fields.get("groups", 1)))
        if named and padding == "same":
            size = node.fields.get("input_shape")
            if size is None:
                return _PendingConv(conv=conv, node=node)
            conv.padding = _same_padding(node, conv, tuple(np.atleast_1d(np.asarray(size)).tolist()))
        return conv
    return convert


def _pool(cls: type[ir.SumPool2d] | type[ir.AvgPool2d]) -> Callable[[_Node], ir.Op]:
    return lambda node: cls(kernel_size=node.array("kernel_size"), stride=node.array("stride"),
                            padding=node.fields.get("padding", 0))


def _delay(node: _Node) -> ir.Delay:
    steps = node.array("delay").astype(np.float64) / node.dt
    whole = np.rint(steps)
    if np.any(steps < 0):
        raise node.error("delays must be >= 0")
    if np.any(np.abs(steps - whole) > 1e-6 * np.maximum(np.abs(steps), 1.0)):
        raise node.error(f"delay {node.array('delay').tolist()} s is not a whole number of steps at dt={node.dt} s")
    return ir.Delay(delay=whole.astype(np.int64))


# -- neurons: forward Euler, a = dt / tau (docs/semantics.md, section 5)


def _rate(node: _Node, tau: np.ndarray, name: str) -> np.ndarray:
    if not np.all(tau > 0):
        raise node.error(f"{name} must be > 0 seconds")
    return node.dt / tau


def _leaky(node: _Node, p: dict[str, np.ndarray], tau: str = "tau") -> dict[str, np.ndarray]:
    a = _rate(node, p[tau], tau)
    return {"v_decay": 1 - a, "v_gain": p["r"] * a, "bias": p["v_leak"] * a}


def _current(node: _Node, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    b = _rate(node, p["tau_syn"], "tau_syn")
    return {"i_decay": 1 - b, "i_gain": p["w_in"] * b}


def _integrating(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """IF and I take r per step, as the tools that write and read them do (docs/semantics.md)."""
    return {"v_gain": p["r"], "bias": np.zeros_like(p["r"])}


def _spiking(node: _Node, p: dict[str, np.ndarray]) -> dict:
    return {"v_threshold": p["v_threshold"], "v_reset": p["v_reset"], "reset": node.reset_mode()}


_LEAKY = ("tau", "r", "v_leak")
_CUBA = ("tau_syn", "tau_mem", "r", "v_leak")


def _lif(node: _Node) -> ir.LIF:
    p = node.neuron(*_LEAKY, "v_threshold", v_reset=0.0)
    return ir.LIF(**_leaky(node, p), **_spiking(node, p))


def _cuba_lif(node: _Node) -> ir.CubaLIF:
    p = node.neuron(*_CUBA, "v_threshold", v_reset=0.0, w_in=1.0)
    return ir.CubaLIF(**_current(node, p), **_leaky(node, p, "tau_mem"), **_spiking(node, p))


def _if(node: _Node) -> ir.IF:
    p = node.neuron("r", "v_threshold", v_reset=0.0)
    return ir.IF(**_integrating(p), **_spiking(node, p))


def _cuba_li(node: _Node) -> ir.CubaLI:
    p = node.neuron(*_CUBA, w_in=1.0)
    return ir.CubaLI(**_current(node, p), **_leaky(node, p, "tau_mem"))


_CONVERTERS: dict[str, Callable[[_Node], ir.Op]] = {
    "Input": _input,
    "Output": lambda node: ir.Output(),  # its stored shape is ignored: Rockpool writes a wrong one
    "Affine": lambda node: ir.Affine(weight=_weight(node), bias=node.array("bias")),
    "Linear": lambda node: ir.Affine(weight=_weight(node)),
    "Conv1d": _conv(ir.Conv1d),
    "Conv2d": _conv(ir.Conv2d),
    "SumPool2d": _pool(ir.SumPool2d),
    "AvgPool2d": _pool(ir.AvgPool2d),
    "Flatten": lambda node: ir.Flatten(start_dim=node.require("start_dim"), end_dim=node.require("end_dim")),
    "Scale": lambda node: ir.Scale(scale=node.array("scale")),
    "Threshold": lambda node: ir.Threshold(threshold=node.array("threshold")),
    "Delay": _delay,
    "LIF": _lif,
    "LI": lambda node: ir.LI(**_leaky(node, node.neuron(*_LEAKY))),
    "CubaLIF": _cuba_lif,
    "CubaLI": _cuba_li,
    "IF": _if,
    "I": lambda node: ir.I(**_integrating(node.neuron("r"))),
}
