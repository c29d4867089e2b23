"""Mutation fuzzing of the command line (issue 12, item 5).

Every kind of input snnc reads is mutated from a seed: the bundled NIR and ONNX models, an .snnir
and artifacts compiled from them, .npy/.npz inputs and the target files. Mutations are blind (byte
flips, truncation, inserted or overwritten chunks) and structured (a TOML value, a .npy header, an
ONNX protobuf field, an HDF5 dataset or group of a NIR file, a JSON value or a member of an .snnir,
.npz or artifact). The CLI then runs on the mutant in a subprocess, and the contract of the README
("Errors") must hold: exit 0, or exit 2 with one line "snnc: error: ..." and no output; never exit 1,
a traceback, a hang, memory beyond a cap no bundled input comes near, or a file written outside
the output path. Besides that one error line, stderr holds only snnc's own one-line warnings ("snnc:
warning: ..."): no Python warning ("kernels.py:305: RuntimeWarning: ..."), no line a name broke.

A mutant is described by a recipe, JSON that rebuilds it from its seed. A failing example prints
its recipe; saved under tests/fuzz_corpus/ as {"what": ..., "recipe": ...} it becomes a regression
case that test_corpus replays. The budget is fixed: derandomized, a set number of examples, no
shrinking (each example is a subprocess), no example database.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "fuzz_corpus"
#: A hang is a failure: no bundled input takes more than a few seconds.
TIMEOUT_S = 60
#: Address space of one snnc process. Every bundled input runs in well under 1 GiB; a mutant of a
#: file of at most a few MB that needs more asked for memory its real contents do not justify.
MEMORY_CAP = 2 << 30
#: Examples per family and test run: the whole file takes about 2-3 minutes on 2 cores.
EXAMPLES = 25

BUNDLED = {
    "digits.nir": ROOT / "examples" / "digits" / "model.nir",
    "braille.nir": ROOT / "examples" / "braille" / "braille.nir",
    "digits.onnx": ROOT / "examples" / "digits" / "model.onnx",
    "digits.npy": ROOT / "examples" / "digits" / "test_digits.npy",
    **{path.name: path for path in sorted((ROOT / "snnc" / "targets").glob("*.toml"))},
}
#: Seeds compiled from the bundled ones: the digits network for each kind of target.
ARTIFACTS = {"digits-sim": "sim", "digits-loihi2": "loihi2", "digits-spinnaker": "spinnaker"}
TARGETS = ("sim", "loihi2", "spinnaker")

HOSTILE_STRINGS = ['"""', "'''", "", "x\ny", "\x00", "\x1b[2J", "é\u202e", "{__import__('os')}", "../../x",
                   "/etc/passwd", "ai.snnc", "a" * 5000]
HOSTILE_STEMS = ['"""', "x\ny", "\x1b[2J", "é", "a b", "$(id)", "a" * 200]
HOSTILE_FLOATS = [0.0, -1.0, math.nan, math.inf, -math.inf, 1e300, 1e-300]
#: Replacement TOML values, as TOML text.
TOML_VALUES = ["0", "-1", "nan", "inf", "-inf", "1e300", "9223372036854775807", "0.5", r'"\"\"\""', '""',
               '"x"', "true", "[]", "{}", r'"\u0000"', '{ value = 1e300, source = "x" }',
               '{ value = nan, source = "x" }', '{ value = 0, source = "x" }', '["canonicalize", "canonicalize"]']
JSON_VALUES = [0, -1, 1e300, math.nan, math.inf, 10**30, 0.5, None, True, [], {}, *HOSTILE_STRINGS[:6],
               "../manifest.json", "/etc/passwd"]
SHAPES = [[10**9, 16, 64], [2**40, 2**40], [8, 16], [8, 16, 64, 1], [0, 16, 64], [8, 0, 64], [], [-1, 16, 64],
          [8.5, 16, 64], [1]]
DESCRS = ["<c16", "|S8", "<U4", "|O", "<f2", "|b1", ">f8", "<m8[s]", "|V8", "<i8", "bogus"]
NEST_DEPTHS = [2, 30, 1100]


# ----------------------------------------------------------------------------- applying recipes


def mutate(data, suffix: str, mutations: list[dict]):
    """``data`` (bytes, or a dict of file name to bytes for a directory) after ``mutations``, in
    order; ``suffix`` (".toml", ".npy", ..., "/" for a directory) is the format structured edits read."""
    for mutation in mutations:
        data = EDITS[mutation["op"]](data, suffix, mutation)
    return data


def _flip(data: bytes, suffix, m) -> bytes:
    if not data:
        return data
    at = m["at"] % len(data)
    return data[:at] + bytes([data[at] ^ m["mask"]]) + data[at + 1:]


def _truncate(data: bytes, suffix, m) -> bytes:
    return data[: m["at"] % (len(data) + 1)]


def _insert(data: bytes, suffix, m) -> bytes:
    at = m["at"] % (len(data) + 1)
    return data[:at] + bytes.fromhex(m["hex"]) * m["times"] + data[at:]


def _overwrite(data: bytes, suffix, m) -> bytes:
    at = m["at"] % (len(data) + 1)
    chunk = bytes.fromhex(m["hex"])
    return data[:at] + chunk + data[at + len(chunk):]


class _TomlText(str):
    """A value already written as TOML."""


def _toml_value(value) -> str:
    if isinstance(value, _TomlText):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # TOML basic strings escape as JSON does
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"


def _toml_dump(document: dict) -> bytes:
    """``document`` as TOML: top-level tables as [sections], deeper ones inline, as target files are."""
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    for name, table in document.items():
        if isinstance(table, dict):
            lines += [f"[{json.dumps(name)}]", *(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items())]
    return ("\n".join(lines) + "\n").encode()


def _parent(document, path: list):
    for key in path[:-1]:
        document = document[key]
    return document


def _change(document, m, value=lambda v: v):
    """``document`` with the value at ``m["path"]`` replaced by ``m["value"]``, or deleted where the
    edit has no value."""
    if not m["path"]:
        return value(m["value"])
    parent, key = _parent(document, m["path"]), m["path"][-1]
    if "value" in m:
        parent[key] = value(m["value"])
    else:
        del parent[key]
    return document


def _toml(data: bytes, suffix, m) -> bytes:
    return _toml_dump(_change(tomllib.loads(data.decode()), m, _TomlText))


def _json(data: bytes, suffix, m) -> bytes:
    return json.dumps(_change(json.loads(data), m), indent=1).encode()


def _json_nest(data: bytes, suffix, m) -> bytes:
    """The value at ``path`` replaced by lists nested ``depth`` deep."""
    marker = "\x00nest"
    document = _change(json.loads(data), {"path": m["path"], "value": marker})
    return json.dumps(document).replace(json.dumps(marker), "[" * m["depth"] + "]" * m["depth"]).encode()


def _npy_header(data: bytes, suffix, m) -> bytes:
    """One field of a .npy header (shape, descr, fortran_order) replaced; the data bytes kept."""
    file = io.BytesIO(data)
    version = np.lib.format.read_magic(file)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read(file)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran_order, "shape": shape}
    header[m["field"]] = tuple(m["value"]) if isinstance(m["value"], list) else m["value"]
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + data[file.tell():]


def _members(data) -> dict[str, bytes]:
    if isinstance(data, dict):
        return dict(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _pack(members: dict[str, bytes], like):
    if isinstance(like, dict):
        return members
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def _member(data, suffix, m):
    """A member of a zip (.npz, .snnir) or a file of a directory, mutated by ``m["mutations"]``."""
    members = _members(data)
    members[m["name"]] = mutate(members[m["name"]], Path(m["name"]).suffix, m["mutations"])
    return _pack(members, data)


def _member_drop(data, suffix, m):
    members = _members(data)
    del members[m["name"]]
    return _pack(members, data)


def _member_add(data, suffix, m):
    members = _members(data)
    members[m["name"]] = bytes.fromhex(m["hex"])
    return _pack(members, data)


def _member_rename(data, suffix, m):
    members = _members(data)
    members[m["to"]] = members.pop(m["name"])
    return _pack(members, data)


def _onnx(data: bytes, suffix, m) -> bytes:
    model = onnx.load_from_string(data)
    ONNX_EDITS[m["edit"]](model, m)
    return model.SerializeToString()


def _onnx_tensors(model) -> list:
    graph = model.graph
    return [*graph.input, *graph.output, *graph.value_info]


def _onnx_dim(model, m) -> None:
    tensors = _onnx_tensors(model)
    dims = tensors[m["tensor"] % len(tensors)].type.tensor_type.shape.dim
    dim = dims[m["dim"] % len(dims)] if dims else dims.add()
    if isinstance(m["value"], str):
        dim.dim_param = m["value"]
    else:
        dim.dim_value = m["value"]


def _onnx_initializer(model, m):
    return model.graph.initializer[m["init"] % len(model.graph.initializer)]


def _onnx_init_dims(model, m) -> None:
    tensor = _onnx_initializer(model, m)
    del tensor.dims[:]
    tensor.dims.extend(m["dims"])


def _onnx_init_fill(model, m) -> None:
    tensor = _onnx_initializer(model, m)
    array = numpy_helper.to_array(tensor)
    tensor.CopyFrom(numpy_helper.from_array(np.full(array.shape, m["value"], dtype=array.dtype), tensor.name))


def _onnx_opset(model, m) -> None:
    opsets = model.opset_import
    entry = opsets[m["index"]] if m["index"] < len(opsets) else opsets.add()
    entry.domain, entry.version = m["domain"], m["version"]


def _onnx_node(model, m):
    return model.graph.node[m["node"] % len(model.graph.node)]


def _onnx_attribute(model, m) -> None:
    node = _onnx_node(model, m)
    if not node.attribute:
        return
    attribute = node.attribute[m["attr"] % len(node.attribute)]
    value = m["value"]
    if attribute.type == onnx.AttributeProto.TENSOR and isinstance(value, float):
        array = numpy_helper.to_array(attribute.t)
        value = numpy_helper.from_array(np.full(array.shape, value, dtype=array.dtype))
    attribute.CopyFrom(helper.make_attribute(attribute.name, value))


def _onnx_metadata(model, m) -> None:
    props = model.metadata_props if m.get("node") is None else _onnx_node(model, m).metadata_props
    for prop in props:
        if prop.key == m["key"]:
            prop.value = m["value"]
            return
    props.add(key=m["key"], value=m["value"])


def _onnx_nest(model, m) -> None:
    """A node moved ``depth`` If-subgraphs deep."""
    node = _onnx_node(model, m)
    inner = onnx.NodeProto()
    inner.CopyFrom(node)
    for level in range(m["depth"]):
        branch = helper.make_graph([inner], f"nest{level}", [],
                                   [helper.make_empty_tensor_value_info(o) for o in node.output])
        inner = helper.make_node("If", ["nest_condition"], list(node.output), name=f"nest{level}",
                                 then_branch=branch)
    node.CopyFrom(inner)


def _set_field(getter, field_name):
    def edit(model, m) -> None:
        setattr(getter(model, m), field_name, m["value"])
    return edit


def _onnx_node_input(model, m) -> None:
    node = _onnx_node(model, m)
    if node.input:
        node.input[m["input"] % len(node.input)] = m["value"]


ONNX_EDITS = {
    "graph-name": _set_field(lambda model, m: model.graph, "name"),
    "node-name": _set_field(_onnx_node, "name"),
    "op-type": _set_field(_onnx_node, "op_type"),
    "domain": _set_field(_onnx_node, "domain"),
    "node-input": _onnx_node_input,
    "dim": _onnx_dim,
    "init-dims": _onnx_init_dims,
    "init-drop": lambda model, m: model.graph.initializer.remove(_onnx_initializer(model, m)),
    "init-fill": _onnx_init_fill,
    "opset": _onnx_opset,
    "attribute": _onnx_attribute,
    "metadata": _onnx_metadata,
    "nest": _onnx_nest,
}


def _nir(data: bytes, suffix, m) -> bytes:
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as file:
        NIR_EDITS[m["edit"]](file, m)
    return buffer.getvalue()


def _nir_replace(file, path: str, value, **options) -> None:
    del file[path]
    file.create_dataset(path, data=value, **options)


def _nir_resize(file, m) -> None:
    _nir_replace(file, m["path"], np.resize(file[m["path"]][()], m["shape"]))


def _nir_declare(file, m) -> None:
    """A float32 dataset of ``shape`` with no data stored: a few bytes declaring any size."""
    del file[m["path"]]
    shape = tuple(m["shape"])
    file.create_dataset(m["path"], shape=shape, dtype="f4", chunks=(1,) * len(shape) if all(shape) else None)


def _nir_dtype(file, m) -> None:
    _nir_replace(file, m["path"], file[m["path"]][()].astype(m["dtype"]))


def _nir_fill(file, m) -> None:
    value = file[m["path"]][()]
    _nir_replace(file, m["path"], np.full(np.shape(value), m["value"]))


def _nir_type(file, m) -> None:
    _nir_replace(file, m["path"] + "/type", np.bytes_(m["value"].encode()))  # fixed length: NUL allowed


def _nir_edges(file, m) -> None:
    _nir_replace(file, m["path"], np.array(m["value"], dtype=h5py.string_dtype()).reshape(-1, len(m["value"][0])))


def _nir_drop(file, m) -> None:
    del file[m["path"]]


def _nir_nest(file, m) -> None:
    """A node moved ``depth`` NIRGraph groups deep."""
    file.move(m["path"], "nested")
    path = m["path"]
    for _ in range(m["depth"]):
        file.create_group(path).create_dataset("type", data=b"NIRGraph")
        file.create_group(path + "/nodes")
        path += "/nodes/node"
    file.move("nested", path)


NIR_EDITS = {
    "resize": _nir_resize,
    "declare": _nir_declare,
    "dtype": _nir_dtype,
    "fill": _nir_fill,
    "type": _nir_type,
    "edges": _nir_edges,
    "drop": _nir_drop,
    "nest": _nir_nest,
}

EDITS = {
    "flip": _flip, "truncate": _truncate, "insert": _insert, "overwrite": _overwrite,
    "toml": _toml, "toml-delete": _toml,
    "json": _json, "json-delete": _json, "json-nest": _json_nest,
    "npy": _npy_header,
    "member": _member, "member-drop": _member_drop, "member-add": _member_add, "member-rename": _member_rename,
    "onnx": _onnx, "nir": _nir,
}


# ----------------------------------------------------------------------------- seeds and the contract


class Seeds:
    """The seed files by name: the bundled inputs, and what is made from them once per session."""

    def __init__(self, directory: Path):
        self.paths = dict(BUNDLED)
        digits = np.load(BUNDLED["digits.npy"])
        self.paths["digits.npz"] = directory / "digits.npz"
        np.savez(self.paths["digits.npz"], x=digits)
        self.paths["braille.npy"] = directory / "braille.npy"
        np.save(self.paths["braille.npy"], (np.random.default_rng(0).random((2, 20, 12)) < 0.2).astype(np.float32))
        for name, target in ARTIFACTS.items():
            self.paths[name] = directory / name
            compiled = _snnc("compile", BUNDLED["digits.onnx"], "--target", target, "-o", self.paths[name])
            assert compiled.returncode == 0, compiled.stderr
            self.paths[f"{name}.snnir"] = self.paths[name] / "model.snnir"

    def content(self, name: str):
        """A seed's bytes, or for a directory its files' bytes by relative path."""
        path = self.paths[name]
        if path.is_dir():
            return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
        return path.read_bytes()

    def suffix(self, name: str) -> str:
        return "/" if self.paths[name].is_dir() else self.paths[name].suffix

    def build(self, recipe: dict, directory: Path) -> Path:
        """Write the recipe's mutant into ``directory``, named ``stem`` plus the seed's suffix."""
        suffix = self.suffix(recipe["seed"])
        mutant = mutate(self.content(recipe["seed"]), suffix, recipe["mutations"])
        path = directory / (recipe["stem"] + ("" if suffix == "/" else suffix))
        if isinstance(mutant, dict):
            for name, content in mutant.items():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_bytes(content)
        else:
            path.write_bytes(mutant)
        return path


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> Seeds:
    return Seeds(tmp_path_factory.mktemp("fuzz-seeds"))


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _snnc(*args, cwd=None, timeout=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snnc", *map(str, args)], capture_output=True, encoding="utf8",
                          errors="backslashreplace", cwd=cwd, timeout=timeout, preexec_fn=_cap_memory)


def _snapshot(directory: Path) -> dict[str, str]:
    """Every file and directory under ``directory``: a file's SHA-256, a directory's "dir"."""
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in directory.rglob("*")}


def violation(recipe: dict, seeds: Seeds) -> str | None:
    """Run the recipe's command on its mutant: None if the contract holds, else what broke it.

    The mutant, the seeds the command names ("{seed:NAME}") and the output ("{out}", named
    ``recipe["out"]``) all live in a fresh directory, which is also the working directory, so any
    file written outside the output path shows up in its snapshot."""
    with tempfile.TemporaryDirectory(prefix="snnc-fuzz-") as name:
        work = Path(name)
        (work / "in").mkdir()
        places = {"{mutant}": seeds.build(recipe, work / "in"), "{out}": work / recipe["out"]}
        for token in recipe["argv"]:
            if token.startswith("{seed:"):
                source = seeds.paths[token[6:-1]]
                places[token] = work / "seeds" / source.name
                copy = shutil.copytree if source.is_dir() else shutil.copyfile
                places[token].parent.mkdir(exist_ok=True)
                copy(source, places[token])
        argv = [str(places.get(token, token)) for token in recipe["argv"]]
        before = _snapshot(work)
        try:
            result = _snnc(*argv, cwd=work, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"no answer within {TIMEOUT_S} s"
        after = _snapshot(work)
        out = places["{out}"].relative_to(work).as_posix()
        changed = sorted(k for k in before.keys() | after.keys()
                         if before.get(k) != after.get(k) and k != out and not k.startswith(out + "/"))
        code, lines = result.returncode, result.stderr.splitlines()
        if "Traceback" in result.stdout + result.stderr:
            return f"a traceback, exit {code}: {result.stderr[-2000:]}"
        if code not in (0, 2):
            return f"exit {code}: {result.stderr[-2000:]}"
        if changed:
            return f"exit {code} and files written outside the output path: {changed}"
        if code == 2 and not (lines and lines[-1].startswith("snnc: error: ")):
            return f"exit 2 without a last line 'snnc: error: ...' on stderr: {result.stderr[-2000:]!r}"
        stray = [line for line in lines[: len(lines) - (code == 2)] if not line.startswith("snnc: warning: ")]
        if stray:
            return (f"exit {code} with stderr lines that are neither 'snnc: warning: ...' nor the last 'snnc: error: "
                    f"...': {stray[:4]!r}\nstderr: {result.stderr[-2000:]!r}")
        if result.returncode == 2 and out in after:
            return "exit 2, yet the output path exists"
        if result.returncode == 0 and out not in after:
            return "exit 0 without the output path"
        return None


def check(recipe: dict, seeds: Seeds) -> None:
    broken = violation(recipe, seeds)
    assert broken is None, f"{broken}\nrecipe (save under tests/fuzz_corpus/ to keep it):\n{json.dumps(recipe)}"


# ----------------------------------------------------------------------------- drawing recipes


def _paths(document, prefix=()) -> list[list]:
    """Every key path into a parsed TOML or JSON document."""
    if isinstance(document, dict):
        items = document.items()
    elif isinstance(document, list):
        items = enumerate(document)
    else:
        return []
    return [path for key, value in items for path in ([[*prefix, key]] + _paths(value, (*prefix, key)))]


def _blind(draw) -> dict:
    op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
    at = draw(st.integers(0, 2**24))
    if op == "flip":
        return {"op": op, "at": at, "mask": draw(st.integers(1, 255))}
    if op == "truncate":
        return {"op": op, "at": at}
    chunk = draw(st.sampled_from(["00", "ff", "7fffffff", "ffffffffffffffff", "80000000", "0a", "2200"]) | st.binary(
        min_size=1, max_size=16).map(bytes.hex))
    if op == "overwrite":
        return {"op": op, "at": at, "hex": chunk}
    return {"op": op, "at": at, "hex": chunk, "times": draw(st.sampled_from([1, 2, 64, 4096]))}


def _structured(draw, content, suffix: str) -> dict | None:
    """One edit of ``content`` that reads its format, or None where the format has none."""
    if suffix == ".toml":
        document = tomllib.loads(content.decode())
        paths = _paths(document)
        numbers = [p for p in paths if type(_parent(document, p)[p[-1]]) in (int, float)]
        path = draw(st.one_of([st.sampled_from(some) for some in (numbers, paths) if some]))
        if draw(st.booleans()):
            return {"op": "toml-delete", "path": path}
        return {"op": "toml", "path": path, "value": draw(st.sampled_from(TOML_VALUES))}
    if suffix == ".json":
        path = draw(st.sampled_from([[], *_paths(json.loads(content))]))
        kind = draw(st.sampled_from(["json", "json", "json-delete", "json-nest"] if path else ["json", "json-nest"]))
        if kind == "json-nest":
            return {"op": kind, "path": path, "depth": draw(st.sampled_from(NEST_DEPTHS + [100000]))}
        return {"op": kind, "path": path} | ({"value": draw(st.sampled_from(JSON_VALUES))} if kind == "json" else {})
    if suffix == ".npy":
        field = draw(st.sampled_from(["shape", "shape", "descr", "fortran_order"]))
        values = {"shape": SHAPES, "descr": DESCRS, "fortran_order": [True, False]}[field]
        return {"op": "npy", "field": field, "value": draw(st.sampled_from(values))}
    if suffix in (".npz", ".snnir", "/"):
        return _container_edit(draw, content, suffix)
    if suffix == ".onnx":
        return {"op": "onnx", **_onnx_edit(draw, onnx.load_from_string(content))}
    if suffix == ".nir":
        return {"op": "nir", **_nir_edit(draw, content)}
    return None


def _container_edit(draw, content, suffix: str) -> dict:
    members = _members(content)
    name = draw(st.sampled_from(sorted(members)))
    kind = draw(st.sampled_from(["member", "member", "member", "member-drop", "member-add", "member-rename"]))
    if kind == "member":
        return {"op": kind, "name": name, "mutations": _mutations(draw, members[name], Path(name).suffix)}
    if kind == "member-drop":
        return {"op": kind, "name": name}
    # A directory's new names stay inside it: the mutant is written to disk.
    names = ["extra.npy", "x.npy", "graph.json", "manifest.json"] if suffix == "/" else \
        ["extra.npy", "x.npy", "../x.npy", "/abs.npy", "arrays/999.npy", "\x1b[2J.npy", '""".npy']
    new = draw(st.sampled_from(names))
    if kind == "member-rename":
        return {"op": kind, "name": name, "to": new}
    return {"op": kind, "name": new, "hex": draw(st.sampled_from([members[name].hex(), "", "00" * 16]))}


def _onnx_edit(draw, model) -> dict:
    edit = draw(st.sampled_from(sorted(ONNX_EDITS)))
    index = st.integers(0, 64)
    hostile = st.sampled_from(HOSTILE_STRINGS)
    fields = {
        "graph-name": lambda: {"value": draw(hostile)},
        "node-name": lambda: {"node": draw(index), "value": draw(hostile)},
        "op-type": lambda: {"node": draw(index),
                            "value": draw(st.sampled_from(["LIF", "CubaLIF", "Gemm", "Conv", "Loop", "Bogus", ""]))},
        "domain": lambda: {"node": draw(index), "value": draw(st.sampled_from(["", "ai.snnc", "ai.onnx.ml", "bogus"]))},
        "node-input": lambda: {"node": draw(index), "input": draw(index), "value": draw(hostile)},
        "dim": lambda: {"tensor": draw(index), "dim": draw(index),
                        "value": draw(st.sampled_from([0, -1, 1, 10**9, 2**62, "batch", ""]))},
        "init-dims": lambda: {"init": draw(index), "dims": draw(st.sampled_from(SHAPES[:8]))},
        "init-drop": lambda: {"init": draw(index)},
        "init-fill": lambda: {"init": draw(index), "value": draw(st.sampled_from(HOSTILE_FLOATS))},
        "opset": lambda: {"index": draw(st.integers(0, len(model.opset_import))),
                          "domain": draw(st.sampled_from(["", "ai.snnc", "bogus"])),
                          "version": draw(st.sampled_from([0, 1, 7, 17, 99, 2**40]))},
        "attribute": lambda: {"node": draw(index), "attr": draw(index),
                              "value": draw(st.sampled_from([*HOSTILE_FLOATS, 10**18, -1, *HOSTILE_STRINGS[:4]]))},
        "metadata": lambda: {"node": draw(st.none() | index),
                             "key": draw(st.sampled_from(["snnc.dt", "snnc.states", "snnc.metadata",
                                                          "pkg.torch.onnx.name_scopes"])),
                             "value": draw(st.sampled_from(["nan", "-1", "1e9", "x", "[]", "{", '{"a": 1}',
                                                            "['a', 'b']", *HOSTILE_STRINGS[:4]]))},
        "nest": lambda: {"node": draw(index), "depth": draw(st.sampled_from([2, 30]))},
    }
    return {"edit": edit, **fields[edit]()}


def _nir_items(content: bytes) -> tuple[list[str], list[str]]:
    """The datasets and the node groups (those with a type) of a NIR file, by path."""
    found = []
    with h5py.File(io.BytesIO(content), "r") as file:
        file.visititems(lambda name, item: found.append((name, isinstance(item, h5py.Dataset))))
    datasets = sorted(name for name, dataset in found if dataset)
    return datasets, sorted(name for name, dataset in found if not dataset and f"{name}/type" in datasets)


def _nir_edit(draw, content: bytes) -> dict:
    datasets, groups = _nir_items(content)
    numeric = [d for d in datasets if not d.endswith("type") and not d.endswith("edges") and not d == "version"]
    edit = draw(st.sampled_from(sorted(NIR_EDITS)))
    if edit == "resize":
        return {"edit": edit, "path": draw(st.sampled_from(numeric)), "shape": draw(st.sampled_from(SHAPES[2:7]))}
    if edit == "declare":
        return {"edit": edit, "path": draw(st.sampled_from(numeric)),
                "shape": draw(st.sampled_from([[10**6, 10**6], [10**12], [2**31, 2**31, 2**31], [0]]))}
    if edit == "dtype":
        return {"edit": edit, "path": draw(st.sampled_from(numeric)),
                "dtype": draw(st.sampled_from(["complex128", "S8", "int64", "bool", "float16", "uint8"]))}
    if edit == "fill":
        return {"edit": edit, "path": draw(st.sampled_from(numeric)), "value": draw(st.sampled_from(HOSTILE_FLOATS))}
    if edit == "type":
        return {"edit": edit, "path": draw(st.sampled_from(groups)), "value": draw(st.sampled_from(
            ["NIRGraph", "LIF", "CubaLIF", "Affine", "Linear", "Conv2d", "Input", "Output", "Bogus", *HOSTILE_STRINGS]))}
    if edit == "edges":
        return {"edit": edit, "path": draw(st.sampled_from([d for d in datasets if d.endswith("edges")])),
                "value": draw(st.sampled_from([[["x", "missing"]], [["x", "x"]], [[""]], [["a", "b", "c"]],
                                               [[HOSTILE_STRINGS[0], "x"]]]))}
    if edit == "drop":
        return {"edit": edit, "path": draw(st.sampled_from(datasets + groups))}
    return {"edit": edit, "path": draw(st.sampled_from(groups)), "depth": draw(st.sampled_from(NEST_DEPTHS))}


def _mutations(draw, content, suffix: str) -> list[dict]:
    """At most one structured edit (it parses the seed, which a blind edit may have broken), then
    blind ones; at least one edit, and a directory's edits are its files'."""
    structured = []
    if not isinstance(content, bytes) or draw(st.booleans()):
        structured = [edit] if (edit := _structured(draw, content, suffix)) is not None else []
    if not isinstance(content, bytes):
        return structured
    return structured + [_blind(draw) for _ in range(draw(st.integers(0 if structured else 1, 2)))]


def _input_for(seed: str) -> str:
    return "braille.npy" if seed.startswith("braille") else "digits.npy"


def _model_command(draw, seed: str) -> tuple[list[str], str]:
    """A command on a mutated model or artifact, and the name of its output."""
    command = draw(st.sampled_from(["inspect", "compile", "run", "export"]))
    dt = st.sampled_from(["0", "-1e-4", "nan", "inf", "1e300"]).map(lambda v: [f"--dt={v}"])  # with '=', as argparse reads -1e-4 alone as a flag
    if command == "inspect":
        extra = draw(st.sampled_from([[], ["--format", "json"], ["--format", "dot"], ["--mapping"]]))
        target = draw(st.sampled_from([[]] + [["--target", t] for t in TARGETS]))
        return ["inspect", "{mutant}", *extra, *target, "-o", "{out}"], "ir.txt"
    if command == "compile":
        extra = draw(st.just([]) | st.sampled_from([["--passes", ""], ["--weight-bits", "4"], ["--sparsity", "0.5"],
                                                    ["--reset", "subtract"]]) | dt)
        return ["compile", "{mutant}", "--target", draw(st.sampled_from(TARGETS)), *extra, "-o", "{out}"], "art"
    if command == "run":
        extra = draw(st.just([]) | st.sampled_from([["--steps", "3"], ["--steps", "0"], ["--precision", "float32"]]) | dt)
        if seed == "digits-spinnaker" and draw(st.booleans()):
            extra += ["--backend", "spinnaker"]
        return ["run", "{mutant}", "--input", f"{{seed:{_input_for(seed)}}}", *extra, "-o", "{out}"], "y.npz"
    return ["export", "{mutant}", "-o", "{out}"], "m.nir"


def _array_command(draw, seed: str) -> tuple[list[str], str]:
    model = draw(st.sampled_from(["digits.onnx", "digits-loihi2", "digits-spinnaker", "calibration"]))
    if model == "calibration":
        return ["compile", "{seed:digits.onnx}", "--target", "loihi2", "--calibration", "{mutant}", "-o", "{out}"], "art"
    backend = ["--backend", "spinnaker"] if model == "digits-spinnaker" and draw(st.booleans()) else []
    return ["run", f"{{seed:{model}}}", "--input", "{mutant}", *backend, "-o", "{out}"], "y.npz"


def _target_command(draw, seed: str) -> tuple[list[str], str]:
    model = draw(st.sampled_from(["digits.onnx", "braille.nir"]))
    if draw(st.booleans()):
        return ["compile", f"{{seed:{model}}}", "--target", "{mutant}", "-o", "{out}"], "art"
    return ["inspect", f"{{seed:{model}}}", "--target", "{mutant}", "--mapping", "-o", "{out}"], "ir.txt"


#: Input families: the seeds mutated, and the commands run on a mutant.
FAMILIES = {
    "nir": (["digits.nir", "braille.nir"], _model_command),
    "onnx": (["digits.onnx"], _model_command),
    "snnir": (["digits-sim.snnir", "digits-loihi2.snnir"], _model_command),
    "artifact": (list(ARTIFACTS), _model_command),
    "arrays": (["digits.npy", "digits.npz"], _array_command),
    "targets": ([name for name in BUNDLED if name.endswith(".toml")], _target_command),
}


def draw_recipe(draw, seeds: Seeds, family: str) -> dict:
    names, command = FAMILIES[family]
    seed = draw(st.sampled_from(names))
    argv, out = command(draw, seed)
    stem = draw(st.just("model") | st.sampled_from(HOSTILE_STEMS))
    return {"seed": seed, "stem": stem, "mutations": _mutations(draw, seeds.content(seed), seeds.suffix(seed)),
            "argv": argv, "out": out}


FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                phases=(Phase.explicit, Phase.generate), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])


@pytest.mark.parametrize("family", sorted(FAMILIES))
@FUZZ
@given(data=st.data())
def test_fuzz(seeds, family, data):
    check(draw_recipe(data.draw, seeds, family), seeds)


@pytest.mark.parametrize("case", sorted(CORPUS.glob("*.json")), ids=lambda path: path.stem)
def test_corpus(seeds, case):
    check(json.loads(case.read_text())["recipe"], seeds)
