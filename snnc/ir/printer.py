"""Readable, deterministic dumps of a graph: text (one line per node, then edges), JSON and DOT.

All three formats come from one summary per node, so they always say the same thing.
"""

from __future__ import annotations

import json
import math

import numpy as np

from snnc.ir.graph import Graph, Node

_WEIGHTS = ("weight",)


def _number(x) -> str:
    return f"{float(x):.6g}"


def _shape(shape) -> str:
    if shape is None:
        return "-"
    return "(" + ",".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def show_name(name: str) -> str:
    """A name or any other string from a model as it is when plain, else quoted with escapes.

    Every string from a model that a dump or ``snnc inspect`` prints goes through here: a model is
    untrusted, and a raw newline, carriage return or terminal escape sequence in a name would forge
    lines or rewrite the user's terminal. Plain means printable (no control, format or separator
    characters) and free of the characters the dumps use as delimiters; anything else is written as
    a JSON string in ASCII, where every such character becomes a visible escape (``\\u001b``,
    ``\\n``, ``\\r``). Distinct strings stay distinct: a plain string never starts with a quote.
    """
    plain = name.isprintable() and not any(c in name for c in " \"'=,;()[]{}")
    return name if plain else json.dumps(name)


def array_summary(array: np.ndarray) -> dict:
    """Shape, range and sparsity of an array: what a person wants to know about a weight."""
    summary = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if array.size:
        summary.update(min=float(array.min()), max=float(array.max()),
                       sparsity=float(1.0 - np.count_nonzero(array) / array.size))
    return summary


def _value_text(value) -> str:
    """A parameter in a few characters: the value when uniform, else its range."""
    if isinstance(value, np.ndarray):
        if value.size and np.all(value == value.flat[0]):
            return _number(value.flat[0])
        if not value.size:
            return "[]"
        return f"[{_number(value.min())}..{_number(value.max())}]"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, str):
        return show_name(value)
    return str(value)


def _jsonable(value):
    """``value`` as standard JSON: arrays summarised, and a non-finite number (only a hand-made
    annotation holds one) as its text, since JSON has no NaN or Infinity."""
    if isinstance(value, np.ndarray):
        return _jsonable(array_summary(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def node_summary(graph: Graph, node: Node) -> dict:
    fields = node.op.fields()
    return {
        "name": node.name,
        "op": node.op.kind,
        "input_shape": None if node.input_shape is None else list(node.input_shape),
        "output_shape": None if node.output_shape is None else list(node.output_shape),
        "params": {k: _jsonable(v) for k, v in fields.items() if k not in _WEIGHTS and v is not None},
        "weights": {k: array_summary(v) for k, v in fields.items() if k in _WEIGHTS and v is not None},
        "annotations": _jsonable(node.annotations),
    }


def to_json(graph: Graph) -> str:
    document = {
        "name": graph.name, "dt": graph.dt, "metadata": _jsonable(graph.metadata),
        "inputs": graph.inputs, "outputs": graph.outputs,
        "nodes": [node_summary(graph, n) for n in graph],
        "edges": [{"source": s, "target": t, "recurrent": (s, t) in graph.recurrent_edges} for s, t in graph.edges],
    }
    return json.dumps(document, indent=2, allow_nan=False)


def _params_text(node: Node) -> str:
    return " ".join(f"{k}={_value_text(v)}" for k, v in node.op.fields().items()
                    if k not in _WEIGHTS and v is not None and not (k == "shape"))


def _weights_text(node: Node) -> str:
    parts = []
    for key in _WEIGHTS:
        array = node.op.fields().get(key)
        if array is not None:
            s = array_summary(array)
            parts.append(f"{key}{_shape(array.shape)} [{_number(s['min'])}, {_number(s['max'])}] "
                         f"sparsity={s['sparsity']:.2f}" if array.size else f"{key}{_shape(array.shape)}")
    return " ".join(parts)


#: The most characters one annotation takes on a line of the text dump; the JSON dump holds it whole.
ANNOTATION_WIDTH = 120
#: The most items of a list that the text dump shows before it counts the rest.
LIST_ITEMS = 3


def _brief(value) -> str:
    """An annotation's value in a few characters: numbers to 6 digits, strings through show_name,
    arrays as dtype(shape)=value or =[min..max], dicts as {key=value ...}, lists by their first
    LIST_ITEMS items and how many more there are."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{_shape(value.shape)}" + (f"={_value_text(value)}" if value.size else "")
    if isinstance(value, dict):
        return "{" + " ".join(f"{show_name(str(k))}={_brief(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        items = [_brief(v) for v in value[:LIST_ITEMS]] + ([f"+{len(value) - LIST_ITEMS} more"] if len(value) > LIST_ITEMS else [])
        return "[" + ", ".join(items) + "]"
    if isinstance(value, str):
        return show_name(value)
    if isinstance(value, (float, np.floating)):
        return _number(value)
    return str(value)


def _annotations_text(node: Node) -> str:
    def cut(text: str) -> str:
        return text if len(text) <= ANNOTATION_WIDTH else text[: ANNOTATION_WIDTH - 3] + "..."

    return " ".join(cut(f"@{show_name(k)}={_brief(v)}") for k, v in node.annotations.items())


def to_text(graph: Graph) -> str:
    header = ["#", "node", "op", "in", "out", "parameters", "weights", "annotations"]
    rows = [[str(i), show_name(n.name), n.op.kind, _shape(n.input_shape), _shape(n.output_shape),
             _params_text(n), _weights_text(n), _annotations_text(n)] for i, n in enumerate(graph)]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = [f"graph {show_name(graph.name or 'main')}  dt={_number(graph.dt)} s  nodes={len(graph)}  "
             f"edges={len(graph.edges)}  inputs={','.join(map(show_name, graph.inputs))}  "
             f"outputs={','.join(map(show_name, graph.outputs))}"]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    lines.append("edges:")
    for s, t in graph.edges:
        note = "  (recurrent: carries the previous step)" if (s, t) in graph.recurrent_edges else ""
        lines.append(f"  {show_name(s)} -> {show_name(t)}{note}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    """A DOT string of ``text``, whose model strings went through ``show_name`` already; the only
    newlines left are the label's own line breaks, written as DOT's ``\\n``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_id(name: str) -> str:
    return _dot_quote(show_name(name))


def to_dot(graph: Graph) -> str:
    lines = [f"digraph {_dot_id(graph.name or 'main')} {{", "  rankdir=TB;", "  node [shape=box, fontname=monospace];"]
    for n in graph:
        label = f"{show_name(n.name)}\n{n.op.kind} {_shape(n.input_shape)} -> {_shape(n.output_shape)}"
        details = _weights_text(n)
        lines.append(f"  {_dot_id(n.name)} [label={_dot_quote(label + (chr(10) + details if details else ''))}];")
    for s, t in graph.edges:
        style = ' [style=dashed, label="t-1"]' if (s, t) in graph.recurrent_edges else ""
        lines.append(f"  {_dot_id(s)} -> {_dot_id(t)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


FORMATS = {"text": to_text, "json": to_json, "dot": to_dot}
