"""Writing output files so that a failure never leaves a partial one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from snnc.errors import SnncError


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


def load_arrays(path: str | Path) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy array, or an .npz file's arrays by name, without pickles. Errors say what is wrong
    with the file; the caller adds which flag named it."""
    try:
        data = np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise SnncError("no such file") from None
    except (OSError, ValueError) as e:
        raise SnncError(f"not a readable .npy or .npz file ({e})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {key: data[key] for key in data.files}
    return data
