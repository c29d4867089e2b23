"""The command line's contract with a user, through ``snnc.cli.main``: every bad flag or output path
is one line on stderr naming it, exit code 2, and nothing written; --json prints what a program can
parse; the listings show every bundled target and pass; help names every model format."""

import json
import os
from collections import Counter

import numpy as np
import pytest

from snnc import ir
from snnc.cli import main
from snnc.frontend import FORMATS
from snnc.passes.pipeline import REGISTRY, PassOptions
from snnc.targets import available_targets, load_target

from graphs import chain, conv_net, lif, mlp, recurrent_mlp, spikes

ONNX_MODEL = "examples/digits/model.onnx"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A directory holding a float model (m.snnir), a Loihi 2 artifact of a small MLP (loihi/), its
    inputs (x.npy) and a plain file (file.txt); the tests run in it."""
    monkeypatch.chdir(tmp_path)
    ir.save(ir.verify(recurrent_mlp(np.random.default_rng(0))), "m.snnir")
    ir.save(ir.verify(mlp(np.random.default_rng(5), sizes=(5, 12, 3))), "mlp.snnir")
    assert main(["compile", "mlp.snnir", "--target", "loihi2", "-o", "loihi"]) == 0
    np.save("x.npy", spikes(np.random.default_rng(1), (2, 40, 5)))
    (tmp_path / "file.txt").write_text("a file, not a directory")
    (tmp_path / "dir").mkdir()
    (tmp_path / "r.json").mkdir()
    return tmp_path


def _listing(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def _refused(capsys, argv, *fragments):
    """Run ``argv``; assert exit code 2 and one stderr line holding every fragment; return the line."""
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("snnc: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert out == ""
    return lines[0]


BAD_FLAGS = [
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--steps", "0"], ["--steps", ">= 1"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--steps", "-3"], ["--steps", ">= 1"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--steps", "ten"], ["--steps", "'ten'"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--steps", "100000000000000"],
     ["--steps 100000000000000", "node 'in'", "memory budget"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--dt", "nan"], ["--dt", "> 0"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--dt", "inf"], ["--dt", "> 0"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--dt", "0"], ["--dt", "> 0"]),
    (["compile", "m.snnir", "-o", "art", "--dt", "-0.001"], ["--dt", "> 0"]),
    (["compile", "m.snnir", "-o", "art", "--sparsity", "1"], ["--sparsity", "from 0 up to"]),
    (["compile", "m.snnir", "-o", "art", "--sparsity=-0.1"], ["--sparsity", "from 0 up to"]),
    (["compile", "m.snnir", "-o", "art", "--sparsity", "nan"], ["--sparsity", "from 0 up to"]),
    (["compile", "m.snnir", "-o", "art", "--weight-bits", "3"], ["--weight-bits", "2, 4, 8"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--precision", "float16"], ["--precision", "float32"]),
    (["run", "loihi", "--input", "x.npy", "-o", "y.npz", "--precision", "float32"],
     ["--precision float32", "loihi arithmetic"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--precision", "float64", "--backend", "lava"],
     ["--precision float64", "--backend lava"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--probe", "hidden", "--probe", "ghost"],
     ["--probe ghost", "no such node", "hidden"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--dt", "1e-3"], ["--dt 0.001", ".nir and .onnx", ".snnir"]),
    (["run", "loihi", "--input", "x.npy", "-o", "y.npz", "--reset", "subtract"],
     ["--reset subtract", ".nir models only", "artifact directory"]),
    (["inspect", ONNX_MODEL, "--reset", "value"], ["--reset value", ".nir models only", ".onnx"]),
    (["export", "loihi", "-o", "m.nir", "--dt", "1e-3"], ["--dt 0.001", "artifact directory"]),
    (["inspect", "m.snnir", "--mapping", "--format", "json"], ["--format json", "--mapping"]),
    (["inspect", "mlp.snnir", "--target", "loihi2", "--after", "fuse-synapses", "--weight-bits", "4"],
     ["--weight-bits 4", "read by quantize-weights", "after --after fuse-synapses"]),
    (["inspect", "mlp.snnir", "--target", "spinnaker", "--after", "quantize-weights", "--allow-lossy"],
     ["--allow-lossy", "read by quantize-spinnaker", "after --after quantize-weights"]),
]


@pytest.mark.parametrize("argv, fragments", BAD_FLAGS, ids=[" ".join(a[4:]) or a[0] for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_line_naming_it_and_nothing_is_written(work, capsys, argv, fragments):
    if ONNX_MODEL in argv:
        argv = [str(os.path.join(os.path.dirname(__file__), "..", ONNX_MODEL)) if a == ONNX_MODEL else a for a in argv]
    before = _listing(work)
    _refused(capsys, argv, *fragments)
    assert _listing(work) == before


BAD_OUTPUTS = [
    (["run", "m.snnir", "--input", "x.npy", "-o", "dir"], ["-o dir", "*.npz"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.txt"], ["-o y.txt", "*.npz"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "dir.npz"], None),
    (["run", "m.snnir", "--input", "x.npy", "-o", "file.txt/y.npz"], ["-o file.txt/y.npz", "is a file"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--report", "r.pdf"], ["--report r.pdf", ".json or .html"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--report", "file.txt/r.json"],
     ["--report file.txt/r.json", "is a file"]),
    (["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--report", "r.json"], ["--report r.json", "is a directory"]),
    (["compile", "m.snnir", "-o", "file.txt"], ["-o file.txt", "exists and is not a directory"]),
    (["compile", "m.snnir", "-o", "file.txt/art"], ["-o file.txt/art", "is a file"]),
    (["compile", "m.snnir", "-o", "art", "--dump-ir", "file.txt"], ["--dump-ir file.txt", "is a file"]),
    (["inspect", "m.snnir", "-o", "dir"], ["-o dir", "is a directory"]),
    (["export", "m.snnir", "-o", "dir"], ["-o dir"]),
    (["export", "m.snnir", "-o", "m.txt"], ["-o m.txt", "*.nir"]),
]


@pytest.mark.parametrize("argv, fragments", BAD_OUTPUTS, ids=[" ".join(a[-4:]) for a, _ in BAD_OUTPUTS])
def test_a_bad_output_path_is_refused_before_any_work(work, capsys, argv, fragments):
    (work / "dir.npz").mkdir()
    before = _listing(work)
    flag = "--report" if "--report" in argv else "--dump-ir" if "--dump-ir" in argv else "-o"
    line = _refused(capsys, argv, *(fragments or [f"{flag} {argv[argv.index(flag) + 1]}"]))
    assert "Traceback" not in line
    assert _listing(work) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_output_directory_without_write_permission_is_refused(work, capsys):
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _refused(capsys, ["run", "m.snnir", "--input", "x.npy", "-o", "locked/sub/y.npz"], "-o locked/sub/y.npz",
                 "no permission to write")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_a_report_that_cannot_be_written_leaves_no_results(work, capsys):
    """The report's path is checked before the run, so its failure cannot follow the .npz's write."""
    _refused(capsys, ["run", "loihi", "--input", "x.npy", "-o", "y.npz", "--report", "file.txt/r.html"], "--report")
    assert not (work / "y.npz").exists()
    assert main(["run", "loihi", "--input", "x.npy", "-o", "y.npz", "--report", "new/r.html"]) == 0
    assert (work / "y.npz").is_file() and "<svg" in (work / "new" / "r.html").read_text()


@pytest.mark.parametrize("array", [np.zeros((0, 40, 5)), np.zeros((2, 40, 5), np.complex128),
                                   np.full((2, 40, 5), "1"), np.zeros((2, 40, 4)), np.zeros((40, 5))],
                         ids=["empty batch", "complex", "strings", "wrong shape", "no batch axis"])
def test_an_unusable_input_is_one_line_naming_input(work, capsys, array):
    np.save("bad.npy", array)
    _refused(capsys, ["run", "m.snnir", "--input", "bad.npy", "-o", "y.npz"], "--input bad.npy")
    assert not (work / "y.npz").exists()


def test_a_file_name_with_control_characters_is_shown_escaped_on_the_one_line(work, capsys):
    """The user's own path may hold a newline or an escape sequence; the message stays one line."""
    np.save("bad\n\x1b[2Jx.npy", np.zeros((2, 40, 4)))
    line = _refused(capsys, ["run", "m.snnir", "--input", "bad\n\x1b[2Jx.npy", "-o", "y.npz"], "--input bad\\n\\x1b[2Jx.npy")
    assert line.isprintable()
    assert not (work / "y.npz").exists()


def test_a_run_is_sized_against_the_memory_budget_before_it_allocates(work, capsys, monkeypatch):
    """Inputs padded to --steps (2 x 1000 x 5 float64), outputs (2 x 1000 x 3 int8) and a probe's v
    and i (2 x 7 x 1000 float64 each) against a budget that holds the first two but not the probe."""
    monkeypatch.setenv("SNNC_MEMORY_BUDGET", "100000")
    assert main(["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--steps", "1000"]) == 0
    (work / "y.npz").unlink()
    _refused(capsys, ["run", "m.snnir", "--input", "x.npy", "-o", "y.npz", "--steps", "1000", "--probe", "hidden"],
             "--steps 1000, node 'hidden'", "memory budget")
    np.save("long.npy", spikes(np.random.default_rng(4), (2, 1000, 5)))
    _refused(capsys, ["run", "m.snnir", "--input", "long.npy", "-o", "y.npz", "--probe", "hidden"],
             "--input long.npy: 1000 steps, node 'hidden'", "memory budget")
    assert not (work / "y.npz").exists()


def test_inspect_runs_the_passes_it_is_given_without_a_target(work, capsys):
    """--passes alone used to be ignored by inspect, which lowered only with --target or --after."""
    graph = chain(("in", ir.Input(shape=(3,))), ("fc", ir.Affine(weight=np.eye(3))),
                  ("half", ir.Scale(scale=np.full(3, 0.5))), ("n", lif(shape=(3,))), ("out", ir.Output()))
    ir.save(ir.verify(graph), "scaled.snnir")
    capsys.readouterr()
    assert main(["inspect", "scaled.snnir"]) == 0
    assert " Scale " in capsys.readouterr().out
    assert main(["inspect", "scaled.snnir", "--passes", "canonicalize"]) == 0
    assert " Scale " not in capsys.readouterr().out


def test_inspect_after_a_pass_takes_the_options_of_the_passes_it_runs(work, capsys):
    """An option is refused only when no pass up to --after reads it; a later reader does not matter."""
    assert main(["inspect", "mlp.snnir", "--target", "loihi2", "--after", "quantize-weights", "--weight-bits",
                 "4"]) == 0
    assert main(["inspect", "mlp.snnir", "--target", "loihi2", "--after", "round-delays", "--calibration",
                 "x.npy"]) == 0
    _refused(capsys, ["inspect", "mlp.snnir", "--target", "loihi2", "--after", "canonicalize", "--calibration",
                      "x.npy"], "--calibration x.npy: read by round-delays")


def test_model_flags_still_reach_the_formats_that_read_them(work, capsys):
    onnx = os.path.join(os.path.dirname(__file__), "..", ONNX_MODEL)
    assert main(["inspect", onnx, "--dt", "0.002", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["dt"] == 0.002


def test_compile_json_says_what_was_written_where(work, capsys):
    capsys.readouterr()
    assert main(["compile", "mlp.snnir", "--target", "loihi2", "-o", "out/art", "--dump-ir", "ir", "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    manifest = json.loads((work / "out" / "art" / "manifest.json").read_text())
    assert summary["output"] == "out/art" and summary["target"] == "loihi2" and summary["arithmetic"] == "loihi"
    assert summary["files"] == sorted(manifest["files"]) and summary["dump_ir"] == "ir"
    assert summary["nodes"]["model"] == {"total": 6, "by_op": {"Affine": 2, "Input": 1, "LIF": 2, "Output": 1}}
    compiled = ir.load(work / "out" / "art" / "model.snnir")
    assert summary["nodes"]["compiled"] == {"total": len(compiled),
                                            "by_op": dict(Counter(sorted(node.op.kind for node in compiled)))}
    assert [entry["name"] for entry in summary["passes"]] == load_target("loihi2").pipeline
    assert all(isinstance(entry["warnings"], list) for entry in summary["passes"])


def test_run_json_summarises_the_outputs_and_costs(work, capsys):
    capsys.readouterr()
    assert main(["run", "loihi", "--input", "x.npy", "-o", "y.npz", "--steps", "30", "--probe", "lif0",
                 "--report", "r.html", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["batch"], summary["steps"], summary["backend"]) == (2, 30, "sim")
    assert summary["output"] == "y.npz" and summary["report"] == "r.html" and (work / "r.html").is_file()
    with np.load(work / "y.npz") as saved:
        assert set(summary["outputs"]) == set(saved.files)
        for key in saved.files:
            assert summary["outputs"][key]["shape"] == list(saved[key].shape)
            assert summary["outputs"][key]["sum"] == saved[key].sum()
    cost = summary["cost"]
    assert cost["target"] == "loihi2" and cost["latency_s"] > 0 and cost["energy_j"] > 0
    assert cost["counts"]["spikes"] > 0 and summary["no_cost_reason"] is None


def test_run_json_without_a_cost_report_says_why(work, capsys):
    ir.save(ir.verify(conv_net(np.random.default_rng(2))), "conv.snnir")
    np.save("images.npy", spikes(np.random.default_rng(3), (1, 4, 2, 9, 9)))
    capsys.readouterr()
    assert main(["run", "conv.snnir", "--input", "images.npy", "-o", "y.npz", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cost"] is None and "MaxPool2d" in summary["no_cost_reason"]
    assert summary["outputs"]["out"]["shape"] == [1, 4, 6]


def test_targets_lists_every_bundled_target(capsys):
    capsys.readouterr()
    assert main(["targets", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)["targets"]
    assert [entry["name"] for entry in listed] == available_targets()
    for entry in listed:
        target = load_target(entry["name"])
        assert entry == {"name": target.name, "arithmetic": target.arithmetic, "description": target.description,
                         "pipeline": target.pipeline}
    assert main(["targets"]) == 0
    text = capsys.readouterr().out
    for name in available_targets():
        target = load_target(name)
        assert f"{name}  ({target.arithmetic} arithmetic)  {target.description}" in text
        assert f"pipeline: {', '.join(target.pipeline) or '(none'}" in text


@pytest.mark.parametrize("command", ["inspect", "compile", "run", "export"])
def test_help_lists_every_model_format(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for kind in FORMATS:
        assert kind in text


def test_passes_lists_every_pass_with_its_doc_and_options(capsys):
    capsys.readouterr()
    assert main(["passes", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)["passes"]
    assert [entry["name"] for entry in listed] == list(REGISTRY)
    for entry in listed:
        registered = REGISTRY[entry["name"]]
        doc = registered.kind.__doc__.strip().splitlines()[0]
        assert registered.kind.name == entry["name"] and entry["doc"] == doc and doc
        assert entry["options"] == ["--" + field.replace("_", "-") for field in registered.reads]
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    assert all(f"{entry['name']}  " in text and entry["doc"] in text for entry in listed)
    assert "options: --weight-bits, --quantization, --granularity, --calibration" in text


def test_the_options_a_pass_is_listed_with_are_those_its_build_reads():
    """``snnc passes`` lists each pass's ``reads``; this holds them to what its ``build`` reads."""

    class Recording(PassOptions):
        def __getattribute__(self, field):
            if field in PassOptions.__dataclass_fields__:
                object.__getattribute__(self, "read").append(field)
            return object.__getattribute__(self, field)

    for name, registered in REGISTRY.items():
        target = load_target(next(t for t in available_targets() if name in load_target(t).pipeline))
        options = Recording()
        options.read = []
        made = registered.build(target, options)
        assert type(made) is registered.kind
        assert tuple(dict.fromkeys(options.read)) == registered.reads, name


def test_inspect_lines_summarise_annotations_instead_of_dumping_json(work, capsys):
    graph = ir.verify(mlp(np.random.default_rng(7), sizes=(5, 12, 3)))
    graph["lif0"].annotations.update(
        table={f"key{i}": i / 7 for i in range(200)}, pieces=[{"core": i, "start": 0, "stop": 4} for i in range(50)],
        mantissa=np.arange(-6, 6, dtype=np.int8).reshape(3, 4), flat=np.full(12, 7), label="plain", empty=[])
    ir.save(graph, "annotated.snnir")
    capsys.readouterr()
    assert main(["inspect", "annotated.snnir"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if " lif0 " in line)
    annotations = line[line.index("@"):]
    assert "@mantissa=int8(3,4)=[-6..5]" in annotations and "@flat=int64(12,)=7" in annotations
    assert "@pieces=[{core=0 start=0 stop=4}, {core=1 start=0 stop=4}, {core=2 start=0 stop=4}, +47 more]" in annotations
    assert "@label=plain" in annotations and "@empty=[]" in annotations
    table = annotations[annotations.index("@table="):annotations.index(" @pieces")]
    assert table.startswith("@table={key0=0 key1=0.142857 key2=0.285714") and table.endswith("...")
    assert len(table) == 120 and len(annotations) < 400
    assert main(["inspect", "annotated.snnir", "--format", "json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    node = next(node for node in whole["nodes"] if node["name"] == "lif0")
    assert len(node["annotations"]["table"]) == 200 and len(node["annotations"]["pieces"]) == 50
