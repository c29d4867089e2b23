"""`snnc inspect` prints a model's strings with control characters escaped, in every format.

A model is untrusted: a raw newline in a name forges a line of the dump, a carriage return or an
escape sequence rewrites what the terminal shows. Every string from the model goes through
``show_name``, which writes such strings as visible JSON escapes.
"""

import json

import numpy as np
import pytest

from snnc import ir
from snnc.cli import main
from snnc.ir.printer import show_name, to_dot, to_json, to_text

from graphs import mlp

#: Node names that hold what a terminal acts on: CSI colour and erase sequences, an OSC title
#: sequence, carriage return and newline, NUL, BEL, DEL, the 8-bit CSI, a right-to-left override
#: and a line separator.
TERMINAL_NAMES = {"in": "\x1b[31min", "fc0": "fc0\r\nforged line", "lif0": "lif0\x00\x07", "fc1": "\x9b2J\u202efc1",
                  "lif1": "lif1\x7f", "out": "out\u2028x"}
GRAPH_NAME = "\x1b]0;pwned title\x07net\n"


def terminal_graph() -> ir.Graph:
    """A 6-5-4 MLP named by TERMINAL_NAMES, with a hostile graph name and a hostile annotation."""
    graph = mlp(np.random.default_rng(0), sizes=(6, 5, 4))
    renamed = ir.Graph(dt=graph.dt, name=GRAPH_NAME)
    for node in graph:
        annotations = {"note\x1b[0m": ["value\r\x1b[2K", {"key\n": "x"}]} if node.name == "fc0" else None
        renamed.add(TERMINAL_NAMES[node.name], node.op, annotations)
    for source, target in graph.edges:
        renamed.connect(TERMINAL_NAMES[source], TERMINAL_NAMES[target])
    return ir.verify(renamed)


def assert_inert(output: str) -> None:
    """Nothing but printable characters and the dump's own line breaks."""
    odd = sorted({c for c in output if not (c.isprintable() or c == "\n")})
    assert not odd, f"raw control characters in the output: {odd}"


@pytest.mark.parametrize("name, shown", [
    ("lif0", "lif0"), ("a b", '"a b"'), ("\x1b[31m", '"\\u001b[31m"'), ("a\r\nb", '"a\\r\\nb"'), ("\x00", '"\\u0000"'),
    ("\u202e", '"\\u202e"'), ("\x9b", '"\\u009b"'), ('"', '"\\""'), ("caf\u00e9", "caf\u00e9"),
])
def test_show_name_leaves_plain_names_and_escapes_the_rest(name, shown):
    assert show_name(name) == shown


def test_text_dump_escapes_every_name_and_annotation_and_forges_no_line():
    graph = terminal_graph()
    text = to_text(graph)
    assert_inert(text)
    lines = text.splitlines()
    assert len(lines) == 2 + len(graph) + 1 + len(graph.edges)  # header, columns, nodes, "edges:", edges
    assert lines[0].startswith('graph "\\u001b]0;pwned title\\u0007net\\n"  ')
    for name in TERMINAL_NAMES.values():
        assert show_name(name) in text
    assert '@"note\\u001b[0m"=["value\\r\\u001b[2K", {"key\\n"=x}]' in text


def test_dot_dump_escapes_ids_and_labels():
    graph = terminal_graph()
    dot = to_dot(graph)
    assert_inert(dot)
    assert dot.startswith('digraph "\\"\\\\u001b]0;pwned title\\\\u0007net\\\\n\\"" {')
    ids = [line.split(" [label=")[0].strip() for line in dot.splitlines() if "[label=" in line]
    assert len(set(ids)) == len(graph)  # escaping keeps distinct names distinct
    assert '"\\"fc0\\\\r\\\\nforged line\\""' in ids


def test_json_dump_escapes_and_reads_back_to_the_names():
    document = to_json(terminal_graph())
    assert_inert(document)
    parsed = json.loads(document)
    assert parsed["name"] == GRAPH_NAME and [n["name"] for n in parsed["nodes"]] == list(TERMINAL_NAMES.values())


@pytest.fixture
def hostile_model(tmp_path):
    path = tmp_path / "hostile.snnir"
    ir.save(terminal_graph(), path)
    return path


@pytest.mark.parametrize("format", ["text", "json", "dot"])
def test_inspect_prints_no_raw_control_characters(hostile_model, capsys, format):
    assert main(["inspect", str(hostile_model), "--format", format]) == 0
    out = capsys.readouterr().out
    assert_inert(out)
    assert "\\u001b" in out


def test_inspect_of_a_compiled_artifact_escapes_its_lowering_pass_reports_and_mapping(hostile_model, tmp_path, capsys):
    artifact = tmp_path / "art"
    assert main(["compile", str(hostile_model), "--target", "loihi2", "-o", str(artifact)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(artifact)]) == 0
    out = capsys.readouterr().out
    assert_inert(out)
    assert "lowered to Lava (network.py):" in out and "passes (passes.json):" in out
    assert show_name(TERMINAL_NAMES["lif0"]) in out.split("lowered to Lava")[1]
    assert main(["inspect", str(artifact), "--mapping"]) == 0
    mapping = capsys.readouterr().out
    assert_inert(mapping)
    assert mapping.startswith('mapping of "\\u001b]0;pwned title\\u0007net\\n" on loihi2:')
    assert show_name(TERMINAL_NAMES["lif1"]) + "[0:4]" in mapping


def test_run_prints_output_names_escaped(hostile_model, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((1, 4, 6)))
    assert main(["run", str(hostile_model), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz")]) == 0
    out = capsys.readouterr().out
    assert_inert(out)
    assert f"  {show_name(TERMINAL_NAMES['out'])}  " in out


def test_json_dump_is_standard_json_when_an_annotation_holds_non_finite_numbers():
    """JSON has no NaN or Infinity: a hand-made annotation's non-finite numbers are written as text."""
    graph = mlp(np.random.default_rng(0), sizes=(3, 2))
    graph["fc0"].annotations["note"] = {"scale": float("nan"), "range": np.array([-np.inf, 1.0, np.inf])}
    document = json.loads(to_json(graph), parse_constant=lambda name: pytest.fail(f"non-standard JSON: {name}"))
    note = next(n for n in document["nodes"] if n["name"] == "fc0")["annotations"]["note"]
    assert note["scale"] == "nan" and note["range"]["min"] == "-inf" and note["range"]["max"] == "inf"
