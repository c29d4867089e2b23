"""The IR file format (``.snnir``): lossless, bit for bit.

A zip archive holding ``graph.json`` (structure, attributes, annotations, dtypes) and one ``.npy``
member per array, read back with ``allow_pickle=False``. Arrays are referenced by number, so node
names of any content never become paths.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from snnc.errors import SnncError
from snnc.ir.graph import Graph
from snnc.ir.ops import OPS

FORMAT = "snnc-ir"
FORMAT_VERSION = 1
_ARRAY = "__array__"
_TUPLE = "__tuple__"


class _ArrayStore:
    def __init__(self):
        self.arrays: list[np.ndarray] = []

    def encode(self, value):
        """Turn a parameter or annotation into JSON, moving arrays to the store."""
        if isinstance(value, np.ndarray):
            self.arrays.append(value)
            return {_ARRAY: len(self.arrays) - 1}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, tuple):
            return {_TUPLE: [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise SnncError(f"annotation keys must be strings, got {list(value)}")
            return {k: self.encode(v) for k, v in value.items()}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise SnncError(f"cannot store a value of type {type(value).__name__} in an IR file")


def _decode(value, arrays):
    if isinstance(value, dict):
        if _ARRAY in value:
            return arrays[value[_ARRAY]]
        if _TUPLE in value:
            return tuple(_decode(v, arrays) for v in value[_TUPLE])
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def to_bytes(graph: Graph) -> bytes:
    store = _ArrayStore()
    document = {
        "format": FORMAT, "version": FORMAT_VERSION, "name": graph.name, "dt": graph.dt,
        "metadata": store.encode(graph.metadata),
        "nodes": [{"name": n.name, "op": n.op.kind, "fields": store.encode(n.op.fields()),
                   "annotations": store.encode(n.annotations)} for n in graph],
        "edges": [list(e) for e in graph.edges],
    }
    buffer = io.BytesIO()
    # Stored, not deflated: weights barely compress, and deflating hundreds of MB dominated compile time.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("graph.json", json.dumps(document, indent=1))
        for i, array in enumerate(store.arrays):
            member = io.BytesIO()
            np.save(member, array, allow_pickle=False)
            archive.writestr(f"arrays/{i}.npy", member.getvalue())
    return buffer.getvalue()


def from_bytes(data: bytes, source: str = "<bytes>") -> Graph:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            document = json.loads(archive.read("graph.json"))
            count = sum(1 for n in archive.namelist() if n.startswith("arrays/"))
            arrays = [np.load(io.BytesIO(archive.read(f"arrays/{i}.npy")), allow_pickle=False) for i in range(count)]
    except (zipfile.BadZipFile, KeyError, ValueError, json.JSONDecodeError) as e:
        raise SnncError(f"{source}: not a readable snnc IR file ({e})") from None
    if document.get("format") != FORMAT or document.get("version") != FORMAT_VERSION:
        raise SnncError(f"{source}: not an snnc IR file of version {FORMAT_VERSION}")
    graph = Graph(dt=document["dt"], name=document["name"], metadata=_decode(document["metadata"], arrays))
    for entry in document["nodes"]:
        if entry["op"] not in OPS:
            raise SnncError(f"{source}: node {entry['name']!r} has unknown operation {entry['op']!r}")
        op = OPS[entry["op"]](**_decode(entry["fields"], arrays))
        graph.add(entry["name"], op, _decode(entry["annotations"], arrays))
    for source_name, target in document["edges"]:
        graph.connect(source_name, target)
    return graph


def save(graph: Graph, path: str | Path) -> None:
    Path(path).write_bytes(to_bytes(graph))


def load(path: str | Path) -> Graph:
    return from_bytes(Path(path).read_bytes(), str(path))
