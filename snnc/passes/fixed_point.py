"""The frame shared by the passes that write a target's integers into a population-form graph."""

from __future__ import annotations

from typing import ClassVar

from snnc.errors import IRError
from snnc.ir import IF, LIF, CubaLIF, Graph, Input, Output
from snnc.passes import Pass
from snnc.passes.fuse import is_population_form
from snnc.targets import Target

#: The neurons that every fixed-point target here runs.
SPIKING = (LIF, IF, CubaLIF)


class QuantizePopulations(Pass):
    """Checks the graph, walks its populations and keeps their reports; a subclass sets
    ``arithmetic`` and ``chip`` (how messages name the chip's models) and writes one population's
    integers in ``population``. ``prepare`` may check settings of the whole graph first."""

    arithmetic: ClassVar[str]
    chip: ClassVar[str]

    def __init__(self, target: Target):
        if target.arithmetic != self.arithmetic:
            raise ValueError(f"{type(self).__name__} needs a {self.arithmetic}-arithmetic target, got {target.name}")
        self.target = target
        self.populations: dict[str, dict] = {}

    def report(self) -> dict:
        return {"target": self.target.name, "populations": self.populations}

    def prepare(self, graph: Graph) -> None:
        """Check what the whole graph must satisfy before any population is written."""

    def population(self, graph: Graph, node) -> None:
        raise NotImplementedError

    def run(self, graph: Graph) -> Graph:
        if not is_population_form(graph):
            raise IRError(None, f"{self.name} needs a graph in population form: run fuse-synapses first")
        self.prepare(graph)
        graph = graph.copy(share_arrays=True)  # only annotations are written
        self.populations = {}
        for node in graph:
            if isinstance(node.op, Output):
                for source in graph.predecessors(node.name):
                    if not isinstance(graph[source].op, (*SPIKING, Input)):
                        raise IRError(node.name, f"reads {source!r}, but {self.chip} outputs are spikes of a "
                                                 "spiking population or an input")
            elif node.op.stateful:
                if not isinstance(node.op, SPIKING):
                    raise IRError(node.name, f"{node.op.kind} does not spike; {self.chip}'s fixed-point models "
                                             "are spiking LIF, IF and CubaLIF populations")
                self.population(graph, node)
        graph.metadata = {**graph.metadata, "arithmetic": self.arithmetic, "target": self.target.name}
        return graph
