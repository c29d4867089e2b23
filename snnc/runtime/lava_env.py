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
from snnc.progress import Progress

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


def _steps(python: str, env: Path) -> list[tuple[str, list[str]]]:
    """The commands that build the environment, each with what a progress bar says while it runs."""
    return [("creating the venv", [python, "-m", "venv", str(env)]),
            (f"pip install lava-nc {LAVA_VERSION}", [str(python_path(env)), "-m", "pip", "install",
                                                     "--disable-pip-version-check", *REQUIREMENTS]),
            ("checking that Lava imports",
             [str(python_path(env)), "-c", "import lava.magma.core.run_configs, lava.proc.lif.process"])]


def _run_step(command: list[str], collected) -> tuple[int, str]:
    """Run one build step; its exit code and the last line of its output (stdout and stderr
    together). ``collected(n)`` hears of the packages pip has collected so far: pip's output is how
    a progress bar follows the install."""
    count, last = 0, "(no output)"
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            last = line.strip() or last
            if line.startswith("Collecting "):
                count += 1
                collected(count)
    return process.returncode, last


def ensure_environment(log=print, recreate: bool = False, progress: Progress | None = None) -> Path:
    """The environment's Python, creating the environment first if it is missing or unfinished;
    ``progress`` hears of each build step, and of each package pip collects.

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
    steps = _steps(python, env)

    def tell(index: int, label: str, collected: int = 0) -> None:
        if progress is not None:
            progress(index, len(steps), f"{label}: {collected} packages collected" if collected else label)

    for index, (label, command) in enumerate(steps):
        tell(index, label)
        returncode, last = _run_step(command, lambda collected: tell(index, label, collected))
        if returncode != 0:
            shutil.rmtree(env, ignore_errors=True)
            raise SnncError(f"creating the Lava environment failed at `{' '.join(command[-3:])}`: {last}")
    tell(len(steps), "")
    (env / _READY).write_text(json.dumps({"lava-nc": LAVA_VERSION, "python": python}) + "\n")
    log(f"Lava environment ready: {python_path(env)}")
    return python_path(env)
