"""Generated programs are inert: no text of a model, a target file or an annotation runs as code.

Every string and number reaches network.py and pynn_script.py through ``codegen.literal``, and
annotations are checked before a line is written. The tests compile through the command line
(``snnc.cli.main``) models and targets whose names, and hand-made quantized IR files whose
annotations, hold code that creates a marker file if it ever runs; every generated program must
then be valid Python in which the code is only string or comment text, and must run (imported, its
``build`` called with stand-ins for Lava and PyNN, and once under Lava itself) without creating
a marker.
"""

import ast
import dataclasses
import io
import json
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import onnx
import pytest

from snnc import backends, ir
from snnc.backends.codegen import literal
from snnc.backends.spinnaker import machine
from snnc.cli import main
from snnc.runtime.lava_env import ensure_environment
from snnc.runtime.lava_run import run_lava
from snnc.runtime.simulator import simulate
from snnc.targets import TARGET_DIR, load_target, parse_target

from graphs import delayed_mlp, mlp, spikes

REPOSITORY = Path(__file__).resolve().parents[1]
#: The generated programs of each target's artifact.
PROGRAMS = {"loihi2": ("network.py", "run_lava.py"), "spinnaker": ("pynn_script.py",)}
#: The node of mlp(sizes=(6, 5, 4)) that each annotation test changes, by kind.
POPULATION, SYNAPSE = "lif0", "fc0"


def breakouts(marker: Path) -> list[str]:
    """Strings that create ``marker``'s siblings PWNED_<i> if written raw into generated code: each
    ends the string, docstring or comment it would be written into in another way."""
    touch = lambda i: f"__import__('pathlib').Path({str(marker.with_name(f'PWNED_{i}'))!r}).touch()"  # noqa: E731
    double = lambda i: touch(i).replace("'", '"')  # noqa: E731
    return [f'x"""; {double(0)}; """',  # ends a """ docstring: repr keeps double quotes
            f"x'''; {touch(1)}; '''",  # ends a ''' docstring
            f"x'); {touch(2)}; ('",  # ends a '...' literal
            f'x"); {double(3)}; ("',  # ends a "..." literal
            f"x\n    {touch(4)}\n    #",  # ends a comment, indented as a function body
            f"x\r{touch(5)}\r#",  # a carriage return ends a line too
            f"x\\\n{touch(6)}",  # a backslash continuation
            f"x\\'; {touch(7)}; '",  # a backslash that would escape the closing quote
            f"x\x00\x0c\u2028\U0001f600 {touch(8)}"]  # NUL, form feed, a line separator, a non-BMP character


def markers(root: Path) -> list[Path]:
    return sorted(root.rglob("PWNED*"))


def cli(*args) -> int:
    return main([str(a) for a in args])


def hostile_graph(tmp_path: Path) -> ir.Graph:
    """A 6-5-4 MLP whose graph and every node are named by a breakout."""
    names = breakouts(tmp_path / "PWNED")
    graph = mlp(np.random.default_rng(3), sizes=(6, 5, 4))
    renamed = ir.Graph(dt=graph.dt, name=names[0])
    rename = dict(zip([node.name for node in graph], names[1:] + names[:1]))
    for node in graph:
        renamed.add(rename[node.name], node.op)
    for source, target in graph.edges:
        renamed.connect(rename[source], rename[target])
    return renamed


def hostile_target(tmp_path: Path, bundled: str, key: str) -> Path:
    """A copy of a bundled target file whose ``key`` (name or description) is a breakout."""
    text = (TARGET_DIR / f"{bundled}.toml").read_text()
    breakout = breakouts(tmp_path / "PWNED_TARGET")[0]
    # JSON's string escapes are TOML's for ASCII text.
    text = re.sub(rf'(?m)^{key} = ".*"$', lambda _: f"{key} = {json.dumps(breakout)}", text)
    path = tmp_path / f"evil_{bundled}.toml"
    path.write_text(text)
    return path


def assert_refused(capsys, code: int, *fragments: str) -> str:
    """Exit code 2 and one line on stderr that holds every fragment."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("snnc: error: ") and all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


#: Runs a generated program in a plain Python: imports it (its main does not run), then calls its
#: ``build`` with stand-ins that accept any call, for Lava's processes and for the PyNN network.
DRIVER = r'''
import inspect, runpy, sys, types

class Anything:
    def __init__(self, *args, **kwargs): pass
    def __call__(self, *args, **kwargs): return Anything()
    def __getattr__(self, name): return Anything()
    def __getitem__(self, key): return Anything()

for name in ("lava", "lava.proc", "lava.proc.dense", "lava.proc.dense.process", "lava.proc.io", "lava.proc.io.sink",
             "lava.proc.io.source", "lava.proc.lif", "lava.proc.lif.process", "lava.proc.sparse",
             "lava.proc.sparse.process", "scipy", "scipy.sparse"):
    module = sys.modules[name] = types.ModuleType(name)
    module.__getattr__ = lambda attribute: Anything
program = runpy.run_path(sys.argv[1])
build = program["build"]
build(*[Anything()] * len(inspect.signature(build).parameters))
print("built")
'''


def assert_inert(artifact: Path, target: str, work: Path) -> None:
    """Every program of ``artifact`` parses, holds the breakouts only inside strings and comments,
    and imports and builds in a plain Python without creating a marker."""
    for name in PROGRAMS[target]:
        source = (artifact / name).read_text()
        assert source.isascii(), name
        ast.parse(source, name)
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if "PWNED" in token.string:
                assert token.type in (tokenize.STRING, tokenize.COMMENT), (name, token)
        if name != "run_lava.py":  # the runner needs Lava itself: test_a_hostile_program_runs_in_lava
            work.mkdir(parents=True, exist_ok=True)
            result = subprocess.run([sys.executable, "-c", DRIVER, str(artifact / name)], cwd=work,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0 and result.stdout.strip() == "built", result.stderr[-2000:]
    assert not markers(work.parent)


# -- the literal writer


#: Every character up to U+3000, then samples of the rest of Unicode, lone surrogates included.
CHARACTERS = "".join(map(chr, [*range(0x3000), *range(0x3000, 0x110000, 997), 0xD800, 0xDFFF, 0x10FFFF]))


@pytest.mark.parametrize("text", [CHARACTERS, *breakouts(Path("/tmp/PWNED")), "", "'", '"', "\\", '"""', "'''"])
def test_a_literal_is_the_text_and_ends_no_string_comment_or_docstring(text):
    written = literal(text)
    assert written.isascii() and written.isprintable()
    assert ast.literal_eval(written) == text
    assert not set(written[1:-1]) & set("'\"\n\r")
    # In a docstring, after a comment and in an expression it is one token of what surrounds it.
    for program, statements in ((f'"""Of {written}, compiled."""\nx = 1\n', 2), (f"# {written}\nx = 1\n", 1),
                                (f"x = [{written}]\n", 1), (f"def f():\n    # {written}\n    return {written}\n", 1)):
        tree = ast.parse(program)
        assert len(tree.body) == statements, program
    assert ast.get_docstring(ast.parse(f'"""Of {written}."""'), clean=False) == f"Of '{text}'."


def test_numbers_are_written_exactly_and_only_checked_values_are_written():
    assert [literal(v) for v in (0, -3, np.int64(2 ** 40), 0.1, np.float32(0.5), (6,), (2, 3), ())] == \
        ["0", "-3", str(2 ** 40), "0.1", "0.5", "(6,)", "(2, 3)", "()"]
    for value in (True, np.bool_(False), float("nan"), float("inf"), np.float64("-inf"), None, b"x", [1], {"a": 1},
                  np.array(1), object()):
        with pytest.raises(TypeError):
            literal(value)


# -- hostile names and targets, compiled by the command line


@pytest.mark.parametrize("target", ["loihi2", "spinnaker"])
def test_hostile_graph_and_node_names_compile_to_inert_programs(tmp_path, target):
    source = tmp_path / "model.snnir"
    ir.save(hostile_graph(tmp_path), source)
    assert cli("compile", source, "--target", target, "-o", tmp_path / "artifact") == 0
    assert_inert(tmp_path / "artifact", target, tmp_path / "work")
    names = breakouts(tmp_path / "PWNED")
    program = (tmp_path / "artifact" / PROGRAMS[target][0]).read_text()
    assert names[0] in ast.get_docstring(ast.parse(program))  # the graph's name, as text of the docstring


@pytest.mark.parametrize("target", ["loihi2", "spinnaker"])
@pytest.mark.parametrize("key", ["name", "description"])
def test_hostile_target_files_are_refused_or_inert(tmp_path, capsys, target, key):
    source = tmp_path / "model.snnir"
    ir.save(mlp(np.random.default_rng(4), sizes=(6, 5, 4)), source)
    evil = hostile_target(tmp_path, target, key)
    code = cli("compile", source, "--target", evil, "-o", tmp_path / "artifact")
    if code == 2:  # target files may refuse such text where they are read
        assert_refused(capsys, code, str(evil), key)
        assert not (tmp_path / "artifact").exists()
    else:
        assert code == 0
        assert_inert(tmp_path / "artifact", target, tmp_path / "work")
    assert not markers(tmp_path)


@pytest.mark.parametrize("target", ["loihi2", "spinnaker"])
def test_a_hostile_target_name_that_a_target_file_let_through_stays_inert(tmp_path, monkeypatch, target):
    """The programs do not rely on target files refusing such names: one that got through is written
    into the docstring as text."""
    name = breakouts(tmp_path / "PWNED")[0]
    renamed = lambda read: lambda given: dataclasses.replace(read(given), name=name)  # noqa: E731
    monkeypatch.setattr(backends, "load_target", renamed(load_target))
    monkeypatch.setattr(machine, "parse_target", renamed(parse_target))  # which checks the placement's target
    source = tmp_path / "model.snnir"
    ir.save(mlp(np.random.default_rng(4), sizes=(6, 5, 4)), source)
    assert cli("compile", source, "--target", target, "-o", tmp_path / "artifact") == 0
    assert_inert(tmp_path / "artifact", target, tmp_path / "work")
    assert name in ast.get_docstring(ast.parse((tmp_path / "artifact" / PROGRAMS[target][0]).read_text()))


def test_an_onnx_graph_name_and_a_nir_file_name_stay_inert(tmp_path):
    name = breakouts(tmp_path / "PWNED")[0]
    model = onnx.load(REPOSITORY / "examples/digits/model.onnx")
    model.graph.name = name
    onnx.save(model, tmp_path / "model.onnx")
    assert cli("compile", tmp_path / "model.onnx", "--target", "loihi2", "-o", tmp_path / "from_onnx") == 0
    assert_inert(tmp_path / "from_onnx", "loihi2", tmp_path / "work_onnx")
    # A file name holds no "/": the breakout's marker is relative, so the program runs in `work`.
    relative = 'x"""; __import__("pathlib").Path("PWNED_NIR").touch(); """'
    nir_file = tmp_path / f"{relative}.nir"
    nir_file.write_bytes((REPOSITORY / "examples/braille/braille.nir").read_bytes())
    assert cli("compile", nir_file, "--target", "spinnaker", "-o", tmp_path / "from_nir") == 0
    assert relative in (tmp_path / "from_nir" / "pynn_script.py").read_text().replace("\\x22", '"')
    assert_inert(tmp_path / "from_nir", "spinnaker", tmp_path / "work_nir")


def test_a_hostile_program_runs_in_lava(tmp_path):
    """Hostile graph and node names: the Lava program runs in Lava's own simulation, gives the
    fixed-point simulator's spikes, and runs none of the names."""
    ensure_environment(log=lambda line: None)
    source = tmp_path / "model.snnir"
    ir.save(hostile_graph(tmp_path), source)
    assert cli("compile", source, "--target", "loihi2", "-o", tmp_path / "artifact") == 0
    lowered = ir.load(tmp_path / "artifact" / "model.snnir")
    x = spikes(np.random.default_rng(5), (1, 30, 6)).astype(np.int64)
    theirs = run_lava(tmp_path / "artifact", x, log=lambda line: None)
    ours = simulate(lowered, x)
    assert set(theirs) == set(lowered.outputs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
    assert not markers(tmp_path)


def test_a_hostile_script_runs_on_nest_as_the_plainly_named_network_does(tmp_path):
    """Hostile graph and node names: the PyNN script runs on NEST, gives the spikes of the same
    network with plain names, and runs none of the names."""
    pytest.importorskip("nest")
    plain, hostile = mlp(np.random.default_rng(3), sizes=(6, 5, 4)), hostile_graph(tmp_path)
    np.save(tmp_path / "x.npy", spikes(np.random.default_rng(5), (1, 30, 6)).astype(np.int8))
    results = []
    for name, graph in (("plain", plain), ("hostile", hostile)):
        ir.save(graph, tmp_path / f"{name}.snnir")
        assert cli("compile", tmp_path / f"{name}.snnir", "--target", "spinnaker", "-o", tmp_path / name) == 0
        work = tmp_path / f"work_{name}"
        work.mkdir()
        result = subprocess.run([sys.executable, str(tmp_path / name / "pynn_script.py"), str(tmp_path / "x.npy"),
                                 "y.npy", "--simulator", "nest"], cwd=work, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        results.append(np.load(work / "y.npy"))
    np.testing.assert_array_equal(results[0], results[1])
    assert results[0].shape == (1, 30, 4) and results[0].any()
    assert not markers(tmp_path)


# -- hand-made annotations, compiled with --passes ''


@pytest.fixture(scope="module")
def lowered_files(tmp_path_factory):
    """For each target, a compiled artifact of a 6-5-4 MLP with per-synapse delays."""
    root = tmp_path_factory.mktemp("lowered")
    ir.save(delayed_mlp(), root / "model.snnir")
    for target in PROGRAMS:
        assert main(["compile", str(root / "model.snnir"), "--target", target, "-o", str(root / target)]) == 0
    return root


def with_annotation(lowered_files, tmp_path, target, node, change) -> Path:
    """The lowered IR of ``target`` with ``change`` applied to ``node``'s annotation, as a file."""
    graph = ir.load(lowered_files / target / "model.snnir")
    key = "loihi" if target == "loihi2" else "spinnaker"
    change(graph[node].annotations, key)
    path = tmp_path / "evil.snnir"
    ir.save(graph, path)
    return path


def test_a_lowered_ir_compiles_again_to_the_same_programs(lowered_files, tmp_path):
    """The checks accept what the quantization passes write: --passes '' on an artifact's IR gives
    the same programs."""
    for target, programs in PROGRAMS.items():
        assert main(["compile", str(lowered_files / target / "model.snnir"), "--target", target, "--passes", "",
                     "-o", str(tmp_path / target)]) == 0
        for name in programs + (("params.npz",) if target == "loihi2" else ("pynn_network.npz",)):
            assert (tmp_path / target / name).read_bytes() == (lowered_files / target / name).read_bytes(), name


def touch(tmp_path: Path) -> str:
    return f"__import__('pathlib').Path({str(tmp_path / 'PWNED_ANNOTATION')!r}).touch()"


def setting(field, value):
    def change(annotations, key):
        annotations[key][field] = value(annotations[key][field]) if callable(value) else value
    return change


LOIHI_CASES = [
    (POPULATION, "du", lambda t: setting("du", f"{touch(t)} or 0"), "give an integer from 0 to 4095"),
    (POPULATION, "dv", lambda t: setting("dv", 4096), "is 4096; give an integer from 0 to 4095"),
    (POPULATION, "vth", lambda t: setting("vth", 1.5), "give an integer from 0 to 131071"),
    (POPULATION, "vth", lambda t: setting("vth", True), "give an integer from 0 to 131071"),
    (POPULATION, "bias_mant", lambda t: setting("bias_mant", touch(t)),
     "give an array of shape (5,) of integers from -4096 to 4095"),
    (POPULATION, "bias_mant", lambda t: setting("bias_mant", np.zeros(3, np.int32)), "is an array of shape (3,)"),
    (POPULATION, "bias_exp", lambda t: setting("bias_exp", lambda a: a + 8), "integers from 0 to 7"),
    (POPULATION, "du", lambda t: lambda a, k: a[k].pop("du"), "has no field du"),
    (POPULATION, "code", lambda t: setting("code", touch(t)), "which is not one of its fields"),
    (POPULATION, "loihi", lambda t: lambda a, k: a.update({k: touch(t)}), "is not a table of fields"),
    (POPULATION, "loihi", lambda t: lambda a, k: a.pop(k), "is missing"),
    (SYNAPSE, "weight_exp", lambda t: setting("weight_exp", f"0, delays={touch(t)}"), "give an integer from -8 to 7"),
    (SYNAPSE, "weights", lambda t: setting("weights", lambda a: a + 1), "multiples of 2"),
    (SYNAPSE, "weights", lambda t: setting("weights", lambda a: a.astype(np.float64)), "is an array of float64"),
    (SYNAPSE, "weights", lambda t: setting("weights", lambda a: a.T.copy()), "is an array of shape (6, 5)"),
    (SYNAPSE, "delays", lambda t: setting("delays", lambda a: a * 0 + 64), "holds 64"),
    (SYNAPSE, "delays", lambda t: setting("delays", touch(t)), "give None or an array of shape (5, 6)"),
]

SPINNAKER_CASES = [
    (POPULATION, "model", lambda t: setting("model", f"IF_curr_delta\n    {touch(t)}\n    #"),
     "give one of 'IF_curr_exp', 'IF_curr_delta', 'IF_trunc_delta'"),
    (POPULATION, "ring_buffer_shifts", lambda t: setting("ring_buffer_shifts", np.array([17, 0])),
     "give an array of shape (2,) of integers from 0 to 16"),
    (POPULATION, "v_thresh", lambda t: setting("v_thresh", lambda a: a.astype(np.float32)), "is an array of float32"),
    (POPULATION, "exp_tc", lambda t: setting("exp_tc", lambda a: a * 0 + 2 ** 15), "integers from 0 to 32767"),
    (POPULATION, "exp_tc", lambda t: lambda a, k: a[k].pop("exp_tc"), "has no field exp_tc"),
    (POPULATION, "exc_decay", lambda t: setting("exc_decay", np.zeros(5, np.uint32)), "which is not one of its fields"),
    (SYNAPSE, "excitatory", lambda t: setting("excitatory", lambda a: a.astype(np.int32) - 1), "integers from 0 to 65535"),
    (SYNAPSE, "delays", lambda t: setting("delays", lambda a: a * 0), "integers from 1 to 144"),
    (SYNAPSE, "delays", lambda t: setting("delays", touch(t)), "give an array of shape (5, 6) of integers from 1 to 144"),
    (SYNAPSE, "spinnaker", lambda t: lambda a, k: a.pop(k), "is missing"),
    (POPULATION, "model", lambda t: lambda a, k: a[k].pop("model"), "has no field model"),
]


@pytest.mark.parametrize("target, node, field, change, message",
                         [("loihi2", *case) for case in LOIHI_CASES] + [("spinnaker", *case) for case in SPINNAKER_CASES])
def test_annotations_outside_their_range_are_refused(lowered_files, tmp_path, capsys, target, node, field, change,
                                                      message):
    evil = with_annotation(lowered_files, tmp_path, target, node, change(tmp_path))
    capsys.readouterr()
    code = cli("compile", evil, "--target", target, "--passes", "", "-o", tmp_path / "artifact")
    line = assert_refused(capsys, code, f"node {node!r}", field, message)
    assert "\n" not in line and line.isprintable()
    assert not (tmp_path / "artifact").exists() and not list(tmp_path.glob(".snnc-*")) and not markers(tmp_path)
