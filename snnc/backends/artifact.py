"""The artifact: the directory ``snnc compile`` writes, with a manifest that names what made it.

The manifest records the snnc version, the target, the source model's SHA-256 and each file's
SHA-256. An artifact is sealed: ``Artifact.open`` reads a manifest of at most ``MANIFEST_LIMIT``
bytes whose fields all have their types, and accepts the directory only if the manifest lists
exactly the regular files it holds, by plain names (no paths, links or subdirectories: an artifact
has none), the files its reader needs are among them, and every digest matches. So nothing outside
the directory is read, and an edited, emptied, padded or truncated artifact is refused in one line
that names the artifact and the file.

A sealed artifact is only as trustworthy as whoever last rewrote its manifest, so every file in it
is still untrusted input: ``read_json`` reads one of its JSON files within bounds, and each reader
checks the structure it relies on and reports a file that lacks it through ``malformed``.

An artifact is written in a temporary directory beside the destination and renamed into place, so
a failed compile leaves nothing behind; compile replaces only an artifact, never a directory holding
anything else. Nothing written depends on when, where or in which process it was written, so two
compiles of the same inputs are byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import snnc
from snnc.errors import SnncError
from snnc.files import MEMORY_BUDGET_VARIABLE, check_writable_place, memory_budget
from snnc.ir import Graph, load, verify

MANIFEST = "manifest.json"
IR_FILE = "model.snnir"
#: The target description the artifact was compiled for, copied in before any emitter runs.
TARGET_FILE = "target.toml"
#: A manifest lists about ten files in under 2 KB; a larger file is not one, and is not read.
MANIFEST_LIMIT = 1 << 16
#: The manifest's fields, every one required and no other allowed.
FIELDS = ("snnc_version", "target", "source", "files")
#: What every reader needs: the lowered IR, and the target it was lowered for (which reports price).
NEEDED = (IR_FILE, TARGET_FILE)
LAVA_FILES = ("network.py", "params.npz", "network.json", "run_lava.py")
MACHINE_FILES = ("spinnaker_machine.json", "spinnaker_machine.npz")
#: The files each ``snnc run --backend`` runs from besides those, and how to get an artifact with them.
BACKEND_FILES = {"sim": ((), ""), "lava": (LAVA_FILES, "compile it for a Loihi target (--target loihi2)"),
                 "spinnaker": (MACHINE_FILES, "compile it with --target spinnaker")}
#: Longest file name a directory can hold (NAME_MAX, in bytes).
NAME_LIMIT = 255
#: Parsed, a JSON document takes up to about 40 times its size (lists nested in lists, measured);
#: one is read only if this many times its size fits snnc's memory budget.
JSON_EXPANSION = 48
_DIGEST = re.compile(r"[0-9a-f]{64}")


class _Unsealed(SnncError):
    """Why a directory is not a sealed artifact, in words relative to it; callers say which directory."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_digest(value) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def _plain(name: str) -> bool:
    """A name that can only mean a file directly in the artifact: no separator, not '.' or '..',
    no NUL, not too long for a directory entry, and not the manifest, which cannot list itself."""
    return (name not in ("", ".", "..", MANIFEST) and not any(c in name for c in "/\\\0")
            and len(name.encode("utf-8", "surrogatepass")) <= NAME_LIMIT)


def _shown(name: str) -> str:
    return repr(name) if len(name) <= NAME_LIMIT else repr(name[:NAME_LIMIT]) + "..."


def _unique(pairs: list) -> dict:
    """A JSON object whose keys are all different: with a key twice, two readers could disagree on
    which value holds."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"{_shown(key)} appears twice")
        result[key] = value
    return result


def read_manifest(directory: Path) -> dict:
    """The manifest of ``directory`` with every field of its type and plain file names, its size
    checked before it is read; ``_Unsealed`` otherwise."""
    path = directory / MANIFEST
    try:
        info = path.lstat()
    except OSError:
        raise _Unsealed(f"no {MANIFEST}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _Unsealed(f"{MANIFEST} is not a regular file (a link or a directory)")
    if info.st_size > MANIFEST_LIMIT:
        raise _Unsealed(f"{MANIFEST} is {info.st_size} bytes, but a manifest has at most {MANIFEST_LIMIT}")
    try:
        with open(path, "rb") as file:
            manifest = _parse(file.read(MANIFEST_LIMIT + 1))
    except (OSError, ValueError) as e:
        raise _Unsealed(f"{MANIFEST} is not a readable manifest ({_reason(e)})") from None
    _check_fields(manifest)
    return manifest


def _parse(data: bytes):
    """The JSON document ``data``, whose objects hold each key once; ValueError otherwise, also for
    nesting deeper than the parser's recursion limit."""
    try:
        return json.loads(data, object_pairs_hook=_unique)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def malformed(directory: Path, name: str, what: str, why: str) -> SnncError:
    """The error for a file ``name`` of the artifact in ``directory`` that is not ``what`` it should
    be, and ``why``: one line naming both, as every reader of an artifact's files reports one."""
    return SnncError(f"{directory}: {name} is not {what} ({why}); compile it again")


def read_json(directory: Path, name: str, what: str):
    """The JSON document in the artifact's file ``name`` (``what`` it should be, for messages),
    refused by ``malformed`` if it is not JSON, holds a key twice in an object (two readers could
    disagree on which value holds), nests too deeply, or is so large that ``JSON_EXPANSION`` times its
    size exceeds snnc's memory budget (checked before it is read). Its structure is the caller's to
    check."""
    try:
        with open(directory / name, "rb") as file:
            size, budget = os.fstat(file.fileno()).st_size, memory_budget()
            if size * JSON_EXPANSION > budget:
                raise ValueError(f"{size} bytes, which parsed would take more than snnc's memory budget of "
                                 f"{budget} bytes; {MEMORY_BUDGET_VARIABLE} sets it")
            return _parse(file.read())
    except (OSError, ValueError) as e:
        raise malformed(directory, name, what, _reason(e)) from None


def _check_fields(manifest) -> None:
    """Refuse a manifest with a field missing, unknown or of the wrong type, naming the field."""
    if not isinstance(manifest, dict):
        raise _Unsealed(f"{MANIFEST} is not a JSON object with the fields {', '.join(FIELDS)}")
    for field in manifest:
        if field not in FIELDS:
            raise _Unsealed(f"{MANIFEST}: unknown field {_shown(field)}; a manifest has {', '.join(FIELDS)}")
    for field in FIELDS:
        if field not in manifest:
            raise _Unsealed(f"{MANIFEST}: no field {field!r}")
    for field in ("snnc_version", "target"):
        if not isinstance(manifest[field], str) or not manifest[field]:
            raise _Unsealed(f"{MANIFEST}: field {field!r} must be a non-empty string")
    source = manifest["source"]
    if not (isinstance(source, dict) and set(source) == {"name", "sha256"} and isinstance(source["name"], str)
            and (source["sha256"] is None or _is_digest(source["sha256"]))):
        raise _Unsealed(f"{MANIFEST}: field 'source' must be {{\"name\": a file name, \"sha256\": 64 lower-case "
                        "hex digits or null}")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise _Unsealed(f"{MANIFEST}: field 'files' must map each file's name to its SHA-256")
    for name, digest in files.items():
        if not _plain(name):
            raise _Unsealed(f"{MANIFEST} lists {_shown(name)}, but a listed file needs a plain file name (not a "
                            "path, '.', '..' or the manifest itself)")
        if not _is_digest(digest):
            raise _Unsealed(f"{MANIFEST}: the digest of file {name!r} is not a SHA-256 (64 lower-case hex digits)")


def _check_listing(directory: Path, files: dict) -> None:
    """``directory`` holds the manifest and exactly the files it lists, each a regular file."""
    present = set()
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name == MANIFEST:
                continue
            if entry.name not in files:
                raise _Unsealed(f"file {_shown(entry.name)} is not listed in {MANIFEST}")
            if not entry.is_file(follow_symlinks=False):
                raise _Unsealed(f"{_shown(entry.name)} is not a regular file (a link or a directory)")
            present.add(entry.name)
    for name in sorted(files):
        if name not in present:
            raise _Unsealed(f"file {name!r}, listed in {MANIFEST}, is missing")


def check_destination(destination: Path) -> None:
    """Refuse, before any work, an output path that compile could not fill or must not replace: a
    link, a file, a directory that is not an artifact or holds files its manifest does not list
    (someone's own), or a path under a file. Creates nothing."""
    flag = f"-o {destination}"
    if destination.is_symlink():
        raise SnncError(f"{flag}: is a symbolic link; give a new path or the directory it points to")
    if destination.exists():
        if not destination.is_dir():
            raise SnncError(f"{flag}: exists and is not a directory; choose a new path")
        try:
            _check_listing(destination, read_manifest(destination)["files"])
        except _Unsealed as e:
            raise SnncError(f"{flag}: exists and is not an snnc artifact that compile may replace ({e}); "
                            "choose a new path") from None
    check_writable_place(destination, flag)


class ArtifactWriter:
    """Collects files in a temporary directory; ``commit`` writes the manifest and moves it into place."""

    def __init__(self, destination: Path, target: str, source: Path):
        self.destination = Path(destination)
        self.target, self.source = target, Path(source)
        check_destination(self.destination)
        #: the destination's missing parents, deepest first, made here and removed again on failure
        self.made = [parent for parent in self.destination.parents if not parent.exists()]
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix=".snnc-", dir=self.destination.parent))

    def path(self, name: str) -> Path:
        return self.directory / name

    def commit(self) -> Path:
        files = sorted(p.name for p in self.directory.iterdir())
        manifest = {
            "snnc_version": snnc.__version__, "target": self.target,
            "source": {"name": self.source.name, "sha256": sha256(self.source) if self.source.is_file() else None},
            "files": {name: sha256(self.directory / name) for name in files},
        }
        (self.directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(self.directory, 0o755)  # mkdtemp makes directories private; artifacts are for reading
        check_destination(self.destination)  # again: it may have changed while the compile ran
        if not self.destination.exists():
            os.replace(self.directory, self.destination)
            return self.destination
        # The old artifact is moved aside, not deleted, until the new one is in its place.
        old = Path(tempfile.mkdtemp(prefix=".snnc-", dir=self.destination.parent))
        os.replace(self.destination, old)
        try:
            os.replace(self.directory, self.destination)
        except OSError:
            os.replace(old, self.destination)
            raise
        shutil.rmtree(old)
        return self.destination

    def abort(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        for parent in self.made:
            with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
                parent.rmdir()

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
    def open(cls, directory: str | Path, backend: str = "sim") -> "Artifact":
        """The sealed artifact in ``directory`` (the module's docstring says what that means), with
        the files that ``snnc run --backend BACKEND`` runs from."""
        directory = Path(directory)
        if not directory.is_dir():
            raise SnncError(f"{directory}: not an snnc artifact (not a directory); make one with snnc compile")
        needed, how = BACKEND_FILES[backend]
        try:
            manifest = read_manifest(directory)
            files = manifest["files"]
            _check_listing(directory, files)
            for name in NEEDED:
                if name not in files:
                    raise _Unsealed(f"it has no {name!r}, which every artifact holds")
        except _Unsealed as e:
            raise SnncError(f"{directory}: not a sealed snnc artifact: {e}; compile it again") from None
        for name in needed:
            if name not in files:
                raise SnncError(f"{directory}: has no {name!r}, which --backend {backend} runs from; {how}")
        for name, digest in files.items():
            if sha256(directory / name) != digest:
                raise SnncError(f"{directory}: file {name!r} changed since compile; compile it again")
        return cls(directory, manifest)

    def graph(self) -> Graph:
        return verify(load(self.directory / IR_FILE))
