"""What the backends that generate Python programs share: model strings kept inert, generated
identifiers, and the walk over a population-form graph that writes the program's body.

Model strings never reach generated code as code: identifiers are generated (``population_0``,
...), and node names appear only as Python string literals (``literal``)."""

from __future__ import annotations

from snnc.errors import SnncError
from snnc.ir import NEURONS, Affine, Graph, Input, Output


def literal(text: str) -> str:
    """A model string as a Python literal: quotes, newlines and code stay inert data."""
    return repr(str(text))


class GeneratedProgram:
    """A program built node by node: first every input and population (``_input``, ``_population``),
    then every synapse group and output that joins them (``_synapse``, ``_output``), each appending
    to ``lines``. A subclass names the arithmetic it needs and writes the rest of the file."""

    arithmetic: str
    needs: str

    def __init__(self, graph: Graph):
        if graph.metadata.get("arithmetic") != self.arithmetic:
            raise SnncError(f"{self.needs} needs a graph quantized for a {self.arithmetic} target")
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
