"""What the backends that generate Python programs share: the one writer of literals, the check of
the annotations a program is written from, generated identifiers, and the walk over a
population-form graph that writes the program's body.

No text of a model, a target file or an annotation reaches generated code as code: identifiers are
generated (``population_0``, ...); every string and number is written by ``literal``, which keeps it
inert in an expression, a comment and a docstring alike; and every annotation is checked against the
fields its backend reads (``Field``) before the first line is written."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from snnc.errors import IRError, SnncError
from snnc.ir import NEURONS, Affine, Graph, Input, Output

#: Values of an annotation array checked for a step at a time: a few MB of remainders, also for a
#: weight matrix of 10**8 synapses.
_BLOCK = 1 << 20
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


def _shown(value) -> str:
    """A value in an error message: short, on one line."""
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} and shape {value.shape}"
    text = repr(value)
    return f"{text[:40]}... ({type(value).__name__})" if len(text) > 40 else f"{text} ({type(value).__name__})"


@dataclass(frozen=True)
class Field:
    """One field of an annotation that a program is written from: one integer (``shape`` None) or an
    integer array of ``shape`` (a tuple, or "neurons": one per neuron of the node, "synapses": the
    node's weight matrix), every value from ``low`` to ``high`` and a multiple of ``step`` (a power
    of two); with ``names``, one of those strings instead. ``optional`` admits None."""

    low: int = 0
    high: int = 0
    shape: tuple[int, ...] | str | None = None
    step: int = 1
    names: tuple[str, ...] = ()
    optional: bool = False

    def valid(self, node) -> str:
        """What a valid value is, as the end of an error message."""
        if self.names:
            return "give one of " + ", ".join(map(repr, self.names))
        if self.shape is None:
            text = f"an integer from {self.low} to {self.high}"
        else:
            text = f"an array of shape {self.expected_shape(node)} of integers from {self.low} to {self.high}"
        if self.step > 1:
            text += f", multiples of {self.step}"
        return "give " + ("None or " if self.optional else "") + text

    def expected_shape(self, node) -> tuple[int, ...]:
        if self.shape == "neurons":
            return (int(np.prod(node.output_shape)),)
        return tuple(node.op.weight.shape) if self.shape == "synapses" else self.shape

    def check(self, node, where: str, value) -> None:
        """Refuse ``value`` unless it is valid, naming the node and the field ``where``."""
        def refuse(what: str):
            raise IRError(node.name, f"annotation {where} {what}; {self.valid(node)}")

        if value is None and self.optional:
            return
        if self.names:
            if not (isinstance(value, str) and value in self.names):
                refuse(f"is {_shown(value)}")
            return
        if self.shape is None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                refuse(f"is {_shown(value)}")
            if not (self.low <= int(value) <= self.high and int(value) % self.step == 0):
                refuse(f"is {int(value)}")
            return
        if not isinstance(value, np.ndarray):
            refuse(f"is {_shown(value)}")
        if value.dtype.kind not in "iu":
            refuse(f"is an array of {value.dtype}")
        if value.shape != self.expected_shape(node):
            refuse(f"is an array of shape {value.shape}")
        if value.size:
            smallest, largest = value.min(), value.max()
            if smallest < self.low or largest > self.high:
                refuse(f"holds {int(smallest if smallest < self.low else largest)}")
        flat = value.reshape(-1)
        for start in range(0, flat.size if self.step > 1 else 0, _BLOCK):
            # A bit mask, as step is a power of two: an integer division would take seconds on 10**8 weights.
            remainders = np.bitwise_and(flat[start:start + _BLOCK], self.step - 1)
            if remainders.any():
                refuse(f"holds {int(flat[start + np.flatnonzero(remainders)[0]])}")


class GeneratedProgram:
    """A program built node by node: first every input and population (``_input``, ``_population``),
    then every synapse group and output that joins them (``_synapse``, ``_output``), each appending
    to ``lines``. A subclass names the arithmetic it needs, whose annotation it writes the program
    from, gives that annotation's fields (``fields``) and writes the rest of the file. Every
    annotation is checked when the program is made, before any line is written."""

    arithmetic: str
    needs: str

    def __init__(self, graph: Graph):
        if graph.metadata.get("arithmetic") != self.arithmetic:
            raise SnncError(f"{self.needs} needs a graph quantized for a {self.arithmetic} target")
        self.graph = graph
        self.ids: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.lines: list[str] = []
        #: Each population's and synapse group's annotation, checked.
        self.fixed = {node.name: self._checked(node) for node in graph if isinstance(node.op, (*NEURONS, Affine))}

    def fields(self, node, fixed: dict) -> dict[str, Field]:
        """The fields of ``node``'s annotation ``fixed`` (a population's or a synapse group's)."""
        raise NotImplementedError

    def _checked(self, node) -> dict:
        """``node``'s annotation, unless it lacks a field the program reads, holds one it does not,
        or holds an invalid value: then one line names the node, the field and what is valid."""
        key = self.arithmetic
        fixed = node.annotations.get(key)
        if not isinstance(fixed, dict):
            state = "is missing" if fixed is None else f"is not a table of fields but {_shown(fixed)}"
            raise IRError(node.name, f"annotation {key} {state}; {self.needs} needs one on every population and "
                                     "synapse group")
        fields = self.fields(node, fixed)
        for name, field in fields.items():
            if name not in fixed:
                raise IRError(node.name, f"annotation {key} has no field {name}; {field.valid(node)}")
            field.check(node, f"{key}.{name}", fixed[name])
        unknown = [name for name in fixed if name not in fields]
        if unknown:
            raise IRError(node.name, f"annotation {key} holds {unknown[0]!r:.40}, which is not one of its fields: "
                                     f"{', '.join(fields)}")
        return fixed

    def identifier(self, name: str, kind: str) -> str:
        """The generated identifier of node ``name``: ``kind`` and a number."""
        if name not in self.ids:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.ids[name] = f"{kind}_{self.counts[kind] - 1}"
        return self.ids[name]

    def body(self) -> str:
        """Walk the graph and return the lines it wrote, indented for a function body."""
        # Nodes first, then what joins them, so that every identifier a line uses is already defined.
        stages = (((Input, self._input), (NEURONS, self._population)),
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
