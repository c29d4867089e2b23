"""The IR file format (``.snnir``): lossless, bit for bit, and the same bytes for the same graph.

A zip archive holding ``graph.json`` (structure, attributes, annotations, dtypes) and one ``.npy``
member per array, read back with ``allow_pickle=False``. Arrays are referenced by number, so node
names of any content never become paths. Every member carries the same time stamp and permissions,
so saving a graph twice gives identical files.

Reading trusts nothing in the file: the members, their declared sizes (against the memory budget of
``snnc.files``, before anything is read), the JSON's types and nesting, each operation's fields and
each array reference are checked, and every failure is one line naming the file and the node.
"""

from __future__ import annotations

import calendar
import dataclasses
import io
import json
import math
import os
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from snnc.errors import IRError, SnncError
from snnc.files import Budget, check_declared_array, check_zip_member, read_npy
from snnc.ir.graph import Graph
from snnc.ir.ops import OPS, Op, ShapeError
from snnc.ir.verify import verify

FORMAT = "snnc-ir"
FORMAT_VERSION = 1
_ARRAY = "__array__"
_TUPLE = "__tuple__"
_GRAPH = "graph.json"
_KEYS = ("format", "version", "name", "dt", "metadata", "nodes", "edges")
_NODE_KEYS = ("name", "op", "fields", "annotations")
#: Deepest nesting of lists and dicts an annotation or the metadata may have: passes write a few
#: levels; a hostile file could otherwise exhaust Python's recursion limit.
MAX_DEPTH = 32
#: Parsed JSON takes up to this many times its text in memory (a dict per node, an object per
#: number), so graph.json may declare at most this fraction of the memory budget.
JSON_EXPANSION = 32
#: Integer fields (strides, paddings, dims, groups) are below this in magnitude: numpy computes with
#: them in 64-bit indices, and no layer is larger.
MAX_FIELD_INTEGER = 2**31
#: The time stamp of every member without SOURCE_DATE_EPOCH: the first that zip can hold.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: The last time zip can hold (its year field counts from 1980 in 7 bits; seconds in steps of 2).
ZIP_END = (2107, 12, 31, 23, 59, 58)
#: Every member is an ordinary file readable by all (the upper 16 bits are the Unix mode).
_MEMBER_MODE = 0o100644 << 16
_UNIX = 3

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


class _Decoder:
    """Turns an IR file's JSON back into values: each ``{"__array__": i}`` into array ``i`` (a
    number of the file's arrays; with ``once``, no array twice, as the writer never shares one),
    each ``{"__tuple__": [...]}`` into a tuple, nesting at most ``MAX_DEPTH`` deep."""

    def __init__(self, arrays: list[np.ndarray], once: bool):
        self.arrays, self.once, self.used = arrays, once, set()

    def decode(self, value, where: str, depth: int = 0):
        if depth > MAX_DEPTH:
            raise SnncError(f"{where}: nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            if _ARRAY in value:
                return self._array(value, where)
            if _TUPLE in value:
                if set(value) != {_TUPLE} or not isinstance(value[_TUPLE], list):
                    raise SnncError(f"{where}: a tuple is written {{\"{_TUPLE}\": [...]}} and nothing else")
                return tuple(self.decode(v, where, depth + 1) for v in value[_TUPLE])
            return {k: self.decode(v, where, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.decode(v, where, depth + 1) for v in value]
        return value

    def decode_object(self, value, where: str) -> dict:
        """A JSON object that holds values (the metadata, a node's fields or annotations): not an
        array reference or a tuple."""
        if not isinstance(value, dict) or _ARRAY in value or _TUPLE in value:
            got = type(value).__name__ if not isinstance(value, dict) else "an array" if _ARRAY in value else "a tuple"
            raise SnncError(f"{where}: must be a JSON object of named values, got {got}")
        return self.decode(value, where)

    def _array(self, value: dict, where: str) -> np.ndarray:
        index = value[_ARRAY]
        if set(value) != {_ARRAY} or not _is_integer(index) or not 0 <= index < len(self.arrays):
            raise SnncError(f"{where}: array reference {str(index)[:40]} names none of the file's "
                            f"{len(self.arrays)} arrays; give {{\"{_ARRAY}\": i}} with 0 <= i < {len(self.arrays)}, "
                            "and nothing else")
        if self.once and index in self.used:
            raise SnncError(f"{where}: array {index} is referenced a second time; each array belongs to one place")
        self.used.add(index)
        return self.arrays[index]


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def encode_arrays(value) -> tuple[object, list[np.ndarray]]:
    """``value`` (parameters, annotations) as JSON with each array replaced by its number, and the
    arrays: this file's encoding, for other formats that store arrays apart from JSON (ONNX export)."""
    store = _ArrayStore()
    return store.encode(value), store.arrays


def decode_arrays(value, arrays: list[np.ndarray], where: str = "annotations"):
    """The inverse of ``encode_arrays``; a reference to no array, or nesting deeper than
    ``MAX_DEPTH``, is an ``SnncError`` that starts with ``where``."""
    return _Decoder(arrays, once=False).decode(value, where)


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


def zip_timestamp() -> tuple[int, int, int, int, int, int]:
    """The time stamp of every member: ``$SOURCE_DATE_EPOCH`` (seconds since 1970, UTC) if set,
    clamped to the years zip can hold, else ``ZIP_EPOCH``; never the clock, so that two saves of
    one graph give the same bytes."""
    setting = os.environ.get("SOURCE_DATE_EPOCH")
    if setting is None:
        return ZIP_EPOCH
    try:
        seconds = int(setting)
    except ValueError:
        raise SnncError(f"SOURCE_DATE_EPOCH={setting}: give a whole number of seconds since 1970-01-01 UTC") from None
    first, last = calendar.timegm((*ZIP_EPOCH, 0, 0, 0)), calendar.timegm((*ZIP_END, 0, 0, 0))
    return tuple(time.gmtime(min(max(seconds, first), last))[:6])


def _member_info(name: str, stamp: tuple) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.external_attr, info.create_system, info.compress_type = _MEMBER_MODE, _UNIX, zipfile.ZIP_STORED
    return info


def _write(graph: Graph, file) -> None:
    document, arrays = _document(graph)
    stamp = zip_timestamp()
    # Stored, not deflated: weights barely compress, and deflating hundreds of MB dominated compile time.
    # Each array goes straight from its buffer into the archive, with no copy of the whole file in memory.
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(_member_info(_GRAPH, stamp), json.dumps(document, indent=1))
        for i, array in enumerate(arrays):
            with archive.open(_member_info(_member(i), stamp), "w",
                              force_zip64=array.nbytes > zipfile.ZIP64_LIMIT // 2) as member:
                _write_array(member, array)


def to_bytes(graph: Graph) -> bytes:
    buffer = io.BytesIO()
    _write(graph, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes, source: str = "<bytes>") -> Graph:
    return _read(io.BytesIO(data), source)


def _read(file, source: str) -> Graph:
    """The verified graph in ``file``; every error names ``source`` and the node or member at fault."""
    budget = Budget()
    try:
        with zipfile.ZipFile(file) as archive:
            infos = _members(archive, source)
            document = _json(archive, infos[0], source, budget)
            arrays = []
            for info in infos[1:]:
                with archive.open(info) as member:
                    arrays.append(read_npy(member, info.file_size, f"{source}: member {info.filename!r}", budget))
    except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError, zlib.error) as e:
        raise SnncError(f"{source}: not a readable snnc IR file ({' '.join(str(e).split())})") from None
    try:
        return verify(_graph(document, arrays, source, budget))
    except IRError as e:
        raise SnncError(f"{source}: {e}") from None


def _members(archive: zipfile.ZipFile, source: str) -> list[zipfile.ZipInfo]:
    """graph.json, then arrays/0.npy, arrays/1.npy, ...: exactly the members the writer writes, once each."""
    infos = archive.infolist()
    by_name = {info.filename: info for info in infos}
    expected = [_GRAPH] + [_member(i) for i in range(len(infos) - 1)]
    for info in infos:
        where = f"{source}: member {info.filename!r}"
        if len(by_name) != len(infos) and [i.filename for i in infos].count(info.filename) > 1:
            raise SnncError(f"{where}: appears twice in the archive")
        if info.filename not in expected or _GRAPH not in by_name:
            raise SnncError(f"{source}: not a readable snnc IR file (it holds {info.filename!r}, but must hold "
                            f"{_GRAPH} and the arrays numbered from arrays/0.npy, nothing else)")
        check_zip_member(info, where)
    return [by_name[name] for name in expected]


def _json(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, budget: Budget):
    where = f"{source}: member {_GRAPH!r}"
    limit = budget.left // JSON_EXPANSION
    if info.file_size > limit:
        raise SnncError(f"{where}: declares {info.file_size} bytes of JSON, more than the {limit} that snnc's memory "
                        "budget allows (SNNC_MEMORY_BUDGET sets it in bytes)")
    budget.left -= info.file_size * JSON_EXPANSION
    try:
        return json.loads(archive.read(info), object_pairs_hook=_unique_keys)
    except RecursionError:
        raise SnncError(f"{where}: nests deeper than Python can read") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, integers of more than 4300 digits
        raise SnncError(f"{where}: not valid JSON ({' '.join(str(e).split())[:200]})") from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    document = dict(pairs)
    if len(document) != len(pairs):
        repeated = sorted({key for key, _ in pairs if sum(1 for k, _ in pairs if k == key) > 1})
        raise ValueError(f"an object repeats the keys {repeated[:3]}")
    return document


def _graph(document, arrays: list[np.ndarray], source: str, budget: Budget) -> Graph:
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != FORMAT_VERSION:
        raise SnncError(f"{source}: not an snnc IR file of version {FORMAT_VERSION}")
    _require_keys(document, _KEYS, source)
    name, dt = document["name"], document["dt"]
    if not isinstance(name, str):
        raise SnncError(f"{source}: the graph's name must be a string, got {type(name).__name__}")
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise SnncError(f"{source}: dt={dt!r}: the time step must be a positive number of seconds")
    for key in ("nodes", "edges"):
        if not isinstance(document[key], list):
            raise SnncError(f"{source}: {key} must be a JSON array, got {type(document[key]).__name__}")
    decoder = _Decoder(arrays, once=True)
    graph = Graph(dt=dt, name=name, metadata=decoder.decode_object(document["metadata"], f"{source}: metadata"))
    for index, entry in enumerate(document["nodes"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SnncError(f"{source}: nodes[{index}] must be a JSON object with a string name")
        where = f"{source}: node {entry['name']!r}"
        _require_keys(entry, _NODE_KEYS, where)
        op = _op(entry["op"], decoder.decode_object(entry["fields"], f"{where} fields"), where, budget)
        graph.add(entry["name"], op, decoder.decode_object(entry["annotations"], f"{where} annotations"))
    unused = sorted(set(range(len(arrays))) - decoder.used)
    if unused:
        raise SnncError(f"{source}: member {_member(unused[0])!r} is an array that nothing refers to")
    for index, edge in enumerate(document["edges"]):
        if not (isinstance(edge, list) and len(edge) == 2 and all(isinstance(end, str) for end in edge)):
            raise SnncError(f"{source}: edges[{index}] must be [source, target], two node names, got {edge!r}"[:300])
        graph.connect(*edge)
    return graph


def _require_keys(entry: dict, keys: tuple[str, ...], where: str) -> None:
    if set(entry) != set(keys):
        missing, unknown = sorted(set(keys) - set(entry)), sorted(set(entry) - set(keys))
        raise SnncError(f"{where}: " + (f"missing {missing}" if missing else f"unknown keys {unknown[:5]}")
                        + f"; expected exactly {list(keys)}")


def _small_integer(value) -> bool:
    return _is_integer(value) and abs(value) < MAX_FIELD_INTEGER


def _small_integers(value) -> bool:
    return isinstance(value, tuple) and all(_small_integer(each) for each in value)


#: What each kind of operation field may hold, by the type its dataclass declares.
_FIELD_RULES = {
    "np.ndarray": (lambda value: isinstance(value, np.ndarray), "an array"),
    "int": (_small_integer, "an integer of magnitude below 2**31"),
    "str": (lambda value: isinstance(value, str), "a string"),
    "Shape": (_small_integers, "a tuple of integers of magnitude below 2**31"),
    "tuple[int, ...]": (_small_integers, "a tuple of integers of magnitude below 2**31"),
    "tuple[int, int]": (_small_integers, "a tuple of integers of magnitude below 2**31"),
}


def _op(kind, fields: dict, where: str, budget: Budget) -> Op:
    """The operation ``kind`` with ``fields``, each of the type its dataclass declares; an Input's
    shape must fit the memory budget as one step of float64 values (the simulator's state)."""
    if not isinstance(kind, str) or kind not in OPS:
        raise SnncError(f"{where}: unknown operation {str(kind)[:80]!r}; the IR has {', '.join(OPS)}")
    declared = {f.name: f for f in dataclasses.fields(OPS[kind])}
    unknown = sorted(set(fields) - set(declared))
    missing = sorted(name for name, f in declared.items() if name not in fields
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if unknown or missing:
        raise SnncError(f"{where}: {kind} " + (f"has no fields {unknown[:5]}" if unknown else f"needs fields {missing}")
                        + f"; its fields are {list(declared)}")
    for name, value in fields.items():
        annotation = declared[name].type
        optional = annotation.endswith(" | None")
        accepts, description = _FIELD_RULES[annotation.removesuffix(" | None")]
        if not (accepts(value) or (optional and value is None)):
            raise SnncError(f"{where}: {kind} field {name!r} must be {description}{' or null' if optional else ''}, "
                            f"got {type(value).__name__}")
    if kind == "Input":
        check_declared_array(fields["shape"], np.float64, f"{where}: Input shape", budget)
    try:
        return OPS[kind](**fields)
    except ShapeError as e:
        raise SnncError(f"{where}: ({kind}) {e}") from None


def save(graph: Graph, path: str | Path) -> None:
    with open(path, "wb") as file:
        _write(graph, file)


def load(path: str | Path) -> Graph:
    """The verified graph in the IR file at ``path``."""
    try:
        with open(path, "rb") as file:
            return _read(file, str(path))
    except OSError as e:
        raise SnncError(f"{path}: cannot read the IR file ({e.strerror or e})") from None
