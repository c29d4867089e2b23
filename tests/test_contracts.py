"""A fixed-point graph is checked once against its arithmetic's contract (snnc.ir.contracts), by the
emitters and by the simulator alike.

Hand-made ``.snnir`` files and re-sealed artifacts whose ``loihi`` or ``spinnaker`` annotations hold
strings, bools, floats, huge integers, wrong shapes or unknown models, or whose nodes break the
population form, go through ``snnc run`` and ``snnc compile --passes ''``: each is refused with exit
code 2 and one line naming the node and the field, and nothing is written. Graphs that the real
passes quantized still run and compile.

The other annotations and metadata that passes write and later code reads back (map-cores'
placement and mapping, quantize-weights' quant, encoding, the DCLS layers of round-delays,
fused_from, the metadata's target and arithmetic) are edited into the IR of the compiled digits
network and go through every command that reads them (run and its cost report, inspect --mapping
and --target, compile with the passes that read them, export): the same one line naming the node
(or the metadata) and the key with the path of the value at fault, exit code 2, nothing written.
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

from graphs import delayed_mlp, mlp, spikes

#: The annotation key of each target's arithmetic.
KEY = {"loihi2": "loihi", "spinnaker": "spinnaker"}
POPULATION, SYNAPSE = "lif0", "fc0"


def cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    """For each target, an artifact of a 6-5-4 MLP with per-synapse delays, and the inputs it runs on."""
    root = tmp_path_factory.mktemp("lowered")
    ir.save(delayed_mlp(), root / "model.snnir")
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
                              ({"target": "../loihi2.toml"},
                               "compiled for target '../loihi2.toml', which is not a bundled one")):
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


# -- what the other passes write and later code reads back: placement, mapping, quant, encoding, dcls, fused_from

DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits"
#: The compiled digits network's first population and synapse group.
V1, FC1 = "v1", "fc1"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The bundled digits SNN compiled for loihi2 and spinnaker (map-cores' placement and mapping in
    both), for sim (float), and in population form with quantize-weights' annotations; 2 digits."""
    root = tmp_path_factory.mktemp("digits")
    np.save(root / "x.npy", np.load(DIGITS / "test_digits.npy")[:2])
    for target in ("loihi2", "spinnaker", "sim"):
        assert cli("compile", DIGITS / "model.nir", "--target", target, "-o", root / target) == 0
    assert cli("compile", DIGITS / "model.nir", "--target", "sim", "--passes",
               "canonicalize,fuse-synapses,quantize-weights", "--weight-bits", "8", "-o", root / "quantized") == 0
    return root


def edited(digits: Path, tmp_path: Path, source: str, change) -> Path:
    """The IR of the digits artifact ``source`` after ``change(graph)``, as a file of its own."""
    graph = ir.load(digits / source / IR_FILE)
    change(graph)
    ir.save(graph, tmp_path / "evil.snnir")
    return tmp_path / "evil.snnir"


def assert_commands_refuse(tmp_path, capsys, commands, *fragments) -> list[str]:
    """Each command exits 2 with one printable line holding every fragment, and writes nothing."""
    lines = []
    for command in commands:
        capsys.readouterr()
        lines.append(assert_refused(capsys, cli(*command), *fragments))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.snnir"]
    return lines


def run(digits, tmp_path, model, *flags):
    return ("run", model, "--input", digits / "x.npy", "-o", tmp_path / "y.npz", "--report", tmp_path / "r.json", *flags)


def mapping_shown(model, tmp_path):
    return ("inspect", model, "--mapping", "-o", tmp_path / "mapping.txt")


def compiled(model, tmp_path, target, passes=""):
    return ("compile", model, "--target", target, "--passes", passes, "-o", tmp_path / "artifact")


def piece(core=0, start=0, stop=64, **more):
    return {"core": core, "start": start, "stop": stop, **more}


def deep(depth: int):
    value = []
    for _ in range(depth):
        value = [value]
    return value


GIVE_PIECES = "give a list of 1 or more items, each a table of the fields core, start, stop"
PLACEMENTS = [
    ("x", "annotation placement is 'x' (str)", GIVE_PIECES),
    ([1], "annotation placement[0] is 1 (int)", "give a table of the fields core, start, stop"),
    (deep(30), "annotation placement[0] is [[[[[[", "give a table of the fields core, start, stop"),
    (np.zeros(3, np.int64), "annotation placement is an array of int64 and shape (3,)", GIVE_PIECES),
    ([], "annotation placement is [] (list)", GIVE_PIECES),
    ([piece(core="0")], "annotation placement[0].core is '0' (str)", "give an integer >= 0, below 2**63"),
    ([piece(core=0.0)], "annotation placement[0].core is 0.0 (float)", "give an integer >= 0"),
    ([piece(core=True)], "annotation placement[0].core is True (bool)", "give an integer >= 0"),
    ([piece(core=-1)], "annotation placement[0].core is -1", "give an integer >= 0"),
    ([piece(core=10 ** 30)], f"annotation placement[0].core is {10 ** 30}", "below 2**63"),
    ([piece(start=None)], "annotation placement[0].start is None", "give an integer >= 0"),
    ([{"core": 0, "start": 0}], "annotation placement[0] has no field stop", "give an integer >= 0"),
    ([piece(chip=0)], "annotation placement[0] holds 'chip', which is not one of its fields",
     "give only core, start, stop"),
    ([piece(stop=40), piece(1, 30, 64)], "annotation placement: pieces must cover neurons 0 to 64 in order",
     "got [(0, 40), (30, 64)]"),
    ([piece(stop=30), piece(1, 31, 64)], "pieces must cover neurons 0 to 64", "got [(0, 30), (31, 64)]"),
    ([piece(stop=65)], "pieces must cover neurons 0 to 64", "got [(0, 65)]"),
    ([piece(stop=0), piece()], "each one neuron or more", "got [(0, 0), (0, 64)]"),
    ([piece(1, 0, 64), piece(1, 0, 64)], "pieces must cover neurons 0 to 64", "got [(0, 64), (0, 64)]"),
]


@pytest.mark.parametrize("target", KEY)
@pytest.mark.parametrize("value, what, valid", PLACEMENTS)
def test_a_hostile_placement_is_refused_by_every_reader(digits, tmp_path, capsys, target, value, what, valid):
    """The cost report of ``snnc run``, ``snnc inspect --mapping`` and (SpiNNaker) the machine data
    of ``snnc compile --passes ''`` read map-cores' placement: each refuses the same line."""
    evil = edited(digits, tmp_path, target, lambda graph: graph[V1].annotations.update(placement=value))
    commands = [run(digits, tmp_path, evil), mapping_shown(evil, tmp_path)]
    if target == "spinnaker":
        commands.append(compiled(evil, tmp_path, target))
    lines = assert_commands_refuse(tmp_path, capsys, commands, f"node {V1!r}", what, valid)
    assert len(set(lines)) == 1


@pytest.mark.parametrize("target", KEY)
def test_a_core_the_board_lacks_is_refused_where_the_board_is_known(digits, tmp_path, capsys, target):
    """run and compile know the target's board; inspect --mapping does not, and refuses the
    placement for disagreeing with the mapping map-cores wrote beside it."""
    evil = edited(digits, tmp_path, target, lambda graph: graph[V1].annotations.update(placement=[piece(10 ** 6)]))
    cores = {"loihi2": 128, "spinnaker": 768}[target]
    board = f"annotation placement: core 1000000 does not exist (the board has {cores}: 0 to {cores - 1})"
    commands = [run(digits, tmp_path, evil)] + ([compiled(evil, tmp_path, target)] if target == "spinnaker" else [])
    assert_commands_refuse(tmp_path, capsys, commands, f"node {V1!r}", board)
    assert_commands_refuse(tmp_path, capsys, [mapping_shown(evil, tmp_path)], f"node {V1!r}",
                           "the node's annotation placement alone puts neurons 0 to 63 on core 1000000")


@pytest.mark.parametrize("target", KEY)
def test_a_placement_on_some_populations_or_without_its_mapping_is_refused(digits, tmp_path, capsys, target):
    evil = edited(digits, tmp_path, target, lambda graph: graph["v2"].annotations.pop("placement"))
    assert_commands_refuse(tmp_path, capsys, [run(digits, tmp_path, evil), mapping_shown(evil, tmp_path)],
                           "node 'v2': annotation placement is missing", "map-cores writes one on every neuron population")
    evil = edited(digits, tmp_path, target, lambda graph: graph.metadata.pop("mapping"))
    assert_commands_refuse(tmp_path, capsys, [run(digits, tmp_path, evil)], "metadata mapping is missing",
                           "beside the annotation placement of every neuron population")
    assert_commands_refuse(tmp_path, capsys, [mapping_shown(evil, tmp_path)], "the graph holds no mapping")


def test_a_core_filled_beyond_its_neurons_is_refused(digits, tmp_path, capsys):
    """A re-sealed artifact whose target holds 32 neurons per core, and a placement that puts all
    64 of v1 on one core."""
    artifact = tmp_path / "artifact"
    chip = custom_target(tmp_path, "loihi2", "loihi2", neurons=32)
    assert cli("compile", DIGITS / "model.nir", "--target", chip, "-o", artifact) == 0
    graph = ir.load(artifact / IR_FILE)
    assert len(graph[V1].annotations["placement"]) == 2
    graph[V1].annotations["placement"] = [piece(graph[V1].annotations["placement"][0]["core"])]
    (artifact / IR_FILE).unlink()
    ir.save(graph, artifact / IR_FILE)
    reseal(artifact)
    code = cli("run", artifact, "--input", digits / "x.npy", "-o", tmp_path / "y.npz")
    assert_refused(capsys, code, f"node {V1!r}", "annotation placement: core", "holds 64 neurons, more than the core's 32")
    assert not (tmp_path / "y.npz").exists()


MAPPINGS = [
    (lambda m: [1], "metadata mapping is [1] (list)", "give a table of the fields target, rates, capacity"),
    (lambda m: "x", "metadata mapping is 'x' (str)", ""),
    (lambda m: {**m, "target": 5}, "metadata mapping.target is 5 (int)", "give a string"),
]
SUMMARIES = [
    (lambda m: m.pop("rates"), "metadata mapping has no field rates", "give a table of the fields source, batch, steps"),
    (lambda m: m["rates"].update(source=7), "metadata mapping.rates.source is 7 (int)", "give a string"),
    (lambda m: m["rates"].update(rate=float("nan")), "metadata mapping.rates.rate is nan", "give a finite number >= 0"),
    (lambda m: m["rates"]["mean_per_population"].update(ghost=0.1),
     "metadata mapping.rates.mean_per_population['ghost'] is 'ghost', which is not a population or input", ""),
    (lambda m: m["capacity"].update(neurons=0), "metadata mapping.capacity.neurons is 0", "give an integer >= 1"),
    (lambda m: m["capacity"].pop("synaptic_memory_bits"), "metadata mapping.capacity has no field synaptic_memory_bits",
     "give an integer >= 1"),
    (lambda m: m.update(channel_last=["x"]), "metadata mapping.channel_last[0] is 'x', which is not a neuron population",
     ""),
    (lambda m: m.update(cores=10 ** 20), f"metadata mapping.cores is {10 ** 20}", "below 2**63"),
    (lambda m: m.update(traffic_per_step=-1.0), "metadata mapping.traffic_per_step is -1.0", "give a finite number >= 0"),
    (lambda m: m.update(traffic_hops_per_step=float("inf")), "metadata mapping.traffic_hops_per_step is inf", ""),
    (lambda m: m["lower_bound"].update(binding="luck"), "metadata mapping.lower_bound.binding is 'luck' (str)",
     "give one of 'neurons', 'fan_in_axons', 'fan_out_axons', 'synaptic_memory_bits'"),
    (lambda m: m["lower_bound"]["by_resource"]["fan_in_axons"].update(population="ghost"),
     "metadata mapping.lower_bound.by_resource.fan_in_axons.population is 'ghost'", ""),
    (lambda m: m.update(greedy={"cores": 2, "fits": True}), "metadata mapping.greedy has no field traffic_hops_per_step",
     "give a finite number >= 0"),
    (lambda m: m.update(greedy={"cores": 2, "fits": 1}), "metadata mapping.greedy.fits is 1 (int)", "give True or False"),
    (lambda m: m.update(links=[{"from": [0, 0], "to": [0, 0, 1], "kind": "chip_hop", "messages_per_step": 1.0}]),
     "metadata mapping.links[0].from is [0, 0] (list)", "give a list of 3 items"),
    (lambda m: m.update(links=deep(30)), "metadata mapping.links[0] is [[[[", "give a table of the fields from, to"),
    (lambda m: m.update(per_core="x"), "metadata mapping.per_core is 'x' (str)", "give a list of 0 or more items"),
    (lambda m: m["per_core"][0]["pieces"][0].update(population="ghost"),
     "metadata mapping.per_core[0].pieces[0].population is 'ghost', which is not a neuron population", ""),
    (lambda m: m["per_core"][0]["pieces"][0].update(encodings={"fc1": "csr"}),
     "metadata mapping.per_core[0].pieces[0].encodings['fc1'] is 'csr' (str)", "give one of 'dense', 'sparse', 'shared'"),
    (lambda m: m["per_core"][0].update(tile=[0]), "metadata mapping.per_core[0].tile is [0] (list)", "a list of 2 items"),
    (lambda m: m["per_core"][0].update(neurons=-5), "metadata mapping.per_core[0].neurons is -5", "give an integer >= 0"),
    (lambda m: m["per_core"].append(m["per_core"][0]), "metadata mapping.per_core lists the cores [0",
     "cores of metadata mapping.cores once"),
    (lambda m: m["per_core"][0].update(core=5), "node 'v1': the node's annotation placement alone puts neurons 0 to 63 "
     "on core 0", "map-cores writes the two together"),
    (lambda m: m["per_core"][0]["pieces"][0].update(stop=60), "node 'v1': the node's annotation placement alone puts "
     "neurons 0 to 63 on core 0", "map-cores writes the two together"),
    (lambda m: m["per_core"][0]["pieces"].append({"population": "v2", "start": 0, "stop": 10, "encodings": {}}),
     "node 'v2': metadata mapping.per_core alone puts neurons 0 to 9 on core 0", "map-cores writes the two together"),
]


@pytest.mark.parametrize("target", KEY)
@pytest.mark.parametrize("change, what, valid", MAPPINGS)
def test_a_hostile_mapping_is_refused_by_run_and_inspect(digits, tmp_path, capsys, target, change, what, valid):
    evil = edited(digits, tmp_path, target,
                  lambda graph: graph.metadata.update(mapping=change(graph.metadata["mapping"])))
    assert_commands_refuse(tmp_path, capsys, [run(digits, tmp_path, evil), mapping_shown(evil, tmp_path)], what, valid)


@pytest.mark.parametrize("change, what, valid", SUMMARIES)
def test_a_hostile_mapping_summary_is_refused_by_inspect(digits, tmp_path, capsys, change, what, valid):
    """inspect --mapping prints the whole summary; the cost report reads only its target, so run
    prices the placement as it stands."""
    evil = edited(digits, tmp_path, "loihi2", lambda graph: change(graph.metadata["mapping"]))
    assert_commands_refuse(tmp_path, capsys, [mapping_shown(evil, tmp_path)], what, valid)
    assert cli(*run(digits, tmp_path, evil)) == 0


def test_a_placement_made_for_another_target_is_refused(digits, tmp_path, capsys):
    evil = edited(digits, tmp_path, "loihi2", lambda graph: graph.metadata["mapping"].update(target="loihi"))
    assert_commands_refuse(tmp_path, capsys, [run(digits, tmp_path, evil)],
                           "the graph's placement was made by map-cores for target 'loihi', not 'loihi2'")


def test_mapping_text_shows_link_kinds_escaped(digits, tmp_path, capsys):
    link = {"from": [0, 0, 0], "to": [0, 1, 0], "kind": "\x1b]0;pwned\x07", "messages_per_step": 1.0}
    evil = edited(digits, tmp_path, "spinnaker", lambda graph: graph.metadata["mapping"].update(links=[link]))
    capsys.readouterr()
    assert cli("inspect", evil, "--mapping") == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text and '"\\u001b]0;pwned\\u0007"' in text


QUANTS = [
    (lambda q: "x", "annotation quant is 'x' (str)", "give a table of the fields bits, method, granularity, scale"),
    (lambda q: None, "annotation quant is None", "give a table of the fields bits"),
    (lambda q: {**q, "bits": "8"}, "annotation quant.bits is '8' (str)", "give an integer from 2 to 16"),
    (lambda q: {**q, "bits": 10 ** 6}, "annotation quant.bits is 1000000", "give an integer from 2 to 16"),
    (lambda q: {**q, "bits": 1}, "annotation quant.bits is 1", "give an integer from 2 to 16"),
    (lambda q: {**q, "scale": "x"}, "annotation quant.scale is 'x' (str)",
     "give a finite number > 0 or a 1-D array of positive finite floats"),
    (lambda q: {**q, "scale": 0.0}, "annotation quant.scale is 0.0 (float)", "give a finite number > 0"),
    (lambda q: {**q, "scale": float("nan")}, "annotation quant.scale is nan (float)", "give a finite number > 0"),
    (lambda q: {**q, "scale": np.full(64, -1.0)}, "annotation quant.scale is an array of float64 and shape (64,)",
     "a 1-D array of positive finite floats"),
    (lambda q: {**q, "scale": np.full(3, q["scale"])}, "annotation quant.scale is an array of shape (3,)",
     "an array of shape (64,)"),
    (lambda q: {**q, "mantissa": q["mantissa"].astype(np.float64)},
     "annotation quant.mantissa is an array of float64 and shape (64, 64)", "give a 2-D array of integers"),
    (lambda q: {**q, "mantissa": q["mantissa"][:3]}, "annotation quant.mantissa is an array of shape (3, 64)",
     "give an array of shape (64, 64) of integers from -127 to 127"),
    (lambda q: {**q, "mantissa": q["mantissa"].astype(np.int16) * 0 + 200}, "annotation quant.mantissa holds 200",
     "integers from -127 to 127"),
    (lambda q: {k: v for k, v in q.items() if k != "entropy"}, "annotation quant has no field entropy",
     "give a finite number >= 0"),
    (lambda q: {**q, "zero_point": 0}, "annotation quant holds 'zero_point', which is not one of its fields", ""),
]


@pytest.mark.parametrize("change, what, valid", QUANTS)
def test_a_hostile_quantization_is_refused_by_the_passes_that_read_it(digits, tmp_path, capsys, change, what, valid):
    """quantize-loihi keeps quantize-weights' mantissas, and map-cores (and sparsify) count their
    bits: through compile and inspect --target, each refuses the same line."""
    evil = edited(digits, tmp_path, "quantized",
                  lambda graph: graph[FC1].annotations.update(quant=change(graph[FC1].annotations["quant"])))
    commands = [compiled(evil, tmp_path, "loihi2", "quantize-loihi"), compiled(evil, tmp_path, "loihi2", "map-cores"),
                ("inspect", evil, "--target", "loihi2", "--passes", "sparsify", "--sparsity", "0.5",
                 "-o", tmp_path / "ir.txt")]
    lines = assert_commands_refuse(tmp_path, capsys, commands, f"node {FC1!r}", what, valid)
    assert len(set(lines)) == 1


@pytest.mark.parametrize("value, what", [("csr", "is 'csr' (str)"), (np.zeros(2), "is an array of float64"),
                                         (["dense"], "is ['dense'] (list)"), (1, "is 1 (int)")])
def test_a_hostile_encoding_is_refused_by_map_cores(digits, tmp_path, capsys, value, what):
    evil = edited(digits, tmp_path, "quantized", lambda graph: graph[FC1].annotations.update(encoding=value))
    assert_commands_refuse(tmp_path, capsys, [compiled(evil, tmp_path, "loihi2", "map-cores"),
                                              ("inspect", evil, "--target", "loihi2", "--passes", "map-cores")],
                           f"node {FC1!r}: annotation encoding {what}", "give one of 'dense', 'sparse', 'shared'")


def dcls_layer(**changes) -> dict:
    """A DCLS annotation on fc1 (64 x 64 synapses) as the PyTorch importer writes one: one kernel
    element per synapse, learned delays around 2 steps in a kernel of 5 taps."""
    rng = np.random.default_rng(3)
    layer = {"layer": "fc1", "version": "v1", "kernel_size": 5, "groups": 1, "taps": [FC1],
             "delay": rng.uniform(1, 3, (64, 64, 1)), "weight": np.ones((64, 64, 1))}
    return {**layer, **changes}


DCLS_LAYERS = [
    ("x", "annotation dcls is 'x' (str)", "give a table of the fields layer, version, kernel_size, groups, taps"),
    ({}, "annotation dcls has no field layer", "give a string"),
    (dcls_layer(taps=[]), "annotation dcls.taps is [] (list)", "give a list of 1 or more items, each a string"),
    (dcls_layer(taps=[1]), "annotation dcls.taps[0] is 1 (int)", "give a string"),
    (dcls_layer(kernel_size=0), "annotation dcls.kernel_size is 0", "give an integer >= 1"),
    (dcls_layer(kernel_size=10 ** 15), f"annotation dcls.kernel_size is {10 ** 15}: round-delays would hold",
     "more than snnc's memory budget"),
    (dcls_layer(groups=0), "annotation dcls.groups is 0", "give an integer >= 1"),
    (dcls_layer(groups=3), "annotation dcls.groups is 3", "divides the layer's 64 outputs and 64 inputs"),
    (dcls_layer(delay=np.full((64, 64, 1), np.nan)), "annotation dcls.delay holds nan",
     "give a 3-D array of finite numbers"),
    (dcls_layer(delay=np.ones((64, 64))), "annotation dcls.delay is an array of float64 and shape (64, 64)",
     "give a 3-D array"),
    (dcls_layer(delay=np.ones((64, 63, 1))), "annotation dcls.delay is an array of shape (64, 63, 1)",
     "give delays and weights of one shape (64, 64, elements)"),
    (dcls_layer(weight=np.ones((64, 64, 2))), "annotation dcls.weight is an array of shape (64, 64, 2)",
     "give delays and weights of one shape"),
    (dcls_layer(bias=0.5), "annotation dcls holds 'bias', which is not one of its fields", ""),
]


@pytest.mark.parametrize("value, what, valid", DCLS_LAYERS)
def test_a_hostile_dcls_layer_is_refused_by_round_delays(digits, tmp_path, capsys, value, what, valid):
    """round-delays runs in every hardware pipeline: compile and inspect --target refuse the same line."""
    evil = edited(digits, tmp_path, "sim", lambda graph: graph[FC1].annotations.update(dcls=value))
    lines = assert_commands_refuse(tmp_path, capsys, [("compile", evil, "--target", target, "-o", tmp_path / "artifact")
                                                      for target in KEY] +
                                   [("inspect", evil, "--target", "loihi2", "--after", "round-delays")],
                                   f"node {FC1!r}", what, valid)
    assert len(set(lines)) == 1


def test_a_dcls_layer_on_a_population_is_refused(digits, tmp_path, capsys):
    evil = edited(digits, tmp_path, "sim", lambda graph: graph[V1].annotations.update(dcls=dcls_layer()))
    assert_commands_refuse(tmp_path, capsys, [("compile", evil, "--target", "loihi2", "-o", tmp_path / "artifact")],
                           f"node {V1!r}: annotation dcls is on a LIF", "synapse groups (Affine) only")


def test_a_well_formed_dcls_layer_is_rounded(digits, tmp_path):
    evil = edited(digits, tmp_path, "sim", lambda graph: graph[FC1].annotations.update(dcls=dcls_layer()))
    assert cli("compile", evil, "--target", "loihi2", "-o", tmp_path / "artifact") == 0
    report = json.loads((tmp_path / "artifact" / "passes.json").read_text())["round-delays"]
    assert report["layers"]["fc1"]["synapses"] == 64 * 64
    assert ir.load(tmp_path / "artifact" / IR_FILE)[FC1].annotations["loihi"]["delays"].max() > 0


@pytest.mark.parametrize("target", KEY)
@pytest.mark.parametrize("value, what", [(np.zeros(2), " is an array of float64 and shape (2,); give a list of 0"),
                                         ([1], "[0] is 1 (int); give a string"),
                                         ([None], "[0] is None (NoneType); give a string"),
                                         ("fc1", " is 'fc1' (str); give a list of 0")])
def test_a_hostile_fused_from_is_refused_by_run_and_compile(digits, tmp_path, capsys, target, value, what):
    """The Lava lowering table lists fused_from; the fixed-point contract holds it to names."""
    evil = edited(digits, tmp_path, target, lambda graph: graph[FC1].annotations.update(fused_from=value))
    lines = assert_commands_refuse(tmp_path, capsys, [run(digits, tmp_path, evil), compiled(evil, tmp_path, target)],
                                   f"node {FC1!r}: annotation fused_from{what}")
    assert len(set(lines)) == 1


def test_a_metadata_target_is_a_bundled_name_for_the_cost_report_too(digits, tmp_path, capsys):
    """A float graph's cost report is priced on the target its metadata names: never a path."""
    for name in (5, "/etc/passwd.toml", str(TARGET_DIR / "loihi2.toml"), ["sim"]):
        evil = edited(digits, tmp_path, "sim", lambda graph: graph.metadata.update(target=name))
        assert_commands_refuse(tmp_path, capsys, [run(digits, tmp_path, evil)],
                               f"the graph is compiled for target {name!r}, which is not a bundled one", "run the artifact")
    evil = edited(digits, tmp_path, "sim", lambda graph: graph.metadata.update(target="loihi2"))
    assert cli(*run(digits, tmp_path, evil)) == 0
    assert json.loads((tmp_path / "r.json").read_text())["target"] == "loihi2"


def test_a_metadata_target_that_is_no_text_is_refused(digits, tmp_path, capsys):
    """A re-sealed artifact whose metadata target (which the Lava program's docstring names) is a
    list: refused before anything runs."""
    artifact = copied_artifact(digits, tmp_path, "loihi2")
    graph = ir.load(artifact / IR_FILE)
    graph.metadata["target"] = ["loihi2"]
    (artifact / IR_FILE).unlink()
    ir.save(graph, artifact / IR_FILE)
    reseal(artifact)
    for backend in ("sim", "lava"):
        code = cli("run", artifact, "--input", digits / "x.npy", "-o", tmp_path / "y.npz", "--backend", backend)
        assert_refused(capsys, code, "metadata target is ['loihi2'] (list)", "give None or a string")
    assert not (tmp_path / "y.npz").exists()


@pytest.mark.parametrize("target", KEY)
def test_a_metadata_arithmetic_that_is_an_array_is_refused(digits, tmp_path, capsys, target):
    """--precision and the emitters compare the arithmetic with a name; an array compares element
    by element, and is refused like any other value that names none."""
    evil = edited(digits, tmp_path, target, lambda graph: graph.metadata.update(arithmetic=np.zeros(2)))
    assert_commands_refuse(tmp_path, capsys, [run(digits, tmp_path, evil, "--precision", "float32")],
                           "the graph is compiled for array([0., 0.]) arithmetic")
    needs = {"loihi2": "the Lava backend", "spinnaker": "the PyNN script"}[target]
    assert_commands_refuse(tmp_path, capsys, [compiled(evil, tmp_path, target)],
                           f"{needs} (pass quantize-{KEY[target]}) needs a graph quantized for a {KEY[target]} target")


def test_export_carries_a_hostile_annotation_and_its_reader_still_refuses_it(digits, tmp_path, capsys):
    """export copies annotations without reading them; the exported model is refused where the
    placement is read, in the same line."""
    evil = edited(digits, tmp_path, "loihi2", lambda graph: graph[V1].annotations.update(placement="x"))
    capsys.readouterr()
    line = assert_refused(capsys, cli(*run(digits, tmp_path, evil)))
    assert cli("export", evil, "-o", tmp_path / "evil.onnx") == 0
    assert assert_refused(capsys, cli(*run(digits, tmp_path, tmp_path / "evil.onnx"))) == line


@pytest.mark.parametrize("target", KEY)
def test_the_digits_artifacts_run_with_a_cost_report_and_show_their_mapping(digits, tmp_path, capsys, target):
    """No false refusals: the compiled artifacts and their IR run and price their placement, show
    their mapping, and export."""
    backends = ("sim", "spinnaker") if target == "spinnaker" else ("sim",)
    for model in (digits / target, digits / target / IR_FILE):
        for backend in backends if model.is_dir() else ("sim",):
            assert cli("run", model, "--input", digits / "x.npy", "-o", tmp_path / "y.npz", "--report",
                       tmp_path / "r.json", "--backend", backend) == 0
            report = json.loads((tmp_path / "r.json").read_text())
            assert report["target"] == target and report["energy_j"] > 0
        assert cli("inspect", model, "--mapping") == 0
        assert f"on {target}:" in capsys.readouterr().out
    assert cli("export", digits / target, "-o", tmp_path / "model.onnx") == 0
    assert cli("inspect", tmp_path / "model.onnx", "--mapping") == 0


def test_mappings_of_shared_cores_and_channel_last_cuts_are_whole(tmp_path):
    """check_mapping holds map-cores' own summaries to agree with its placement where cores hold
    pieces of several populations and convolutions are cut in runs of channel-last order."""
    from test_cost import toy_target
    from test_mapping import conv_chain, mapped, populations

    graph = populations({"in": 2, "a": 3, "b": 2, "c": 3}, {("in", "a"): np.ones((3, 2)), ("a", "b"): np.ones((2, 3)),
                                                           ("b", "c"): np.ones((3, 2))})
    out, mapper = mapped(graph, toy_target(neurons=4))
    assert len(mapper.summary["per_core"][0]["pieces"]) == 2
    assert contracts.check_mapping(out) is out.metadata["mapping"]
    out, mapper = mapped(conv_chain(), toy_target(neurons=256, fan_in_axons=400, mesh=(4, 4)))
    assert mapper.summary["channel_last"] == ["a", "b"]
    assert contracts.check_mapping(out) is out.metadata["mapping"]


def test_a_quantization_step_below_every_vth_compiles_quietly(digits, tmp_path, capsys):
    """quant's scale, and the weights with it, at 1e-320: the step that would put its mantissas on
    Lava's grid needs a vth beyond every float, which quantize-loihi does not offer."""
    def tiny(graph):
        quant = graph[FC1].annotations["quant"]
        quant["scale"] = 1e-320
        graph[FC1].op.weight = quant["mantissa"] * 1e-320

    evil = edited(digits, tmp_path, "quantized", tiny)
    capsys.readouterr()
    assert cli(*compiled(evil, tmp_path, "loihi2", "quantize-loihi")) == 0
    assert capsys.readouterr().err == ""
