"""Artifacts are sealed and reproducible (issue 12, item 4).

Sealed: an artifact opens only if its manifest lists exactly the plain files the directory holds,
every digest matches, the manifest's fields have their types, and the files the reader needs are
there; every refusal is one line naming the artifact and the file. Reproducible: two compiles of the
same inputs write the same bytes, file for file. The output path is checked before any work, and a
failed compile leaves nothing behind.
"""

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from snnc import ir
from snnc.backends import EMITTERS, compile_graph
from snnc.backends import artifact as artifact_module
from snnc.backends.artifact import MANIFEST, Artifact
from snnc.cli import main
from snnc.errors import SnncError
from snnc.runtime.lava_env import ensure_environment
from snnc.runtime.lava_run import run_lava

from graphs import mlp, recurrent_mlp, spikes

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [ROOT / "examples/digits/model.onnx", ROOT / "examples/digits/model.nir", ROOT / "examples/braille/braille.nir"]
TARGETS = ["sim", "loihi", "loihi2", "spinnaker"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_of(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text())


def write_manifest(directory: Path, manifest) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest))


def reseal(directory: Path) -> None:
    """Rewrite the manifest so that it lists the directory's files as they are now: what someone
    who edits an artifact on purpose does."""
    manifest = manifest_of(directory)
    manifest["files"] = {p.name: digest(p) for p in sorted(directory.iterdir()) if p.name != MANIFEST}
    write_manifest(directory, manifest)


def other_ir(path: Path) -> None:
    """A different, valid IR in ``path``: a changed model that must not get through."""
    ir.save(ir.verify(recurrent_mlp(np.random.default_rng(99), n_hidden=4)), path)


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "mlp.snnir"
    ir.save(ir.verify(recurrent_mlp(np.random.default_rng(0))), path)
    return path


@pytest.fixture
def art(source, tmp_path) -> Path:
    return compile_graph(ir.load(source), "sim", source, tmp_path / "art")


@pytest.fixture
def inputs(tmp_path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, spikes(np.random.default_rng(1), (2, 20, 5)))
    return path


def refused(directory: Path, *words: str, **open_options) -> str:
    with pytest.raises(SnncError) as caught:
        Artifact.open(directory, **open_options)
    message = str(caught.value)
    assert "\n" not in message and str(directory) in message
    for word in words:
        assert word in message, message
    return message


def test_a_fresh_artifact_opens(art):
    assert Artifact.open(art).graph().name == ir.load(art / "model.snnir").name


# ----------------------------------------------------------------------------- the manifest lists exactly what is there


def test_emptied_file_list_does_not_let_a_changed_ir_through(art):
    other_ir(art / "model.snnir")
    manifest = manifest_of(art)
    manifest["files"] = {}
    write_manifest(art, manifest)
    refused(art, "model.snnir", "not listed")


@pytest.mark.parametrize("outside", ["../elsewhere.snnir", "ABSOLUTE", "sub/model.snnir", ".", "..", "", "a\\b"])
def test_names_that_are_not_plain_file_names_are_refused_before_anything_is_read(art, tmp_path, monkeypatch, outside):
    elsewhere = tmp_path / "elsewhere.snnir"
    other_ir(elsewhere)
    name = str(elsewhere) if outside == "ABSOLUTE" else outside
    manifest = manifest_of(art)
    del manifest["files"]["model.snnir"]
    manifest["files"][name] = digest(elsewhere)
    write_manifest(art, manifest)
    read = []
    monkeypatch.setattr(artifact_module, "sha256", lambda path: read.append(Path(path)) or "0" * 64)
    message = refused(art, "plain file name")
    assert repr(name) in message
    assert read == []


def test_an_unlisted_file_is_refused(art):
    (art / "notes.txt").write_text("mine")
    refused(art, "'notes.txt'", "not listed")


def test_a_listed_file_that_is_missing_is_refused(art):
    (art / "ir.txt").unlink()
    refused(art, "'ir.txt'", "missing")


def test_a_changed_file_is_refused(art):
    other_ir(art / "model.snnir")
    refused(art, "'model.snnir'", "changed since compile")


def test_a_link_in_place_of_a_file_is_refused_even_with_the_right_digest(art, tmp_path):
    moved = tmp_path / "moved.snnir"
    (art / "model.snnir").rename(moved)
    (art / "model.snnir").symlink_to(moved)
    refused(art, "'model.snnir'", "not a regular file")


def test_a_subdirectory_is_refused(art):
    (art / "__pycache__").mkdir()
    refused(art, "'__pycache__'")
    reseal_with_directory = manifest_of(art)
    reseal_with_directory["files"]["__pycache__"] = "0" * 64
    write_manifest(art, reseal_with_directory)
    refused(art, "'__pycache__'", "not a regular file")


def test_a_linked_manifest_is_refused(art, tmp_path):
    (art / MANIFEST).rename(tmp_path / "manifest.json")
    (art / MANIFEST).symlink_to(tmp_path / "manifest.json")
    refused(art, MANIFEST, "not a regular file")


def test_a_huge_manifest_is_refused_from_its_size(art):
    write_manifest(art, {**manifest_of(art), "padding": " " * artifact_module.MANIFEST_LIMIT})
    refused(art, MANIFEST, f"{(art / MANIFEST).stat().st_size} bytes", f"at most {artifact_module.MANIFEST_LIMIT}")


@pytest.mark.parametrize("change", [
    lambda m: {**m, "files": list(m["files"])},
    lambda m: {**m, "files": {**m["files"], "ir.txt": 5}},
    lambda m: {**m, "files": {**m["files"], "ir.txt": "ABC"}},
    lambda m: {**m, "files": {**m["files"], "ir.txt": m["files"]["ir.txt"].upper()}},
    lambda m: {**m, "target": 3},
    lambda m: {**m, "snnc_version": None},
    lambda m: {**m, "source": "mlp.snnir"},
    lambda m: {**m, "source": {"name": "mlp.snnir", "sha256": "x"}},
    lambda m: {key: value for key, value in m.items() if key != "source"},
    lambda m: {**m, "extra": 1},
    lambda m: [m],
    lambda m: "[" * 20000 + "]" * 20000,
], ids=["files-a-list", "digest-a-number", "digest-not-hex", "digest-upper-case", "target-a-number",
        "version-null", "source-a-string", "source-digest-not-hex", "source-missing", "unknown-field",
        "not-an-object", "nested-too-deep"])
def test_manifest_fields_of_the_wrong_type_are_refused(art, change):
    changed = change(manifest_of(art))
    (art / MANIFEST).write_text(changed if isinstance(changed, str) else json.dumps(changed))
    refused(art, MANIFEST)


def test_a_manifest_with_a_name_twice_is_refused(art):
    text = json.dumps(manifest_of(art))
    entry = f'"ir.txt": "{digest(art / "ir.txt")}"'
    (art / MANIFEST).write_text(text.replace(entry, f'{entry}, "ir.txt": "{"0" * 64}"'))
    refused(art, MANIFEST, "'ir.txt'", "twice")


def test_an_artifact_without_its_ir_is_refused(art):
    (art / "model.snnir").unlink()
    reseal(art)
    refused(art, "'model.snnir'")


@pytest.mark.parametrize("target, backend, needed", [("loihi2", "lava", "network.py"), ("loihi2", "lava", "params.npz"),
                                                     ("spinnaker", "spinnaker", "spinnaker_machine.npz")])
def test_each_backend_needs_its_files(tmp_path, target, backend, needed):
    out = compile_graph(mlp(np.random.default_rng(2)), target, tmp_path / "model.nir", tmp_path / "art")
    Artifact.open(out, backend=backend)
    (out / needed).unlink()
    reseal(out)
    Artifact.open(out)  # the IR alone still runs in the simulator
    refused(out, repr(needed), backend=backend)


# ----------------------------------------------------------------------------- every command goes through the seal


def one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("snnc: error:"), err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("command", [["run", "--input", "X", "-o", "OUT.npz"], ["inspect", "-o", "OUT.txt"],
                                     ["export", "-o", "OUT.nir"]], ids=["run", "inspect", "export"])
def test_commands_refuse_a_tampered_artifact(art, inputs, tmp_path, capsys, command):
    other_ir(art / "model.snnir")
    manifest = manifest_of(art)
    manifest["files"].pop("model.snnir")
    write_manifest(art, manifest)
    out = tmp_path / ("y" + Path(command[command.index("-o") + 1]).suffix)
    argv = [command[0], str(art)] + [str(inputs) if a == "X" else str(out) if a.startswith("OUT") else a
                                     for a in command[1:]]
    assert main(argv) == 2
    one_line_error(capsys, str(art), "model.snnir")
    assert not out.exists()


@pytest.mark.parametrize("target, backend, needed", [("loihi2", "lava", "network.py"),
                                                     ("spinnaker", "spinnaker", "spinnaker_machine.npz")])
def test_run_on_a_backend_refuses_an_artifact_without_its_files(tmp_path, capsys, target, backend, needed):
    rng = np.random.default_rng(3)
    out = compile_graph(mlp(rng), target, tmp_path / "model.nir", tmp_path / "art")
    np.save(tmp_path / "x.npy", spikes(rng, (1, 10, 40)))
    (out / needed).unlink()
    reseal(out)
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz"),
                 "--backend", backend]) == 2
    one_line_error(capsys, str(out), needed)
    assert not (tmp_path / "y.npz").exists()


@pytest.fixture(scope="module")
def lava_python():
    return ensure_environment(log=lambda line: None)


def test_running_the_lava_program_leaves_the_artifact_sealed(lava_python, tmp_path, monkeypatch):
    """Python caches an imported network.py in a __pycache__ beside it unless told not to."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    rng = np.random.default_rng(5)
    out = compile_graph(mlp(rng), "loihi2", tmp_path / "model.nir", tmp_path / "art")
    run_lava(out, spikes(rng, (1, 5, 40)).astype(np.int64), log=lambda line: None)
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *manifest_of(out)["files"]])
    Artifact.open(out, backend="lava")


# ----------------------------------------------------------------------------- the output path, and failures


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".snnc-*"))


def test_compile_refuses_an_output_that_is_a_file_before_reading_the_model(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert main(["compile", str(tmp_path / "no-such-model.nir"), "-o", str(taken)]) == 2
    one_line_error(capsys, f"-o {taken}")
    assert taken.read_text() == "mine" and leftovers(tmp_path) == []


@pytest.mark.parametrize("setup", ["empty", "user-files", "artifact-plus-a-user-file", "link", "under-a-file"])
def test_compile_refuses_an_output_it_must_not_replace(source, tmp_path, capsys, setup):
    out = tmp_path / "out"
    if setup == "empty":
        out.mkdir()
    elif setup == "user-files":
        out.mkdir()
        (out / "thesis.tex").write_text("mine")
    elif setup == "artifact-plus-a-user-file":
        compile_graph(ir.load(source), "sim", source, out)
        (out / "thesis.tex").write_text("mine")
    elif setup == "link":
        compile_graph(ir.load(source), "sim", source, tmp_path / "real")
        out.symlink_to(tmp_path / "real")
    else:
        (tmp_path / "file").write_text("mine")
        out = tmp_path / "file" / "art"
    before = sorted((p.relative_to(tmp_path), p.is_symlink() or p.read_bytes() if p.is_file() else None)
                    for p in tmp_path.rglob("*"))
    # The model does not exist either: the output is checked first.
    assert main(["compile", str(tmp_path / "no-such-model.nir"), "-o", str(out)]) == 2
    one_line_error(capsys, f"-o {out}")
    after = sorted((p.relative_to(tmp_path), p.is_symlink() or p.read_bytes() if p.is_file() else None)
                   for p in tmp_path.rglob("*"))
    assert after == before


def test_compile_replaces_an_artifact(source, art, tmp_path):
    other = tmp_path / "other.snnir"
    other_ir(other)
    assert main(["compile", str(other), "-o", str(art)]) == 0
    assert manifest_of(art)["source"]["name"] == "other.snnir"
    assert Artifact.open(art).graph()["hidden"].output_shape == (4,)
    assert leftovers(tmp_path) == []


def test_a_failed_compile_leaves_nothing_behind(source, tmp_path, monkeypatch):
    def fail_halfway(graph, writer):
        writer.path("network.py").write_text("# half")
        raise SnncError("node 'x': cannot be emitted")

    monkeypatch.setitem(EMITTERS, "loihi", [fail_halfway])
    with pytest.raises(SnncError, match="cannot be emitted"):
        compile_graph(mlp(np.random.default_rng(4)), "loihi2", source, tmp_path / "new" / "deeper" / "art")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.snnir"]


def test_a_failed_compile_over_an_artifact_keeps_the_old_one(source, art, tmp_path, monkeypatch):
    before = {p.name: p.read_bytes() for p in art.iterdir()}

    def fail(graph, writer):
        raise SnncError("node 'x': cannot be emitted")

    monkeypatch.setitem(EMITTERS, "loihi", [fail])
    with pytest.raises(SnncError):
        compile_graph(mlp(np.random.default_rng(4)), "loihi2", source, art)
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- reproducible


def compile_file(model: Path, target: str, out: Path) -> Path:
    assert main(["compile", str(model), "--target", target, "-o", str(out)]) == 0
    return out


def same_bytes(a: Path, b: Path) -> None:
    names = sorted((p.name for p in a.iterdir()), key=lambda name: (name == MANIFEST, name))  # its digests last
    assert names == sorted((p.name for p in b.iterdir()), key=lambda name: (name == MANIFEST, name))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("model", EXAMPLES, ids=lambda p: f"{p.parent.name}-{p.suffix[1:]}")
@pytest.mark.parametrize("target", TARGETS)
def test_two_compiles_are_byte_identical(tmp_path, monkeypatch, capsys, model, target):
    """The second compile runs a day and a second later (zip members record a time to 2 s) into another directory."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = compile_file(model, target, tmp_path / "first")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 86401)
    second = compile_file(model, target, tmp_path / "elsewhere" / "second")
    same_bytes(first, second)


def test_two_compiles_with_source_date_epoch_are_byte_identical(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = compile_file(EXAMPLES[1], "loihi2", tmp_path / "first")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 86401)
    same_bytes(first, compile_file(EXAMPLES[1], "loihi2", tmp_path / "second"))


@pytest.mark.parametrize("target", TARGETS)
def test_compiles_in_processes_with_different_hash_seeds_are_byte_identical(tmp_path, target):
    """Set and dict orders of strings change with PYTHONHASHSEED from one process to the next."""
    import subprocess
    import sys

    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}"
        result = subprocess.run([sys.executable, "-m", "snnc", "compile", str(EXAMPLES[2]), "--target", target,
                                 "-o", str(out)], capture_output=True, text=True,
                                env={**os.environ, "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outs.append(out)
    same_bytes(*outs)
