"""The Python 3.10 environment that runs Lava, created and reused by snnc.

lava-nc 0.10.0 installs only on Python 3.10 with numpy < 2, while snnc runs on 3.11, so snnc never
imports Lava: it runs emitted Lava programs in this environment as a subprocess. The location is
``$SNNC_LAVA_ENV`` if set, else ``~/.cache/snnc/lava-nc-0.10.0`` (``$XDG_CACHE_HOME`` is honoured).
``snnc env lava`` creates it (about a minute and 300 MB) or reports the one that exists.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

from snnc.errors import SnncError

LAVA_VERSION = "0.10.0"
#: What the environment installs: Lava and the numpy it supports.
REQUIREMENTS = [f"lava-nc=={LAVA_VERSION}", "numpy<2"]
_READY = ".snnc-ready.json"


def environment_path() -> Path:
    if os.environ.get("SNNC_LAVA_ENV"):
        return Path(os.environ["SNNC_LAVA_ENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "snnc" / f"lava-nc-{LAVA_VERSION}"


def _is_python310(executable: str) -> bool:
    try:
        result = subprocess.run([executable, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.stdout.strip() == "True"


def find_python310() -> str:
    """``$SNNC_PYTHON310``, else ``python3.10`` on PATH, else a pyenv-installed 3.10."""
    candidates = [os.environ.get("SNNC_PYTHON310"), shutil.which("python3.10"),
                  *sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10*/bin/python3.10")), reverse=True)]
    for candidate in filter(None, candidates):
        if _is_python310(candidate):
            return candidate
    raise SnncError("Lava needs Python 3.10, and none was found: install it (for example `pyenv install 3.10`) "
                    "or set SNNC_PYTHON310 to its path")


def python_path(env: Path | None = None) -> Path:
    return (env or environment_path()) / "bin" / "python"


def ready(env: Path | None = None) -> bool:
    env = env or environment_path()
    return (env / _READY).is_file() and python_path(env).exists()


def ensure_environment(log=print, recreate: bool = False) -> Path:
    """The environment's Python, creating the environment first if it is missing or unfinished.

    A venv records its own absolute path, so it is built where it lives; the ready marker, written
    last, is what makes a half-built environment (an interrupted install) count as missing.
    """
    env = environment_path()
    if ready(env) and not recreate:
        return python_path(env)
    python = find_python310()
    shutil.rmtree(env, ignore_errors=True)
    env.parent.mkdir(parents=True, exist_ok=True)
    log(f"creating the Lava environment in {env} with {python} (lava-nc {LAVA_VERSION}; about a minute)")
    for command in ([python, "-m", "venv", str(env)],
                    [str(python_path(env)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                     *REQUIREMENTS],
                    [str(python_path(env)), "-c", "import lava.magma.core.run_configs, lava.proc.lif.process"]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(env, ignore_errors=True)
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SnncError(f"creating the Lava environment failed at `{' '.join(command[-3:])}`: {last}")
    (env / _READY).write_text(json.dumps({"lava-nc": LAVA_VERSION, "python": python}) + "\n")
    log(f"Lava environment ready: {python_path(env)}")
    return python_path(env)
