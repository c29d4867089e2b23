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


def encode_arrays(value) -> tuple[object, list[np.ndarray]]:
    """``value`` (parameters, annotations) as JSON with each array replaced by its number, and the
    arrays: this file's encoding, for other formats that store arrays apart from JSON (ONNX export)."""
    store = _ArrayStore()
    return store.encode(value), store.arrays


def decode_arrays(value, arrays: list[np.ndarray]):
    """The inverse of ``encode_arrays``."""
    return _decode(value, arrays)


def _document(graph: Graph) -> tuple[dict, list[np.ndarray]]:
    """The graph as JSON with arrays by number, and the arrays."""
    store = _ArrayStore()
    document = {
        "format": FORMAT, "version": FORMAT_VERSION, "name": graph.name, "dt": graph.dt,
        "metadata": store.encode(graph.metadata),
        "nodes": [{"name": n.name, "op": n.op.kind, "fields": store.encode(n.op.fields()),
                   "annotations": store.encode(n.annotations)} for n in graph],
        "edges": [list(e) for e in graph.edges],
    }
    return document, store.arrays


def _member(index: int) -> str:
    return f"arrays/{index}.npy"


def array_members(graph: Graph) -> dict[int, str]:
    """The member of ``graph``'s IR file that holds each of its arrays, by ``id`` of the array, as
    the key under which ``np.load`` of the file (a zip of ``.npy`` members, like an ``.npz``) reads
    it: other files of an artifact refer to the IR's arrays instead of storing them again."""
    _, arrays = _document(graph)
    return {id(array): _member(i).removesuffix(".npy") for i, array in enumerate(arrays)}


def _write_array(file, array: np.ndarray) -> None:
    """``array`` as a ``.npy`` file: a C-ordered array's bytes in one write, with no copy (numpy's
    writer copies them to bytes in 16 MB chunks when the file is not a real one, as a zip member is)."""
    if not array.flags.c_contiguous or array.dtype.hasobject:
        np.lib.format.write_array(file, array, allow_pickle=False)
        return
    np.lib.format.write_array_header_1_0(file, np.lib.format.header_data_from_array_1_0(array))
    file.write(array.reshape(-1).view(np.uint8))


def _write(graph: Graph, file) -> None:
    document, arrays = _document(graph)
    # Stored, not deflated: weights barely compress, and deflating hundreds of MB dominated compile time.
    # Each array goes straight from its buffer into the archive, with no copy of the whole file in memory.
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("graph.json", json.dumps(document, indent=1))
        for i, array in enumerate(arrays):
            with archive.open(_member(i), "w", force_zip64=array.nbytes > zipfile.ZIP64_LIMIT // 2) as member:
                _write_array(member, array)


def to_bytes(graph: Graph) -> bytes:
    buffer = io.BytesIO()
    _write(graph, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes, source: str = "<bytes>") -> Graph:
    return _read(io.BytesIO(data), source)


def _read(file, source: str) -> Graph:
    try:
        with zipfile.ZipFile(file) as archive:
            document = json.loads(archive.read("graph.json"))
            count = sum(1 for n in archive.namelist() if n.startswith("arrays/"))
            arrays = []
            for i in range(count):
                with archive.open(_member(i)) as member:
                    arrays.append(np.lib.format.read_array(member, allow_pickle=False))
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
    with open(path, "wb") as file:
        _write(graph, file)


def load(path: str | Path) -> Graph:
    with open(path, "rb") as file:
        return _read(file, str(path))
