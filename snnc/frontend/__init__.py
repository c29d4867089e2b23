"""Frontends: turn a model file into a verified IR graph."""

from __future__ import annotations

from pathlib import Path

from snnc.errors import FrontendError
from snnc.ir import Graph, load, verify

#: What ``load_model`` reads, by suffix.
FORMATS = {".nir": "NIR (HDF5)", ".onnx": "ONNX (one time step, or snnc's ai.snnc domain)", ".snnir": "snnc IR",
           "artifact directory": "an snnc compile output"}


def load_model(path: str | Path, dt: float | None = None, reset: str | None = None) -> Graph:
    """Read a model of any supported format, or the IR inside an artifact, as a verified graph.

    ``dt`` and ``reset`` apply to formats that do not store them (NIR; ``dt`` also to ONNX).
    """
    path = Path(path)
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
        return verify(load(path))
    raise FrontendError(f"{path}: unknown model format {suffix or '(no suffix)'!r}; snnc reads "
                        + ", ".join(f"{k} ({v})" for k, v in FORMATS.items()))
