"""Run an emitted Lava program in the Lava environment and read back its results."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from snnc.errors import SnncError
from snnc.runtime.lava_env import ensure_environment


def _run_isolated(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run in a process group of its own: when a Lava model fails, Lava's worker processes can hang
    (and so can its stop()), so on a time-out the whole group is killed."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise SnncError(f"the Lava program did not finish within {timeout:.0f} s and was stopped") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run_lava(artifact: Path, inputs, steps: int | None = None, probes=(), log=print,
             timings: list | None = None, timeout: float = 3600.0) -> dict[str, np.ndarray]:
    """Run ``artifact``'s ``run_lava.py`` on ``inputs`` (an array, or arrays by input name); return
    outputs by name and ``NAME:u``/``NAME:v`` for each probe, as the simulator does. A ``timings``
    list receives each sample's Lava run time in seconds (process start-up and imports excluded)."""
    runner = Path(artifact) / "run_lava.py"
    if not runner.is_file():
        raise SnncError(f"{artifact}: holds no Lava program; compile it for a Loihi target (--target loihi2)")
    python = ensure_environment(log=log)
    with tempfile.TemporaryDirectory(prefix="snnc-lava-") as scratch:
        given = Path(scratch) / ("x.npz" if isinstance(inputs, dict) else "x.npy")
        if isinstance(inputs, dict):
            np.savez(given, **inputs)
        else:
            np.save(given, inputs)
        out = Path(scratch) / "y.npz"
        command = [str(python), str(runner), "--input", str(given), "--out", str(out)]
        command += ["--steps", str(steps)] if steps else []
        for name in probes:
            command += ["--probe", name]
        if timings is not None:
            command.append("--timing")
        result = _run_isolated(command, timeout)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["(no output)"]
            error = next((line for line in lines if line.startswith("run_lava: error:")), lines[-1])
            raise SnncError(f"the Lava program in {artifact} failed: {error.removeprefix('run_lava: error: ')}")
        if timings is not None:
            timings += [float(line.split()[-1]) for line in result.stdout.splitlines() if line.startswith("sample ")]
        with np.load(out, allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}
