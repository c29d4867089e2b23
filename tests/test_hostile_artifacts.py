"""Hostile artifacts: a file edited on purpose and the manifest rewritten to match (issue 12).

The seal (tests/test_artifact.py) shows that an artifact did not change by accident; whoever edits
one on purpose rewrites its manifest too. So each file of an artifact is still untrusted input:
``snnc inspect`` checks the structure of network.json and passes.json, ``run --backend spinnaker``
every value of the machine data against the target, the IR and itself, and ``run --backend lava``
that the Lava program is the one snnc writes for the artifact's IR. Every edit below is resealed
and must end in exit code 2, one line on stderr naming the artifact and the file, and nothing
written.
"""

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from snnc import ir
from snnc.backends import compile_graph
from snnc.backends.artifact import JSON_EXPANSION, MANIFEST, Artifact, sha256
from snnc.backends.spinnaker.machine import MachineData
from snnc.cli import main
from snnc.errors import SnncError
from snnc.runtime import lava_run
from snnc.targets import load_target

from graphs import mlp, spikes
from model_files import set_at

ROOT = Path(__file__).resolve().parents[1]


def reseal(directory: Path) -> None:
    """Rewrite the manifest so that it lists the directory's files as they are now, digests and all."""
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"] = {p.name: sha256(p) for p in sorted(directory.iterdir()) if p.name != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps(manifest))


def edit_json(directory: Path, name: str, change) -> None:
    """Replace the JSON file ``name`` by ``change(document)`` (a new document, text or bytes), and reseal."""
    changed = change(json.loads((directory / name).read_text()))
    if isinstance(changed, bytes):
        (directory / name).write_bytes(changed)
    else:
        (directory / name).write_text(changed if isinstance(changed, str) else json.dumps(changed))
    reseal(directory)


def edit_arrays(directory: Path, name: str, change) -> None:
    """Let ``change`` edit the arrays of the .npz ``name`` in place, write them back, and reseal."""
    with np.load(directory / name) as stored:
        arrays = {key: stored[key] for key in stored.files}
    change(arrays)
    np.savez(directory / name, **arrays)
    reseal(directory)


def huge_member(directory: Path, name: str, member: str) -> None:
    """Replace the .npz ``name`` by one whose member ``member`` declares 2**40 uint32 values in a
    few bytes, and reseal."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<u4", "fortran_order": False, "shape": (1 << 40,)})
    with zipfile.ZipFile(directory / name, "w") as archive:
        archive.writestr(f"{member}.npy", header.getvalue() + b"\0" * 16)
    reseal(directory)


def refused(capsys, argv: list, directory: Path, name: str, written: Path) -> str:
    """Run ``argv``: exit code 2, one stderr line naming ``directory`` and ``name``, ``written`` not written."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("snnc: error: "), err
    assert str(directory) in err and name in err, err
    assert "Traceback" not in err and "internal error" not in err
    assert not written.exists()
    return err


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A Loihi 2 artifact of a small MLP, and a SpiNNaker one of an MLP whose delays need delay
    extensions; each test edits a copy."""
    where = tmp_path_factory.mktemp("compiled")
    rng = np.random.default_rng(1)
    loihi = compile_graph(ir.verify(mlp(rng, sizes=(5, 12, 3))), "loihi2", where / "mlp.nir", where / "loihi")
    delayed = mlp(rng, sizes=(12, 10, 6))
    delayed["fc0"].op.delay = rng.integers(0, 60, size=(10, 12))
    spinnaker = compile_graph(ir.verify(delayed), "spinnaker", where / "delayed.nir", where / "spinnaker")
    return {"loihi2": loihi, "spinnaker": spinnaker}


@pytest.fixture
def loihi(compiled, tmp_path) -> Path:
    return Path(shutil.copytree(compiled["loihi2"], tmp_path / "loihi"))


@pytest.fixture
def spinnaker(compiled, tmp_path) -> Path:
    return Path(shutil.copytree(compiled["spinnaker"], tmp_path / "spinnaker"))


# ----------------------------------------------------------------------------- snnc inspect: network.json, passes.json


def _first(group: str, change):
    """An edit of network.json that applies ``change`` to the first entry of ``group``."""
    def edit(described):
        change(next(iter(described[group].values())))
        return described
    return edit


NETWORK_JSON_EDITS = {
    "a-list": lambda d: [],
    "a-group-a-number": lambda d: {**d, "inputs": 3},
    "a-group-missing": lambda d: {key: value for key, value in d.items() if key != "outputs"},
    "not-json": lambda d: "{",
    "nested-too-deep": lambda d: "[" * 100000 + "]" * 100000,
    "from-numbers": _first("populations", lambda entry: entry.update({"from": [1, 2]})),
    "from-a-string": _first("synapses", lambda entry: entry.update({"from": "fc0"})),
    "id-a-number": _first("inputs", lambda entry: entry.update({"id": 5})),
    "op-missing": _first("outputs", lambda entry: entry.pop("op")),
    "entry-a-list": lambda d: {**d, "populations": {"lif0": ["LIF"]}},
    "a-key-twice": lambda d: json.dumps(d).replace('"inputs":', '"outputs": {}, "inputs":', 1),
    "not-utf8": lambda d: json.dumps(d).encode().replace(b"LIF", b"L\xffF"),
}
PASSES_JSON_EDITS = {
    "a-list": lambda r: [r],
    "a-report-a-number": lambda r: {**r, "quantize-loihi": 3},
    "a-report-a-list": lambda r: {**r, "map-cores": [1, 2]},
    "not-json": lambda r: '{"canonicalize": ',
    "nested-too-deep": lambda r: '{"a": ' + "[" * 100000 + "]" * 100000 + "}",
}


TABLE_EDITS = {**{f"network.json-{k}": ("network.json", change) for k, change in NETWORK_JSON_EDITS.items()},
               **{f"passes.json-{k}": ("passes.json", change) for k, change in PASSES_JSON_EDITS.items()}}


@pytest.mark.parametrize("name, change", TABLE_EDITS.values(), ids=TABLE_EDITS)
def test_inspect_refuses_a_malformed_table(loihi, tmp_path, capsys, name, change):
    edit_json(loihi, name, change)
    out = tmp_path / "dump.txt"
    refused(capsys, ["inspect", loihi, "-o", out], loihi, name, out)


def test_inspect_refuses_a_table_too_large_for_the_memory_budget_before_reading_it(loihi, tmp_path, capsys,
                                                                                    monkeypatch):
    """A table padded to 1 MiB would take about 48 MiB parsed, more than a budget of 16 MiB, which
    holds the IR; it is refused from its size, before it is read."""
    edit_json(loihi, "network.json", lambda d: json.dumps(d) + " " * (1 << 20))
    size = (loihi / "network.json").stat().st_size
    monkeypatch.setenv("SNNC_MEMORY_BUDGET", str(16 << 20))
    out = tmp_path / "dump.txt"
    err = refused(capsys, ["inspect", loihi, "-o", out], loihi, "network.json", out)
    assert f"{size} bytes" in err and "SNNC_MEMORY_BUDGET" in err and size * JSON_EXPANSION > 16 << 20


def test_inspect_prints_the_tables_of_an_untouched_artifact(loihi, capsys):
    assert main(["inspect", str(loihi)]) == 0
    out = capsys.readouterr().out
    assert "lowered to Lava (network.py):" in out and "passes (passes.json):" in out


# ----------------------------------------------------------------------------- run --backend spinnaker


def _vertex(index: int, **fields):
    def edit(description):
        description["vertices"][index].update(fields)
        return description
    return edit


def _extension(**fields):
    def edit(description):
        next(v for v in description["vertices"] if v["kind"] == "delay_extension").update(fields)
        return description
    return edit


def _set(*path_and_value):
    """``set_at`` with the path's keys and the value as arguments."""
    return set_at(path_and_value[:-1], path_and_value[-1])


MACHINE_JSON_EDITS = {
    "not-json": (lambda d: "{", 'Expecting'),
    "a-list": (lambda d: [d], 'not an object with the fields'),
    "nested-too-deep": (lambda d: "[" * 100000 + "]" * 100000, 'nested too deeply'),
    "routing-missing": (lambda d: {key: value for key, value in d.items() if key != "routing"},
                        'not an object with the fields'),
    "board-changed": (_set("board", "width", 2), 'board.width is 2'),
    "word-changed": (_set("synaptic_word", "index_bits", 3), 'synaptic_word.index_bits is 3'),
    "key-shift-changed": (_set("key_shift", 31), 'key_shift is 31'),
    "shapes-changed": (_set("shapes", "lif0", [11]), 'shapes.lif0 is [11]'),
    "outputs-changed": (_set("outputs", "out", "lif0"), "outputs.out is 'lif0'"),
    "vertices-an-object": (_set("vertices", {}), 'vertices is not a list'),
    "a-vertex-a-list": (_set("vertices", 0, [0, "population"]), 'vertices[0] is not an object whose kind'),
    "a-field-more": (_vertex(0, colour="red"), 'vertices[0] is not an object with the fields'),
    "id-out-of-order": (_vertex(0, id=1), 'vertices[0].id is 1;'),
    "id-a-float": (_vertex(0, id=0.0), 'vertices[0].id is 0.0'),
    "kind-unknown": (_vertex(0, kind="router"), 'vertices[0] is not an object whose kind'),
    "node-unknown": (_vertex(0, node="ghost"), "vertices[0].node is 'ghost'"),
    "node-a-list": (_vertex(0, node=["lif0"]), "vertices[0].node is ['lif0']"),
    "range-past-the-end": (_vertex(0, ranges=[[0, 11]]), 'vertices[0].ranges is [[0, 11]]'),
    "range-empty": (_vertex(0, ranges=[[4, 4]]), 'vertices[0].ranges is [[4, 4]]'),
    "range-fractional": (_vertex(0, ranges=[[0, 9.5], [9.5, 10]]), 'vertices[0].ranges is [[0, 9.5]'),
    "ranges-overlap": (_vertex(0, ranges=[[0, 10], [5, 6]]), "'lif0' do not hold each of its 10 neurons exactly once"),
    "a-neuron-on-no-core": (_vertex(0, ranges=[[0, 9]]), "'lif0' do not hold each of its 10 neurons exactly once"),
    "more-neurons-than-a-core-holds": (_vertex(0, ranges=[[0, 10]] * 30), 'at most the 256 neurons of a core'),
    "chip-off-the-board": (_vertex(0, chip=[8, 0]), 'vertices[0].chip is [8, 0]'),
    "chip-negative": (_vertex(0, chip=[0, -1]), 'vertices[0].chip is [0, -1]'),
    "core-beyond-the-chip": (_vertex(0, core=16), 'vertices[0].core is 16'),
    "two-vertices-on-one-core": (_vertex(1, core=0), 'two vertices run on one core'),
    "key-changed": (_vertex(0, key=1), 'vertices[0].key is 1;'),
    "mask-changed": (_vertex(0, mask=0), 'vertices[0].mask is 0;'),
    "model-changed": (_vertex(0, model="IF_curr_exp"), "vertices[0].model is 'IF_curr_exp'"),
    "model-missing": (lambda d: d["vertices"][0].pop("model") and d, 'vertices[0] is not an object with the fields'),
    "sends-a-string": (_vertex(0, sends="yes"), "vertices[0].sends is 'yes'"),
    "source-on-a-population": (_vertex(0, source=2), 'vertices[0].source is 2'),
    "stages-on-a-population": (_vertex(0, stages=[1]), 'vertices[0].stages is [1]'),
    "extension-of-itself": (_extension(source=3), 'vertices[3].source is 3'),
    "extension-of-a-later-vertex": (_extension(source=7), 'vertices[3].source is 7'),
    "extension-of-another-node": (_extension(node="lif0"), "vertices[3].node is 'lif0'"),
    "extension-with-other-ranges": (_extension(ranges=[[0, 6]]), 'vertices[3].ranges is [[0, 6]]'),
    "extension-with-more-stages-than-keys-name": (_extension(stages=list(range(1, 10))), 'at most 8 stages'),
    "extension-stages-not-from-one": (_extension(stages=[2, 3]), 'vertices[3].stages is [2, 3]'),
    "routing-a-chip-twice": (lambda d: {**d, "routing": d["routing"] * 2}, 'each chip once'),
    "routing-off-the-board": (_set("routing", 0, "chip", [0, 6]), "routing holds {'chip': [0, 6]"),
    "routing-entries-beyond-a-router": (_set("routing", 0, "entries", 1025), "'entries': 1025"),
    "routing-generated-negative": (_set("routing", 0, "generated", -1), "'generated': -1"),
    "routing-entries-other-than-the-table": (_set("routing", 0, "entries", 2), 'but spinnaker_machine.json gives 2'),
}


def _table(change):
    def edit(arrays):
        arrays["v0.population_table"] = change(arrays["v0.population_table"].copy())
    return edit


def _first_row(arrays, n_fixed=None, word=None):
    """Set the synapse count (or the first synaptic word) of the first row of vertex 0's matrix."""
    words = arrays["v0.synaptic_matrix"]
    if n_fixed is not None:
        words[1] = n_fixed
    else:
        words[1], words[3] = max(1, words[1]), word


MACHINE_ARRAY_EDITS = {
    "member-missing": (lambda a: a.pop("v0.neuron.v_thresh"), "no array 'v0.neuron.v_thresh'"),
    "member-more": (lambda a: a.update({"v9.synaptic_matrix": np.zeros(3, np.uint32)}), "'v9.synaptic_matrix'"),
    "threshold-changed": (lambda a: a["v0.neuron.v_thresh"].__iadd__(1), "'v0.neuron.v_thresh' is not the v_thresh"),
    "threshold-floats": (lambda a: a.update({"v0.neuron.v_thresh": a["v0.neuron.v_thresh"].astype(np.float64)}),
                         "'v0.neuron.v_thresh' is not the v_thresh"),
    "initial-state-changed": (lambda a: a["v1.neuron.initial_v"].__setitem__(0, 1 << 20),
                              "'v1.neuron.initial_v' is not"),
    "shifts-reshaped": (lambda a: a.update({"v0.neuron.ring_buffer_shifts": a["v0.neuron.ring_buffer_shifts"][:1]}),
                        "'v0.neuron.ring_buffer_shifts' is not"),
    "matrix-truncated": (lambda a: a.update({"v0.synaptic_matrix": a["v0.synaptic_matrix"][:-1]}),
                         'run past the 371 words'),
    "matrix-longer": (lambda a: a.update({"v0.synaptic_matrix": np.append(a["v0.synaptic_matrix"], np.uint32(0))}),
                      'has 373 words'),
    "matrix-int64": (lambda a: a.update({"v0.synaptic_matrix": a["v0.synaptic_matrix"].astype(np.int64)}),
                     "'v0.synaptic_matrix' is an array of int64"),
    "matrix-2d": (lambda a: a.update({"v0.synaptic_matrix": a["v0.synaptic_matrix"].reshape(2, -1)}),
                  "'v0.synaptic_matrix' is an array of uint32 and shape (2, 186)"),
    "table-address-off": (_table(lambda t: t + np.array([0, 0, 1, 0, 0], np.uint32)), "'v0.population_table' row 0 is"),
    "table-key-of-no-vertex": (_table(lambda t: t + np.array([1, 0, 0, 0, 0], np.uint32)),
                               "'v0.population_table' row 0 is"),
    "table-keys-out-of-order": (_table(lambda t: t[::-1]), "'v0.population_table' row 0 is"),
    "table-atoms-changed": (_table(lambda t: t + np.array([0, 0, 0, 0, 1], np.uint32)),
                            "'v0.population_table' row 0 is"),
    "table-row-length-huge": (_table(lambda t: t + np.array([0, 0, 0, 1 << 30, 0], np.uint32)), 'run past'),
    "table-three-columns": (_table(lambda t: t[:, :3]), 'give uint32 of shape (n, 5)'),
    "row-longer-than-its-length": (lambda a: _first_row(a, n_fixed=1 << 20),
                                   'counts 1048576 synapses, more than its length'),
    "synapse-beyond-the-core": (lambda a: _first_row(a, word=200), 'onto neuron 200, but the core has 10'),
    "routing-table-two-columns": (lambda a: a.update({"chip0_0.routing_table": a["chip0_0.routing_table"][:, :2]}),
                                  'give uint32 of shape (n, 3)'),
    "route-to-a-core-beyond-the-chip": (lambda a: a["chip0_0.routing_table"].__setitem__((0, 2), 1 << 30),
                                        "a route to a core beyond the chip's 16"),
}


@pytest.fixture
def spinnaker_run(spinnaker, tmp_path):
    """The command that runs the SpiNNaker artifact on the machine-level simulator."""
    np.save(tmp_path / "x.npy", spikes(np.random.default_rng(2), (2, 80, 12)))
    return ["run", spinnaker, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz", "--backend", "spinnaker"]


def test_the_untouched_machine_data_runs(spinnaker_run, capsys):
    assert main([str(a) for a in spinnaker_run]) == 0


@pytest.mark.parametrize("change, fragment", MACHINE_JSON_EDITS.values(), ids=MACHINE_JSON_EDITS)
def test_run_spinnaker_refuses_malformed_machine_json(spinnaker, spinnaker_run, capsys, change, fragment):
    edit_json(spinnaker, "spinnaker_machine.json", change)
    err = refused(capsys, spinnaker_run, spinnaker, "spinnaker_machine.json", spinnaker_run[5])
    assert fragment in err, err


@pytest.mark.parametrize("change, fragment", MACHINE_ARRAY_EDITS.values(), ids=MACHINE_ARRAY_EDITS)
def test_run_spinnaker_refuses_malformed_machine_arrays(spinnaker, spinnaker_run, capsys, change, fragment):
    edit_arrays(spinnaker, "spinnaker_machine.npz", change)
    err = refused(capsys, spinnaker_run, spinnaker, "spinnaker_machine.npz", spinnaker_run[5])
    assert fragment in err, err


def test_run_spinnaker_refuses_an_array_declared_beyond_the_memory_budget(spinnaker, spinnaker_run, capsys):
    huge_member(spinnaker, "spinnaker_machine.npz", "v0.synaptic_matrix")
    err = refused(capsys, spinnaker_run, spinnaker, "spinnaker_machine.npz", spinnaker_run[5])
    assert "memory budget" in err


def test_run_spinnaker_refuses_routing_tables_that_drop_the_packets(spinnaker, spinnaker_run, capsys):
    """Empty tables are well-formed; only following the keys shows that the source chip drops them."""
    edit_arrays(spinnaker, "spinnaker_machine.npz",
                lambda a: a.update({"chip0_0.routing_table": np.zeros((0, 3), np.uint32)}))
    edit_json(spinnaker, "spinnaker_machine.json", _set("routing", 0, "entries", 0))
    err = refused(capsys, spinnaker_run, spinnaker, "spinnaker_machine.npz", spinnaker_run[5])
    assert "routing tables" in err and "matches no entry" in err


@pytest.mark.parametrize("core, takes", [(2, "takes no packets"), (3, "takes only those of vertex 2")],
                         ids=["to-a-spike-source", "to-another-vertex's-delay-extension"])
def test_run_spinnaker_refuses_routes_to_cores_that_take_no_such_packets(spinnaker, spinnaker_run, capsys, core, takes):
    """Chip (0, 0) runs populations on cores 0 and 1, the input's spike source on core 2 and its
    delay extension on core 3: a route that also sends every packet to ``core`` is well-formed."""
    def edit(arrays):
        arrays["chip0_0.routing_table"][:, 2] |= np.uint32(1 << (6 + core))

    edit_arrays(spinnaker, "spinnaker_machine.npz", edit)
    err = refused(capsys, spinnaker_run, spinnaker, "spinnaker_machine.npz", spinnaker_run[5])
    assert "routing tables" in err and takes in err


def test_machine_data_is_refused_for_a_target_of_another_chip_or_a_graph_of_another_arithmetic(spinnaker):
    """``snnc run`` refuses both earlier (the simulator checks the IR against the target); loading
    machine data on its own does too."""
    graph = Artifact.open(spinnaker).graph()
    with pytest.raises(SnncError, match=f"{spinnaker}: target.toml is not .* loihi"):
        MachineData.load(spinnaker, graph, load_target("loihi2"))
    graph.metadata = {**graph.metadata, "arithmetic": "float"}
    with pytest.raises(SnncError, match=f"{spinnaker}: model.snnir is not .* 'float'"):
        MachineData.load(spinnaker, graph, load_target("spinnaker"))


# ----------------------------------------------------------------------------- run --backend lava: the program


@pytest.fixture
def lava_run_command(loihi, tmp_path, monkeypatch):
    """The command that runs the Loihi artifact in Lava; the Lava environment must not be reached."""
    def no_lava(*args, **kwargs):
        raise AssertionError("the Lava program was about to run")

    monkeypatch.setattr(lava_run, "ensure_environment", no_lava)
    np.save(tmp_path / "x.npy", spikes(np.random.default_rng(3), (1, 10, 5)))
    return ["run", loihi, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz", "--backend", "lava"]


def _writes_marker(path: Path, marker: Path) -> None:
    """Code that leaves ``marker`` behind if it ever runs, at the end of the program ``path``."""
    path.write_text(path.read_text() + f"\nopen({str(marker)!r}, 'w').write('ran')\n")


LAVA_EDITS = {
    "network.py-runs-code": ("network.py", _writes_marker),
    "run_lava.py-runs-code": ("run_lava.py", _writes_marker),
    "network.json-not-json": ("network.json", lambda path, marker: path.write_text("{")),
    "network.json-a-list": ("network.json", lambda path, marker: path.write_text("[]")),
    "network.json-an-id-changed": ("network.json", lambda path, marker: path.write_text(
        path.read_text().replace('"population_0"', '"population_1"', 1))),
    "params.npz-not-a-zip": ("params.npz", lambda path, marker: path.write_bytes(b"PK\x03\x04 nothing")),
}


@pytest.mark.parametrize("name, edit", LAVA_EDITS.values(), ids=LAVA_EDITS)
def test_run_lava_refuses_a_program_that_is_not_snncs(loihi, lava_run_command, capsys, tmp_path, name, edit):
    marker = tmp_path / "marker"
    edit(loihi / name, marker)
    reseal(loihi)
    refused(capsys, lava_run_command, loihi, name, lava_run_command[5])
    assert not marker.exists()


@pytest.mark.parametrize("change", [lambda a: a.update({k: v + 2 for k, v in a.items() if k.endswith("bias_mant")}),
                                    lambda a: a.pop(next(iter(a))),
                                    lambda a: a.update({"extra": np.zeros(2, np.int32)})],
                         ids=["a-bias-changed", "a-member-missing", "a-member-more"])
def test_run_lava_refuses_changed_parameters(loihi, lava_run_command, capsys, change):
    edit_arrays(loihi, "params.npz", change)
    refused(capsys, lava_run_command, loihi, "params.npz", lava_run_command[5])


def test_run_lava_refuses_parameters_declared_beyond_the_memory_budget(loihi, lava_run_command, capsys):
    huge_member(loihi, "params.npz", "population_0.bias_mant")
    refused(capsys, lava_run_command, loihi, "params.npz", lava_run_command[5])


def test_run_lava_refuses_a_program_written_for_another_ir(loihi, lava_run_command, capsys, tmp_path):
    """A valid IR of another network in place of the artifact's: the program is not its program."""
    other = compile_graph(ir.verify(mlp(np.random.default_rng(7), sizes=(5, 8, 3))), "loihi2",
                          tmp_path / "other.nir", tmp_path / "other")
    shutil.copyfile(other / "model.snnir", loihi / "model.snnir")
    reseal(loihi)
    refused(capsys, lava_run_command, loihi, "network.py", lava_run_command[5])


@pytest.mark.parametrize("model", ["examples/digits/model.onnx", "examples/digits/model.nir",
                                   "examples/braille/braille.nir"])
@pytest.mark.parametrize("target", ["loihi", "loihi2"])
def test_a_compiled_program_is_the_one_snnc_writes_again(tmp_path, capsys, model, target):
    out = tmp_path / "art"
    assert main(["compile", str(ROOT / model), "--target", target, "-o", str(out)]) == 0
    lava_run.check_program(Artifact.open(out, backend="lava"))

