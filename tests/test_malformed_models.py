"""Malformed and hostile model files: NIR, ONNX and .snnir files built in code, each refused by
`snnc compile` with exit code 2, one line on stderr that names the file and the node or field at
fault, and nothing written; and the verifier's rules on parameters, whichever format they came from."""

import copy
import subprocess
import sys

import h5py
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from snnc import ir
from snnc.cli import main
from snnc.errors import FrontendError, IRError
from snnc.export import to_onnx
from snnc.frontend import load_model
from snnc.frontend.onnx import DOMAIN, DOMAIN_VERSION, OPSETS, from_onnx
from snnc.ir import serialize
from snnc.ir.ops import ShapeError

from graphs import mlp
from model_files import write_nir_tree

#: A budget small enough that a test's "huge" declarations stay small numbers, large enough for
#: every valid model below.
BUDGET = 1 << 20


@pytest.fixture(autouse=True)
def small_budget(monkeypatch):
    monkeypatch.setenv("SNNC_MEMORY_BUDGET", str(BUDGET))


def assert_refused(path, tmp_path, capsys, *fragments, flags=()):
    """`snnc compile path` exits with 2 and one printable stderr line (a model's control characters
    escaped) naming the file and each fragment, and writes nothing."""
    out = tmp_path / "artifact"
    code = main(["compile", str(path), "--target", "sim", "-o", str(out), *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].isprintable(), lines
    assert str(path) in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists()


def test_the_valid_files_compile(tmp_path, capsys):
    """The unbroken files the cases below start from compile, so each refusal is its break's doing."""
    write_nir_tree(tmp_path / "ok.nir", _nir())
    onnx.save(_onnx(), tmp_path / "ok.onnx")
    for name in ("ok.nir", "ok.onnx"):
        assert main(["compile", str(tmp_path / name), "--target", "sim", "-o", str(tmp_path / name[3:])]) == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- NIR


def _nir() -> dict:
    return {"type": "NIRGraph", "edges": [("in", "fc"), ("fc", "lif"), ("lif", "out")],
            "nodes": {"in": {"type": "Input", "shape": np.array([3])},
                      "fc": {"type": "Affine", "weight": np.ones((2, 3)), "bias": np.zeros(2)},
                      "lif": {"type": "LIF", "tau": np.full(2, 0.01), "r": np.ones(2), "v_leak": np.zeros(2),
                              "v_threshold": np.ones(2)},
                      "out": {"type": "Output", "shape": np.array([2])}}}


def _field(node: str, key: str, value):
    def change(tree):
        if value is None:
            del tree["nodes"][node][key]
        else:
            tree["nodes"][node][key] = value
    return change


def _nir_node(node: str, fields: dict):
    return lambda tree: tree["nodes"].__setitem__(node, fields)


NIR_CASES = {
    "nan weight": (_field("fc", "weight", np.array([[np.nan, 1, 1], [1, 1, 1]])), "node 'fc'", "'weight'", "NaN"),
    "infinite threshold": (_field("lif", "v_threshold", np.array([np.inf, 1])), "node 'lif'", "'v_threshold'"),
    "nan time constant": (_field("lif", "tau", np.array([np.nan, 0.01])), "node 'lif'", "'tau'", "NaN"),
    "infinite time constant": (_field("lif", "tau", np.array([np.inf, 0.01])), "node 'lif'", "'tau'"),
    "negative time constant": (_field("lif", "tau", np.array([-0.01, 0.01])), "node 'lif'", "tau", "> 0"),
    "text weight": (_field("fc", "weight", np.array([[b"a"] * 3] * 2)), "node 'fc'", "'weight'", "numbers"),
    "text time constant": (_field("lif", "tau", "fast"), "node 'lif'", "'tau'", "numbers"),
    "complex weight": (_field("fc", "weight", np.ones((2, 3), complex)), "node 'fc', field 'weight'", "complex128"),
    "fractional input size": (_field("in", "shape", np.array([3.5])), "node 'in'", "shape", "whole numbers"),
    "negative input size": (_field("in", "shape", np.array([-3])), "node 'in'", "positive"),
    "input larger than the budget": (_field("in", "shape", np.array([1000, 1000])), "node 'in'", "memory budget"),
    "missing weight": (_field("fc", "weight", None), "node 'fc'", "'weight'"),
    "missing type": (_field("fc", "type", None), "node 'fc'", "NIR type"),
    "type that is no text": (_field("fc", "type", np.ones((3, 3))), "node 'fc'", "'type'", "array([[1., 1., 1.],"),
    "type with control characters": (_field("fc", "type", "Spl\x1b[2J\nine"), "node 'fc' (\"Spl\\u001b[2J\\nine\")",
                                     "unsupported NIR type"),
    "text that is not UTF-8": (_field("fc", "type", np.bytes_(b"\xff")), "node 'fc', field 'type'", "UTF-8"),
    "fractional stride": (_nir_node("fc", {"type": "Conv1d", "weight": np.ones((2, 3, 1)), "stride": 1.5}),
                          "node 'fc'", "stride", "whole numbers"),
    "'same' padding at stride 0": (_nir_node("fc", {"type": "Conv1d", "weight": np.ones((2, 3, 1)), "stride": 0,
                                                "padding": "same"}), "node 'fc'", "stride"),
    "'same' padding at stride 0 for a recorded input size": (
        _nir_node("fc", {"type": "Conv1d", "weight": np.ones((2, 3, 1)), "stride": 0, "padding": "same",
                         "input_shape": np.array([4])}), "node 'fc'", "stride"),
    "'same' padding of a weight with too few dimensions": (
        _nir_node("fc", {"type": "Conv1d", "weight": np.ones((2, 3)), "padding": "same"}), "node 'fc'", "weight"),
    "time constant so small that dt / tau overflows": (_field("lif", "tau", np.full(2, 1e-320)), "node 'lif'",
                                                       "NaN or infinite"),
    "text start_dim": (_nir_node("fc", {"type": "Flatten", "start_dim": "x", "end_dim": 0}), "node 'fc'", "start_dim"),
    "three-element pooling kernel": (_nir_node("fc", {"type": "SumPool2d", "kernel_size": np.array([1, 1, 1]),
                                                  "stride": np.array([1, 1])}), "node 'fc'", "kernel_size"),
    "parameters that broadcast beyond the budget": (
        lambda tree: tree["nodes"]["lif"].update(tau=np.full((1000, 1), 0.01), r=np.ones(1000), v_leak=np.zeros(1),
                                                 v_threshold=np.ones(1)),
        "node 'lif'", "memory budget"),
    "edge to a missing node": (lambda tree: tree["edges"].append(("ghost", "out")), "'ghost'", "does not exist"),
    "edges that are not pairs": (lambda tree: tree.__setitem__("edges", np.array([1, 2, 3])), "'edges'", "pairs"),
    "text dt": (lambda tree: tree.__setitem__("metadata", {"dt": "fast"}), "metadata dt", "> 0"),
    "nan dt": (lambda tree: tree.__setitem__("metadata", {"dt": np.nan}), "metadata dt=nan"),
    "dt of many values": (lambda tree: tree.__setitem__("metadata", {"dt": np.ones((3, 3))}), "metadata dt=array("),
    "metadata that is no group": (lambda tree: tree.__setitem__("metadata", 5), "'metadata'", "group"),
    "reset mode that is no text": (lambda tree: tree["nodes"]["lif"].__setitem__("metadata", {"reset": 1}),
                                   "node 'lif'", "reset"),
    "two nodes of one name": (lambda tree: tree["nodes"].update({
        "sub": {"type": "NIRGraph", "edges": [("i", "x"), ("x", "o")],
                "nodes": {"i": {"type": "Input", "shape": np.array([2])}, "o": {"type": "Output"},
                          "x": {"type": "Scale", "scale": np.ones(2)}}},
        "sub.x": {"type": "Scale", "scale": np.ones(2)}}), "'sub.x'"),
}


@pytest.mark.parametrize("change", NIR_CASES.values(), ids=NIR_CASES.keys())
def test_malformed_nir_is_refused_naming_the_node_and_field(change, tmp_path, capsys):
    tree = copy.deepcopy(_nir())
    change[0](tree)
    write_nir_tree(tmp_path / "model.nir", tree)
    assert_refused(tmp_path / "model.nir", tmp_path, capsys, *change[1:])


def _written_nir(path, change) -> None:
    """A NIR file written through h5py directly: ``change(file["node"])`` adds what a tree cannot."""
    tree = _nir()
    del tree["nodes"]["fc"]["weight"]
    write_nir_tree(path, tree)
    with h5py.File(path, "a") as file:
        change(file["node"])


def _nested(levels: int, group) -> None:
    for _ in range(levels):
        group = group.create_group("g")


def _subgraphs(levels: int, group) -> None:
    group["nodes/fc"].create_dataset("weight", data=np.ones((2, 3)))
    for _ in range(levels):
        group = group["nodes"].create_group("sub")
        group["type"] = "NIRGraph"
        group.create_group("nodes")


H5_CASES = {
    # 4 MB declared in a file of a few KB: compressed chunks that were never written
    "declared weight beyond the budget": (
        lambda node: node["nodes/fc"].create_dataset("weight", shape=(1000, 500), dtype="f8", chunks=(100, 100),
                                                     compression="gzip"),
        "node 'fc', field 'weight'", "memory budget"),
    "link to another file": (lambda node: node["nodes/fc"].__setitem__("weight", h5py.ExternalLink("other.h5", "/w")),
                             "node 'fc', field 'weight'", "ExternalLink"),
    "empty dataspace": (lambda node: node["nodes/fc"].__setitem__("weight", h5py.Empty("f8")),
                        "node 'fc', field 'weight'", "no value"),
    "groups nested 100 deep": (lambda node: _nested(100, node["nodes/fc"]), "nest deeper than 64"),
    "subgraphs nested 40 deep": (lambda node: _subgraphs(40, node), "node 'sub.sub", "nest deeper than 64"),
}


@pytest.mark.parametrize("change", H5_CASES.values(), ids=H5_CASES.keys())
def test_hostile_hdf5_is_refused_before_it_is_read(change, tmp_path, capsys):
    _written_nir(tmp_path / "model.nir", change[0])
    assert_refused(tmp_path / "model.nir", tmp_path, capsys, *change[1:])


def test_damaged_global_heap_is_refused_instead_of_looping(tmp_path):
    """A free-space object of size 0 in the heap that holds a NIR file's strings makes HDF5 loop for
    ever; snnc refuses the file. Run in a child process so that a regression fails, not hangs."""
    write_nir_tree(tmp_path / "model.nir", _nir())
    data = bytearray((tmp_path / "model.nir").read_bytes())
    heap = data.index(b"GCOL\x01")
    data[heap + 16:heap + 32] = bytes(16)  # the first object: index 0 (free space), size 0
    (tmp_path / "model.nir").write_bytes(data)
    done = subprocess.run([sys.executable, "-m", "snnc", "compile", str(tmp_path / "model.nir"), "--target", "sim",
                           "-o", str(tmp_path / "artifact")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"snnc: error: {tmp_path / 'model.nir'}: not a readable NIR (HDF5) file (the "
                                        f"global heap at byte {heap} is damaged: its object at byte {heap + 16} has "
                                        "size 0)"]
    assert not (tmp_path / "artifact").exists()


def test_nir_budget_counts_every_dataset_of_the_file(tmp_path, capsys):
    """Datasets each within the budget, together beyond it: the file is refused at the one that
    exceeds what is left."""
    tree = _nir()
    tree["nodes"]["fc"]["weight"] = np.ones((2, 3))
    for i in range(3):
        tree["nodes"][f"pad{i}"] = {"type": "Scale", "scale": np.ones(BUDGET // 8 // 3 + 1)}
    write_nir_tree(tmp_path / "model.nir", tree)
    assert_refused(tmp_path / "model.nir", tmp_path, capsys, "'pad2'", "'scale'", "left of")


# ----------------------------------------------------------------------------- ONNX


def _onnx() -> onnx.ModelProto:
    graph = ir.verify(mlp(np.random.default_rng(0)))
    graph.name = "mlp"
    return to_onnx(graph)


def _metadata(key: str, value: str):
    def change(model):
        for prop in model.metadata_props:
            if prop.key == key:
                prop.value = value
                return
        model.metadata_props.add(key=key, value=value)
    return change


def _opset(domain: str, version: int):
    def change(model):
        for entry in model.opset_import:
            if entry.domain == domain:
                entry.version = version
    return change


def _initializer(change_tensor):
    return lambda model: change_tensor(model.graph.initializer[0])


def _replace(tensor: onnx.TensorProto, array: np.ndarray) -> None:
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))


def _with_nan(tensor):
    array = numpy_helper.to_array(tensor).copy()
    array.flat[0] = np.nan
    _replace(tensor, array)


def _dims(*dims):
    def change(tensor):
        del tensor.dims[:]
        tensor.dims.extend(dims)
    return change


def _external(tensor):
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="weights.bin")


def _lif_attribute(name: str, value):
    def change(model):
        node = next(n for n in model.graph.node if n.domain == DOMAIN)
        attribute = next(a for a in node.attribute if a.name == name)
        attribute.CopyFrom(helper.make_attribute(name, value))
    return change


def _first_input(change_dims):
    return lambda model: change_dims(model.graph.input[0].type.tensor_type)


def _name_scopes(value: str):
    return lambda model: model.graph.node[0].metadata_props.add(key="pkg.torch.onnx.name_scopes", value=value)


def _in_domain(domain: str):
    def change(model):
        model.graph.node[0].domain = domain
    return change


ONNX_CASES = {
    "text dt": (_metadata("snnc.dt", "fast"), "snnc.dt", "not a number"),
    "nan dt": (_metadata("snnc.dt", "nan"), "snnc.dt=nan", "> 0"),
    "fractional state count": (_metadata("snnc.states", "0.5"), "snnc.states", "whole number"),
    "graph metadata that is no JSON": (_metadata("snnc.metadata", "{not json"), "snnc.metadata", "JSON"),
    "graph metadata that is no object": (_metadata("snnc.metadata", "[1, 2]"), "snnc.metadata", "object"),
    "graph metadata nested too deep": (_metadata("snnc.metadata", "[" * 100000 + "]" * 100000), "snnc.metadata"),
    "annotations nested too deep": (_metadata("snnc.annotations", "[" * 100000 + "]" * 100000), "snnc.annotations"),
    "annotations of a missing node": (_metadata("snnc.annotations", '{"arrays": [], "nodes": {"ghost": {}}}'),
                                      "snnc.annotations", "'ghost'"),
    "unknown opset": (_opset("", 99), "opset 99", f"{OPSETS[0]} to {OPSETS[-1]}"),
    "opset older than the importer": (_opset("", 11), "opset 11"),
    "unknown ai.snnc version": (_opset(DOMAIN, 7), f"{DOMAIN} version 7"),
    "nan weight": (_initializer(_with_nan), "node 'fc0'", "weight", "NaN"),
    "missing initializer": (lambda model: model.graph.initializer.pop(0), "node 'fc0'", "'fc0.weight'"),
    "initializer declaring more than the budget": (_initializer(_dims(1000, 1000)), "initializer 'fc0.weight'",
                                                   "memory budget"),
    "initializer with fewer values than its dims": (_initializer(_dims(3, 3)), "initializer 'fc0.weight'",
                                                    "does not match its dims"),
    "initializer of negative dims": (_initializer(_dims(-3, 3)), "initializer 'fc0.weight'", "shape"),
    "external data": (_initializer(_external), "initializer 'fc0.weight'", "external data"),
    "text initializer": (_initializer(lambda t: t.CopyFrom(helper.make_tensor(t.name, TensorProto.STRING, [1],
                                                                              [b"x"]))),
                         "initializer 'fc0.weight'", "STRING"),
    "complex initializer": (_initializer(lambda t: _replace(t, numpy_helper.to_array(t).astype(complex))),
                            "initializer 'fc0.weight'", "COMPLEX128"),
    "negative input size": (_first_input(lambda t: setattr(t.shape.dim[1], "dim_value", -4)), "input 'in'", ">= 1"),
    "input larger than the budget": (_first_input(lambda t: setattr(t.shape.dim[1], "dim_value", 10**12)),
                                     "input 'in'", "memory budget"),
    "text input": (_first_input(lambda t: setattr(t, "elem_type", TensorProto.STRING)), "input 'in'", "STRING"),
    "nan threshold attribute": (_lif_attribute("v_threshold", numpy_helper.from_array(np.array(np.nan))),
                                "node 'lif0'", "v_threshold", "NaN"),
    "number where an array belongs": (_lif_attribute("v_threshold", 1.5), "node 'lif0'", "v_threshold", "array"),
    "text tensor attribute": (_lif_attribute("v_decay", helper.make_tensor("d", TensorProto.STRING, [1], [b"x"])),
                              "node 'lif0'", "'v_decay'", "STRING"),
    "malformed name scopes": (_name_scopes("[not python"), "node 'fc0'", "name_scopes"),
    "name scopes that are code": (_name_scopes("__import__('os')"), "node 'fc0'", "name_scopes"),
    "name scopes nested too deep": (_name_scopes("[" * 5000 + "]" * 5000), "node 'fc0'", "name_scopes"),
    "operator of another domain": (_in_domain("com.example"), "node 'fc0'", "'com.example'"),
    "operator with control characters": (lambda model: setattr(model.graph.node[0], "op_type", "Ge\x1dmm"),
                                         "node 'fc0' (\"Ge\\u001dmm\")", "unsupported ONNX operator"),
}


@pytest.mark.parametrize("change", ONNX_CASES.values(), ids=ONNX_CASES.keys())
def test_malformed_onnx_is_refused_naming_what_is_wrong(change, tmp_path, capsys):
    model = _onnx()
    change[0](model)
    onnx.save(model, tmp_path / "model.onnx")
    assert_refused(tmp_path / "model.onnx", tmp_path, capsys, *change[1:])


@pytest.mark.parametrize("field, where", [("graph", "the graph's name"), ("node", "node b'NAME\\xff0'")])
def test_onnx_text_that_is_not_utf8_is_refused(field, where, tmp_path, capsys):
    """Protobuf hands a string field that is not UTF-8 over as bytes."""
    model = _onnx()
    if field == "graph":
        model.graph.name = "NAME_0"
    else:
        model.graph.node[0].name = "NAME_0"
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString().replace(b"NAME_0", b"NAME\xff0"))
    assert_refused(tmp_path / "model.onnx", tmp_path, capsys, where, "holds b'NAME\\xff0'", "not UTF-8")


def _tensor(name: str, *shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _constant(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _graph(nodes, inputs, initializers=(), output=("y", 1, 3), opset=17, domains=()) -> onnx.ModelProto:
    """A one-step model of ``nodes`` whose output is ``output``."""
    graph = helper.make_graph(nodes, "g", inputs, [_tensor(*output)], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   *(helper.make_opsetid(d, DOMAIN_VERSION) for d in domains)])


def _onnx_node(op: str, inputs: list[str], **attributes) -> onnx.NodeProto:
    return helper.make_node(op, inputs, ["y"], name="y", **attributes)


def _branch() -> onnx.GraphProto:
    """A body for If that computes a constant of a million elements."""
    node = helper.make_node("ConstantOfShape", ["shape"], ["k"])
    shape = _constant("shape", np.array([1000, 1000]))
    return helper.make_graph([node], "body", [], [_tensor("k", 1000, 1000)], [shape])


GRAPH_CASES = {
    "constant computed beyond the budget": (
        _graph([helper.make_node("ConstantOfShape", ["shape"], ["big"], name="big"), _onnx_node("Add", ["x", "big"])],
               [_tensor("x", 1, 3)], [_constant("shape", np.array([1000, 1000]))]),
        "node 'big' (ConstantOfShape)", "memory budget"),
    "constant of a size known only by computing it": (
        _graph([helper.make_node("NonZero", ["c"], ["where"], name="where"), _onnx_node("Add", ["x", "where"])],
               [_tensor("x", 1, 3)], [_constant("c", np.ones(3))]),
        "node 'where' (NonZero)", "unknown before it runs"),
    "signals that do not broadcast": (_graph([_onnx_node("Add", ["x", "z"])], [_tensor("x", 1, 3), _tensor("z", 1, 4)]),
                                      "node 'y' (Add)", "broadcast"),
    "signals broadcast beyond the budget": (
        _graph([_onnx_node("Add", ["x", "z"])], [_tensor("x", 1, 1000, 1), _tensor("z", 1, 1, 1000)]),
        "node 'y' (Add)", "memory budget"),
    "convolution of stride 0": (
        _graph([_onnx_node("Conv", ["x", "w"], strides=[0])], [_tensor("x", 1, 2, 8)],
               [_constant("w", np.ones((3, 2, 1)))]),
        "node 'y' (Conv)", "stride"),
    "pooling without a kernel": (_graph([_onnx_node("MaxPool", ["x"])], [_tensor("x", 1, 2, 8, 8)]),
                                 "node 'y' (MaxPool)", "opset 17", "kernel_shape"),
    "attribute of the wrong type": (_graph([_onnx_node("Conv", ["x", "w"], pads=3)], [_tensor("x", 1, 2, 8)],
                                           [_constant("w", np.ones((3, 2, 1)))]), "node 'y' (Conv)", "pads"),
    "comparison of one input": (_graph([_onnx_node("Greater", ["x"])], [_tensor("x", 1, 3)]),
                                "node 'y' (Greater)", "input size 1"),
    "gemm of a vector": (_graph([_onnx_node("Gemm", ["x", "w"])], [_tensor("x", 1, 3)], [_constant("w", np.ones(3))]),
                         "node 'y' (Gemm)", "2-D weight"),
    "concatenation along an axis the input lacks": (
        _graph([_onnx_node("Concat", ["x", "x"], axis=5)], [_tensor("x", 1, 3)]), "node 'y' (Concat)", "axis=5"),
    "batch normalization in training mode": (
        _graph([helper.make_node("Gemm", ["x", "w"], ["h"], name="h", transB=1),
                _onnx_node("BatchNormalization", ["h", "s", "b", "m", "v"], training_mode=1)], [_tensor("x", 1, 3)],
               [_constant("w", np.ones((3, 3))), *(_constant(n, np.ones(3)) for n in "sbmv")], opset=15),
        "node 'y' (BatchNormalization)", "training_mode"),
    "batch normalization of negative variance": (
        _graph([helper.make_node("Gemm", ["x", "w"], ["h"], name="h", transB=1),
                _onnx_node("BatchNormalization", ["h", "s", "b", "m", "v"])], [_tensor("x", 1, 3)],
               [_constant("w", np.ones((3, 3))), *(_constant(n, np.ones(3)) for n in "sbm"),
                _constant("v", -np.ones(3))]),
        "node 'y' (BatchNormalization)", "variance"),
    "control flow": (
        _graph([helper.make_node("If", ["c"], ["k"], name="k", then_branch=_branch(), else_branch=_branch()),
                _onnx_node("Add", ["x", "k"])], [_tensor("x", 1, 3)], [_constant("c", np.array(True))]),
        "node 'k' (If)", "subgraphs"),
    "division by a zero constant": (
        _graph([helper.make_node("Gemm", ["x", "w"], ["h"], name="h", transB=1), _onnx_node("Div", ["h", "zero"])],
               [_tensor("x", 1, 3)], [_constant("w", np.ones((3, 3))), _constant("zero", np.zeros(()))]),
        "node 'h'", "weight holds NaN or infinite"),
    "fractional ai.snnc attribute": (
        _graph([_onnx_node("Flatten", ["x"], domain=DOMAIN, start_dim=0.5)], [_tensor("x", 1, 3)], domains=[DOMAIN]),
        "node 'y' (Flatten)", "start_dim", "whole numbers"),
}


@pytest.mark.parametrize("case", GRAPH_CASES.values(), ids=GRAPH_CASES.keys())
def test_malformed_onnx_graph_is_refused_naming_the_node(case, tmp_path, capsys):
    onnx.save(case[0], tmp_path / "model.onnx")
    assert_refused(tmp_path / "model.onnx", tmp_path, capsys, *case[1:])


def test_shape_reads_only_the_dimensions_from_start_to_end():
    """Opset 15's Shape(start, end): flattening by a Reshape to (its batch, -1), the batch read by
    Shape(end=1), is a flatten, not a reshape to every dimension and -1."""
    nodes = [helper.make_node("Shape", ["x"], ["batch"], end=1), helper.make_node("Constant", [], ["rest"],
                                                                                  value=_constant("rest", [-1])),
             helper.make_node("Concat", ["batch", "rest"], ["shape"], axis=0), _onnx_node("Reshape", ["x", "shape"])]
    graph = from_onnx(_graph(nodes, [_tensor("x", 1, 2, 3)], output=("y", 1, 6), opset=15))
    assert [node.op.kind for node in graph] == ["Input", "Flatten", "Output"]
    assert graph["y"].output_shape == (6,)


def test_exported_files_use_the_opset_and_domain_version_the_importer_reads():
    versions = {entry.domain: entry.version for entry in _onnx().opset_import}
    assert versions[""] in OPSETS
    assert versions[DOMAIN] == DOMAIN_VERSION


# ----------------------------------------------------------------------------- .snnir and the time step


def _graph_with(op: ir.Op) -> ir.Graph:
    graph = ir.Graph()
    graph.add("in", ir.Input(shape=(3,)))
    graph.add("bad", op)
    graph.add("out", ir.Output())
    graph.connect("in", "bad")
    graph.connect("bad", "out")
    return graph


def test_snnir_with_a_nan_weight_is_refused_naming_the_file(tmp_path, capsys):
    serialize.save(_graph_with(ir.Affine(weight=np.full((2, 3), np.nan))), tmp_path / "model.snnir")
    assert_refused(tmp_path / "model.snnir", tmp_path, capsys, "node 'bad'", "weight", "NaN")


@pytest.mark.parametrize("dt", [float("nan"), float("inf"), 0.0, -1e-4, "1e-4", True])
def test_a_time_step_that_is_not_finite_and_positive_is_refused(dt, tmp_path):
    write_nir_tree(tmp_path / "model.nir", _nir())
    with pytest.raises(FrontendError, match="^dt=.*finite number of seconds > 0"):
        load_model(tmp_path / "model.nir", dt=dt)


# ----------------------------------------------------------------------------- the verifier

_LIF = dict(v_decay=np.array(0.9), v_gain=np.array(1.0), bias=np.array(0.0), v_threshold=np.array(1.0),
            v_reset=np.array(0.0))
_CUBA = dict(_LIF, i_decay=np.array(0.5), i_gain=np.array(1.0))
#: Every operation with array parameters, with valid ones for an input of shape (3,).
_OPS = {
    "Affine": lambda **p: ir.Affine(**{"weight": np.ones((2, 3)), "bias": np.zeros(2), **p}),
    "Scale": lambda **p: ir.Scale(**{"scale": np.ones(3), **p}),
    "Threshold": lambda **p: ir.Threshold(**{"threshold": np.ones(3), **p}),
    "LIF": lambda **p: ir.LIF(**{**_LIF, **p}),
    "CubaLIF": lambda **p: ir.CubaLIF(**{**_CUBA, **p}),
    "LI": lambda **p: ir.LI(**{**{k: _LIF[k] for k in ("v_decay", "v_gain", "bias")}, **p}),
}
_FLOAT_FIELDS = [(kind, field) for kind, build in _OPS.items() for field, value in build().arrays().items()]


@pytest.mark.parametrize("kind, field", _FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_verifier_refuses_non_finite_parameters_naming_node_and_field(kind, field, bad):
    good = _OPS[kind]().arrays()[field]
    graph = _graph_with(_OPS[kind](**{field: np.full(good.shape, bad)}))
    with pytest.raises(IRError, match=f"node 'bad': .*{field} holds NaN or infinite values"):
        ir.verify(graph)
    ir.verify(_graph_with(_OPS[kind]()))


@pytest.mark.parametrize("value, message", [(1.5, "must be an array of numbers, got float"),
                                            (np.array(["1"]), "has dtype <U1"),
                                            (np.array([1 + 1j]), "has dtype complex128"),
                                            (np.array([None]), "has dtype object")])
def test_verifier_refuses_parameters_that_are_not_arrays_of_real_numbers(value, message):
    with pytest.raises(IRError, match=f"node 'bad': .*threshold {message}"):
        ir.verify(_graph_with(ir.Threshold(threshold=value)))


@pytest.mark.parametrize("build, message", [
    (lambda: ir.Input(shape=(2.5,)), "shape must be whole numbers"),
    (lambda: ir.Conv1d(weight=np.ones((1, 1, 1)), stride=1.5, padding=0, dilation=1), "stride must be whole numbers"),
    (lambda: ir.Conv1d(weight=np.ones((1, 1, 1)), stride=1, padding=0, dilation=1, groups="2"), "groups"),
    (lambda: ir.Flatten(start_dim=True), "start_dim must be whole numbers"),
    (lambda: ir.MaxPool2d(kernel_size=(2, 2.5), stride=1), "kernel_size must be whole numbers"),
    (lambda: ir.Affine(weight=np.ones((2, 3)), out_shape=(1, 2.0, 0.5)), "out_shape must be whole numbers"),
])
def test_sizes_are_whole_numbers_never_cut(build, message):
    with pytest.raises(ShapeError, match=message):
        build()


def test_whole_floats_still_give_sizes():
    assert ir.Input(shape=np.array([2.0, 3.0])).shape == (2, 3)
    assert ir.Conv1d(weight=np.ones((1, 1, 1)), stride=np.float64(2), padding=0, dilation=1).stride == (2,)


def test_verifier_refuses_an_out_shape_of_negative_sizes():
    with pytest.raises(IRError, match="node 'bad': .*out_shape \\(-2, -1\\) must have positive sizes"):
        ir.verify(_graph_with(ir.Affine(weight=np.ones((2, 3)), out_shape=(-2, -1))))


@pytest.mark.parametrize("shape", [(1000, 1000), (2**40,) * 30], ids=["8 MB", "more bytes than a float holds"])
def test_verifier_refuses_a_node_whose_output_exceeds_the_budget(shape):
    graph = _graph_with(ir.Flatten())
    graph["in"].op = ir.Input(shape=shape)
    with pytest.raises(IRError, match="node 'in': .*memory budget"):
        ir.verify(graph)
