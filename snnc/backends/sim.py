"""The reference-simulator backend: the artifact holds the IR that ``snnc run`` interprets."""

from __future__ import annotations

from snnc.backends.artifact import IR_FILE, ArtifactWriter
from snnc.ir import Graph, save
from snnc.ir.printer import to_text


def emit(graph: Graph, writer: ArtifactWriter) -> None:
    save(graph, writer.path(IR_FILE))
    writer.path("ir.txt").write_text(to_text(graph))
