"""Passes: small units that take a verified graph and return a verified graph.

Like xDSL's pass manager, ``PassManager`` runs passes in order and runs the verifier after each one,
so a broken pass is caught where it broke, with the node it broke named. Each pass may leave a
report (a JSON-able dict) that lands in the artifact.
"""

from __future__ import annotations

import time
from pathlib import Path

from snnc.errors import IRError
from snnc.ir import Graph, verify
from snnc.ir.printer import to_text
from snnc.progress import Progress


class Pass:
    """A graph-to-graph transformation. Subclasses set ``name`` and implement ``run``."""

    name: str = ""

    def run(self, graph: Graph) -> Graph:
        raise NotImplementedError

    def report(self) -> dict:
        """What the last run did, for ``passes.json``."""
        return {}


class PassManager:
    def __init__(self, passes: list[Pass]):
        self.passes = passes
        self.reports: dict[str, dict] = {}
        #: seconds each pass took with the verify after it, by pass name
        self.seconds: dict[str, float] = {}

    def run(self, graph: Graph, dump_dir: Path | None = None, progress: Progress | None = None) -> Graph:
        """Run every pass on a copy of ``graph``, verifying after each; with ``dump_dir``, write the
        IR text before the first pass and after each pass as ``NN-name.txt``. ``progress`` hears of
        each pass as it starts, and of the end."""
        graph = verify(graph.copy())
        if dump_dir is not None:
            dump_dir.mkdir(parents=True, exist_ok=True)
            (dump_dir / "00-input.txt").write_text(to_text(graph))
        for index, each in enumerate(self.passes, start=1):
            if progress is not None:
                progress(index - 1, len(self.passes), each.name)
            started = time.perf_counter()
            graph = each.run(graph)
            try:
                verify(graph)
            except IRError as e:
                raise IRError(e.node, f"after pass {each.name}: {e}") from None
            self.seconds[each.name] = time.perf_counter() - started
            self.reports[each.name] = each.report()
            if dump_dir is not None:
                (dump_dir / f"{index:02d}-{each.name}.txt").write_text(to_text(graph))
        if progress is not None:
            progress(len(self.passes), len(self.passes), "")
        return graph
