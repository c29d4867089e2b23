"""Export an snnc graph, or a PyTorch model, to ONNX in snnc's operator domain (``docs/onnx.md``).

ONNX has no spiking neuron, so neurons, delays and the other operations standard ONNX lacks become
nodes of the domain ``ai.snnc``, one per IR node, whose attributes are the IR's parameters exactly
(float64 tensors, integers, strings). Synapses that standard ONNX expresses exactly (a Gemm for an
Affine without delays on a vector, a Conv) stay standard, so that generic tools can read them. A
node with several inputs sums them (standard nodes get a ``Sum`` in front). ONNX graphs have no
cycles: a recurrent edge leaves its source as a state output and returns as a state input (the last
inputs and outputs, counted in the ``snnc.states`` metadata), which ``snnc.frontend.onnx`` turns
back into the recurrent edge. Node annotations (what compiling added: quantized parameters,
placement) travel in the ``snnc.annotations`` metadata, encoded as in the IR file, with their arrays
as initializers that no node reads. The round trip is lossless.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from snnc import ir
from snnc.errors import ExportError
from snnc.frontend.onnx import DOMAIN, DOMAIN_VERSION, META_ANNOTATIONS, META_DT, META_GRAPH, META_STATES
from snnc.ir.serialize import encode_arrays

#: The standard ONNX opset the exported files use (Gemm, Conv, Sum, Identity).
OPSET = 17


def to_onnx(model, example_input=None, path: str | Path | None = None) -> onnx.ModelProto:
    """The ONNX model of ``model``: an ``ir.Graph``, or a PyTorch module, which is first imported
    with ``snnc.frontend.torch.from_module(model, example_input)``. Written to ``path`` if given."""
    if isinstance(model, ir.Graph):
        graph = model
    else:
        from snnc.frontend.torch import from_module

        graph = from_module(model, example_input)
    proto = _Writer(ir.verify(graph)).model()
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def write_onnx(graph: ir.Graph, path: str | Path) -> None:
    """Write ``graph`` as an ONNX file that ``snnc.frontend.onnx`` reads back as the same graph."""
    to_onnx(graph, path=path)


class _Writer:
    def __init__(self, graph: ir.Graph):
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.recurrent = sorted({s for s, _ in graph.recurrent_edges}, key=graph.schedule.index)
        self.previous = {}
        for source in self.recurrent:
            name = f"{source}.previous"
            while name in graph.nodes:
                name += "_"
            self.previous[source] = name

    def model(self) -> onnx.ModelProto:
        graph = self.graph
        for name in graph.schedule:
            node = graph[name]
            if not isinstance(node.op, ir.Input):
                self._node(node)
        inputs = [_value(n, graph[n].output_shape) for n in graph.inputs]
        inputs += [_value(self.previous[s], graph[s].output_shape) for s in self.recurrent]
        outputs = [_value(n, graph[n].output_shape) for n in graph.outputs]
        outputs += [_value(s, graph[s].output_shape) for s in self.recurrent]
        annotations = self._annotations({value.name for value in inputs})
        body = helper.make_graph(self.nodes, graph.name or "main", inputs, outputs, self.initializers)
        model = helper.make_model(body, producer_name="snnc",
                                  opset_imports=[helper.make_opsetid("", OPSET),
                                                 helper.make_opsetid(DOMAIN, DOMAIN_VERSION)])
        try:
            metadata = json.dumps(graph.metadata)
        except TypeError as e:
            raise ExportError(f"graph metadata cannot be written to ONNX ({e})") from None
        helper.set_model_props(model, {META_DT: repr(graph.dt), META_STATES: str(len(self.recurrent)),
                                       META_GRAPH: metadata, **annotations})
        onnx.checker.check_model(model)
        return model

    def _annotations(self, inputs: set[str]) -> dict[str, str]:
        """The ``snnc.annotations`` metadata (none when no node has annotations): each annotated
        node's annotations as the IR file encodes them, arrays by number, and the initializers that
        hold those arrays, under names that no tensor of the graph uses."""
        annotated = {n.name: n.annotations for n in self.graph if n.annotations}
        for name, annotations in annotated.items():
            # Strings and objects would come back as object arrays: only numbers and booleans are exact.
            odd = next((a for a in encode_arrays(annotations)[1] if a.dtype.kind not in "biufc"), None)
            if odd is not None:
                raise ExportError(f"node {name!r}: an annotation holds an array of dtype {odd.dtype}, which ONNX "
                                  "cannot store exactly; export to .snnir or .nir instead")
        if not annotated:
            return {}
        encoded, arrays = encode_arrays(annotated)
        taken = inputs | {t.name for t in self.initializers} | {x for n in self.nodes for x in (*n.input, *n.output)}
        names = []
        for index, array in enumerate(arrays):
            name = f"snnc.annotation.{index}"
            while name in taken:
                name += "_"
            names.append(self._initializer(name, array))
        return {META_ANNOTATIONS: json.dumps({"arrays": names, "nodes": encoded})}

    def _inputs(self, name: str) -> list[str]:
        recurrent = self.graph.recurrent_edges
        return [self.previous[p] if (p, name) in recurrent else p for p in self.graph.predecessors(name)]

    def _summed(self, name: str) -> str:
        """One tensor holding the sum of the node's inputs, as a standard node needs."""
        inputs = self._inputs(name)
        if len(inputs) == 1:
            return inputs[0]
        self.nodes.append(helper.make_node("Sum", inputs, [f"{name}.sum"], name=f"{name}.sum"))
        return f"{name}.sum"

    def _initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def _node(self, node: ir.Node) -> None:
        op, name = node.op, node.name
        if isinstance(op, ir.Output):
            inputs = self._inputs(name)
            self.nodes.append(helper.make_node("Identity" if len(inputs) == 1 else "Sum", inputs, [name], name=name))
        elif isinstance(op, ir.Affine) and op.delay is None and op.out_shape is None and len(node.input_shape) == 1:
            inputs = [self._summed(name), self._initializer(f"{name}.weight", op.weight)]
            if op.bias is not None:
                inputs.append(self._initializer(f"{name}.bias", op.bias))
            self.nodes.append(helper.make_node("Gemm", inputs, [name], name=name, transB=1))
        elif isinstance(op, (ir.Conv1d, ir.Conv2d)):
            inputs = [self._summed(name), self._initializer(f"{name}.weight", op.weight)]
            if op.bias is not None:
                inputs.append(self._initializer(f"{name}.bias", op.bias))
            self.nodes.append(helper.make_node("Conv", inputs, [name], name=name, strides=list(op.stride),
                                               pads=list(op.padding) * 2, dilations=list(op.dilation),
                                               group=op.groups))
        else:
            attributes = {k: v for k, v in op.fields().items() if v is not None}
            self.nodes.append(helper.make_node(op.kind, self._inputs(name), [name], name=name, domain=DOMAIN,
                                               **{k: _attribute(v) for k, v in attributes.items()}))


def _attribute(value):
    """An IR parameter as an ONNX attribute value that reads back as the same Python value."""
    if isinstance(value, np.ndarray):
        return numpy_helper.from_array(value)
    if isinstance(value, tuple):
        return [int(v) for v in value]
    return value


def _value(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["batch", *shape])
