"""Backends: lower a verified IR graph for a target and emit what the target runs into an artifact.

Each target's arithmetic names the passes that lower the graph for it and the emitters that write
its files. Every artifact also holds the lowered IR (``model.snnir``), which the reference simulator
runs, and the passes' reports (``passes.json``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from snnc.backends import lava, sim
from snnc.backends.artifact import ArtifactWriter
from snnc.ir import Graph
from snnc.passes import Pass, PassManager
from snnc.passes.fuse import FuseSynapses
from snnc.passes.loihi import QuantizeLoihi
from snnc.passes.spinnaker import QuantizeSpiNNaker
from snnc.targets import Target, load_target


def pipeline(target: Target) -> list[Pass]:
    """The passes that lower a graph for ``target``."""
    if target.arithmetic == "loihi":
        return [FuseSynapses(), QuantizeLoihi(target)]
    if target.arithmetic == "spinnaker":
        return [FuseSynapses(), QuantizeSpiNNaker(target)]
    return []


TARGET_FILE = "target.toml"

#: The emitters of each arithmetic, after the lowered IR itself.
EMITTERS = {"float": [], "loihi": [lava.emit], "spinnaker": []}


def _plain(value):
    """numpy values in pass reports as JSON numbers and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to passes.json")


def lower(graph: Graph, target: Target, dump_dir: Path | None = None) -> tuple[Graph, dict]:
    manager = PassManager(pipeline(target))
    return manager.run(graph, dump_dir), manager.reports


def compile_graph(graph: Graph, target_name: str, source: Path, destination: Path) -> Path:
    """Lower ``graph`` for the target and write the artifact directory ``destination``."""
    target = load_target(target_name)
    lowered, reports = lower(graph, target)
    lowered.metadata = {**lowered.metadata, "target": target.name}
    with ArtifactWriter(destination, target.name, source) as writer:
        sim.emit(lowered, writer)
        # The target travels with the artifact, so reports use the description it was compiled for.
        shutil.copyfile(target.path, writer.path(TARGET_FILE))
        writer.path("passes.json").write_text(json.dumps(reports, indent=2, default=_plain) + "\n")
        for emit in EMITTERS[target.arithmetic]:
            emit(lowered, writer)
        return writer.commit()
