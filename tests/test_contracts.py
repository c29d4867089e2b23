"""A fixed-point graph is checked once against its arithmetic's contract (snnc.ir.contracts), by the
emitters and by the simulator alike.

Hand-made ``.snnir`` files and re-sealed artifacts whose ``loihi`` or ``spinnaker`` annotations hold
strings, bools, floats, huge integers, wrong shapes or unknown models, or whose nodes break the
population form, go through ``snnc run`` and ``snnc compile --passes ''``: each is refused with exit
code 2 and one line naming the node and the field, and nothing is written. Graphs that the real
passes quantized still run and compile.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnc import ir
from snnc.backends.artifact import IR_FILE, MANIFEST, TARGET_FILE, sha256
from snnc.cli import main
from snnc.ir import contracts
from snnc.runtime import simulator as simulator_module
from snnc.runtime.simulator import Simulator
from snnc.targets import TARGET_DIR, load_target

from graphs import mlp, spikes

#: The annotation key of each target's arithmetic.
KEY = {"loihi2": "loihi", "spinnaker": "spinnaker"}
POPULATION, SYNAPSE = "lif0", "fc0"


def cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    """For each target, an artifact of a 6-5-4 MLP with per-synapse delays, and the inputs it runs on."""
    root = tmp_path_factory.mktemp("lowered")
    graph = mlp(np.random.default_rng(6), sizes=(6, 5, 4))
    graph[SYNAPSE].op.delay = np.random.default_rng(7).integers(0, 3, size=(5, 6))
    ir.save(graph, root / "model.snnir")
    np.save(root / "x.npy", spikes(np.random.default_rng(8), (2, 25, 6)).astype(np.int8))
    for target in KEY:
        assert cli("compile", root / "model.snnir", "--target", target, "-o", root / target) == 0
    return root


def changed(lowered: Path, tmp_path: Path, target: str, change) -> Path:
    """The lowered IR of ``target`` after ``change(graph, key)``, as a file of its own."""
    graph = ir.load(lowered / target / IR_FILE)
    change(graph, KEY[target])
    path = tmp_path / "evil.snnir"
    ir.save(graph, path)
    return path


def setting(node: str, field: str, value):
    """A change that sets (or, for a callable, transforms) one field of ``node``'s annotation."""
    def change(graph, key):
        fixed = graph[node].annotations[key]
        fixed[field] = value(fixed[field]) if callable(value) else value
    return change


def removing(node: str, field: str):
    return lambda graph, key: graph[node].annotations[key].pop(field)


def assert_refused(capsys, code: int, *fragments: str) -> str:
    """Exit code 2 and one printable line on stderr holding every fragment."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("snnc: error: ") and lines[0].isprintable(), lines[0]
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


def assert_run_and_compile_refuse(lowered, tmp_path, capsys, target, evil, *fragments):
    """``snnc run`` and ``snnc compile --passes ''`` both refuse ``evil`` with the same one line,
    and write nothing."""
    capsys.readouterr()
    code = cli("run", evil, "--input", lowered / "x.npy", "-o", tmp_path / "y.npz", "--report", tmp_path / "r.json")
    line = assert_refused(capsys, code, *fragments)
    code = cli("compile", evil, "--target", target, "--passes", "", "-o", tmp_path / "artifact")
    assert assert_refused(capsys, code, *fragments) == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.snnir"]


# -- annotations


LOIHI = "give an integer from 0 to 4095"
BIAS = "give an array of shape (5,) of integers from -4096 to 4095"
CASES = [
    ("loihi2", setting(POPULATION, "du", "1; import os"), POPULATION, "loihi.du is '1; import os' (str)", LOIHI),
    ("loihi2", setting(POPULATION, "dv", 10 ** 6), POPULATION, "loihi.dv is 1000000", LOIHI),
    ("loihi2", setting(POPULATION, "dv", 10 ** 30), POPULATION, f"loihi.dv is {10 ** 30}", LOIHI),
    ("loihi2", setting(POPULATION, "dv", -1), POPULATION, "loihi.dv is -1", LOIHI),
    ("loihi2", setting(POPULATION, "vth", True), POPULATION, "loihi.vth is True (bool)", "from 0 to 131071"),
    ("loihi2", setting(POPULATION, "vth", 12.0), POPULATION, "loihi.vth is 12.0 (float)", "from 0 to 131071"),
    ("loihi2", setting(POPULATION, "vth", None), POPULATION, "loihi.vth is None", "from 0 to 131071"),
    ("loihi2", setting(POPULATION, "bias_mant", lambda a: a.astype(np.float64)), POPULATION,
     "loihi.bias_mant is an array of float64", BIAS),
    ("loihi2", setting(POPULATION, "bias_mant", lambda a: a.astype(bool)), POPULATION,
     "loihi.bias_mant is an array of bool", BIAS),
    ("loihi2", setting(POPULATION, "bias_mant", np.full(5, 2 ** 63, np.uint64)), POPULATION,
     f"loihi.bias_mant holds {2 ** 63}", BIAS),
    ("loihi2", setting(POPULATION, "bias_mant", np.zeros((5, 1), np.int32)), POPULATION,
     "loihi.bias_mant is an array of shape (5, 1)", BIAS),
    ("loihi2", setting(POPULATION, "bias_mant", [0] * 5), POPULATION, "loihi.bias_mant is [0, 0, 0, 0, 0] (list)",
     BIAS),
    ("loihi2", removing(POPULATION, "bias_exp"), POPULATION, "annotation loihi has no field bias_exp", "from 0 to 7"),
    ("loihi2", setting(POPULATION, "refractory", 2), POPULATION, "'refractory', which is not one of its fields",
     "du, dv, vth, bias_mant, bias_exp"),
    ("loihi2", setting(SYNAPSE, "weight_exp", "0, delays=None"), SYNAPSE, "loihi.weight_exp is", "from -8 to 7"),
    ("loihi2", setting(SYNAPSE, "weights", lambda a: a + 1), SYNAPSE, "loihi.weights holds", "multiples of 2"),
    ("loihi2", setting(SYNAPSE, "weights", lambda a: a * 0 + 256), SYNAPSE, "loihi.weights holds 256",
     "integers from -256 to 254"),
    ("loihi2", setting(SYNAPSE, "delays", lambda a: a[:, :3].copy()), SYNAPSE,
     "loihi.delays is an array of shape (5, 3)", "give None or an array of shape (5, 6) of integers from 0 to 63"),
    ("loihi2", lambda graph, key: graph[SYNAPSE].annotations.pop(key), SYNAPSE, "annotation loihi is missing",
     "quantize-loihi"),
    ("spinnaker", setting(POPULATION, "model", "IF_cond_exp"), POPULATION, "spinnaker.model is 'IF_cond_exp' (str)",
     "give one of 'IF_curr_exp', 'IF_curr_delta', 'IF_trunc_delta'"),
    ("spinnaker", setting(POPULATION, "model", 3), POPULATION, "spinnaker.model is 3 (int)", "give one of"),
    ("spinnaker", setting(POPULATION, "ring_buffer_shifts", np.zeros(3, np.int32)), POPULATION,
     "spinnaker.ring_buffer_shifts is an array of shape (3,)", "of shape (2,) of integers from 0 to 16"),
    ("spinnaker", setting(POPULATION, "v_thresh", lambda a: a.astype(np.int64) + 2 ** 40), POPULATION,
     "spinnaker.v_thresh holds", "integers from -2147483648 to 2147483647"),
    ("spinnaker", setting(POPULATION, "input_scale", "1/ts"), POPULATION, "spinnaker.input_scale is '1/ts' (str)",
     "give an integer"),
    ("spinnaker", removing(POPULATION, "exp_tc"), POPULATION, "has no field exp_tc", "from 0 to 32767"),
    ("spinnaker", setting(POPULATION, "exc_decay", np.zeros(5, np.uint32)), POPULATION,
     "'exc_decay', which is not one of its fields", "input_scale"),
    ("spinnaker", setting(SYNAPSE, "excitatory", lambda a: a.astype(bool)), SYNAPSE,
     "spinnaker.excitatory is an array of bool", "integers from 0 to 65535"),
    ("spinnaker", setting(SYNAPSE, "inhibitory", lambda a: a.astype(np.int64) + 2 ** 16), SYNAPSE,
     "spinnaker.inhibitory holds", "integers from 0 to 65535"),
    ("spinnaker", setting(SYNAPSE, "delays", lambda a: a * 0), SYNAPSE, "spinnaker.delays holds 0",
     "integers from 1 to 144"),
    ("spinnaker", lambda graph, key: graph[POPULATION].annotations.update({key: "IF_curr_exp"}), POPULATION,
     "annotation spinnaker is not a table of fields but 'IF_curr_exp' (str)", "quantize-spinnaker"),
]


@pytest.mark.parametrize("target, change, node, what, valid", CASES)
def test_hostile_annotations_are_refused_by_run_and_compile(lowered, tmp_path, capsys, target, change, node, what,
                                                            valid):
    evil = changed(lowered, tmp_path, target, change)
    assert_run_and_compile_refuse(lowered, tmp_path, capsys, target, evil, f"node {node!r}", what, valid)


# -- the population form


def rewired(graph: ir.Graph, ops: dict | None = None, edges: list | None = None) -> ir.Graph:
    """``graph`` with some nodes' ops replaced (or added: ``ops`` by name) and its edges replaced
    by ``edges`` (None keeps them); annotations and metadata stay."""
    ops = ops or {}
    result = ir.Graph(dt=graph.dt, name=graph.name, metadata=dict(graph.metadata))
    for node in graph:
        result.add(node.name, ops.get(node.name, node.op), node.annotations)
    for name, op in ops.items():
        if name not in graph.nodes:
            result.add(name, op)
    for edge in graph.edges if edges is None else edges:
        result.connect(*edge)
    return result


CHAIN = [("in", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"), ("lif1", "out")]
FORMS = [
    (dict(edges=[*CHAIN[:-1], ("fc1", "out")]), "fc1", "feeds 'out' (a Output)", "feeds spiking populations only"),
    (dict(ops={"out2": ir.Output()}, edges=[*CHAIN, ("fc0", "out2")]), "fc0", "feeds 'out2' (a Output)",
     "feeds spiking populations only"),
    (dict(ops={"lif0": ir.LI(v_decay=np.full(5, 0.9), v_gain=np.ones(5), bias=np.zeros(5))}), "fc0",
     "feeds 'lif0' (a LI)", "feeds spiking populations only"),
    (dict(ops={"scale": ir.Scale(scale=np.ones(5))},
          edges=[*CHAIN[:2], ("lif0", "scale"), ("scale", "fc1"), *CHAIN[3:]]),
     "fc1", "reads 'scale' (a Scale)", "reads the spikes of one input or spiking population"),
    (dict(ops={"fc2": ir.Affine(weight=np.ones((5, 6)))}, edges=[*CHAIN, ("in", "fc2"), ("fc2", "fc1")]),
     "fc1", "reads 'lif0' (a LIF), 'fc2' (a Affine)", "reads the spikes of one input or spiking population"),
    (dict(edges=[*CHAIN, ("lif0", "lif0")]), "lif0", "reads 'lif0' (a LIF)", "reads synapse groups (Affine) only"),
    (dict(ops={"spikes": ir.Threshold(threshold=np.array(0.5))}, edges=[*CHAIN, ("lif1", "spikes")]),
     "spikes", "is a Threshold", "spiking LIF, IF and CubaLIF populations and the synapse groups (Affine)"),
]


@pytest.mark.parametrize("target", KEY)
@pytest.mark.parametrize("form, node, what, valid", FORMS)
def test_a_graph_outside_the_population_form_is_refused_by_run_and_compile(lowered, tmp_path, capsys, target, form,
                                                                           node, what, valid):
    ir.save(rewired(ir.load(lowered / target / IR_FILE), **form), tmp_path / "evil.snnir")
    assert_run_and_compile_refuse(lowered, tmp_path, capsys, target, tmp_path / "evil.snnir", f"node {node!r}", what,
                                  valid)


@pytest.mark.parametrize("target", KEY)
def test_an_output_that_records_two_populations_is_refused(tmp_path, capsys, target):
    """The pipeline gives each output one population (fuse-synapses joins several through a synapse
    group); a hand-made graph whose output records two is refused by the emitters and the simulator
    alike."""
    ir.save(mlp(np.random.default_rng(9), sizes=(4, 4, 4)), tmp_path / "model.snnir")
    assert cli("compile", tmp_path / "model.snnir", "--target", target, "-o", tmp_path / "lowered") == 0
    graph = ir.load(tmp_path / "lowered" / IR_FILE)
    graph.connect("lif0", "out")
    ir.save(graph, tmp_path / "evil.snnir")
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 4), np.int8))
    capsys.readouterr()
    code = cli("compile", tmp_path / "evil.snnir", "--target", target, "--passes", "", "-o", tmp_path / "artifact")
    line = assert_refused(capsys, code, "node 'out'", "records 'lif1' (a LIF), 'lif0' (a LIF)",
                          "one spiking population or input")
    code = cli("run", tmp_path / "evil.snnir", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz")
    assert assert_refused(capsys, code) == line
    assert not (tmp_path / "artifact").exists() and not (tmp_path / "y.npz").exists()


# -- graphs the passes quantized


@pytest.mark.parametrize("target", KEY)
def test_quantized_graphs_run_from_the_artifact_and_from_their_ir(lowered, tmp_path, target):
    runs = {}
    for name, model in (("artifact", lowered / target), ("ir", lowered / target / IR_FILE)):
        assert cli("run", model, "--input", lowered / "x.npy", "-o", tmp_path / f"{name}.npz") == 0
        runs[name] = dict(np.load(tmp_path / f"{name}.npz"))
    assert runs["artifact"].keys() == runs["ir"].keys() == {"out"}
    np.testing.assert_array_equal(runs["artifact"]["out"], runs["ir"]["out"])
    assert runs["ir"]["out"].any()


def custom_target(tmp_path: Path, bundled: str, name: str, **formats) -> Path:
    """A copy of a bundled target file named ``name``, with some formats' values changed."""
    text = (TARGET_DIR / f"{bundled}.toml").read_text()
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', text)
    for key, value in formats.items():
        text = re.sub(rf"(?m)^{key} = {{ value = [^,]+,", f"{key} = {{ value = {value},", text)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("bundled", KEY)
def test_an_artifact_runs_on_the_target_file_it_holds(lowered, tmp_path, capsys, bundled):
    """A target given as a file (not bundled) compiles, with map-cores measuring rates on the
    quantized graph, and its artifact runs; its IR alone names a target snnc cannot find, which is
    refused, not looked for as a path."""
    chip = custom_target(tmp_path, bundled, "mychip.toml")
    artifact = tmp_path / "artifact"
    assert cli("compile", lowered / "model.snnir", "--target", chip, "--calibration", lowered / "x.npy",
               "-o", artifact) == 0
    assert json.loads((artifact / "passes.json").read_text())["map-cores"]["rates"]["source"] == str(lowered / "x.npy")
    assert cli("run", artifact, "--input", lowered / "x.npy", "-o", tmp_path / "y.npz") == 0
    capsys.readouterr()
    code = cli("run", artifact / IR_FILE, "--input", lowered / "x.npy", "-o", tmp_path / "z.npz")
    assert_refused(capsys, code, "target 'mychip.toml', which is not a bundled one", "run the artifact")
    assert not (tmp_path / "z.npz").exists()


def reseal(directory: Path) -> None:
    """Rewrite the manifest to list the directory's files as they are now, as an attacker could."""
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"] = {p.name: sha256(p) for p in sorted(directory.iterdir()) if p.name != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps(manifest))


def copied_artifact(lowered: Path, tmp_path: Path, target: str) -> Path:
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    for path in (lowered / target).iterdir():
        (artifact / path.name).write_bytes(path.read_bytes())
    return artifact


def test_a_resealed_artifact_is_checked_against_its_own_target_file(lowered, tmp_path, capsys):
    """The bounds come from the artifact's target.toml: one that holds fewer delays than the IR's
    synapses use is refused, naming the node and the range of that target."""
    artifact = copied_artifact(lowered, tmp_path, "loihi2")
    custom_target(tmp_path, "loihi2", "loihi2", max_delay=1).replace(artifact / TARGET_FILE)
    reseal(artifact)
    code = cli("run", artifact, "--input", lowered / "x.npy", "-o", tmp_path / "y.npz")
    assert_refused(capsys, code, "node 'fc0'", "annotation loihi.delays holds 2",
                   "give None or an array of shape (5, 6) of integers from 0 to 1")
    assert not (tmp_path / "y.npz").exists()


def test_a_resealed_artifact_with_another_arithmetic_s_target_is_refused(lowered, tmp_path, capsys):
    artifact = copied_artifact(lowered, tmp_path, "loihi2")
    (artifact / TARGET_FILE).write_text((TARGET_DIR / "spinnaker.toml").read_text())
    reseal(artifact)
    code = cli("run", artifact, "--input", lowered / "x.npy", "-o", tmp_path / "y.npz")
    assert_refused(capsys, code, "quantized for loihi arithmetic, but its target spinnaker has spinnaker arithmetic")
    assert not (tmp_path / "y.npz").exists()


def test_a_resealed_artifact_with_a_hostile_annotation_is_refused(lowered, tmp_path, capsys):
    artifact = copied_artifact(lowered, tmp_path, "spinnaker")
    graph = ir.load(artifact / IR_FILE)
    graph[POPULATION].annotations["spinnaker"]["model"] = "IF_curr_delta'; import os; '"
    (artifact / IR_FILE).unlink()
    ir.save(graph, artifact / IR_FILE)
    reseal(artifact)
    for backend in ("sim", "spinnaker"):
        code = cli("run", artifact, "--input", lowered / "x.npy", "-o", tmp_path / "y.npz", "--backend", backend)
        assert_refused(capsys, code, "node 'lif0'", "annotation spinnaker.model is", "give one of")
    assert not (tmp_path / "y.npz").exists()


def test_metadata_that_names_no_arithmetic_or_target_is_refused(lowered, tmp_path, capsys):
    for metadata, message in (({"arithmetic": ["loihi"]}, "compiled for ['loihi'] arithmetic"),
                              ({"arithmetic": "posit"}, "compiled for 'posit' arithmetic"),
                              ({"target": None}, "compiled for target None, which is not a bundled one"),
                              ({"target": "../loihi2.toml"}, "compiled for target '../loihi2.toml', which is not a bundled one")):
        graph = ir.load(lowered / "loihi2" / IR_FILE)
        graph.metadata.update(metadata)
        ir.save(graph, tmp_path / "evil.snnir")
        code = cli("run", tmp_path / "evil.snnir", "--input", lowered / "x.npy", "-o", tmp_path / "y.npz")
        assert_refused(capsys, code, message)
        assert not (tmp_path / "y.npz").exists()


# -- the check's place


def test_the_simulator_checks_a_graph_once_however_long_it_runs(lowered, monkeypatch):
    calls = []
    check = simulator_module.check_fixed_point
    monkeypatch.setattr(simulator_module, "check_fixed_point", lambda *a: calls.append(a) or check(*a))
    monkeypatch.setattr(Simulator, "BLOCK_BYTES", 64)  # a block of one step: many blocks per run
    simulator = Simulator(ir.load(lowered / "loihi2" / IR_FILE))
    x = np.load(lowered / "x.npy")
    for _ in range(2):
        simulator.run(x, steps=40)
    assert len(calls) == 1


def test_the_contracts_know_no_target_backend_pass_or_runtime():
    """The IR layer: the ranges come in as a plain mapping of formats."""
    code = "import sys, snnc.ir.contracts; print(sorted(m for m in sys.modules if m.startswith('snnc.')))"
    loaded = eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert "snnc.ir.contracts" in loaded
    assert not [m for m in loaded if m.split(".")[1] in ("targets", "backends", "passes", "runtime", "cli", "frontend")]


def test_the_check_returns_the_annotations_it_checked(lowered):
    graph = ir.load(lowered / "spinnaker" / IR_FILE)
    formats = dict(load_target("spinnaker").formats)
    checked = contracts.check_fixed_point(graph, formats)
    assert set(checked) == {"fc0", "lif0", "fc1", "lif1"}
    assert all(checked[name] is graph[name].annotations["spinnaker"] for name in checked)
    # The formats alone decide the ranges: a narrower mapping refuses what the target holds.
    with pytest.raises(ir.graph.IRError, match="spinnaker.excitatory holds .*integers from 0 to 255"):
        contracts.check_fixed_point(graph, {**formats, "weight_bits": 8})


# -- the simulator's SpiNNaker ring buffers


def test_ring_buffer_sums_saturate_however_large_the_fan_in(lowered):
    """A hand-made synapse group whose 70000 excitatory weights of 65535 all arrive in one tick
    fills the ring buffer as one such weight does: sPyNNaker's slots saturate at 16 bits, and the
    sum (above 2**32) carries nothing into the inhibitory one."""
    template = ir.load(lowered / "spinnaker" / IR_FILE)
    population = template["lif1"]
    results = []
    for fan_in in (1, 70_000):
        graph = ir.Graph(dt=template.dt, metadata=dict(template.metadata))
        graph.add("in", ir.Input(shape=(fan_in,)))
        graph.add("fc", ir.Affine(weight=np.ones((4, fan_in))), {"spinnaker": {
            "excitatory": np.full((4, fan_in), 65535, np.uint16), "inhibitory": np.zeros((4, fan_in), np.uint16),
            "delays": np.ones((4, fan_in), np.int32)}})
        graph.add("lif", population.op, population.annotations)
        graph.add("out", ir.Output())
        for edge in (("in", "fc"), ("fc", "lif"), ("lif", "out")):
            graph.connect(*edge)
        x = np.zeros((1, 6, fan_in), np.int8)
        x[0, 0] = 1
        results.append(Simulator(graph).run(x, probes=["lif"]))
    for key in ("lif:exc", "lif:inh", "lif:v", "out"):
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
    assert results[1]["lif:inh"].max() == 0 and results[1]["lif:exc"].any()


def test_a_target_s_longest_delay_is_the_contract_s_in_steps():
    """Target.longest_delay and the SpiNNaker contract count delay ticks by one function: a delay
    of d steps takes d + 1 ticks."""
    target = load_target("spinnaker")
    assert target.longest_delay == contracts.spinnaker_delay_ticks(target.formats) - 1 == 16 * 9 - 1
    assert load_target("loihi2").longest_delay == load_target("loihi2").formats["max_delay"]
