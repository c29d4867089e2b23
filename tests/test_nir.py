"""NIR import and export, checked against files written by other tools (the NIR paper's fixtures)."""

import json

import h5py
import nir
import numpy as np
import pytest
from nir.serialization import hdf2dict

from snnc import ir
from snnc.backends.nir import to_nir, write_nir
from snnc.errors import ExportError, FrontendError
from snnc.frontend.nir import from_nir, load_nir
from snnc.runtime.simulator import Simulator

from model_files import write_nir_tree

FILES = [
    "01_lif/lif_norse.nir",
    "01_lif/lif_rockpool.nir",
    "01_lif/two_lif_neurons.nir",
    "02_cnn/cnn_sinabs.nir",
    "03_rnn/braille_noDelay_bias_zero.nir",
    "03_rnn/braille_noDelay_bias_zero_subgraph.nir",
    "03_rnn/braille_noDelay_noBias_subtract.nir",
    "03_rnn/braille_noDelay_noBias_subtract_subgraph.nir",
]
#: Each Braille network and the training hyper-parameters it was exported with.
BRAILLE = [(f, "parameters_noDelay_bias_ref_zero.json" if "bias_zero" in f
               else "parameters_noDelay_noBias_ref_subtract.json") for f in FILES if "braille" in f]


def _original(path) -> dict:
    """The file's node tree as NIR's own reader sees it, without building (or type-checking) nodes."""
    with h5py.File(path, "r") as file:
        return hdf2dict(file["node"])


def _original_node(graph: dict, name: str) -> dict:
    """The node an imported name came from: 'outer.inner' is a node of the nested graph 'outer',
    unless the file itself uses the dotted name (snnTorch writes 'lif1.lif' flat)."""
    if name in graph["nodes"]:
        return graph["nodes"][name]
    outer, inner = name.split(".", 1)
    return _original_node(graph["nodes"][outer], inner)


def _assert_same_graph(a: ir.Graph, b: ir.Graph) -> None:
    assert a.dt == pytest.approx(b.dt, rel=1e-12)
    assert list(a.nodes) == list(b.nodes)
    assert sorted(a.edges) == sorted(b.edges)
    for node in a:
        other = b[node.name].op
        assert other.kind == node.op.kind, node.name
        assert other.attributes() == node.op.attributes(), node.name
        assert other.arrays().keys() == node.op.arrays().keys(), node.name
        for key, value in node.op.arrays().items():
            np.testing.assert_allclose(other.arrays()[key], value, rtol=1e-9, atol=1e-12, err_msg=f"{node.name}.{key}")


# ----------------------------------------------------------------------------- the fixtures import


def test_the_file_list_covers_every_fixture(nir_paper):
    assert sorted(str(p.relative_to(nir_paper)) for p in nir_paper.glob("*/*.nir")) == sorted(FILES)


@pytest.mark.parametrize("name", FILES)
def test_fixture_imports_and_verifies(nir_paper, name):
    graph = load_nir(nir_paper / name)
    assert graph.dt == ir.DEFAULT_DT
    assert graph.inputs and graph.outputs
    assert all(node.output_shape is not None for node in graph)
    ir.verify(graph)


def test_lif_norse_discretises_with_forward_euler(nir_paper):
    graph = load_nir(nir_paper / "01_lif/lif_norse.nir")
    lif = graph["1"].op
    assert isinstance(lif, ir.LIF)
    a = 1e-4 / 0.0025
    np.testing.assert_allclose(lif.v_decay, [1 - a], rtol=1e-7)
    np.testing.assert_allclose(lif.v_gain, [a], rtol=1e-6)
    np.testing.assert_allclose(lif.v_threshold, [0.1], rtol=1e-6)
    np.testing.assert_array_equal(lif.v_reset, [0.0])
    assert lif.reset == "value" and lif.v_decay.dtype == np.float64
    assert graph.edges == [("input", "0"), ("0", "1"), ("1", "output")]


def test_lif_norse_reproduces_norses_recording(nir_paper):
    """The conversion is right when the imported neuron does what Norse recorded (input, v, spikes)."""
    recording = np.loadtxt(nir_paper / "01_lif/lif_norse.csv", delimiter=",")
    result = Simulator(load_nir(nir_paper / "01_lif/lif_norse.nir")).run(recording[None, :, :1], probes=["1"])
    np.testing.assert_array_equal(result["output"][0, :, 0], recording[:, 2])
    np.testing.assert_allclose(result["1:v"][0, :, 0], recording[:, 1], atol=1e-6)


def test_lif_rockpool_ignores_the_wrong_output_shape(nir_paper):
    graph = load_nir(nir_paper / "01_lif/lif_rockpool.nir")
    assert graph["output"].input_shape == (1,)
    assert graph["0_LinearTorch"].op.bias is None  # a NIR Linear
    np.testing.assert_allclose(graph["1_LIFNeuronTorch"].op.v_gain, [24.019737 * 0.04], rtol=1e-6)


def test_two_lif_neurons_leak_becomes_a_bias(nir_paper):
    graph = load_nir(nir_paper / "01_lif/two_lif_neurons.nir")
    np.testing.assert_allclose(graph["lif1"].op.bias, [1.2 * 1e-4 / 0.01])
    np.testing.assert_allclose(graph["lif2"].op.bias, [0.0])


def test_cnn_shapes_and_layers(nir_paper):
    graph = load_nir(nir_paper / "02_cnn/cnn_sinabs.nir")
    shapes = {node.name: node.output_shape for node in graph}
    assert shapes["input"] == (2, 34, 34)
    assert shapes["0"] == (16, 16, 16)
    assert shapes["4"] == (16, 8, 8)
    assert shapes["7"] == (8, 4, 4)
    assert shapes["8"] == (128,)
    assert shapes["12"] == (10,)
    conv = graph["0"].op
    assert (conv.stride, conv.padding, conv.dilation, conv.groups) == ((2, 2), (1, 1), (1, 1), 1)
    neuron = graph["1"].op
    assert isinstance(neuron, ir.IF)
    np.testing.assert_array_equal(neuron.v_gain, np.ones((16, 16, 16)))  # IF's r is per step
    np.testing.assert_array_equal(neuron.bias, np.zeros((16, 16, 16)))


@pytest.mark.parametrize("name, parameters", BRAILLE)
def test_braille_matches_its_training_parameters(nir_paper, name, parameters):
    graph = load_nir(nir_paper / name)
    hidden = "lif1.lif1" if "subgraph" in name else "lif1.lif"
    recurrent = "lif1.lin" if "subgraph" in name else "lif1.w_rec"
    assert (hidden, recurrent) in graph.recurrent_edges
    assert {("fc1", hidden), (hidden, recurrent), (recurrent, hidden), (hidden, "fc2")} <= set(graph.edges)
    assert not {"lif1.input", "lif1.output"} & set(graph.nodes)
    # snnTorch's decay factors, which the exporter turned into time constants at dt = 1e-4 s
    params = json.loads((nir_paper / "03_rnn" / parameters).read_text())
    for node, alpha, beta in ((hidden, "alpha_r", "beta_r"), ("lif2", "alpha_out", "beta_out")):
        op = graph[node].op
        np.testing.assert_allclose(op.i_decay, params[alpha], rtol=1e-5)
        np.testing.assert_allclose(op.v_decay, params[beta], rtol=1e-5)
    assert graph[hidden].output_shape == (params["nb_hidden"],)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", FILES)
def test_export_is_read_by_nir_and_keeps_the_files_parameters(nir_paper, tmp_path, name):
    path = nir_paper / name
    original = _original(path)
    graph = load_nir(path)
    write_nir(graph, tmp_path / "out.nir")
    exported = nir.read(tmp_path / "out.nir")  # with type checking
    assert float(exported.metadata["dt"]) == graph.dt
    for node in graph:
        if isinstance(node.op, (ir.Input, ir.Output)):
            continue
        before, after = _original_node(original, node.name), exported.nodes[node.name].to_dict()
        assert after["type"] == before["type"], node.name
        for key, value in before.items():
            if key in ("type", "metadata"):
                continue
            np.testing.assert_allclose(np.asarray(after[key], dtype=np.float64), np.asarray(value, dtype=np.float64),
                                       rtol=1e-6, err_msg=f"{name}: {node.name}.{key}")


@pytest.mark.parametrize("name", FILES)
def test_import_export_import_gives_the_same_graph(nir_paper, tmp_path, name):
    graph = load_nir(nir_paper / name, reset="subtract" if "subtract" in name else None)
    write_nir(graph, tmp_path / "out.nir")
    _assert_same_graph(graph, load_nir(tmp_path / "out.nir"))
    _assert_same_graph(graph, from_nir(to_nir(graph)))


def test_dt_comes_from_the_argument_then_the_file_then_the_default(nir_paper, tmp_path):
    graph = load_nir(nir_paper / "01_lif/lif_norse.nir", dt=5e-4)
    assert graph.dt == 5e-4
    np.testing.assert_allclose(graph["1"].op.v_decay, [1 - 5e-4 / 0.0025], rtol=1e-7)
    write_nir(graph, tmp_path / "out.nir")
    assert load_nir(tmp_path / "out.nir").dt == 5e-4
    again = load_nir(tmp_path / "out.nir", dt=1e-3)
    assert again.dt == 1e-3
    np.testing.assert_allclose(again["1"].op.v_decay, [1 - 1e-3 / 0.0025], rtol=1e-6)


def test_reset_comes_from_metadata_then_the_argument(nir_paper, tmp_path):
    path = nir_paper / "03_rnn/braille_noDelay_noBias_subtract.nir"
    assert load_nir(path)["lif2"].op.reset == "value"
    graph = load_nir(path, reset="subtract")
    assert graph["lif2"].op.reset == "subtract"
    exported = to_nir(graph)
    assert exported.nodes["lif2"].metadata == {"reset": "subtract"}
    write_nir(graph, tmp_path / "out.nir")
    assert load_nir(tmp_path / "out.nir", reset="value")["lif2"].op.reset == "subtract"


def test_parameters_of_shape_one_broadcast_to_the_layer(tmp_path):
    write_nir_tree(tmp_path / "g.nir", {
        "type": "NIRGraph", "edges": [("in", "lif"), ("lif", "out")],
        "nodes": {"in": {"type": "Input", "shape": np.array([3])},
                  "lif": {"type": "LIF", "tau": np.array([0.01]), "r": np.ones(3), "v_leak": np.array([0.5]),
                          "v_threshold": np.array([1.0, 2.0, 3.0])},
                  "out": {"type": "Output", "shape": np.array([3])}},
    })
    lif = load_nir(tmp_path / "g.nir")["lif"].op
    for value in (lif.v_decay, lif.v_gain, lif.bias, lif.v_reset):
        assert value.shape == (3,)
    np.testing.assert_allclose(lif.bias, [0.5 * 1e-4 / 0.01] * 3)


def _conv_graph(padding, stride, size, input_shape=None) -> nir.NIRGraph:
    conv = nir.Conv2d(input_shape=input_shape, weight=np.ones((1, 1, 3, 3)), stride=stride, padding=padding,
                      dilation=1, groups=1, bias=np.zeros(1))
    nodes = {"in": nir.Input(np.array([1, size, size])), "conv": conv, "out": nir.Output(np.array([1, 1, 1]))}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "conv"), ("conv", "out")], type_check=False)


@pytest.mark.parametrize("stride, size, padding, output", [(1, 8, (1, 1), (1, 8, 8)), (2, 9, (1, 1), (1, 5, 5))])
def test_same_padding_becomes_integers(stride, size, padding, output):
    for input_shape in (None, (size, size)):  # inferred from the graph, or recorded in the file
        graph = from_nir(_conv_graph("same", stride, size, input_shape))
        assert isinstance(graph["conv"].op, ir.Conv2d)
        assert graph["conv"].op.padding == padding
        assert graph["conv"].output_shape == output
    assert from_nir(_conv_graph("valid", stride, size))["conv"].op.padding == (0, 0)


def test_asymmetric_same_padding_is_refused():
    with pytest.raises(FrontendError, match="'conv'.*one side"):
        from_nir(_conv_graph("same", 2, 8))


# ----------------------------------------------------------------------------- rewrites on export


def _delay_graph(dt: float) -> ir.Graph:
    graph = ir.Graph(dt=dt)
    graph.add("in", ir.Input(shape=(3,)))
    weight = np.arange(1.0, 7.0).reshape(2, 3)
    delay = np.array([[0, 2, 2], [1, 0, 2]], dtype=np.int64)
    graph.add("syn", ir.Affine(weight=weight, bias=np.array([0.5, -0.5]), delay=delay))
    graph.add("lif", ir.LIF(v_decay=np.array(0.9), v_gain=np.array(1.0), bias=np.array(0.0),
                            v_threshold=np.array(1.0), v_reset=np.array(0.0)))
    graph.add("out", ir.Output())
    for edge in (("in", "syn"), ("syn", "lif"), ("lif", "out")):
        graph.connect(*edge)
    return ir.verify(graph)


def test_per_synapse_delays_export_as_delay_and_affine_pairs(tmp_path):
    original = _delay_graph(dt=1e-3)
    syn = original["syn"].op
    write_nir(original, tmp_path / "d.nir")
    nir.read(tmp_path / "d.nir")
    graph = load_nir(tmp_path / "d.nir")
    delays = {n.name: n.op.delay for n in graph if isinstance(n.op, ir.Delay)}
    assert {name: d.tolist() for name, d in delays.items()} == {"syn.delay1": [1, 1, 1], "syn.delay2": [2, 2, 2]}
    synapses = {n.name: n.op for n in graph if isinstance(n.op, ir.Affine)}
    assert set(synapses) == {"syn.synapse0", "syn.synapse1", "syn.synapse2"}
    for d, op in ((int(name[-1]), op) for name, op in synapses.items()):
        np.testing.assert_array_equal(op.weight, np.where(syn.delay == d, syn.weight, 0))
        assert op.delay is None
        assert graph.successors(f"syn.synapse{d}") == ["lif"]
        assert graph.predecessors(f"syn.synapse{d}") == ["in" if d == 0 else f"syn.delay{d}"]
    np.testing.assert_array_equal(sum(op.weight for op in synapses.values()), syn.weight)
    assert [name for name, op in synapses.items() if op.bias is not None] == ["syn.synapse0"]
    np.testing.assert_array_equal(synapses["syn.synapse0"].bias, syn.bias)
    assert sorted(graph.successors("in")) == ["syn.delay1", "syn.delay2", "syn.synapse0"]


def test_add_disappears_because_nir_sums_inputs(tmp_path):
    graph = ir.Graph()
    graph.add("in", ir.Input(shape=(2,)))
    graph.add("a", ir.Affine(weight=np.eye(2)))
    graph.add("b", ir.Affine(weight=2 * np.eye(2)))
    graph.add("sum", ir.Add())
    graph.add("li", ir.LI(v_decay=np.array(0.5), v_gain=np.array(1.0), bias=np.array(0.0)))
    graph.add("out", ir.Output())
    for edge in (("in", "a"), ("in", "b"), ("a", "sum"), ("b", "sum"), ("sum", "li"), ("li", "out")):
        graph.connect(*edge)
    exported = to_nir(graph)
    assert "sum" not in exported.nodes
    assert sorted(exported.edges) == [("a", "li"), ("b", "li"), ("in", "a"), ("in", "b"), ("li", "out")]
    write_nir(graph, tmp_path / "add.nir")
    assert sorted(load_nir(tmp_path / "add.nir").predecessors("li")) == ["a", "b"]


def test_neuron_without_leak_exports_as_if():
    graph = ir.Graph()
    graph.add("in", ir.Input(shape=(2,)))
    graph.add("n", ir.LIF(v_decay=np.array(1.0), v_gain=np.array(0.5), bias=np.array(0.0),
                          v_threshold=np.array(1.0), v_reset=np.array(0.0), reset="subtract"))
    graph.add("out", ir.Output())
    graph.connect("in", "n")
    graph.connect("n", "out")
    node = to_nir(graph).nodes["n"]
    assert isinstance(node, nir.IF)
    np.testing.assert_array_equal(node.r, [0.5, 0.5])
    assert node.metadata == {"reset": "subtract"}


# ----------------------------------------------------------------------------- errors


def _one_node_graph(op: ir.Op) -> ir.Graph:
    graph = ir.Graph()
    graph.add("in", ir.Input(shape=(1, 4, 4)))
    graph.add("bad_node", op)
    graph.add("out", ir.Output())
    graph.connect("in", "bad_node")
    graph.connect("bad_node", "out")
    return graph


def test_maxpool_export_is_refused():
    graph = _one_node_graph(ir.MaxPool2d(kernel_size=2, stride=2))
    with pytest.raises(ExportError, match="'bad_node'.*MaxPool2d"):
        to_nir(graph)


def test_if_with_bias_export_is_refused():
    graph = _one_node_graph(ir.IF(v_gain=np.array(1.0), bias=np.array(0.1), v_threshold=np.array(1.0),
                                       v_reset=np.array(0.0)))
    with pytest.raises(ExportError, match="'bad_node'.*bias"):
        to_nir(graph)


def test_unknown_node_type_is_refused(tmp_path):
    write_nir_tree(tmp_path / "g.nir", {
        "type": "NIRGraph", "edges": [("in", "odd"), ("odd", "out")],
        "nodes": {"in": {"type": "Input", "shape": np.array([1])}, "odd": {"type": "Spline"},
                  "out": {"type": "Output", "shape": np.array([1])}},
    })
    with pytest.raises(FrontendError, match="'odd' \\(Spline\\).*supported: .*LIF"):
        load_nir(tmp_path / "g.nir")


def test_non_hdf5_file_is_refused(tmp_path):
    path = tmp_path / "model.nir"
    path.write_text("not a NIR file")
    with pytest.raises(FrontendError, match="model.nir"):
        load_nir(path)


def test_hdf5_file_without_node_group_is_refused(tmp_path):
    with h5py.File(tmp_path / "empty.nir", "w") as file:
        file["version"] = "1.0"
    with pytest.raises(FrontendError, match="empty.nir.*'node'"):
        load_nir(tmp_path / "empty.nir")


def test_delay_that_is_no_whole_number_of_steps_is_refused():
    nodes = {"in": nir.Input(np.array([2])), "wait": nir.Delay(np.array([1e-4, 1.5e-4])),
             "out": nir.Output(np.array([2]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "wait"), ("wait", "out")])
    with pytest.raises(FrontendError, match="'wait'.*whole number of steps"):
        from_nir(graph)
    np.testing.assert_array_equal(from_nir(graph, dt=5e-5)["wait"].op.delay, [2, 3])


def test_three_dimensional_weight_is_refused():
    nodes = {"in": nir.Input(np.array([3])), "fc": nir.Linear(np.ones((2, 2, 3))), "out": nir.Output(np.array([2]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "out")], type_check=False)
    with pytest.raises(FrontendError, match="'fc'.*2-D"):
        from_nir(graph)


def _subgraph_file(path, inner: list[str]) -> None:
    """A graph whose subgraph 'sub' has the LI nodes ``inner`` and edges through a node 'neuron' that
    does not exist, as in the older subgraph layout."""
    li = {"type": "LI", "tau": np.ones(1), "r": np.ones(1), "v_leak": np.zeros(1)}
    port = {"shape": np.array([1])}
    write_nir_tree(path, {
        "type": "NIRGraph", "edges": [("in", "sub"), ("sub", "out")],
        "nodes": {"in": {"type": "Input", **port}, "out": {"type": "Output", **port},
                  "sub": {"type": "NIRGraph", "edges": [("input", "neuron"), ("neuron", "output")],
                          "nodes": {"input": {"type": "Input", **port}, "output": {"type": "Output", **port},
                                    **dict.fromkeys(inner, li)}}},
    })


def test_subgraph_edge_to_a_missing_node_goes_to_the_one_node_no_edge_names(tmp_path):
    _subgraph_file(tmp_path / "g.nir", ["x"])
    graph = load_nir(tmp_path / "g.nir")
    assert list(graph.nodes) == ["in", "sub.x", "out"]
    assert sorted(graph.edges) == [("in", "sub.x"), ("sub.x", "out")]


def test_ambiguous_subgraph_edge_is_refused(tmp_path):
    _subgraph_file(tmp_path / "g.nir", ["a", "b"])
    with pytest.raises(FrontendError, match="g.nir.*'neuron'"):
        load_nir(tmp_path / "g.nir")
