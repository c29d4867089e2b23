"""What the backends that generate Python programs share: the one writer of literals, generated
identifiers, and the walk over a population-form graph that writes the program's body.

No text of a model, a target file or an annotation reaches generated code as code: identifiers are
generated (``population_0``, ...); every string and number is written by ``literal``, which keeps it
inert in an expression, a comment and a docstring alike; and the graph is checked against its
arithmetic's contract (``snnc.ir.contracts``: its population form, and every annotation field by
field against the target's formats) before the first line is written."""

from __future__ import annotations

import math

import numpy as np

from snnc.errors import SnncError
from snnc.ir import Affine, Graph, Input, Output
from snnc.ir.contracts import SPIKING, check_fixed_point
from snnc.targets import Target

#: Characters a string literal keeps as they are: printable ASCII but the quotes and the backslash.
_PLAIN = frozenset(map(chr, range(0x20, 0x7F))) - set("'\"\\")


def _escape(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def literal(value) -> str:
    """``value`` as Python source that evaluates to it and is inert wherever it is written: in an
    expression, in a ``#`` comment or in a docstring. A string becomes single-quoted printable ASCII
    in which quotes, backslashes, control and non-ASCII characters are ``\\x``/``\\u``/``\\U``
    escapes, so no quote, line break or backslash of the text can end the literal, the comment or the
    docstring around it. An integer (not a bool) is written as its digits, a float only if finite, a
    tuple of these as a tuple; anything else is refused: a value must be checked before it is written."""
    if isinstance(value, str):
        return "'" + "".join(c if c in _PLAIN else _escape(c) for c in value) + "'"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and math.isfinite(value):
        return repr(float(value))
    if isinstance(value, tuple):
        items = [literal(item) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    raise TypeError(f"no literal for a {type(value).__name__}: check the value before it is written")


class GeneratedProgram:
    """A program built node by node: first every input and population (``_input``, ``_population``),
    then every synapse group and output that joins them (``_synapse``, ``_output``), each appending
    to ``lines``. A subclass names the arithmetic it needs, whose annotation it writes the program
    from, and writes the rest of the file. The graph is checked against that arithmetic's contract
    for ``target``'s formats when the program is made, before any line is written."""

    arithmetic: str
    needs: str

    def __init__(self, graph: Graph, target: Target):
        arithmetic = graph.metadata.get("arithmetic")
        # A file's metadata may hold an array, which == compares element by element.
        if not (isinstance(arithmetic, str) and arithmetic == self.arithmetic):
            raise SnncError(f"{self.needs} needs a graph quantized for a {self.arithmetic} target")
        #: Each population's and synapse group's annotation, checked.
        self.fixed = check_fixed_point(graph, target.formats)
        self.graph = graph
        self.ids: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.lines: list[str] = []

    def identifier(self, name: str, kind: str) -> str:
        """The generated identifier of node ``name``: ``kind`` and a number."""
        if name not in self.ids:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.ids[name] = f"{kind}_{self.counts[kind] - 1}"
        return self.ids[name]

    def body(self) -> str:
        """Walk the graph and return the lines it wrote, indented for a function body."""
        # Nodes first, then what joins them, so that every identifier a line uses is already defined.
        stages = (((Input, self._input), (SPIKING, self._population)),
                  ((Affine, self._synapse), (Output, self._output)))
        for stage in stages:
            for name in self.graph.schedule:
                node = self.graph[name]
                for kinds, write in stage:
                    if isinstance(node.op, kinds):
                        write(node)
        return "\n".join(f"    {line}" if line else "" for line in self.lines)

    def _input(self, node) -> None:
        raise NotImplementedError

    def _population(self, node) -> None:
        raise NotImplementedError

    def _synapse(self, node) -> None:
        raise NotImplementedError

    def _output(self, node) -> None:
        raise NotImplementedError
