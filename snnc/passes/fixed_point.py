"""The frame shared by the passes that write a target's integers into a population-form graph."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from snnc.errors import IRError
from snnc.ir import Graph, Input, Output
from snnc.ir.contracts import SPIKING
from snnc.passes import Pass
from snnc.passes.fuse import is_population_form
from snnc.targets import Target


class QuantizePopulations(Pass):
    """Checks the graph, walks its populations and keeps their reports; a subclass sets
    ``arithmetic`` and ``chip`` (how messages name the chip's models) and writes one population's
    integers in ``population``. ``prepare`` may check settings of the whole graph first.

    A subclass chooses its scales so that every parameter fits the chip's formats together; a
    parameter that no scale holds goes through ``fit``, which refuses it (naming the node, the
    parameter, its value and the range the chip holds) unless ``allow_lossy`` (``--allow-lossy``).
    Then it is clipped, and the pass appends one line per node and parameter with the measured
    effect to ``warnings``: the report's ``warnings`` list, which ``passes.json`` keeps and the
    command line prints on stderr. Rounding onto the chip's grid is not clipping: its errors are in
    the report's numbers."""

    arithmetic: ClassVar[str]
    chip: ClassVar[str]

    def __init__(self, target: Target, allow_lossy: bool = False):
        if target.arithmetic != self.arithmetic:
            raise ValueError(f"{type(self).__name__} needs a {self.arithmetic}-arithmetic target, got {target.name}")
        self.target, self.allow_lossy = target, allow_lossy
        self.populations: dict[str, dict] = {}
        self.warnings: list[str] = []

    def report(self) -> dict:
        return {"target": self.target.name, "populations": self.populations, "warnings": self.warnings}

    def fit(self, node: str, parameter: str, values, low: float, high: float, unit: str = "", items: str = "neurons",
            given=None) -> np.ndarray:
        """``values`` (in the units ``unit`` names), which the chip holds from ``low`` to ``high``
        at the scale that holds the most: unchanged if they all lie there; else an IRError naming
        ``node``, the value farthest outside (and ``given``, the same values as the IR holds them,
        where the units differ) and the range; or, with ``allow_lossy``, clipped to the range with a
        warning that counts the clipped ``items`` and gives the largest error."""
        values = np.asarray(values, np.float64)
        beyond = np.maximum(values - high, low - values)
        if not np.any(beyond > 0):
            return values
        held = f"{low:.6g} to {high:.6g}{unit}"
        if not self.allow_lossy:
            worst = int(np.argmax(beyond))
            value = f"{values.flat[worst]:.6g}" if given is None else \
                f"{np.broadcast_to(given, values.shape).flat[worst]:.6g} ({values.flat[worst]:.6g}{unit})"
            raise IRError(node, f"{parameter} {value} is beyond what {self.target.name} holds: {held}; give "
                                f"--allow-lossy to clip it to that range with a warning")
        clipped = int(np.count_nonzero(beyond > 0))
        counted = values.size if items == "neurons" else int(np.count_nonzero(values))
        self.warnings.append(f"node {node!r}: {parameter} clipped to {held} in {clipped} of {counted} {items} "
                             f"({clipped / counted:.1%}), largest error {beyond.max():.6g}{unit}")
        return np.clip(values, low, high)

    def prepare(self, graph: Graph) -> None:
        """Check what the whole graph must satisfy before any population is written."""

    def population(self, graph: Graph, node) -> None:
        raise NotImplementedError

    def run(self, graph: Graph) -> Graph:
        if not is_population_form(graph):
            raise IRError(None, f"{self.name} needs a graph in population form: run fuse-synapses first")
        self.prepare(graph)
        graph = graph.copy(share_arrays=True)  # only annotations are written
        self.populations, self.warnings = {}, []
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
