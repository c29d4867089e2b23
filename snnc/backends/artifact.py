"""The artifact: the directory ``snnc compile`` writes, with a manifest that names what made it.

The manifest records the snnc version, the target, the source model's SHA-256 and each file's
SHA-256; opening an artifact checks them, so a truncated or edited artifact is refused. An artifact
is written in a temporary directory beside the destination and renamed into place, so a failed
compile leaves no half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import snnc
from snnc.errors import SnncError
from snnc.ir import Graph, load, verify

MANIFEST = "manifest.json"
IR_FILE = "model.snnir"
#: The target description the artifact was compiled for, copied in before any emitter runs.
TARGET_FILE = "target.toml"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ArtifactWriter:
    """Collects files in a temporary directory; ``commit`` writes the manifest and moves it into place."""

    def __init__(self, destination: Path, target: str, source: Path):
        self.destination = Path(destination)
        self.target, self.source = target, Path(source)
        if self.destination.exists() and not (self.destination / MANIFEST).exists():
            raise SnncError(f"-o {self.destination}: exists and is not an snnc artifact; choose a new path")
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix=".snnc-", dir=self.destination.parent))

    def path(self, name: str) -> Path:
        return self.directory / name

    def commit(self, extra: dict | None = None) -> Path:
        files = sorted(p.name for p in self.directory.iterdir())
        manifest = {
            "snnc_version": snnc.__version__, "target": self.target,
            "source": {"name": self.source.name, "sha256": sha256(self.source) if self.source.is_file() else None},
            "files": {name: sha256(self.directory / name) for name in files},
            **(extra or {}),
        }
        (self.directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if self.destination.exists():
            shutil.rmtree(self.destination)
        os.replace(self.directory, self.destination)
        return self.destination

    def abort(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None:
            self.abort()


class Artifact:
    """An artifact directory, checked against its manifest."""

    def __init__(self, directory: Path, manifest: dict):
        self.directory, self.manifest = directory, manifest

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @classmethod
    def open(cls, directory: str | Path) -> "Artifact":
        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            files = manifest["files"]
        except (OSError, ValueError, KeyError, TypeError):
            raise SnncError(f"{directory}: not an snnc artifact (no readable {MANIFEST}); make one with snnc compile") from None
        for name, digest in files.items():
            path = directory / name
            if not path.is_file() or sha256(path) != digest:
                raise SnncError(f"{directory}: file {name!r} is missing or changed since compile; compile again")
        return cls(directory, manifest)

    def graph(self) -> Graph:
        return verify(load(self.directory / IR_FILE))
