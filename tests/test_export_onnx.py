"""`snnc export MODEL -o model.onnx`: the ai.snnc form, which reads back as the same graph."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from snnc import ir
from snnc.cli import main
from snnc.export import to_onnx
from snnc.frontend import load_model
from snnc.frontend.onnx import META_ANNOTATIONS, from_onnx
from snnc.errors import ExportError, SnncError
from snnc.ir import serialize
from snnc.runtime.simulator import simulate

from graphs import mlp, recurrent_mlp, spikes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def canonical(graph: ir.Graph) -> bytes:
    """The IR file of ``graph`` with nodes and edges in name order, annotations included: equal
    bytes mean the same ops, parameters bit for bit (values and dtypes), annotations, names and dt."""
    copy = ir.Graph(dt=graph.dt, name=graph.name, metadata=graph.metadata)
    for name in sorted(graph.nodes):
        copy.add(name, graph[name].op, graph[name].annotations)
    for edge in sorted(graph.edges):
        copy.connect(*edge)
    return serialize.to_bytes(copy)


def export(model, out: Path, capsys) -> None:
    assert main(["export", str(model), "-o", str(out)]) == 0, capsys.readouterr().err
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


@pytest.fixture
def recurrent(tmp_path):
    path = tmp_path / "recurrent.snnir"
    graph = ir.verify(recurrent_mlp(np.random.default_rng(0)))
    graph.name = "recurrent"
    ir.save(graph, path)
    return path


@pytest.mark.parametrize("target", ["sim", "loihi2", "spinnaker"])
def test_exported_artifact_reads_back_as_the_same_graph_and_runs_the_same(tmp_path, capsys, target):
    artifact = tmp_path / target
    assert main(["compile", str(EXAMPLES / "digits" / "model.onnx"), "--target", target, "-o", str(artifact)]) == 0
    capsys.readouterr()
    export(artifact, tmp_path / "model.onnx", capsys)
    original, loaded = load_model(artifact), load_model(tmp_path / "model.onnx")
    assert canonical(loaded) == canonical(original)
    x = spikes(np.random.default_rng(1), (3, 20, *original[original.inputs[0]].output_shape))
    expected, got = simulate(original, x), simulate(loaded, x)
    assert sum(v.sum() for v in expected.values()) > 0, "no output spikes: the comparison would prove little"
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_exported_model_with_recurrence_reads_back_and_runs_the_same(recurrent, tmp_path, capsys):
    export(recurrent, tmp_path / "r.onnx", capsys)
    original, loaded = load_model(recurrent), load_model(tmp_path / "r.onnx")
    assert canonical(loaded) == canonical(original)
    x = spikes(np.random.default_rng(2), (2, 30, 5))
    for key, value in simulate(original, x, probes=["hidden"]).items():
        np.testing.assert_array_equal(simulate(loaded, x, probes=["hidden"])[key], value)


def test_export_runs_as_a_command_and_says_where(recurrent, tmp_path):
    result = subprocess.run([sys.executable, "-m", "snnc", "export", str(recurrent), "-o", str(tmp_path / "r.onnx")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == f"exported {recurrent} -> {tmp_path / 'r.onnx'}\n"


def test_export_help_lists_both_formats(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    assert ".nir" in text and ".onnx" in text


def test_export_to_an_unknown_suffix_names_both_formats_and_writes_nothing(recurrent, tmp_path, capsys):
    assert main(["export", str(recurrent), "-o", str(tmp_path / "model.pb")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and ".nir" in error and ".onnx" in error
    assert not (tmp_path / "model.pb").exists()


def test_annotation_arrays_are_initializers_named_apart_from_every_tensor():
    """A node named like the annotation tensors does not clash with them."""
    graph = ir.verify(mlp(np.random.default_rng(3), sizes=(4, 3)))
    clash = ir.Graph(dt=graph.dt, name="clash")
    for node in graph:
        clash.add("snnc.annotation.0" if node.name == "lif0" else node.name, node.op,
                  {"note": np.arange(3, dtype=np.int16), "kept": (1, "two")} if node.name == "fc0" else None)
    for s, t in graph.edges:
        clash.connect(*("snnc.annotation.0" if n == "lif0" else n for n in (s, t)))
    model = to_onnx(ir.verify(clash))
    onnx.checker.check_model(model, full_check=True)
    names = json.loads({p.key: p.value for p in model.metadata_props}[META_ANNOTATIONS])["arrays"]
    assert names == ["snnc.annotation.0_"]
    loaded = from_onnx(model)
    assert canonical(loaded) == canonical(clash)
    assert loaded["fc0"].annotations["note"].dtype == np.int16 and loaded["fc0"].annotations["kept"] == (1, "two")


def test_model_without_annotations_writes_no_annotation_metadata():
    model = to_onnx(ir.verify(mlp(np.random.default_rng(3), sizes=(4, 3))))
    assert META_ANNOTATIONS not in {p.key for p in model.metadata_props}


@pytest.mark.parametrize("document, message", [
    ("{", "JSON"),
    ('{"arrays": ["nowhere"], "nodes": {}}', "malformed"),
    ('{"arrays": ["in"], "nodes": {}}', "must name initializers"),
    ('{"arrays": [], "nodes": {"fc0": {"w": {"__array__": 3}}}}', "array reference 3 names none"),
    ('{"arrays": [], "nodes": {"fc0": 5}}', "must be an object"),
    ('{"arrays": [], "nodes": {"ghost": {}}}', "annotates node 'ghost', which the graph does not have"),
])
def test_malformed_annotation_metadata_is_refused_in_one_line(document, message):
    model = to_onnx(ir.verify(mlp(np.random.default_rng(3), sizes=(4, 3))))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, META_ANNOTATIONS: document})
    with pytest.raises(SnncError, match=f"m.onnx: metadata snnc.annotations.*{message}") as caught:
        from_onnx(model, "m.onnx")
    assert "\n" not in str(caught.value)


def test_annotation_array_that_onnx_cannot_hold_exactly_is_refused_naming_the_node():
    graph = ir.verify(mlp(np.random.default_rng(3), sizes=(4, 3)))
    graph["fc0"].annotations["labels"] = np.array(["a", "b"])
    with pytest.raises(ExportError, match=r"node 'fc0': an annotation holds an array of dtype <U1"):
        to_onnx(graph)
