"""Backends: turn a verified IR graph into what a target runs, inside an artifact directory."""

from __future__ import annotations

from pathlib import Path

from snnc.backends import sim
from snnc.backends.artifact import ArtifactWriter
from snnc.errors import SnncError
from snnc.ir import Graph

#: The emitter of each target.
BACKENDS = {"sim": sim.emit}


def compile_graph(graph: Graph, target: str, source: Path, destination: Path) -> Path:
    """Emit ``graph`` for ``target`` into the artifact directory ``destination``."""
    if target not in BACKENDS:
        raise SnncError(f"--target {target}: unknown target; available: {', '.join(sorted(BACKENDS))}")
    with ArtifactWriter(destination, target, source) as writer:
        BACKENDS[target](graph, writer)
        return writer.commit()
