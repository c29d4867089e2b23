"""Import ONNX models into the snnc IR.

ONNX has no spiking neuron, so a trained SNN arrives in one of two forms (``docs/onnx.md``):

- **One time step of a stateful network**, as ``torch.onnx.export`` writes it for snnTorch,
  SpikingJelly, Norse or plain PyTorch code: the graph takes the network's inputs and the neuron
  states of the previous step, and returns the network's outputs and the new states. Neurons are
  recognised by their arithmetic, not by names: every elementwise operation on the states is
  interpreted symbolically (``_Expr``: sums of per-neuron coefficients times signals, where a
  product with a spike indicator is allowed), and the resulting update of each state is matched
  against the IR's neuron equations (decay multiply, integration, threshold compare, reset by
  subtraction or to a value, with the reset applied at once or, as snnTorch does, one step later).
  The exporter's form (legacy TorchScript or dynamo) then does not matter.
- **snnc's operator domain** ``ai.snnc``, which ``snnc.export.to_onnx`` writes: every IR operation
  as one node whose attributes are the IR's parameters. Such nodes become IR nodes as they are.

Synapses (Gemm, MatMul, Conv), pooling and shape operations become IR operations; a
BatchNormalization, or a multiplication and addition by constants, right after a synapse is folded
into its weights. Anything else is refused with an error that names the node and the operator and
lists what is supported.

A model is read within snnc's memory budget: every tensor's declared size is checked before its
data is converted, and every operation on constants before it runs, from the sizes ONNX's shape
inference gives it. External data, opsets the importer was not written for, operators of other
domains and malformed ``snnc.*`` metadata are refused with the file and what is wrong.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, checker, defs, helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from snnc import ir
from snnc.errors import FrontendError, SnncError, shown
from snnc.files import Budget, check_declared_array
from snnc.frontend import time_step, verified
from snnc.ir.graph import DEFAULT_DT
from snnc.ir.printer import show_name
from snnc.ir.serialize import decode_arrays

#: snnc's operator domain: every IR operation by its name, parameters as attributes.
DOMAIN = "ai.snnc"
#: Model metadata that snnc writes: the time step, the number of state inputs, the graph's metadata.
META_DT, META_STATES, META_GRAPH = "snnc.dt", "snnc.states", "snnc.metadata"
#: Model metadata that ``snnc.export`` writes for annotated nodes: JSON of the annotations by node
#: name as ``serialize.encode_arrays`` encodes them, with the initializers that hold the arrays.
META_ANNOTATIONS = "snnc.annotations"
#: The version of the ai.snnc domain that ``snnc.export`` writes and this importer reads.
DOMAIN_VERSION = 1
#: The standard opsets read: from 13, where Squeeze, Unsqueeze and Split take their axes as inputs,
#: to 25. The operators interpreted here keep their inputs and attributes through 25 (onnx.defs);
#: operations on constants run in ONNX's reference evaluator at the model's own opset.
OPSETS = range(13, 26)
#: Tensor element types read: those numpy computes with. Strings, complex numbers, bfloat16 and the
#: 8- and 4-bit float and integer types are refused by name.
TENSOR_TYPES = {getattr(TensorProto, name): name for name in (
    "FLOAT", "DOUBLE", "FLOAT16", "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")}
_TENSOR_ATTRIBUTES = (onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS)
_GRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
#: Tensors of shape-like values (a Reshape's shape, a Slice's bounds) at most this long are shown to
#: shape inference, which then knows the size of what an operation on constants would compute.
_SHAPE_VALUES = 1024


def load_onnx(path: str | Path, dt: float | None = None, states: int | None = None) -> ir.Graph:
    """Import the ONNX file at ``path``; ``dt`` and ``states`` as for ``from_onnx``."""
    try:
        model = onnx.load(str(path), load_external_data=False)  # external data is refused by name below
    except Exception as e:  # onnx raises DecodeError, OSError and others for files that are not ONNX
        raise FrontendError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    return from_onnx(model, str(path), dt, states, name=Path(path).stem)


def from_onnx(model: onnx.ModelProto, source: str = "<onnx>", dt: float | None = None, states: int | None = None,
              name: str = "") -> ir.Graph:
    """Import an in-memory ONNX model.

    ``dt`` (seconds) overrides the model's ``snnc.dt`` metadata and the default 1e-4 s: ONNX stores
    no time step and none enters the update. ``states`` is how many of the last graph inputs are
    neuron states (the last outputs being their next values, in the same order); by default the
    model's ``snnc.states`` metadata, else one fewer than the smaller of the input and output counts.
    """
    _check_text(model, source)
    meta = {p.key: p.value for p in model.metadata_props}
    opset = _opset(model, source)
    dt = time_step(dt, "dt")
    if dt is None:
        dt = time_step(_number(meta, META_DT, float, source, DEFAULT_DT), f"{source}: metadata {META_DT}")
    metadata = _json(meta, META_GRAPH, source, {})
    if not isinstance(metadata, dict):
        raise FrontendError(f"{source}: metadata {META_GRAPH} must be a JSON object, got {type(metadata).__name__}")
    graph = ir.Graph(dt=dt, name=model.graph.name or name, metadata=metadata)
    if states is None:
        fewest = min(len(model.graph.input), len(model.graph.output))
        states = _number(meta, META_STATES, int, source, max(0, fewest - 1))
    importer = _Importer(model.graph, source, graph, states, opset)
    with np.errstate(all="ignore"):  # a non-finite result is refused by verify, by name; a warning adds lines
        imported = importer.run()
    return _annotated(imported, _json(meta, META_ANNOTATIONS, source, None), importer.values, source)


def _check_text(model: onnx.ModelProto, source: str) -> None:
    """Refuse a name or metadata string that is not UTF-8: protobuf hands such a string field over
    as bytes, which would become names of the IR's nodes."""
    graph = model.graph
    texts = [("the graph's name", graph.name), *(("the opset domain", o.domain) for o in model.opset_import)]
    texts += [("metadata", text) for p in model.metadata_props for text in (p.key, p.value)]
    texts += [("the tensor name", v.name) for v in (*graph.input, *graph.output, *graph.initializer)]
    for node in graph.node:
        texts += [(f"node {shown(node.name)}", text) for text in (
            node.name, node.op_type, node.domain, *node.input, *node.output, *(a.name for a in node.attribute),
            *(text for p in node.metadata_props for text in (p.key, p.value)))]
    for where, text in texts:
        if not isinstance(text, str):
            raise FrontendError(f"{source}: {where} holds {shown(text)}, which is not UTF-8 text")


def _opset(model: onnx.ModelProto, source: str) -> int:
    """The model's standard opset, after checking it and ai.snnc's version are ones this importer reads."""
    versions = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    if versions.get(DOMAIN, DOMAIN_VERSION) != DOMAIN_VERSION:
        raise FrontendError(f"{source}: opset {DOMAIN} version {versions[DOMAIN]} is not read; snnc reads version "
                            f"{DOMAIN_VERSION}, which snnc.export writes")
    opset = versions.get("ai.onnx")
    if opset not in OPSETS:
        given = "declares no standard opset" if opset is None else f"uses ONNX opset {opset}"
        raise FrontendError(f"{source}: {given}; snnc reads opsets {OPSETS[0]} to {OPSETS[-1]} (re-export the "
                            "model with one of them)")
    return opset


def _number(meta: dict, key: str, kind: type, source: str, default):
    """The ``snnc.*`` metadata ``key`` read as ``kind`` (float or int), ``default`` when absent."""
    if key not in meta:
        return default
    try:
        return kind(meta[key])
    except ValueError:
        what = "a number" if kind is float else "a whole number"
        raise FrontendError(f"{source}: metadata {key}={shown(meta[key])} is not {what}") from None


def _json(meta: dict, key: str, source: str, default):
    """The ``snnc.*`` metadata ``key`` parsed as JSON, ``default`` when absent."""
    if key not in meta:
        return default
    try:
        return json.loads(meta[key])
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the parser's stack
        raise FrontendError(f"{source}: metadata {key} is not valid JSON ({type(e).__name__}: "
                            f"{' '.join(str(e).split())}); it is written by snnc.export") from None


def _annotated(graph: ir.Graph, document, tensors: dict, source: str) -> ir.Graph:
    """``graph`` with the node annotations of the ``snnc.annotations`` metadata, if the model has it."""
    if document is None:
        return graph
    where = f"{source}: metadata {META_ANNOTATIONS}"
    try:
        arrays = [tensors[name] for name in document["arrays"]]
        if not all(isinstance(array, np.ndarray) for array in arrays):
            raise ValueError("its arrays must name initializers")
        nodes = decode_arrays(document["nodes"], arrays, where)
        if not all(isinstance(value, dict) for value in nodes.values()):
            raise ValueError("each node's annotations must be an object")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise FrontendError(f"{where}: malformed ({type(e).__name__}: {e}); it is written by snnc.export") from None
    for name, annotations in nodes.items():
        if name not in graph.nodes:
            raise FrontendError(f"{where}: annotates node {name!r}, which the graph does not have")
        graph[name].annotations = annotations
    return graph


# ----------------------------------------------------------------------------- symbolic values

#: A linear form: coefficient arrays by symbol (a network input, a layer's output or a state), the
#: constant under the key None.
Affine = dict


@dataclass
class _Expr:
    """An elementwise value: Σ over monomials of (product of spike indicators) · (linear form).

    Indicators are numbered (``_Importer.indicators``); coefficient arrays broadcast to ``shape``,
    the full ONNX shape, batch included. This covers every neuron update of the IR: products of a
    spike with the membrane (reset to a value) are linear within one monomial.
    """

    shape: tuple[int, ...]
    terms: dict[frozenset, Affine] = field(default_factory=dict)

    @staticmethod
    def const(value: np.ndarray) -> _Expr:
        value = np.asarray(value, dtype=np.float64)
        return _Expr(value.shape, {frozenset(): {None: value}}).pruned()

    @staticmethod
    def symbol(name: str, shape: tuple[int, ...]) -> _Expr:
        return _Expr(_broadcast(tuple(shape)), {frozenset(): {name: np.ones(())}})

    def pruned(self) -> _Expr:
        terms = {}
        for monomial, form in self.terms.items():
            form = {k: v for k, v in form.items() if np.any(v != 0)}
            if form:
                terms[monomial] = form
        return _Expr(self.shape, terms)

    def __add__(self, other: _Expr) -> _Expr:
        shape = _broadcast(self.shape, other.shape)  # first: it bounds the sums of coefficients below
        terms = {m: dict(f) for m, f in self.terms.items()}
        for monomial, form in other.terms.items():
            target = terms.setdefault(monomial, {})
            for key, value in form.items():
                target[key] = target[key] + value if key in target else value
        return _Expr(shape, terms).pruned()

    def scaled(self, factor: np.ndarray) -> _Expr:
        factor = np.asarray(factor, dtype=np.float64)
        return _Expr(_broadcast(self.shape, factor.shape),
                     {m: {k: v * factor for k, v in f.items()} for m, f in self.terms.items()}).pruned()

    def __neg__(self) -> _Expr:
        return self.scaled(np.array(-1.0))

    def __sub__(self, other: _Expr) -> _Expr:
        return self + (-other)

    def __mul__(self, other: _Expr) -> _Expr:
        """The product, as long as no monomial multiplies two signals (which no neuron does)."""
        result = _Expr(_broadcast(self.shape, other.shape))
        for m1, f1 in self.terms.items():
            for m2, f2 in other.terms.items():
                if set(f1) != {None} and set(f2) != {None}:
                    raise _Nonlinear()
                constant, form = (f1[None], f2) if set(f1) == {None} else (f2[None], f1)
                result = result + _Expr(result.shape, {m1 | m2: {k: v * constant for k, v in form.items()}})
        return result.pruned()

    def monomial(self, indicators: frozenset = frozenset()) -> Affine:
        return self.terms.get(indicators, {})

    @property
    def indicators(self) -> set[int]:
        return set().union(*self.terms)

    @property
    def symbols(self) -> set[str]:
        return {k for f in self.terms.values() for k in f if k is not None}

    def constant(self) -> np.ndarray | None:
        """The value if the expression holds no symbol and no indicator, else None."""
        if any(self.terms.keys() - {frozenset()}) or self.symbols:
            return None
        return np.broadcast_to(self.monomial().get(None, np.zeros(())), self.shape)

    def same(self, other: _Expr) -> bool:
        """Equal term by term, up to the rounding of coefficients computed in a different order."""
        if self.shape != other.shape or self.terms.keys() != other.terms.keys():
            return False
        shape = self.shape
        for monomial, form in self.terms.items():
            theirs = other.terms[monomial]
            if form.keys() != theirs.keys():
                return False
            if not all(np.allclose(np.broadcast_to(form[k], shape), np.broadcast_to(theirs[k], shape),
                                   rtol=1e-9, atol=1e-12) for k in form):
                return False
        return True

    def relabelled(self, shape: tuple[int, ...]) -> _Expr:
        """The same elements under another shape (only size-1 dimensions differ)."""
        def move(v):
            return np.broadcast_to(v, self.shape).reshape(shape) if v.ndim else v
        return _Expr(tuple(shape), {m: {k: move(v) for k, v in f.items()} for m, f in self.terms.items()})


class _Nonlinear(Exception):
    """A product of two signals: no IR operation computes it."""


@dataclass
class _Indicator:
    """A spike: 1 where ``expr > 0`` (``strict``) or ``expr >= 0``, else 0."""

    expr: _Expr
    strict: bool
    node: str


@dataclass
class _Layer:
    """An ONNX node that becomes one IR node: its op, and the values summed into it."""

    name: str
    op: ir.Op
    inputs: list[_Expr]
    tensor: str = ""  # the ONNX tensor it computes


@dataclass
class _Neuron:
    """A recognised neuron: the IR op, where its input comes from, and what else it needs."""

    name: str
    op: ir.Op
    shape: tuple[int, ...]  # the IR shape (no batch)
    drive: Affine  # the input: coefficient (relative to the op's gain) by symbol
    spike: int | None  # the indicator that is its output, for spiking neurons
    membrane: _Expr | None  # its output expression, for non-spiking neurons
    feedback: list[tuple[str, np.ndarray, bool]] = field(default_factory=list)  # (suffix, weight, two steps)


#: Node metadata in which dynamo's exporter records the module path of a node.
NAME_SCOPES = "pkg.torch.onnx.name_scopes"


def _type_name(code: int) -> str:
    try:
        return TensorProto.DataType.Name(code)
    except ValueError:
        return f"number {code}"


def _broadcast(*shapes) -> tuple[int, ...]:
    """The shape of a value computed from values of ``shapes``; a ``ValueError`` when they do not
    broadcast or when it would not fit snnc's memory budget (coefficient arrays take its shape)."""
    shape = tuple(np.broadcast_shapes(*shapes))
    try:
        check_declared_array(shape, np.float64, "the values it computes")
    except SnncError as e:
        raise ValueError(str(e)) from None
    return shape


def _core(shape) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _uniform(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-neuron parameter for an IR node of ``shape``: a scalar when all neurons share it."""
    value = np.asarray(value, dtype=np.float64)
    full = np.broadcast_to(value[0] if value.ndim > len(shape) else value, shape)  # the batch shares parameters
    return np.array(full.flat[0]) if full.size and np.all(full == full.flat[0]) else full.copy()


# ----------------------------------------------------------------------------- the importer

#: Elementwise operations interpreted symbolically, and shape operations on whole signals.
_ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Neg", "Sum", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
                "Where", "Not", "And", "Or", "Cast", "Identity", "Dropout", "BatchNormalization")
_LAYOUT = ("Unsqueeze", "Squeeze", "Reshape", "Flatten", "Slice", "Gather", "Transpose", "Expand", "Split")
_LAYERS = ("Gemm", "MatMul", "Conv", "AveragePool", "MaxPool", "Concat")


class _Importer:
    def __init__(self, onnx_graph: onnx.GraphProto, source: str, graph: ir.Graph, states: int, opset: int):
        self.onnx, self.source, self.graph, self.opset = onnx_graph, source, graph, opset
        self.budget = Budget()  # what the model's tensors and computed constants may take in all
        self.checker = checker.C.CheckerContext()  # standard nodes are checked against their schema
        self.checker.ir_version = onnx.IR_VERSION
        self.checker.opset_imports = {"": opset}
        self.values: dict[str, np.ndarray | _Expr] = {}
        self.indicators: list[_Indicator] = []
        self.layers: dict[str, _Layer] = {}
        self.uses: dict[str, int] = {}
        for node in onnx_graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        for out in onnx_graph.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        initializers = {t.name for t in onnx_graph.initializer}
        inputs = [i for i in onnx_graph.input if i.name not in initializers]
        if not 0 <= states < len(inputs) or states >= len(onnx_graph.output):
            raise FrontendError(f"{source}: {states} state inputs do not fit a graph of {len(inputs)} inputs "
                                f"and {len(onnx_graph.output)} outputs (at least one of each must remain)")
        self.network_inputs = inputs[:len(inputs) - states]
        self.state_inputs = inputs[len(inputs) - states:]
        self.state_outputs = list(onnx_graph.output[len(onnx_graph.output) - states:])
        self.network_outputs = list(onnx_graph.output[:len(onnx_graph.output) - states])
        self.sources: dict[str, str] = {}  # symbol -> the IR node that sends it

    # -- errors

    def error(self, node: onnx.NodeProto, message: str) -> FrontendError:
        name = node.name or next(iter(node.output), "")
        return FrontendError(f"{self.source}: node {name!r} ({show_name(node.op_type)}): {message}")

    # -- phase 1: interpret the graph

    def run(self) -> ir.Graph:
        for tensor in self.onnx.initializer:
            self.values[tensor.name] = self._tensor(tensor, f"initializer {tensor.name!r}")
        for value in (*self.network_inputs, *self.state_inputs):
            shape = self._shape(value)
            self.values[value.name] = _Expr.symbol(value.name, shape)
        for value in self.network_inputs:
            self.sources[value.name] = self._add(value.name, ir.Input(shape=self._shape(value)[1:]))
        for node in self.onnx.node:
            self._interpret(node)
        neurons = self._recognise()
        return self._build(neurons)

    def _shape(self, value: onnx.ValueInfoProto) -> tuple[int, ...]:
        where = f"{self.source}: input {value.name!r}"
        tensor = value.type.tensor_type
        if tensor.elem_type not in TENSOR_TYPES:
            raise FrontendError(f"{where}: element type {_type_name(tensor.elem_type)} is not read; give one of "
                                + ", ".join(TENSOR_TYPES.values()))
        if not tensor.shape.dim:
            raise FrontendError(f"{where} has no shape; export with a fixed input shape")
        # a named (batch) size: one
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim)
        if min(shape) < 1:
            raise FrontendError(f"{where}: shape {shape} must have sizes >= 1")
        check_declared_array(shape, np.float64, where)
        return shape

    def _tensor(self, tensor: onnx.TensorProto, what: str) -> np.ndarray:
        """A tensor's array, after checking its element type, its declared size against the budget
        and that its data is in the model (external data would read other files)."""
        where = f"{self.source}: {what}"
        if tensor.data_location == TensorProto.EXTERNAL:
            raise FrontendError(f"{where}: its data is stored outside the model (external data); save the model "
                                "with its tensors inside")
        if tensor.data_type not in TENSOR_TYPES:
            raise FrontendError(f"{where}: element type {_type_name(tensor.data_type)} is not read; give one of "
                                + ", ".join(TENSOR_TYPES.values()))
        check_declared_array(tuple(tensor.dims), helper.tensor_dtype_to_np_dtype(tensor.data_type), where, self.budget)
        try:
            return numpy_helper.to_array(tensor)
        except ValueError as e:  # the data holds more or fewer values than the dimensions declare
            raise FrontendError(f"{where}: its data does not match its dims {list(tensor.dims)} ({e})") from None

    def _add(self, name: str, op: ir.Op) -> str:
        """Add an IR node under ``name``, or ``name.1``, ``name.2``, ... if that is taken; returns the name."""
        unique, i = name, 0
        while unique in self.graph.nodes:
            i += 1
            unique = f"{name}.{i}"
        self.graph.add(unique, op)
        return unique

    def _layer_name(self, node: onnx.NodeProto) -> str:
        """The PyTorch module a node came from, where the exporter says (dynamo's name scopes, the legacy
        exporter's ``/fc1/Gemm``), else the node's name: IR nodes then carry the model's layer names."""
        scopes = next((p.value for p in node.metadata_props if p.key == NAME_SCOPES), None)
        parts = [s for s in self._name_scopes(node, scopes)[:-1] if s] if scopes else node.name.split("/")[1:-1]
        return ".".join(parts) or node.name or node.output[0]

    def _name_scopes(self, node: onnx.NodeProto, text: str) -> list[str]:
        """The module path in ``NAME_SCOPES``: a Python list of strings, read as a literal."""
        try:
            scopes = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):  # what Python's parser raises
            scopes = None
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise self.error(node, f"its metadata {NAME_SCOPES} is not a list of module names: {shown(text)}")
        return scopes

    def _interpret(self, node: onnx.NodeProto) -> None:
        if node.domain not in ("", DOMAIN):
            raise self.error(node, f"operator domain {node.domain!r} is not read; snnc reads standard ONNX "
                                   f"operators and the {DOMAIN} domain")
        if node.domain == "" and defs.has(node.op_type):  # an unknown operator is refused by name below
            try:
                checker.check_node(node, self.checker)
            except checker.ValidationError as e:  # inputs, outputs or attributes its schema does not allow
                raise self.error(node, f"does not fit ONNX's {show_name(node.op_type)} at opset {self.opset} "
                                       f"({shown(str(e).splitlines()[0], 200)})") from None
        missing = [name for name in node.input if name and name not in self.values]
        if missing:
            raise self.error(node, f"its input {missing[0]!r} is no graph input, initializer or output of an "
                                   "earlier node")
        for attribute in node.attribute:
            if attribute.type in _GRAPH_ATTRIBUTES:  # If, Loop, Scan: bodies that would run unbounded
                raise self.error(node, "operators with subgraphs are not read; export the model without control "
                                       "flow")
            for tensor in (attribute.t, *attribute.tensors) if attribute.type in _TENSOR_ATTRIBUTES else ():
                self._tensor(tensor, f"node {node.name or next(iter(node.output), '')!r} attribute {attribute.name!r}")
        args = [self.values[name] if name else None for name in node.input]
        try:
            outputs = self._outputs(node, args)
        except _Nonlinear:
            raise self.error(node, "multiplies two signals; only products with constants or spikes are "
                                   "supported") from None
        except ir.ops.ShapeError as e:
            raise self.error(node, str(e)) from None
        except ValueError as e:  # numpy refusing shapes that do not broadcast, or _broadcast's budget
            raise self.error(node, f"cannot compute its output ({' '.join(str(e).split())})") from None
        for name, value in zip(node.output, outputs):
            if name:
                self.values[name] = value

    def _outputs(self, node: onnx.NodeProto, args: list) -> list:
        if node.domain == DOMAIN:
            return [self._snnc_op(node, args)]
        if not any(isinstance(a, _Expr) for a in args):  # Constant, and arithmetic on parameters
            return self._evaluate(node, args, self.budget)
        if node.op_type == "Shape":
            attrs = {a.name: a.i for a in node.attribute}
            return [np.array(args[0].shape[attrs.get("start", 0):attrs.get("end")], dtype=np.int64)]
        if node.op_type in _ELEMENTWISE:
            return [self._elementwise(node, args)]
        if node.op_type in _LAYOUT:
            return self._layout(node, args)
        if node.op_type in _LAYERS:
            return [self._layer(node, args)]
        raise self.error(node, "unsupported ONNX operator; supported: "
                         + ", ".join(sorted({*_ELEMENTWISE, *_LAYOUT, *_LAYERS, "Constant", "Shape"}))
                         + f", and the {DOMAIN} operators " + ", ".join(sorted(set(ir.OPS) - {"Input", "Output"})))

    def _evaluate(self, node: onnx.NodeProto, args: list, budget: Budget) -> list[np.ndarray]:
        """Run an operation on constants, once shape inference has bounded what it computes by ``budget``."""
        feeds = {n: a for n, a in zip(node.input, args) if n}
        try:
            schema = defs.get_schema(node.op_type, self.opset, node.domain)
            types = {n: helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                     for n, a in feeds.items()}
            data = {n: numpy_helper.from_array(a, n) for n, a in feeds.items()
                    if a.dtype.kind in "iu" and a.size <= _SHAPE_VALUES}
            inferred = shape_inference.infer_node_outputs(schema, node, types, data)
        except Exception as e:  # onnx raises many types for a node its schema does not fit
            raise self.error(node, f"cannot evaluate this operation on constants ({type(e).__name__}: {e})") from None
        for name in filter(None, node.output):
            tensor = inferred.get(name, onnx.TypeProto()).tensor_type
            if not tensor.HasField("shape") or not all(d.HasField("dim_value") for d in tensor.shape.dim):
                raise self.error(node, "the size of what it computes on constants is unknown before it runs, so "
                                       "snnc does not run it")
            check_declared_array(tuple(d.dim_value for d in tensor.shape.dim), np.float64,
                                 f"{self.source}: node {node.name or name!r} ({show_name(node.op_type)}) output "
                                 f"{name!r}", budget)
        try:
            return ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as e:  # the reference evaluator raises whatever its numpy code meets
            raise self.error(node, f"cannot evaluate this operation on constants ({e})") from None

    @staticmethod
    def _expr(value) -> _Expr:
        return value if isinstance(value, _Expr) else _Expr.const(value)

    def _indicator(self, expr: _Expr, strict: bool, node: onnx.NodeProto) -> _Expr:
        """The 0/1 value of ``expr > 0`` (``>= 0`` unless strict), one indicator per distinct comparison.

        A comparison of a spike with a constant (``spikes > 0``) is that spike, its negation or a constant.
        """
        compare = np.greater if strict else np.greater_equal
        (spike,) = expr.indicators if len(expr.indicators) == 1 else (None,)
        if spike is not None and not expr.symbols and len(expr.terms) <= 2:
            low = expr.monomial().get(None, np.zeros(()))
            high = low + expr.monomial(frozenset([spike]))[None]
            off, on = compare(low, 0), compare(high, 0)
            if np.all(off == off.flat[0]) and np.all(on == on.flat[0]):
                value = float(off.flat[0])
                return _Expr(expr.shape, {frozenset(): {None: np.array(value)},
                                          frozenset([spike]): {None: np.array(float(on.flat[0]) - value)}}).pruned()
        for i, known in enumerate(self.indicators):
            if known.strict == strict and known.expr.same(expr):
                break
        else:
            self.indicators.append(_Indicator(expr, strict, self._layer_name(node)))
            i = len(self.indicators) - 1
        return _Expr(expr.shape, {frozenset([i]): {None: np.ones(())}})

    def _elementwise(self, node: onnx.NodeProto, args) -> _Expr:
        op = node.op_type
        if op in ("Cast", "Identity", "Dropout"):  # value-preserving for spikes and states (Dropout: inference)
            return args[0]
        if op == "BatchNormalization":
            if any(a.name == "training_mode" and a.i for a in node.attribute):
                raise self.error(node, "training_mode=1 normalizes by each batch's statistics; export the model "
                                       "in eval mode")
            x, scale, bias, mean, var = args[:5]
            epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            scale, bias, mean, var = (np.asarray(a, np.float64) for a in (scale, bias, mean, var))
            if not np.all(var + epsilon > 0):
                raise self.error(node, "its variance plus epsilon must be > 0")
            factor = scale / np.sqrt(var + epsilon)
            per_channel = (-1, *[1] * (len(x.shape) - 2))
            return self._affine_op(node, x, factor.reshape(per_channel), (bias - mean * factor).reshape(per_channel))
        constants = [isinstance(v, np.ndarray) for v in args]
        if op in ("Add", "Mul") and len(args) == 2 and any(constants) and not all(constants) or \
                op in ("Sub", "Div") and constants == [False, True]:
            x, constant = (args[1], args[0]) if constants[0] else (args[0], args[1])
            constant = np.asarray(constant, np.float64)
            if op in ("Add", "Sub"):
                return self._affine_op(node, x, np.ones(()), constant if op == "Add" else -constant)
            return self._affine_op(node, x, constant if op == "Mul" else 1.0 / constant, np.zeros(()))
        a, b = (self._expr(v) if v is not None else None for v in (args + [None])[:2])
        if op == "Add" or op == "Sum":
            return sum((self._expr(v) for v in args[1:]), self._expr(args[0]))
        if op == "Sub":
            return a - b
        if op == "Mul":
            return a * b
        if op == "Div":  # by a constant it was an affine map above
            raise self.error(node, "divides by a signal; only division by a constant is supported")
        if op == "Neg":
            return -a
        if op in ("Greater", "GreaterOrEqual"):
            return self._indicator(a - b, op == "Greater", node)
        if op in ("Less", "LessOrEqual"):
            return self._indicator(b - a, op == "Less", node)
        if op == "Not":
            return _Expr.const(np.ones(())) - a
        if op == "And":
            return a * b
        if op == "Or":
            return a + b - a * b
        condition, x, y = (self._expr(v) for v in args)  # Where
        return y + condition * (x - y)

    def _affine_op(self, node: onnx.NodeProto, x: _Expr, factor: np.ndarray, offset: np.ndarray) -> _Expr:
        """``x · factor + offset``, folded into the synapse that computed ``x`` when nothing else reads it."""
        layer = self._sole_layer(x, node)
        scale, shift = (None, None) if layer is None else (self._per_output(x.shape, factor),
                                                           self._per_output(x.shape, offset))
        if scale is None or shift is None:
            return x.scaled(factor) + _Expr.const(offset)
        op = layer.op
        op.weight = op.weight * scale.reshape(-1, *[1] * (op.weight.ndim - 1))
        if op.bias is not None or np.any(shift):
            op.bias = (0.0 if op.bias is None else op.bias) * scale + shift
        return x

    def _sole_layer(self, x: _Expr, node: onnx.NodeProto) -> _Layer | None:
        """The synapse whose output ``x`` is, read by ``node`` alone: one whose weights can absorb an
        affine map (BatchNormalization, or a bias added after a MatMul)."""
        form = x.monomial()
        if x.terms.keys() != {frozenset()} or len(form) != 1:
            return None
        (name, weight), = form.items()
        layer = self.layers.get(name)
        if layer is None or layer.tensor not in node.input or self.uses.get(layer.tensor) != 1 or np.any(weight != 1):
            return None
        op = layer.op
        plain = isinstance(op, ir.Affine) and op.delay is None and op.out_shape is None
        return layer if plain or isinstance(op, (ir.Conv1d, ir.Conv2d)) else None

    @staticmethod
    def _per_output(shape: tuple[int, ...], value: np.ndarray) -> np.ndarray | None:
        """``value`` as one number per output channel of a layer whose output has ``shape``, if it is one."""
        full = np.broadcast_to(np.asarray(value, np.float64), shape)[0]
        channels = full.reshape(full.shape[0], -1)
        return channels[:, 0].copy() if np.all(channels == channels[:, :1]) else None

    def _layout(self, node: onnx.NodeProto, args) -> list[_Expr]:
        """Shape operations: relabel when only size-1 dimensions change, else a Flatten."""
        x = args[0]
        if not isinstance(x, _Expr) or any(isinstance(a, _Expr) for a in args[1:]):
            raise self.error(node, "reshapes a signal by a computed shape; export with fixed shapes")
        # the result is only measured, so it takes a budget of its own
        shapes = [y.shape for y in self._evaluate(node, [np.zeros(x.shape, np.float32), *args[1:]], Budget())]
        if all(_core(shape) == _core(x.shape) and int(np.prod(shape)) == int(np.prod(x.shape)) for shape in shapes):
            return [x.relabelled(shape) for shape in shapes]
        (shape,) = shapes if len(shapes) == 1 else [()]
        if node.op_type in ("Flatten", "Reshape") and len(shape) == 2 and shape[0] == x.shape[0]:
            return [self._new_layer(node, ir.Flatten(start_dim=0, end_dim=-1), [x], shape)]
        raise self.error(node, f"changes the shape {x.shape} to {', '.join(map(str, shapes))}; supported are "
                               "flattening all but the batch dimension and changes of size-1 dimensions")

    def _new_layer(self, node: onnx.NodeProto, op: ir.Op, inputs: list[_Expr], shape, name: str = "") -> _Expr:
        """A node that becomes one IR node; its output is a new symbol named after the layer."""
        name = name or self._layer_name(node)
        while name in self.layers or name in self.values:
            name += "_"
        self.layers[name] = _Layer(name, op, inputs, node.output[0])
        return _Expr.symbol(name, tuple(shape))

    def _layer(self, node: onnx.NodeProto, args) -> _Expr:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        x = args[0]
        if not isinstance(x, _Expr) or any(isinstance(a, _Expr) for a in args[1:]) and op != "Concat":
            raise self.error(node, "needs a signal as first input and constant weights")
        if op == "Gemm":
            if attrs.get("transA", 0) or len(x.shape) != 2:
                raise self.error(node, f"needs an input (batch, features) that is not transposed, got {x.shape}")
            b = np.asarray(args[1], np.float64)
            if b.ndim != 2:
                raise self.error(node, f"needs a 2-D weight, got shape {b.shape}")
            weight = (b if attrs.get("transB", 0) else b.T) * attrs.get("alpha", 1.0)
            bias = None if len(args) < 3 or args[2] is None else \
                np.broadcast_to(np.asarray(args[2], np.float64) * attrs.get("beta", 1.0), weight.shape[:1]).copy()
            return self._new_layer(node, ir.Affine(weight=weight, bias=bias), [x], (x.shape[0], weight.shape[0]))
        if op == "MatMul":
            b = np.asarray(args[1], np.float64)
            if b.ndim != 2 or len(x.shape) != 2:
                raise self.error(node, f"supports (batch, features) @ (features, outputs), got {x.shape} @ {b.shape}")
            return self._new_layer(node, ir.Affine(weight=b.T.copy()), [x], (x.shape[0], b.shape[1]))
        if op == "Conv":
            return self._conv(node, attrs, x, args)
        if op in ("AveragePool", "MaxPool"):
            return self._pool(node, attrs, x)
        return self._concat(node, attrs, args)

    def _conv(self, node, attrs, x: _Expr, args) -> _Expr:
        weight = np.asarray(args[1], np.float64)
        n = weight.ndim - 2
        if n not in (1, 2) or len(x.shape) != n + 2:
            raise self.error(node, f"only 1-D and 2-D convolutions are supported, got weight {weight.shape}")
        pads = self._pads(node, attrs, n)
        cls = ir.Conv1d if n == 1 else ir.Conv2d
        op = cls(weight=weight, bias=None if len(args) < 3 or args[2] is None else np.asarray(args[2], np.float64),
                 stride=attrs.get("strides", [1] * n), padding=pads, dilation=attrs.get("dilations", [1] * n),
                 groups=attrs.get("group", 1))
        op.validate()  # before its output shape divides by the stride
        return self._new_layer(node, op, [x], (x.shape[0], *op.output_shape(x.shape[1:])))

    def _pads(self, node, attrs, n: int) -> tuple[int, ...]:
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise self.error(node, f"auto_pad={attrs['auto_pad']!r} is not supported; export with explicit pads")
        pads = list(attrs.get("pads", [0] * 2 * n))
        if pads[:n] != pads[n:]:
            raise self.error(node, f"pads {pads} differ between the two sides, which the IR cannot express")
        return tuple(pads[:n])

    def _pool(self, node, attrs, x: _Expr) -> _Expr:
        kernel = tuple(attrs["kernel_shape"])
        if len(kernel) != 2 or attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise self.error(node, "only 2-D pooling without ceil_mode or dilation is supported")
        pads = self._pads(node, attrs, 2)
        if node.op_type == "AveragePool":
            if any(pads) and not attrs.get("count_include_pad", 0):
                raise self.error(node, "padded average pooling must count the padding (count_include_pad=1)")
            cls = ir.AvgPool2d
        else:
            cls = ir.MaxPool2d
        op = cls(kernel_size=kernel, stride=attrs.get("strides", [1, 1]), padding=pads)
        op.validate()  # before its output shape divides by the stride
        return self._new_layer(node, op, [x], (x.shape[0], *op.output_shape(x.shape[1:])))

    def _concat(self, node, attrs, args) -> _Expr:
        """Concatenation along a non-batch axis: one placement Affine per part, summed by an Add."""
        if len(args) == 1:  # torch.stack of one step
            return args[0]
        rank = len(args[0].shape) if isinstance(args[0], _Expr) else 0
        axis = attrs["axis"]
        if not -rank <= axis < rank:
            raise self.error(node, f"axis={axis} is not an axis of its input of shape {args[0].shape}")
        axis %= rank
        if axis == 0 or not all(isinstance(a, _Expr) for a in args):
            raise self.error(node, "only concatenation of signals along a non-batch axis is supported")
        if any(len(a.shape) != rank or a.shape[:axis] + a.shape[axis + 1:] != args[0].shape[:axis] +
               args[0].shape[axis + 1:] for a in args):
            raise self.error(node, f"its inputs' shapes {[a.shape for a in args]} differ outside axis {axis}")
        shape = list(args[0].shape)
        shape[axis] = sum(a.shape[axis] for a in args)
        index = np.arange(int(np.prod(shape[1:]))).reshape(shape[1:])
        name = self._layer_name(node)
        parts, start = [], 0
        for k, part in enumerate(args):
            width = part.shape[axis]
            rows = np.take(index, np.arange(start, start + width), axis=axis - 1).ravel()
            check_declared_array((index.size, rows.size), np.float64,
                                 f"{self.source}: node {node.name or node.output[0]!r} (Concat): the placement "
                                 f"weights of its input {k}", self.budget)
            placement = np.zeros((index.size, rows.size))
            placement[rows, np.arange(rows.size)] = 1.0
            piece = self._new_layer(node, ir.Affine(weight=placement, out_shape=tuple(shape[1:])), [part], shape)
            parts.append(piece)
            start += width
        return self._new_layer(node, ir.Add(), parts, shape, name=f"{name}.join")

    def _snnc_op(self, node: onnx.NodeProto, args) -> _Expr:
        if node.op_type not in ir.OPS or node.op_type in ("Input", "Output"):
            raise self.error(node, f"unknown {DOMAIN} operator; known: "
                             + ", ".join(sorted(set(ir.OPS) - {"Input", "Output"})))
        fields = {}
        for a in node.attribute:
            value = helper.get_attribute_value(a)
            if a.type == onnx.AttributeProto.TENSOR:
                value = numpy_helper.to_array(value).copy()
            elif a.type == onnx.AttributeProto.INTS:
                value = tuple(value)
            elif a.type == onnx.AttributeProto.STRING:
                value = value.decode()
            fields[a.name] = value
        try:
            op = ir.OPS[node.op_type](**fields)
            op.check_arrays()
            op.validate()
        except (TypeError, ValueError) as e:
            raise self.error(node, f"bad attributes: {e}") from None
        inputs = [self._expr(a) for a in args if a is not None]
        if not inputs:
            raise self.error(node, "has no input")
        shape = inputs[0].shape
        try:
            out = (shape[0], *op.output_shape(tuple(shape[1:])))
        except ir.ops.ShapeError as e:
            raise self.error(node, str(e)) from None
        name = node.name or node.output[0]
        self.layers[name] = _Layer(name, op, inputs)
        return _Expr.symbol(name, out)

    # -- phase 2: recognise the neurons from the state updates

    def _recognise(self) -> list[_Neuron]:
        """Sort the states into carriers (last step's value of a spike or signal: a recurrent edge),
        synaptic currents (updated from themselves and inputs, read by a membrane) and membranes,
        and recognise one neuron per membrane."""
        updates = {}
        for state, out in zip(self.state_inputs, self.state_outputs):
            value = self.values.get(out.name)
            if not isinstance(value, _Expr):
                raise FrontendError(f"{self.source}: output {out.name!r}, the next value of state {state.name!r}, "
                                    "is a constant")
            updates[state.name] = value
        states = set(updates)
        self.carriers = {s: e for s, e in updates.items() if not e.symbols & states}
        rest = states - set(self.carriers)
        currents = {s for s in rest if updates[s].symbols & rest == {s}
                    and any(s in updates[o].symbols for o in rest - {s})}
        neurons = []
        for membrane in (i.name for i in self.state_inputs if i.name in rest - currents):
            used = updates[membrane].symbols & currents
            if len(used) > 1:
                raise self._neuron_error(membrane, f"it integrates several currents {sorted(used)}")
            current = next(iter(used), None)
            neurons.append(self._neuron(membrane, updates[membrane], current, updates.get(current)))
        return neurons

    def _neuron_error(self, state: str, message: str) -> FrontendError:
        return FrontendError(f"{self.source}: the neuron with state {state!r}: {message}")

    def _neuron(self, v: str, update: _Expr, current: str | None, current_update: _Expr | None) -> _Neuron:
        """Match the update of membrane ``v`` (and of its ``current``) against the IR's neuron."""
        shape = update.shape[1:]
        membrane = _Expr(update.shape, {frozenset(): update.monomial()})  # the update without its reset
        spike, threshold, reset, v_reset, feedback = None, None, "value", np.zeros(()), None
        decay = membrane.monomial().get(v, np.zeros(()))
        indicators = update.indicators
        delayed = [i for i in indicators if self._is_delayed(i, v)]
        if delayed:  # the reset of last step's spike, applied now (snnTorch's reset_delay)
            if len(indicators) != 1:
                raise self._neuron_error(v, "its update mixes resets of this and of the last step")
            (rho,) = delayed
            spike, threshold = self._spike_of(update, v)
            if self.indicators[spike].strict != self.indicators[rho].strict or not np.allclose(
                    -self.indicators[rho].expr.monomial()[None], threshold, rtol=1e-9, atol=1e-12):
                raise self._neuron_error(v, "its reset condition differs from its spike condition")
            if np.any((threshold <= 0) if self.indicators[spike].strict else (threshold < 0)):
                raise self._neuron_error(v, "a zero state is above its threshold, so its delayed reset would "
                                            "act at the first step, where the IR's has no spike to act on")
            reset, v_reset, feedback = self._delayed_reset(v, update.monomial(frozenset([rho])), decay, threshold)
        elif indicators:
            spike, threshold = self._spike_of(membrane, v)
            if indicators != {spike}:
                raise self._neuron_error(v, "its update depends on spikes other than its own")
            reset, v_reset = self._reset(v, membrane, update.monomial(frozenset([spike])), threshold)
        if spike is not None and not self.indicators[spike].strict:  # v >= θ is v > (the float below θ)
            threshold = np.nextafter(threshold, -np.inf)
        form = membrane.monomial()
        drive = {k: c for k, c in form.items() if k not in (v, None, current)}
        params = {"v_decay": decay, "bias": form.get(None, np.zeros(()))}
        if current is not None:
            params.update(self._current(v, current, current_update, form, drive))
            drive = {k: c for k, c in current_update.monomial().items() if k != current}
        gain, drive = self._gain(v, drive)
        params.setdefault("v_gain", gain)
        params = {k: _uniform(p, shape) for k, p in params.items()}
        if spike is not None:
            params.update(v_threshold=_uniform(threshold, shape), v_reset=_uniform(v_reset, shape), reset=reset)
        neuron = _Neuron(v, self._neuron_op(current is not None, spike is not None, params), shape, drive, spike,
                         None if spike is not None else membrane)
        if feedback is not None and np.any(feedback):
            self._add_feedback(neuron, feedback, params)
        return neuron

    def _is_delayed(self, indicator: int, v: str) -> bool:
        """True for ``v - θ`` compared with 0: the state's spike of the last step."""
        expr = self.indicators[indicator].expr
        return expr.terms.keys() == {frozenset()} and expr.monomial().keys() <= {v, None} and \
            np.all(expr.monomial().get(v, 0) == 1)

    def _spike_of(self, membrane: _Expr, v: str) -> tuple[int, np.ndarray]:
        """The indicator that compares ``membrane`` with a threshold, and the threshold."""
        for i, indicator in enumerate(self.indicators):
            difference = (indicator.expr - membrane).constant() if v in indicator.expr.symbols else None
            if difference is not None:
                return i, -difference
        raise self._neuron_error(v, "its update holds a spike, but no threshold compares its membrane")

    def _reset(self, v: str, membrane: _Expr, term: Affine, threshold) -> tuple[str, np.ndarray]:
        """Reset in the same step: ``v - θ`` (a constant term) or ``v_reset`` (the term cancels v)."""
        if term.keys() == {None}:
            if not np.allclose(-term[None], threshold, rtol=1e-9, atol=1e-12):
                raise self._neuron_error(v, "it subtracts an amount that differs from its threshold")
            return "subtract", np.zeros(())
        value = (membrane + _Expr(membrane.shape, {frozenset(): term})).constant()
        if value is None:
            raise self._neuron_error(v, "its reset is neither a subtraction of the threshold nor a fixed value")
        return "value", value

    def _delayed_reset(self, v: str, term: Affine, decay, threshold):
        """A reset applied one step after the spike, after the decay (snnTorch): exact IR forms.

        To a value: ``a·((1-s)·v + s·v_r)`` has the term ``s·(-a·v + a·v_r)``, the IR's reset to
        ``v_r`` seen one step later. Subtracting ``c``: the IR subtracts θ at once, which the decay
        turns into ``a·θ`` by the next step, so the difference ``a·θ - c`` returns as a recurrent input.
        """
        if term.keys() == {None}:
            return "subtract", np.zeros(()), decay * threshold + term[None]
        if term.keys() <= {v, None} and np.allclose(term.get(v, 0), -decay) and np.all(decay != 0):
            return "value", term.get(None, np.zeros(())) / decay, None
        raise self._neuron_error(v, "its delayed reset is neither to a value nor a subtraction: it also discards "
                                    "input (as snnTorch's Synaptic with reset 'zero' does), which the IR cannot "
                                    "express")

    def _current(self, v: str, current: str, update: _Expr, form: Affine, drive: Affine) -> dict:
        """A synaptic current ``c' = α·c + D`` read by the membrane as ``k·c + C``.

        The state may hold the IR's current times a factor κ (Norse keeps it decayed); taking κ so
        that the IR's ``i_gain`` is 1, ``v_gain = k·κ/α``, and each input must reach v as it reaches
        the current, ``C = v_gain·D/κ``.
        """
        if update.terms.keys() != {frozenset()} or None in update.monomial():
            raise self._neuron_error(current, "its current's update holds spikes or a constant, which the IR's "
                                              "current does not")
        alpha = update.monomial()[current]
        inputs = {k: c for k, c in update.monomial().items() if k != current}
        if not inputs:
            raise self._neuron_error(current, "its current has no input")
        kappa = next(iter(inputs.values()))
        v_gain = form.get(current, np.zeros(())) * kappa / alpha if np.all(alpha != 0) else next(iter(drive.values()))
        if drive.keys() != inputs.keys() or not all(np.allclose(drive[k], v_gain * inputs[k] / kappa, rtol=1e-9)
                                                    for k in inputs):
            raise self._neuron_error(v, "its membrane reads the input other than through the current")
        return {"i_decay": alpha, "i_gain": np.ones(()), "v_gain": v_gain}

    def _gain(self, v: str, drive: Affine) -> tuple[np.ndarray, Affine]:
        """The gain of the first input, and every input's coefficient relative to it."""
        if not drive:
            raise self._neuron_error(v, "it has no input")
        gain = next(iter(drive.values()))
        if np.any(gain == 0):
            raise self._neuron_error(v, "some of its neurons ignore their input")
        return gain, {k: c / gain for k, c in drive.items()}

    @staticmethod
    def _neuron_op(cuba: bool, spiking: bool, p: dict) -> ir.Op:
        if cuba:
            return (ir.CubaLIF if spiking else ir.CubaLI)(**p)
        if np.all(p["v_decay"] == 1):
            del p["v_decay"]
            return (ir.IF if spiking else ir.I)(**p)
        return (ir.LIF if spiking else ir.LI)(**p)

    @staticmethod
    def _add_feedback(neuron: _Neuron, weight: np.ndarray, p: dict) -> None:
        """The recurrent input ``w·s[t-1]`` into v of a neuron that subtracts its reset one step late.

        Into a LIF it enters through ``v_gain``. Into a CubaLIF it enters through the current, which
        remembers it: sending ``w·s[t-1] - α·w·s[t-2]`` makes the current carry exactly ``w·s[t-1]``.
        """
        w = weight / p["v_gain"]
        neuron.feedback.append(("reset_feedback", w, False))
        if "i_decay" in p:
            neuron.feedback.append(("reset_feedback_late", -p["i_decay"] * w, True))

    # -- phase 3: build the IR graph

    def _build(self, neurons: list[_Neuron]) -> ir.Graph:
        self._spikes: dict[int, str] = {}
        self._membranes: list[tuple[_Expr, str]] = []
        self._thresholds: dict[int, str] = {}
        self._recurrent: list[tuple[str, str, str]] = []  # (source, target, carrier) edges that must be recurrent
        for neuron in neurons:
            neuron.name = self.sources[neuron.name] = self._add(neuron.name, neuron.op)
            if neuron.spike is not None:
                self._spikes[neuron.spike] = neuron.name
            else:
                self._membranes.append((neuron.membrane, neuron.name))
        for layer in self.layers.values():
            self.sources[layer.name] = self._add(layer.name, layer.op)
        for neuron in neurons:
            for symbol, coefficient in neuron.drive.items():
                self._connect(_Expr((1, *neuron.shape), {frozenset(): {symbol: coefficient}}), neuron.name)
            self._connect_feedback(neuron)
        for layer in self.layers.values():
            for value in layer.inputs:
                self._connect(value, self.sources[layer.name], layer)
        for out in self.network_outputs:
            value = self.values.get(out.name)
            if not isinstance(value, _Expr):
                raise FrontendError(f"{self.source}: output {out.name!r} is a constant")
            self._connect(value, self._add(out.name, ir.Output()))
        verified(self.graph, self.source)
        for source, target, carrier in self._recurrent:
            if (source, target) not in self.graph.recurrent_edges:
                raise FrontendError(f"{self.source}: state {carrier!r} carries last step's {source!r} into "
                                    f"{target!r} outside a loop through a neuron, which the IR cannot delay")
        return self.graph.sort()

    def _connect_feedback(self, neuron: _Neuron) -> None:
        for suffix, weight, late in neuron.feedback:
            source = neuron.name
            if late:  # a Delay of 0 steps on the loop adds one step (docs/semantics.md, section 2)
                source = self._add(f"{neuron.name}.{suffix}_delay", ir.Delay(delay=np.zeros((), np.int64)))
                self.graph.connect(neuron.name, source)
            scale = self._add(f"{neuron.name}.{suffix}", ir.Scale(scale=_uniform(weight, neuron.shape)))
            self.graph.connect(source, scale)
            self.graph.connect(scale, neuron.name)

    def _connect(self, value: _Expr, target: str, layer: _Layer | None = None) -> None:
        """Connect what ``value`` sums into ``target``: signals, spikes and membranes, through Scale
        nodes where coefficients are not 1; a constant only into a synapse's bias."""
        for membrane, neuron in self._membranes:
            if value.same(membrane):
                self._edge(neuron, np.ones(()), target, value.shape)
                return
        for monomial, form in value.terms.items():
            if monomial and (len(monomial) != 1 or form.keys() != {None}):
                raise FrontendError(f"{self.source}: the input of {target!r} multiplies spikes with signals")
            if monomial:
                self._edge(self._spike_source(next(iter(monomial))), form[None], target, value.shape)
                continue
            for symbol, coefficient in form.items():
                if symbol in self.carriers:
                    self._connect_carrier(symbol, coefficient, target)
                elif symbol is not None:
                    if symbol not in self.sources:
                        raise FrontendError(f"{self.source}: state {symbol!r} reaches {target!r} directly; only "
                                            "spikes and the membranes of non-spiking neurons leave a neuron")
                    self._edge(self.sources[symbol], coefficient, target, value.shape)
            if None in form:
                self._constant_input(form[None], value.shape, target, layer)

    def _connect_carrier(self, carrier: str, coefficient: np.ndarray, target: str) -> None:
        """Last step's value of what the carrier state holds: an edge that the IR must find recurrent."""
        before = set(self.graph.edges)
        self._connect(self.carriers[carrier].scaled(coefficient), target)
        self._recurrent += [(s, t, carrier) for s, t in self.graph.edges if (s, t) not in before and t == target]

    def _edge(self, source: str, coefficient: np.ndarray, target: str, shape: tuple[int, ...]) -> None:
        """An edge ``source -> target``, through a Scale node unless the coefficient is 1."""
        if np.any(np.asarray(coefficient) != 1):
            scale = self._add(f"{target}.scale", ir.Scale(scale=_uniform(coefficient, shape[1:])))
            self.graph.connect(source, scale)
            source = scale
        if (source, target) not in self.graph.edges:
            self.graph.connect(source, target)

    def _spike_source(self, i: int) -> str:
        """The neuron whose spike indicator ``i`` is, else a Threshold node for a comparison of a
        signal or of a non-spiking neuron's membrane with a constant."""
        if i in self._spikes:
            return self._spikes[i]
        if i not in self._thresholds:
            indicator = self.indicators[i]
            signal, offset = indicator.expr, None
            for membrane, _ in self._membranes:
                offset = (indicator.expr - membrane).constant()
                if offset is not None:
                    signal = membrane
                    break
            else:
                offset = np.broadcast_to(indicator.expr.monomial().get(None, np.zeros(())), indicator.expr.shape)
                signal = indicator.expr - _Expr.const(offset)
            threshold = -np.asarray(offset)
            if not indicator.strict:
                threshold = np.nextafter(threshold, -np.inf)
            name = self._add(indicator.node, ir.Threshold(threshold=_uniform(threshold, indicator.expr.shape[1:])))
            self._thresholds[i] = name
            self._connect(signal, name)
        return self._thresholds[i]

    def _constant_input(self, constant: np.ndarray, shape, target: str, layer: _Layer | None) -> None:
        op = layer.op if layer is not None else None
        if not isinstance(op, ir.Affine) or op.delay is not None:
            raise FrontendError(f"{self.source}: {target!r} receives a constant offset, which only the bias of a "
                                "synapse without delays can hold")
        x = np.broadcast_to(constant, shape)[0].reshape(-1)
        op.bias = op.weight @ x + (0.0 if op.bias is None else op.bias)
