"""Frontends: turn a model file into a verified IR graph."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

from snnc.errors import FrontendError, IRError, shown
from snnc.ir import Graph, load, verify

#: What ``load_model`` reads, by suffix.
FORMATS = {".nir": "NIR (HDF5)", ".onnx": "ONNX (one time step, or snnc's ai.snnc domain)", ".snnir": "snnc IR",
           "artifact directory": "an snnc compile output"}


def load_model(path: str | Path, dt: float | None = None, reset: str | None = None) -> Graph:
    """Read a model of any supported format, or the IR inside an artifact, as a verified graph.

    ``dt`` and ``reset`` apply to formats that do not store them (NIR; ``dt`` also to ONNX).
    """
    path = Path(path)
    dt = time_step(dt, "dt")
    if not path.exists():
        raise FrontendError(f"{path}: no such file or directory")
    if path.is_dir():
        from snnc.backends.artifact import Artifact

        return Artifact.open(path).graph()
    suffix = path.suffix.lower()
    if suffix == ".nir":
        from snnc.frontend.nir import load_nir

        return load_nir(path, dt=dt, reset=reset)
    if suffix == ".onnx":
        from snnc.frontend.onnx import load_onnx

        return load_onnx(path, dt=dt)
    if suffix == ".snnir":
        return verified(load(path), str(path))
    raise FrontendError(f"{path}: unknown model format {suffix or '(no suffix)'!r}; snnc reads "
                        + ", ".join(f"{k} ({v})" for k, v in FORMATS.items()))


def time_step(value, where: str) -> float | None:
    """``value`` as a time step in seconds (None stays None); anything but a finite number > 0 is
    refused with an error that starts with ``where`` (the flag, argument or metadata that gave it)."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    text = value if isinstance(value, numbers.Real) and not isinstance(value, bool) else shown(value)
    raise FrontendError(f"{where}={text}: the time step must be a finite number of seconds > 0")


def verified(graph: Graph, source: str) -> Graph:
    """``verify(graph)``, its errors naming ``source``, the model the graph was read from."""
    try:
        return verify(graph)
    except IRError as e:
        raise FrontendError(f"{source}: {e}") from None
