"""The IR: shape inference, verifier errors, recurrent-edge rules, lossless files and dumps."""

import json

import numpy as np
import pytest

from snnc import ir
from snnc.errors import IRError
from snnc.ir import printer, serialize

from graphs import chain, conv_net, lif, recurrent_mlp


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
    assert '@quant={"bits":8}' in fc1
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
    graph = chain(("in", ir.Input(shape=(1,))), ('a"b\\c\nd', ir.Scale(scale=np.ones(1))), ("out", ir.Output()))
    dot = printer.to_dot(ir.verify(graph))
    assert '"a\\"b\\\\c\\nd" -> "out";' in dot
