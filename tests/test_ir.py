"""The IR: shape inference, verifier errors, recurrent-edge rules, lossless files and dumps."""

import dataclasses
import io
import json
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from snnc import ir
from snnc.errors import IRError, SnncError
from snnc.ir import printer, serialize

from graphs import chain, conv_net, lif, recurrent_mlp
from model_files import set_at


def test_shapes_are_inferred_through_convolutions_pooling_and_flatten():
    graph = ir.verify(conv_net(np.random.default_rng(0)))
    shapes = {n.name: n.output_shape for n in graph}
    assert shapes["conv"] == (4, 9, 9)  # dilation 2 with padding 2 keeps 9x9
    assert shapes["depthwise"] == (4, 9, 9)
    assert shapes["sum"] == (4, 4, 4)
    assert shapes["avg"] == (4, 4, 4)
    assert shapes["max"] == (4, 3, 3)
    assert shapes["flat"] == (36,)
    assert shapes["out"] == (6,)
    assert graph["join"].input_shape == (4, 9, 9)


def test_strided_conv1d_shape():
    graph = chain(("in", ir.Input(shape=(3, 20))),
                  ("conv", ir.Conv1d(weight=np.zeros((5, 3, 4)), stride=3, padding=1, dilation=1)),
                  ("out", ir.Output()))
    assert ir.verify(graph)["conv"].output_shape == (5, 7)


@pytest.mark.parametrize("build, node, fragment", [
    (lambda: chain(("in", ir.Input(shape=(3,))), ("fc", ir.Affine(weight=np.zeros((2, 4)))), ("out", ir.Output())),
     "fc", "needs input (4,)"),
    (lambda: chain(("in", ir.Input(shape=(3,))), ("n", lif(reset="sideways")), ("out", ir.Output())),
     "n", "reset must be one of"),
    (lambda: chain(("in", ir.Input(shape=(3,))), ("n", lif(shape=(4,))), ("out", ir.Output())),
     "n", "does not match input (3,)"),
    (lambda: chain(("in", ir.Input(shape=(2, 5, 5))),
                   ("c", ir.Conv2d(weight=np.zeros((4, 1, 3, 3)), stride=1, padding=0, dilation=1, groups=3)),
                   ("out", ir.Output())),
     "c", "groups=3"),
    (lambda: chain(("in", ir.Input(shape=(2, 2, 2))), ("p", ir.SumPool2d(kernel_size=3, stride=1)), ("out", ir.Output())),
     "p", "does not fit"),
    (lambda: chain(("in", ir.Input(shape=(3,))), ("d", ir.Delay(delay=np.array([1.5, 0, 0]))), ("out", ir.Output())),
     "d", "integer steps"),
])
def test_verifier_names_the_node_at_fault(build, node, fragment):
    with pytest.raises(IRError) as error:
        ir.verify(build())
    assert error.value.node == node
    assert f"node {node!r}" in str(error.value) and fragment in str(error.value)


def test_cycle_without_stateful_node_is_rejected():
    graph = chain(("in", ir.Input(shape=(2,))), ("a", ir.Affine(weight=np.eye(2))), ("b", ir.Affine(weight=np.eye(2))),
                  ("out", ir.Output()))
    graph.connect("b", "a")
    with pytest.raises(IRError, match="cycle of stateless nodes"):
        ir.verify(graph)


def test_structural_errors():
    graph = chain(("in", ir.Input(shape=(2,))), ("out", ir.Output()))
    graph.add("orphan", ir.Scale(scale=np.ones(2)))
    with pytest.raises(IRError, match="'orphan': has no input edges"):
        ir.verify(graph)
    with pytest.raises(IRError, match="exists already"):
        graph.add("in", ir.Output())
    with pytest.raises(IRError, match="does not exist"):
        graph.connect("in", "missing")
    no_output = ir.Graph()
    no_output.add("in", ir.Input(shape=(1,)))
    with pytest.raises(IRError, match="no Output node"):
        ir.verify(no_output)


def test_inputs_that_disagree_in_shape_are_reported():
    graph = chain(("in", ir.Input(shape=(2,))), ("a", ir.Affine(weight=np.ones((3, 2)))), ("join", ir.Add()),
                  ("out", ir.Output()))
    graph.connect("in", "join")
    with pytest.raises(IRError, match="'join': its inputs disagree in shape"):
        ir.verify(graph)


def test_recurrent_edges_are_the_edges_out_of_stateful_nodes_on_cycles():
    graph = ir.verify(recurrent_mlp(np.random.default_rng(1)))
    assert graph.recurrent_edges == {("hidden", "rec")}
    assert graph.schedule.index("rec") < graph.schedule.index("hidden")
    components = graph.strongly_connected_components()
    assert ["rec", "hidden"] in components
    assert [c for c in components if "in" in c] == [["in"]]


def _assert_same_graph(a, b):
    assert (a.dt, a.name, list(a.nodes), a.edges) == (b.dt, b.name, list(b.nodes), b.edges)
    for na, nb in zip(a, b):
        assert type(na.op) is type(nb.op)
        for (ka, va), (kb, vb) in zip(na.op.fields().items(), nb.op.fields().items()):
            assert ka == kb
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and va.shape == vb.shape and va.tobytes() == vb.tobytes()
            else:
                assert va == vb and type(va) is type(vb)
        assert repr(na.annotations) == repr(nb.annotations)


def test_ir_file_round_trip_is_bit_for_bit(tmp_path):
    rng = np.random.default_rng(2)
    graph = conv_net(rng)
    graph.add("tricky \"name\"\nwith newline'); import os; os.system('echo hacked')#", ir.Output())
    graph.connect("li", graph.outputs[-1])
    graph["fc"].op.weight = rng.normal(size=(6, 36)).astype(np.float32)
    graph["fc"].annotations = {"quant": {"bits": 8, "scale": np.float32(0.1).item(), "per_channel": np.arange(6, dtype=np.int16)},
                               "placement": (1, 2), "note": None}
    graph.metadata = {"source": "test", "exact": 0.1 + 0.2}
    ir.verify(graph)
    path = tmp_path / "g.snnir"
    ir.save(graph, path)
    loaded = ir.verify(ir.load(path))
    _assert_same_graph(graph, loaded)
    assert loaded.metadata["exact"] == 0.1 + 0.2
    assert serialize.to_bytes(loaded) == serialize.to_bytes(graph)


def test_other_files_can_read_the_ir_files_arrays_by_member(tmp_path):
    graph = ir.verify(conv_net(np.random.default_rng(3)))
    graph["fc"].annotations["quant"] = {"mantissa": np.arange(6, dtype=np.int16)}
    ir.save(graph, tmp_path / "g.snnir")
    members = serialize.array_members(graph)
    with np.load(tmp_path / "g.snnir", allow_pickle=False) as stored:
        for array in (graph["fc"].op.weight, graph["fc"].annotations["quant"]["mantissa"]):
            read = stored[members[id(array)]]
            assert read.dtype == array.dtype and np.array_equal(read, array)


@pytest.mark.parametrize("share_arrays", [False, True])
def test_a_copy_changes_apart_from_its_original(share_arrays):
    graph = ir.verify(conv_net(np.random.default_rng(4)))
    graph["fc"].annotations["quant"] = {"mantissa": np.arange(6), "kept": [1, (2, 3)]}
    copied = graph.copy(share_arrays=share_arrays)
    _assert_same_graph(graph, copied)
    assert copied.schedule == graph.schedule and copied.recurrent_edges == graph.recurrent_edges
    assert (copied["fc"].op.weight is graph["fc"].op.weight) == share_arrays
    assert (copied["fc"].annotations["quant"]["mantissa"] is graph["fc"].annotations["quant"]["mantissa"]) == share_arrays
    weight = graph["fc"].op.weight.copy()
    copied["fc"].op.weight = np.zeros_like(weight)
    copied["fc"].annotations["quant"]["kept"].append(4)
    copied.metadata["placed"] = True
    copied.add("extra", ir.Output())
    copied.connect("li", "extra")
    assert np.array_equal(graph["fc"].op.weight, weight)
    assert graph["fc"].annotations["quant"]["kept"] == [1, (2, 3)] and "placed" not in graph.metadata
    assert "extra" not in graph.nodes and "extra" not in graph.successors("li")


def test_ir_file_errors(tmp_path):
    bad = tmp_path / "bad.snnir"
    bad.write_bytes(b"not a zip")
    with pytest.raises(Exception, match="bad.snnir: not a readable snnc IR file"):
        ir.load(bad)


def test_text_dump_is_deterministic_and_complete():
    def build():
        graph = ir.verify(recurrent_mlp(np.random.default_rng(3)))
        graph["fc1"].annotations["quant"] = {"bits": 8}
        return graph

    text = printer.to_text(build())
    assert text == printer.to_text(build())
    lines = text.splitlines()
    fc1 = next(line for line in lines if line.split()[1:3] == ["fc1", "Affine"])
    assert "(5,)" in fc1 and "(7,)" in fc1 and "weight(7,5)" in fc1 and "sparsity=0.00" in fc1
    assert "@quant={bits=8}" in fc1
    hidden = next(line for line in lines if " hidden " in line)
    assert "reset=subtract" in hidden and "CubaLIF" in hidden
    assert "  hidden -> rec  (recurrent: carries the previous step)" in lines
    assert text.index("edges:") > text.index("out_lif")


def test_json_and_dot_dumps():
    graph = ir.verify(recurrent_mlp(np.random.default_rng(4)))
    document = json.loads(printer.to_json(graph))
    assert [n["name"] for n in document["nodes"]] == list(graph.nodes)
    fc2 = document["nodes"][4]
    assert fc2["weights"]["weight"]["shape"] == [3, 7] and fc2["input_shape"] == [7]
    assert {"source": "hidden", "target": "rec", "recurrent": True} in document["edges"]
    dot = printer.to_dot(graph)
    assert dot.startswith('digraph "main" {') and '"hidden" -> "rec" [style=dashed, label="t-1"];' in dot


def test_dot_escapes_names():
    """A name is shown as show_name writes it (a JSON string, as it holds a quote and a newline),
    then escaped again as a DOT string: no line of the file holds part of it raw."""
    graph = chain(("in", ir.Input(shape=(1,))), ('a"b\\c\nd', ir.Scale(scale=np.ones(1))), ("out", ir.Output()))
    dot = printer.to_dot(ir.verify(graph))
    assert '"\\"a\\\\\\"b\\\\\\\\c\\\\nd\\"" -> "out";' in dot
    assert all(line.startswith(("digraph", "  ", "}")) for line in dot.splitlines())


def test_saving_a_graph_twice_gives_the_same_bytes_whatever_the_clock(tmp_path, monkeypatch):
    graph = ir.verify(conv_net(np.random.default_rng(5)))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    saved = []
    for now in (1.0e9, 1.7e9):
        monkeypatch.setattr(time, "time", lambda: now)
        ir.save(graph, tmp_path / f"{now}.snnir")
        saved.append((tmp_path / f"{now}.snnir").read_bytes())
    assert saved[0] == saved[1]
    with zipfile.ZipFile(tmp_path / "1000000000.0.snnir") as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos][:2] == ["graph.json", "arrays/0.npy"]
    assert {i.date_time for i in infos} == {serialize.ZIP_EPOCH} and {i.external_attr >> 16 for i in infos} == {0o100644}


@pytest.mark.parametrize("epoch, stamp", [("1700000000", (2023, 11, 14, 22, 13, 20)), ("0", serialize.ZIP_EPOCH),
                                          ("99999999999", serialize.ZIP_END)])
def test_source_date_epoch_sets_the_time_stamp_within_zips_range(monkeypatch, epoch, stamp):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    with zipfile.ZipFile(io.BytesIO(serialize.to_bytes(ir.verify(recurrent_mlp(np.random.default_rng(0)))))) as archive:
        assert {i.date_time for i in archive.infolist()} == {stamp}


def test_a_bad_source_date_epoch_is_named(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(SnncError, match="SOURCE_DATE_EPOCH=yesterday: give a whole number of seconds"):
        serialize.to_bytes(ir.verify(recurrent_mlp(np.random.default_rng(0))))


def _small_graph():
    return ir.verify(chain(("in", ir.Input(shape=(3,))), ("fc", ir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2))),
                           ("n", lif(shape=(2,))), ("out", ir.Output())))


def _ir_file(document=None, arrays=None, members=None):
    """The bytes of an IR file of ``_small_graph`` with its JSON document, arrays (as .npy bytes) or
    raw members replaced."""
    good, good_arrays = serialize._document(_small_graph())
    if members is None:
        members = {"graph.json": json.dumps(good if document is None else document(good)).encode()}
        for i, array in enumerate(good_arrays if arrays is None else arrays(good_arrays)):
            if not isinstance(array, bytes):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array, allow_pickle=True)
                array = buffer.getvalue()
            members[f"arrays/{i}.npy"] = array
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


_edit = set_at


def _nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def _npy_header(shape, descr="<f8"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# Node 1 is "fc" (fields weight=array 0, bias=array 1); node 2 is "n".
@pytest.mark.parametrize("kwargs, fragment", [
    (dict(members={"graph.json": b"{not json"}), "member 'graph.json': not valid JSON"),
    (dict(members={"graph.json": b"[" * 100000 + b"]" * 100000}), "member 'graph.json': nests deeper than Python can read"),
    (dict(members={"graph.json": b'{"format": "snnc-ir", "format": "x"}'}), "repeats the keys ['format']"),
    (dict(members={"graph.json": b'{"format": "snnc-ir", "version": 1, "dt": NaN, "name": "", "metadata": {}, '
                                 b'"nodes": [], "edges": []}'}), "dt=nan: the time step must be a positive number"),
    (dict(members={"graph.json": b'"snnc-ir"'}), "not an snnc IR file of version 1"),
    (dict(document=_edit(["version"], 2)), "not an snnc IR file of version 1"),
    (dict(document=_edit(["dt"], "0.001")), "dt='0.001': the time step must be a positive number"),
    (dict(document=_edit(["extra"], 1)), "unknown keys ['extra']"),
    (dict(document=_edit(["nodes"], {"in": 1})), "nodes must be a JSON array, got dict"),
    (dict(document=_edit(["metadata"], [])), "metadata: must be a JSON object of named values, got list"),
    (dict(document=_edit(["metadata"], 3)), "metadata: must be a JSON object of named values, got int"),
    (dict(document=_edit(["metadata"], {"__array__": 0})), "metadata: must be a JSON object of named values, got an array"),
    (dict(document=_edit(["nodes", 1, "annotations"], {"__tuple__": []})), "node 'fc' annotations: must be a JSON object of named values, got a tuple"),
    (dict(document=_edit(["nodes", 1], "fc")), "nodes[1] must be a JSON object with a string name"),
    (dict(document=_edit(["nodes", 1, "name"], ["fc"])), "nodes[1] must be a JSON object with a string name"),
    (dict(document=_edit(["nodes", 1, "fields"], [1, 2])), "node 'fc' fields: must be a JSON object of named values, got list"),
    (dict(document=_edit(["nodes", 1, "op"], "Exec")), "node 'fc': unknown operation 'Exec'"),
    (dict(document=_edit(["nodes", 1, "op"], ["Affine"])), "node 'fc': unknown operation"),
    (dict(document=_edit(["nodes", 1, "fields", "evil"], 1)), "node 'fc': Affine has no fields ['evil']; its fields are"),
    (dict(document=lambda d: d["nodes"][1]["fields"].pop("weight") and d), "node 'fc': Affine needs fields ['weight']"),
    (dict(document=_edit(["nodes", 1, "fields", "weight"], 5)), "node 'fc': Affine field 'weight' must be an array, got int"),
    (dict(document=_edit(["nodes", 1, "fields", "out_shape"], {"__tuple__": [2.5]})),
     "field 'out_shape' must be a tuple of integers of magnitude below 2**31 or null, got tuple"),
    (dict(document=_edit(["nodes", 0, "fields", "shape"], {"__tuple__": [10**40]})), "node 'in': Input field 'shape'"),
    (dict(document=_edit(["nodes", 0, "fields", "shape"], {"__tuple__": [10**6, 10**6]})),
     "node 'in': Input shape: a float64 array of shape (1000000, 1000000) takes 7450.6 GiB"),
    (dict(document=_edit(["nodes", 2, "fields", "reset"], 1)), "node 'n': LIF field 'reset' must be a string, got int"),
    (dict(document=_edit(["nodes", 1, "fields", "weight"], {"__array__": 9})),
     "node 'fc' fields: array reference 9 names none of the file's 7 arrays"),
    (dict(document=_edit(["nodes", 1, "fields", "weight"], {"__array__": -1})), "array reference -1 names none"),
    (dict(document=_edit(["nodes", 1, "fields", "weight"], {"__array__": True})), "array reference True names none"),
    (dict(document=_edit(["nodes", 1, "fields", "weight"], {"__array__": 0, "x": 1})), "array reference 0 names none"),
    (dict(document=_edit(["nodes", 1, "fields", "bias"], {"__array__": 0})), "array 0 is referenced a second time"),
    (dict(document=_edit(["nodes", 1, "fields", "bias"], None)), "member 'arrays/1.npy' is an array that nothing refers to"),
    (dict(document=_edit(["nodes", 1, "annotations", "deep"], _nested(40))), "node 'fc' annotations: nests deeper than 32"),
    (dict(document=_edit(["nodes", 1, "annotations", "t"], {"__tuple__": 3})), "a tuple is written"),
    (dict(document=_edit(["nodes", 2, "name"], "fc")), "node 'fc': a node of this name exists already"),
    (dict(document=_edit(["edges", 0], ["in", "ghost"])), "edge 'in' -> 'ghost' names a node that does not exist"),
    (dict(document=_edit(["edges", 0], ["in"])), "edges[0] must be [source, target]"),
    (dict(document=_edit(["edges"], [["in", "fc"], ["fc", "n"]])), "node 'out': has no input edges"),
    (dict(document=_edit(["nodes", 1, "fields", "weight"], {"__array__": 1})), "array 1 is referenced a second time"),
    (dict(arrays=lambda a: [np.array([{"x": 1}], dtype=object), *a[1:]]),
     "member 'arrays/0.npy': arrays of object are not read"),
    (dict(arrays=lambda a: [_npy_header((10**5, 10**5)), *a[1:]]),
     "member 'arrays/0.npy': a float64 array of shape (100000, 100000) takes 74.5 GiB"),
    (dict(arrays=lambda a: [_npy_header((1000, 1000)), *a[1:]]),
     "member 'arrays/0.npy': not a readable .npy array (its header declares 8000000 bytes of data, the file holds 0)"),
    (dict(arrays=lambda a: [*a, np.ones(2)]), "member 'arrays/7.npy' is an array that nothing refers to"),
    (dict(members={"arrays/0.npy": b""}), "must hold graph.json and the arrays numbered from arrays/0.npy"),
    (dict(members={"graph.json": b"{}", "../evil": b""}), "it holds '../evil'"),
    (dict(members={"graph.json": b"{}", "arrays/1.npy": b""}), "it holds 'arrays/1.npy'"),
], ids=lambda value: None if isinstance(value, dict) else value[:40])
def test_malformed_ir_files_are_refused_in_one_line_naming_the_file_and_node(tmp_path, kwargs, fragment):
    path = tmp_path / "m.snnir"
    path.write_bytes(_ir_file(**kwargs))
    with pytest.raises(SnncError) as error:
        ir.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and fragment in message, message


def test_truncated_and_duplicated_ir_files_are_refused(tmp_path):
    data = _ir_file()
    assert serialize.to_bytes(ir.verify(serialize.from_bytes(data))) == serialize.to_bytes(_small_graph())
    path = tmp_path / "m.snnir"
    for cut in (10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(SnncError, match=f"^{path}: not a readable snnc IR file"):
            ir.load(path)
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("graph.json", b"{}")
        archive.writestr("graph.json", b"{}")
    with pytest.raises(SnncError, match="member 'graph.json': appears twice"):
        ir.load(path)
    with pytest.raises(SnncError, match="cannot read the IR file"):
        ir.load(tmp_path)
    # Found by mutation: a central directory asking for a zip version Python does not implement.
    central = data.rindex(b"PK\x01\x02")
    path.write_bytes(data[:central + 6] + (217).to_bytes(2, "little") + data[central + 8:])
    with pytest.raises(SnncError, match=f"^{path}: not a readable snnc IR file \\(zip file version 21.7\\)"):
        ir.load(path)


def test_every_operation_field_type_has_a_rule():
    """A new field type in snnc.ir.ops must be given a rule for reading it from a file."""
    for op in ir.ops.OPS.values():
        for f in dataclasses.fields(op):
            assert f.type.removesuffix(" | None") in serialize._FIELD_RULES, (op.__name__, f.name, f.type)


def test_inspect_refuses_a_hostile_ir_file_in_one_line(tmp_path):
    path = tmp_path / "m.snnir"
    path.write_bytes(_ir_file(document=_edit(["nodes", 1, "fields", "evil"], 1)))
    result = subprocess.run([sys.executable, "-m", "snnc", "inspect", path], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"{path}: node 'fc': Affine has no fields ['evil']" in result.stderr
