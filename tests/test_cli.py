"""The command line, run as a user runs it: a subprocess, its exit code, stdout, stderr and files."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from snnc import __version__, ir
from snnc.targets import load_target
from snnc.runtime.simulator import simulate

from graphs import mlp, recurrent_mlp, spikes


def snnc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "snnc", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "mlp.snnir"
    ir.save(ir.verify(recurrent_mlp(np.random.default_rng(0))), path)
    return path


@pytest.fixture
def inputs(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, spikes(np.random.default_rng(1), (2, 40, 5)))
    return path


def test_compile_writes_an_artifact_with_a_manifest(model, tmp_path):
    result = snnc("compile", model, "--target", "sim", "-o", tmp_path / "art")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["snnc_version"] == __version__ and manifest["target"] == "sim"
    assert manifest["source"] == {"name": "mlp.snnir", "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    assert set(manifest["files"]) == {"model.snnir", "ir.txt", "passes.json", "target.toml"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "art" / name).read_bytes()).hexdigest() == digest


def test_run_writes_outputs_and_probes(model, inputs, tmp_path):
    assert snnc("compile", model, "-o", tmp_path / "art").returncode == 0
    result = snnc("run", tmp_path / "art", "--input", inputs, "--steps", 40, "-o", tmp_path / "y.npz",
                  "--probe", "hidden", "--probe", "fc1")
    assert result.returncode == 0, result.stderr
    assert "batch=2 steps=40" in result.stdout and "hidden:v" in result.stdout
    with np.load(tmp_path / "y.npz") as saved:
        assert set(saved.files) == {"out", "hidden:spikes", "hidden:v", "hidden:i", "fc1:output"}
        expected = simulate(ir.load(model), np.load(inputs), probes=["hidden", "fc1"])
        for key in saved.files:
            np.testing.assert_array_equal(saved[key], expected[key])


def test_run_takes_npz_inputs_by_node_name(model, tmp_path):
    np.savez(tmp_path / "x.npz", **{"in": spikes(np.random.default_rng(2), (1, 5, 5))})
    result = snnc("run", model, "--input", tmp_path / "x.npz", "-o", tmp_path / "y.npz")
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "y.npz")["out"].shape == (1, 5, 3)


@pytest.mark.parametrize("fmt, start", [("text", "graph main"), ("json", "{"), ("dot", 'digraph "main"')])
def test_inspect_formats(model, tmp_path, fmt, start):
    assert snnc("compile", model, "-o", tmp_path / "art").returncode == 0
    for source in (model, tmp_path / "art"):
        result = snnc("inspect", source, "--format", fmt)
        assert result.returncode == 0 and result.stdout.startswith(start), result.stderr
    assert snnc("inspect", model).stdout == (tmp_path / "art" / "ir.txt").read_text()


@pytest.mark.parametrize("command", [[], ["inspect"], ["compile"], ["run"], ["export"], ["targets"], ["passes"]])
def test_help(command):
    result = snnc(*command, "--help")
    assert result.returncode == 0 and "usage: snnc" in result.stdout


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snnc: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_input_gets_one_line_and_exit_2(model, inputs, tmp_path):
    _assert_one_line_error(snnc("inspect", tmp_path / "missing.nir"), "missing.nir", "no such file")
    _assert_one_line_error(snnc("run", model, "--input", inputs, "--bogus", "-o", tmp_path / "y.npz"), "--bogus")
    _assert_one_line_error(snnc("compile", model, "--target", "cray", "-o", tmp_path / "a"), "--target cray", "sim")
    _assert_one_line_error(snnc("inspect", inputs), "x.npy", "unknown model format")
    _assert_one_line_error(snnc("run", model, "--input", model, "-o", tmp_path / "y.npz"), "--input", "mlp.snnir")
    _assert_one_line_error(snnc("run", model, "--input", inputs, "-o", tmp_path / "y.txt"), "-o", ".npz")
    _assert_one_line_error(snnc("run", model, "--input", inputs, "--probe", "ghost", "-o", tmp_path / "y.npz"), "ghost")
    np.save(tmp_path / "wrong.npy", np.zeros((1, 3, 4)))
    _assert_one_line_error(snnc("run", model, "--input", tmp_path / "wrong.npy", "-o", tmp_path / "y.npz"), "(batch, T, 5)")
    assert not (tmp_path / "y.npz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".snnc")] == []


def test_debug_shows_the_traceback(tmp_path):
    result = snnc("inspect", tmp_path / "missing.nir", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_broken_model_leaves_no_artifact(tmp_path):
    broken = tmp_path / "broken.snnir"
    broken.write_bytes(b"garbage")
    _assert_one_line_error(snnc("compile", broken, "-o", tmp_path / "art"), "broken.snnir")
    assert not (tmp_path / "art").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["broken.snnir"]


def test_changed_artifact_is_refused(model, inputs, tmp_path):
    assert snnc("compile", model, "-o", tmp_path / "art").returncode == 0
    with open(tmp_path / "art" / "model.snnir", "ab") as f:
        f.write(b"\0")
    _assert_one_line_error(snnc("run", tmp_path / "art", "--input", inputs, "-o", tmp_path / "y.npz"),
                           "model.snnir", "changed since compile")


def test_loihi_compile_refuses_what_lava_cannot_run(model, tmp_path):
    _assert_one_line_error(snnc("compile", model, "--target", "loihi2", "-o", tmp_path / "art"),
                           "node 'hidden'", "resets by subtraction")
    assert not (tmp_path / "art").exists()


def test_compile_refuses_to_overwrite_a_non_artifact(model, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("do not delete")
    _assert_one_line_error(snnc("compile", model, "-o", tmp_path / "precious"), "not an snnc artifact")
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_run_writes_cost_reports_for_a_loihi_artifact(inputs, tmp_path):
    model = tmp_path / "mlp.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(5), sizes=(5, 12, 3))), model)
    assert snnc("compile", model, "--target", "loihi2", "-o", tmp_path / "art").returncode == 0
    result = snnc("run", tmp_path / "art", "--input", inputs, "-o", tmp_path / "y.npz", "--report", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    assert "latency per sample" in result.stdout and "energy per sample" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["target"] == "loihi2" and report["timesteps"] == 40 and report["batch"] == 2
    assert report["latency_s"] > 0 and report["energy_j"] > 0 and report["counts"]["spikes"] > 0
    assert {layer["name"] for layer in report["per_layer"]} >= {"lif0", "lif1"}
    html = snnc("run", tmp_path / "art", "--input", inputs, "-o", tmp_path / "y.npz", "--report", tmp_path / "r.html")
    assert html.returncode == 0 and "<svg" in (tmp_path / "r.html").read_text()


def test_float_run_reports_counts_without_hardware_numbers(model, inputs, tmp_path):
    result = snnc("run", model, "--input", inputs, "-o", tmp_path / "y.npz", "--report", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["target"] == "sim" and report["latency_s"] is None and report["counts"]["synaptic_ops"] > 0
    assert report["paper_convention"]["snn_energy_j"] > 0


def test_report_needs_a_known_format(model, inputs, tmp_path):
    _assert_one_line_error(snnc("run", model, "--input", inputs, "-o", tmp_path / "y.npz", "--report", tmp_path / "r.pdf"),
                           "--report", ".json or .html")
    assert not (tmp_path / "y.npz").exists()


def test_pipelines_come_from_the_target_and_can_be_inspected_after_each_pass(tmp_path):
    model = tmp_path / "mlp.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(6), sizes=(5, 12, 3))), model)
    fused = snnc("inspect", model, "--target", "loihi2", "--after", "fuse-synapses")
    assert fused.returncode == 0 and "@loihi" not in fused.stdout and "Affine" in fused.stdout
    quantized = snnc("inspect", model, "--target", "loihi2")
    assert '"vth"' in quantized.stdout or "@loihi" in quantized.stdout
    result = snnc("compile", model, "--target", "loihi2", "--dump-ir", tmp_path / "ir", "-o", tmp_path / "art")
    assert result.returncode == 0, result.stderr
    pipeline = load_target("loihi2").pipeline
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["00-input.txt"] + [
        f"{i:02d}-{name}.txt" for i, name in enumerate(pipeline, start=1)]
    passes = json.loads((tmp_path / "art" / "passes.json").read_text())
    assert list(passes) == pipeline and "lif0" in passes["quantize-loihi"]["populations"]
    shown = snnc("inspect", tmp_path / "art").stdout
    reports = shown[shown.index("passes (passes.json):"):].splitlines()
    assert [line.split(":")[0].strip() for line in reports if line.startswith("  ") and not line.startswith("    ")] == pipeline
    vth = passes["quantize-loihi"]["populations"]["lif0"]["vth"]
    assert f"    populations lif0: vth={vth} " in shown
    only_fused = snnc("compile", model, "--target", "sim", "--passes", "fuse-synapses", "-o", tmp_path / "fused")
    assert only_fused.returncode == 0 and list(json.loads((tmp_path / "fused" / "passes.json").read_text())) == ["fuse-synapses"]
    _assert_one_line_error(snnc("inspect", model, "--target", "loihi2", "--after", "nope"), "--after nope", "fuse-synapses")
    _assert_one_line_error(snnc("compile", model, "--passes", "fuse-synapses,bogus", "-o", tmp_path / "x"),
                           "unknown pass 'bogus'")
