"""Import NIR graphs (``.nir`` HDF5 files or in-memory ``nir.NIRGraph``) into the snnc IR.

Files are read with h5py into a nested dict rather than with ``nir.read``: ``nir.read`` type-checks
while it builds its objects and rejects real files from the NIR paper (Rockpool's wrong Output
shape, the older nested-subgraph layout). An in-memory graph goes through ``to_dict()`` into the
same dict, so both paths share one converter.

NIR neurons are differential equations; the IR's are discrete. The conversion is forward Euler with
the time step ``dt``, exactly as ``docs/semantics.md`` section 5 states.

A file is read within snnc's memory budget: every dataset's declared shape and type is checked
before its data is read, so a small file cannot ask for gigabytes, and nothing is read from other
files (links, virtual or external datasets). Every field a converter uses is checked for its type
(numbers where numbers are needed, whole numbers for sizes, finite values), and every error names
the file, the node and the field.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import h5py
import numpy as np

from snnc import ir
from snnc.errors import FrontendError, shown
from snnc.files import Budget, check_declared_array
from snnc.frontend import time_step, verified
from snnc.ir.graph import DEFAULT_DT
from snnc.ir.ops import RESET_MODES, Shape, ShapeError, whole_numbers
from snnc.ir.printer import show_name

if TYPE_CHECKING:
    import nir

_PORTS = ("Input", "Output")
#: How deep HDF5 groups may nest. A subgraph takes two levels (its node and its 'nodes'), so this
#: allows subgraphs 30 deep; deeper files are refused before they exhaust Python's stack.
MAX_GROUP_DEPTH = 64
#: Errors that h5py raises for a file whose HDF5 structures are damaged.
_UNREADABLE = (OSError, KeyError, ValueError, RuntimeError, TypeError)


def load_nir(path: str | Path, dt: float | None = None, reset: str | None = None) -> ir.Graph:
    """Import the NIR file at ``path``.

    ``dt`` (seconds) overrides the file's ``dt`` metadata and the default 1e-4 s; ``reset``
    ("value" or "subtract") applies to spiking neurons whose metadata does not name a reset mode.
    """
    _check_global_heaps(path)
    try:
        with h5py.File(path, "r") as file:
            if "node" not in file:
                raise FrontendError(f"{path}: not a NIR file (it has no 'node' group)")
            document = _Reader(str(path)).read(file, "node", depth=1)
    except _UNREADABLE as e:
        raise FrontendError(f"{path}: not a readable NIR (HDF5) file ({type(e).__name__}: {e})") from None
    if not isinstance(document, dict):
        raise FrontendError(f"{path}: not a NIR file (its 'node' is a dataset, not a group)")
    return _convert(document, str(path), Path(path).stem, dt, reset)


def from_nir(nir_graph: nir.NIRGraph, dt: float | None = None, reset: str | None = None) -> ir.Graph:
    """Import an in-memory ``nir.NIRGraph``; ``dt`` and ``reset`` as for ``load_nir``."""
    return _convert(nir_graph.to_dict(), "<NIRGraph>", "", dt, reset)


# ----------------------------------------------------------------------------- reading


def _check_global_heaps(path: str | Path) -> None:
    """Refuse a file whose global heap collections are damaged in a way that makes HDF5 loop.

    HDF5 keeps variable-length strings (NIR's types, edges and names) in global heap collections
    and reads one by walking its objects, each object's size moving the walk on. A free-space
    object of size 0 stops the walk from moving, and HDF5 then loops for ever instead of failing.
    Each collection (signature "GCOL", version 1, 8-byte sizes as h5py writes them) is walked here
    first, and refused unless every object lies within it and moves the walk on.
    """
    with open(path, "rb") as file:
        if not file.seek(0, 2):
            return  # empty: h5py refuses it
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            start = data.find(b"GCOL")
            while start != -1:
                if data[start + 4:start + 8] == b"\x01\0\0\0" and start + 16 <= len(data):
                    _walk_global_heap(data, start, path)
                start = data.find(b"GCOL", start + 4)


def _walk_global_heap(data: mmap.mmap, start: int, path) -> None:
    (size,) = struct.unpack_from("<Q", data, start + 8)
    end = start + size
    position = start + 16  # past the signature, version, reserved bytes and size
    while end <= len(data) and position + 16 <= end:  # HDF5 takes a shorter tail as free space
        index, _, _, length = struct.unpack_from("<HHIQ", data, position)
        step = length if index == 0 else 16 + (length + 7) // 8 * 8  # free space, or a header and its data
        if step == 0 or position + step > end:
            raise FrontendError(f"{path}: not a readable NIR (HDF5) file (the global heap at byte {start} is "
                                f"damaged: its object at byte {position} has size {length})")
        position += step


class _Reader:
    """Reads a NIR file's groups into nested dicts, within one memory budget for the whole file."""

    def __init__(self, source: str):
        self.source = source
        self.budget = Budget()

    def read(self, group: h5py.Group, key: str, depth: int):
        """The member ``key`` of ``group``: a dict for a group, the value for a dataset."""
        where = f"{self.source}: {_describe(group.name.rstrip('/') + '/' + key)}"
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise FrontendError(f"{where}: is a {type(link).__name__}; snnc reads NIR files that hold their data "
                                "themselves")
        item = group[key]
        if isinstance(item, h5py.Dataset):
            return self.dataset(item, where)
        if depth >= MAX_GROUP_DEPTH:
            raise FrontendError(f"{where}: groups nest deeper than {MAX_GROUP_DEPTH} levels; snnc reads subgraphs "
                                f"nested at most {MAX_GROUP_DEPTH // 2 - 2} deep")
        return {name: self.read(item, name, depth + 1) for name in item}

    def dataset(self, item: h5py.Dataset, where: str):
        if item.shape is None:
            raise FrontendError(f"{where}: holds no value (an empty dataspace)")
        if item.is_virtual or item.id.get_create_plist().get_external_count():
            raise FrontendError(f"{where}: its data lies in other files; snnc reads NIR files that hold their "
                                "data themselves")
        if h5py.check_string_dtype(item.dtype) is not None:  # names, types and modes: their bytes count
            check_declared_array((*item.shape, item.dtype.itemsize), np.uint8, where, self.budget)
        else:
            check_declared_array(item.shape, item.dtype, where, self.budget)
        try:
            return _decode(item[()])
        except UnicodeDecodeError:
            raise FrontendError(f"{where}: holds text that is not UTF-8") from None


def _describe(name: str) -> str:
    """An HDF5 path of a NIR file as its node and field: '/node/nodes/sub/nodes/lif/tau' is
    "node 'sub.lif', field 'tau'"."""
    parts = name.strip("/").split("/")[1:]
    nodes = []
    while len(parts) >= 2 and parts[0] == "nodes":
        nodes.append(parts[1])
        parts = parts[2:]
    where = f"node {'.'.join(nodes)!r}" if nodes else "the graph"
    return f"{where}, field {'/'.join(parts)!r}" if parts else where


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
            new = {prefix + name: node}
        else:
            inner_nodes, inner_edges = _flatten(node, f"{prefix}{name}.", source)
            ports = {n for n, d in inner_nodes.items() if d["type"] in _PORTS}
            entries[name] = [t for s, t in inner_edges if inner_nodes[s]["type"] == "Input"]
            exits[name] = [s for s, t in inner_edges if inner_nodes[t]["type"] == "Output"]
            new = {n: d for n, d in inner_nodes.items() if n not in ports}
            edges += [(s, t) for s, t in inner_edges if s not in ports and t not in ports]
        clashes = sorted(new.keys() & nodes.keys())
        if clashes:
            raise FrontendError(f"{source}: two nodes are named {clashes[0]!r}: a subgraph's node and a node whose "
                                "name holds the subgraph's and a dot")
        nodes.update(new)
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
    where = f" of subgraph {prefix[:-1]!r}" if prefix else ""
    pairs = graph.get("edges", [])
    array = np.asarray(pairs, dtype=object) if not isinstance(pairs, (dict, str)) else np.array([None])
    if array.size % 2 or not all(isinstance(n, str) for n in array.ravel()):
        raise FrontendError(f"{source}: the field 'edges'{where} must be pairs of node names, got {shown(pairs)}")
    edges = [(s, t) for s, t in array.reshape(-1, 2)]
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
    if not isinstance(node["type"], str):
        raise FrontendError(f"{source}: node {name!r}: its field 'type' must be a string, got {shown(node['type'])}")
    return node["type"]


# ----------------------------------------------------------------------------- conversion


def _convert(document: dict, source: str, name: str, dt: float | None, reset: str | None) -> ir.Graph:
    if reset is not None and reset not in RESET_MODES:
        raise FrontendError(f"reset must be one of {RESET_MODES}, got {reset!r}")
    dt = time_step(dt, "dt")
    if dt is None:
        dt = time_step(_scalar(_metadata(document, source, "the graph").get("dt", DEFAULT_DT)),
                       f"{source}: the graph's metadata dt")
    nodes, edges = _flatten(document, "", source)
    graph = ir.Graph(dt=dt, name=name)
    pending: list[_PendingConv] = []
    for node_name, fields in nodes.items():
        node = _Node(source, node_name, fields, graph.dt, reset)
        if node.type not in _CONVERTERS:
            raise node.error(f"unsupported NIR type; supported: {', '.join(sorted([*_CONVERTERS, 'NIRGraph']))}")
        try:
            # an overflow (dt / tau for a tiny tau) gives a non-finite parameter that verify refuses by
            # name; numpy's warning would only add lines to stderr
            with np.errstate(all="ignore"):
                op = _CONVERTERS[node.type](node)
        except ShapeError as e:  # a parameter that the operation refuses, as it names it
            raise node.error(str(e)) from None
        graph.add(node_name, op)
        if isinstance(op, _PendingConv):
            pending.append(op)
    for s, t in edges:
        graph.connect(s, t)
    if pending:
        verified(graph, source)  # the first shape pass: each pending convolution learns its input size
        for op in pending:
            graph[op.node.name].op = op.conv
    return verified(graph, source).sort()


def _metadata(fields: dict, source: str, where: str) -> dict:
    metadata = fields.get("metadata", {})
    if not isinstance(metadata, dict):
        raise FrontendError(f"{source}: {where}: its field 'metadata' must be a group, got {shown(metadata)}")
    return metadata


def _scalar(value):
    """A number stored as an array of one element, as the number."""
    return value.item() if isinstance(value, np.ndarray) and value.size == 1 else value


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

    @property
    def where(self) -> str:
        return f"{self.source}: node {self.name!r} ({show_name(self.type)})"

    def error(self, message: str) -> FrontendError:
        return FrontendError(f"{self.where}: {message}")

    def require(self, key: str):
        if key not in self.fields:
            raise self.error(f"has no {key!r} field")
        return self.fields[key]

    def array(self, key: str) -> np.ndarray:
        return self.numbers(key, self.require(key))

    def optional_array(self, key: str) -> np.ndarray | None:
        return None if self.fields.get(key) is None else self.numbers(key, self.fields[key])

    def numbers(self, key: str, value) -> np.ndarray:
        """``value``, the field ``key``, as an array of finite real numbers."""
        array = np.asarray(value) if not isinstance(value, dict) else None
        if array is None or array.dtype.kind not in "biuf":
            raise self.error(f"field {key!r} must hold numbers, got {'a group' if array is None else array.dtype}")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise self.error(f"field {key!r} holds NaN or infinite values; give finite numbers")
        return array

    def neuron(self, *required: str, **defaults: float) -> dict[str, np.ndarray]:
        """The neuron's parameters as float64 arrays of one common shape.

        Exporters write some parameters with shape (1,) beside full-shape ones; broadcasting them
        all together gives the IR the per-neuron (or all-scalar) parameters it requires.
        """
        values = {key: self.array(key) for key in required}
        values.update((key, self.numbers(key, self.fields.get(key, default))) for key, default in defaults.items())
        try:
            shape = np.broadcast_shapes(*(v.shape for v in values.values()))
        except ValueError:
            shapes = {key: v.shape for key, v in values.items()}
            raise self.error(f"parameter shapes {shapes} do not broadcast to one shape") from None
        budget = Budget()  # parameters of shapes (n,) and (n, 1) would broadcast to n * n each
        for key in values:
            check_declared_array(shape, np.float64, f"{self.where}: its parameter {key!r} broadcast to the shape of "
                                                    "the others", budget)
        return {key: np.broadcast_to(v.astype(np.float64), shape).copy() for key, v in values.items()}

    def reset_mode(self) -> str:
        """NIR has no reset mode: our exporter records one in metadata, else the caller chooses."""
        mode = _metadata(self.fields, self.source, f"node {self.name!r}").get("reset", self.reset or "value")
        if not isinstance(mode, str) or mode not in RESET_MODES:
            raise self.error(f"metadata reset={shown(mode)} is not one of {RESET_MODES}")
        return mode


def _input(node: _Node) -> ir.Input:
    shape = node.fields["shape"] if "shape" in node.fields else node.require("input_type")
    if isinstance(shape, dict):  # the older in-memory layout {"input": shape}
        if "input" not in shape:
            raise node.error("its field 'input_type' has no 'input'")
        shape = shape["input"]
    return ir.Input(shape=shape)


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

    def check_arrays(self) -> None:
        self.conv.check_arrays()

    def validate(self) -> None:
        self.conv.validate()

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
        conv = cls(weight=node.array("weight"), bias=node.optional_array("bias"), stride=node.fields.get("stride", 1),
                   padding=0 if named else padding, dilation=node.fields.get("dilation", 1),
                   groups=node.fields.get("groups", 1))
        if named and padding == "same":
            conv.validate()  # before the padding divides by the stride
            size = node.fields.get("input_shape")
            if size is None:
                return _PendingConv(conv=conv, node=node)
            conv.padding = _same_padding(node, conv, whole_numbers(size, "input_shape"))
        return conv
    return convert


def _pool(cls: type[ir.SumPool2d] | type[ir.AvgPool2d]) -> Callable[[_Node], ir.Op]:
    return lambda node: cls(kernel_size=node.require("kernel_size"), stride=node.require("stride"),
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
