"""Reading input arrays within a memory budget, and writing output files so that a failure never
leaves a partial one."""

from __future__ import annotations

import math
import os
import tempfile
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from snnc.errors import SnncError

#: Environment variable that sets, in bytes, how much the arrays of one file may declare in all.
MEMORY_BUDGET_VARIABLE = "SNNC_MEMORY_BUDGET"
#: Without it, the budget is this fraction of physical memory: a file read whole must leave room
#: for the work done on it, which copies and casts its arrays.
MEMORY_BUDGET_FRACTION = 0.5
#: Where the physical memory cannot be asked (no ``os.sysconf``), the budget is this many bytes.
MEMORY_BUDGET_FALLBACK = 4 << 30
#: Array element types snnc computes with; complex, strings, objects, records and times are refused.
ARRAY_KINDS = {"b": "bool", "i": "integers", "u": "unsigned integers", "f": "float16/32/64"}
#: numpy 1's limit on dimensions (numpy 2 allows 64); no network's array has more.
MAX_DIMENSIONS = 32
#: Zip methods an .npz is written with (``np.savez``, ``np.savez_compressed``); others are refused
#: by name rather than left to fail inside a decompressor.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
NPY_MAGIC = b"\x93NUMPY"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary file in ``path``'s directory, then rename it to ``path``.

    The rename is atomic, so readers see the old file or the whole new one; on failure the temporary
    file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".snnc-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)  # mkstemp makes files private; outputs are for reading
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def check_writable_place(path: str | Path, where: str) -> None:
    """Refuse, creating nothing, an output ``path`` that cannot be written: its nearest existing
    parent is a file, or a directory this user may not write in (missing parents are made later).
    ``where`` starts the message (the flag and path)."""
    ancestor = Path(path).absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SnncError(f"{where}: {ancestor} is a file, so nothing can be written under it")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SnncError(f"{where}: no permission to write in {ancestor}")


def memory_budget() -> int:
    """The bytes the arrays of one file may declare in all: ``$SNNC_MEMORY_BUDGET`` if set, else
    ``MEMORY_BUDGET_FRACTION`` of physical memory."""
    setting = os.environ.get(MEMORY_BUDGET_VARIABLE)
    if setting is not None:
        try:
            value = int(setting)
        except ValueError:
            value = 0
        if value < 1:
            raise SnncError(f"{MEMORY_BUDGET_VARIABLE}={setting}: give a number of bytes >= 1")
        return value
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * MEMORY_BUDGET_FRACTION)
    except (AttributeError, ValueError, OSError):
        return MEMORY_BUDGET_FALLBACK


def _size(count: int) -> str:
    if count >= 2**60:  # integer division: a declared size can exceed every float
        return f"{count // 2**30} GiB"
    if count >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count} bytes"


class Budget:
    """What the arrays of one file may still take, in bytes: ``memory_budget()`` at first."""

    def __init__(self):
        self.total = self.left = memory_budget()


def check_declared_array(shape, dtype, where: str, budget: Budget | None = None) -> int:
    """The bytes of the array a file declares (``shape``, ``dtype``) before anything is read or
    allocated, taken from ``budget`` (one array alone: a new budget).

    Refuses, with one line that starts with ``where``: a dtype other than bool, integers and
    float16/32/64 (native or either byte order); a shape that is not a sequence of at most 32
    integers >= 0 (no bools, no fractions); more bytes than the budget has left."""
    budget = budget or Budget()
    try:
        dtype = np.dtype(dtype)
    except (TypeError, ValueError):
        raise SnncError(f"{where}: {dtype!r} is not an array type; give bool, integer or float16/32/64 data") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or (dtype.kind == "f" and dtype.itemsize > 8):
        raise SnncError(f"{where}: arrays of {dtype} are not read; give {', '.join(ARRAY_KINDS.values())}")
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_DIMENSIONS or not all(
            isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)) and n >= 0 for n in shape):
        raise SnncError(f"{where}: shape {shape!r} is not a shape; give at most {MAX_DIMENSIONS} integers >= 0")
    count = math.prod(int(n) for n in shape)
    nbytes = count * dtype.itemsize
    # An empty array may name any lengths; bounding each by the budget keeps numpy's index types safe.
    if nbytes > budget.left or max(map(int, shape), default=0) > budget.total:
        left = f"the {_size(budget.left)} left of " if budget.left < budget.total else ""
        others = " after the file's other arrays" if left else ""
        raise SnncError(f"{where}: a {dtype} array of shape {tuple(map(int, shape))} takes {_size(nbytes)}, more than "
                        f"{left}snnc's memory budget of {_size(budget.total)}{others} ({MEMORY_BUDGET_VARIABLE} sets "
                        "it in bytes)")
    budget.left -= nbytes
    return nbytes


def read_npy(file: BinaryIO, length: int, where: str, budget: Budget) -> np.ndarray:
    """The ``.npy`` array in the first ``length`` bytes of ``file`` (a file or a zip member, at its
    start), its header checked by ``check_declared_array`` and against ``length`` before the data
    is allocated: a small file never asks for more memory than its bytes hold."""
    try:
        version = np.lib.format.read_magic(file)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version[0]}.{version[1]} (snnc reads 1.0 and 2.0)")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(file)
        nbytes = check_declared_array(shape, dtype, where, budget)
        if length - file.tell() != nbytes:
            raise ValueError(f"its header declares {nbytes} bytes of data, the file holds {length - file.tell()}")
        file.seek(0)
        return np.lib.format.read_array(file, allow_pickle=False)
    # numpy parses the header with ast and, for old versions, tokenize: a mangled one raises from either
    except (ValueError, SyntaxError, tokenize.TokenError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise SnncError(f"{where}: not a readable .npy array ({_one_line(e)})") from None


def check_zip_member(info: zipfile.ZipInfo, where: str) -> None:
    """Refuse a zip member that is encrypted or compressed by a method numpy does not write."""
    if info.flag_bits & 0x1:
        raise SnncError(f"{where}: is encrypted; give an unencrypted archive")
    if info.compress_type not in ZIP_METHODS:
        raise SnncError(f"{where}: compressed by zip method {info.compress_type}; give "
                        f"{' or '.join(ZIP_METHODS.values())} members")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _check_values(array: np.ndarray, where: str, allow_empty: bool) -> np.ndarray:
    if array.size == 0 and not allow_empty:
        raise SnncError(f"{where}: the array of shape {array.shape} holds no values; give at least one per axis")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise SnncError(f"{where}: holds NaN or infinite values; give finite numbers")
    return array


def load_arrays(path: str | Path, allow_empty: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy array, or an .npz file's arrays by name (every member an ``NAME.npy``), without
    pickles, each checked by ``read_npy`` and holding finite values (and, unless ``allow_empty``,
    at least one). Errors say what is wrong with the file and which member; the caller adds which
    flag named it."""
    budget = Budget()
    try:
        with open(Path(path), "rb") as file:
            if file.read(len(NPY_MAGIC)) == NPY_MAGIC:
                file.seek(0)
                return _check_values(read_npy(file, os.fstat(file.fileno()).st_size, "the .npy array", budget),
                                     "the .npy array", allow_empty)
            file.seek(0)
            with zipfile.ZipFile(file) as archive:
                return _read_npz(archive, budget, allow_empty)
    except FileNotFoundError:
        raise SnncError("no such file") from None
    except OSError as e:
        raise SnncError(f"cannot read it ({e.strerror or e})") from None
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError) as e:  # NotImplemented: zip versions
        raise SnncError(f"not a readable .npy or .npz file ({_one_line(e)})") from None


def _read_npz(archive: zipfile.ZipFile, budget: Budget, allow_empty: bool) -> dict[str, np.ndarray]:
    arrays = {}
    for info in archive.infolist():
        where = f"member {info.filename!r}"
        key = info.filename.removesuffix(".npy")
        if key == info.filename or not key:
            raise SnncError(f"{where}: an .npz holds only arrays named NAME.npy")
        if key in arrays:
            raise SnncError(f"{where}: appears twice in the archive")
        check_zip_member(info, where)
        with archive.open(info) as member:
            arrays[key] = _check_values(read_npy(member, info.file_size, where, budget), where, allow_empty)
    if not arrays:
        raise SnncError("the .npz holds no arrays")
    return arrays
