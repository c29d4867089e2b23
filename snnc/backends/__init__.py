"""Backends: lower a verified IR graph for a target and emit what the target runs into an artifact.

Each target file names the passes that lower the graph for it (its ``pipeline``); its arithmetic
names the emitters that write its files. Every artifact also holds the lowered IR (``model.snnir``), which the reference simulator
runs, and the passes' reports (``passes.json``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from snnc.backends import lava, sim
from snnc.backends.artifact import TARGET_FILE, ArtifactWriter, check_destination
from snnc.backends.spinnaker import machine, pynn
from snnc.ir import Graph
from snnc.passes import PassManager
from snnc.passes.pipeline import PassOptions, build_pipeline
from snnc.progress import Progress
from snnc.targets import Target, load_target

#: The emitters of each arithmetic, after the lowered IR itself. The PyNN script's checks the
#: annotations the machine data is built from too, so it comes first.
EMITTERS = {"float": [], "loihi": [lava.emit], "spinnaker": [pynn.emit, machine.emit]}


def _plain(value):
    """numpy values in pass reports as JSON numbers and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to passes.json")


def lower(graph: Graph, target: Target, dump_dir: Path | None = None, passes: list[str] | None = None,
          options: PassOptions | None = None, progress: Progress | None = None) -> tuple[Graph, dict]:
    """Run the target's pipeline (or ``passes``) on ``graph``; return the lowered graph and the
    reports. ``progress`` hears of each pass."""
    manager = PassManager(build_pipeline(target, passes, options))
    return manager.run(graph, dump_dir, progress), manager.reports


def compile_graph(graph: Graph, target_name: str, source: Path, destination: Path, passes: list[str] | None = None,
                  dump_dir: Path | None = None, options: PassOptions | None = None,
                  progress: Progress | None = None) -> Path:
    """Lower ``graph`` for the target and write the artifact directory ``destination``, which is
    checked before the work starts."""
    check_destination(Path(destination))
    target = load_target(target_name)
    lowered, reports = lower(graph, target, dump_dir, passes, options, progress)
    lowered.metadata = {**lowered.metadata, "target": target.name}
    with ArtifactWriter(destination, target.name, source) as writer:
        sim.emit(lowered, writer)
        # The target travels with the artifact, so reports use the description it was compiled for.
        shutil.copyfile(target.path, writer.path(TARGET_FILE))
        writer.path("passes.json").write_text(json.dumps(reports, indent=2, default=_plain) + "\n")
        for emit in EMITTERS[target.arithmetic]:
            emit(lowered, writer)
        return writer.commit()
