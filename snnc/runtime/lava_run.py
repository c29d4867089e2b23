"""Run an emitted Lava program in the Lava environment and read back its results.

The program is an artifact's code (network.py, run_lava.py) and data (params.npz, network.json),
and a sealed artifact proves only that its manifest matches them, not who wrote them. So before it
runs, the program is written again from the artifact's own IR and target, as compile wrote it, and
must be the same byte for byte (``check_program``): then the only code that runs is snnc's, and
every parameter comes from the IR that snnc loaded and verified. Compiles are reproducible, so a
genuine artifact of this snnc version always passes.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

import snnc
from snnc.backends import lava
from snnc.backends.artifact import IR_FILE, LAVA_FILES, TARGET_FILE, Artifact, ArtifactWriter
from snnc.errors import SnncError
from snnc.progress import Progress
from snnc.runtime.lava_env import ensure_environment


def _run_isolated(command: list[str], timeout: float, on_line=None) -> subprocess.CompletedProcess:
    """Run in a process group of its own: when a Lava model fails, Lava's worker processes can hang
    (and so can its stop()), so on a time-out the whole group is killed. Each line of stdout goes to
    ``on_line`` as it arrives; stderr goes to a file, so a chatty program never blocks on a full pipe."""
    expired = threading.Event()

    def expire():
        expired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True)
        timer = threading.Timer(timeout, expire)
        timer.start()
        lines = []
        try:
            for line in process.stdout:
                lines.append(line)
                if on_line is not None:
                    on_line(line)
            process.wait()
        finally:
            timer.cancel()
            process.stdout.close()
            if process.poll() is None:  # interrupted while reading: leave no Lava workers behind
                expire()
        if expired.is_set():
            raise SnncError(f"the Lava program did not finish within {timeout:.0f} s and was stopped")
        errors.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, "".join(lines), errors.read())


def check_program(artifact: Artifact) -> None:
    """Refuse ``artifact`` unless its Lava program is the one snnc writes for its IR and target: one
    line naming the artifact and the first file that differs (or the IR's node that cannot be
    written)."""
    graph = artifact.graph()
    with tempfile.TemporaryDirectory(prefix="snnc-lava-") as scratch:
        writer = ArtifactWriter(Path(scratch) / "program", artifact.target, Path(scratch))
        for name in (IR_FILE, TARGET_FILE):  # the emitter reads the target and checks the IR is there
            os.symlink(artifact.directory / name, writer.path(name))
        try:
            lava.emit(graph, writer)
        except SnncError as e:
            raise SnncError(f"{artifact.directory}: {IR_FILE}: {e}") from None
        for name in LAVA_FILES:
            if not filecmp.cmp(writer.path(name), artifact.directory / name, shallow=False):
                raise SnncError(f"{artifact.directory}: {name} differs from what snnc {snnc.__version__} writes for "
                                f"the Lava program of the artifact's {IR_FILE} and {TARGET_FILE} (compiled by snnc "
                                f"{artifact.manifest['snnc_version']}), so the program is not run; compile it again")


def run_lava(artifact: Path, inputs, steps: int | None = None, probes=(), log=print,
             timings: list | None = None, timeout: float = 3600.0, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Run ``artifact``'s ``run_lava.py`` on ``inputs`` (an array, or arrays by input name); return
    outputs by name and ``NAME:u``/``NAME:v`` for each probe, as the simulator does. A ``timings``
    list receives each sample's Lava run time in seconds (process start-up and imports excluded);
    ``progress`` hears of the environment's creation if it is missing, then of each sample done."""
    # The program is the artifact's own code: it runs only from a sealed artifact with all its
    # files, and only if it is the program snnc writes for the artifact's IR.
    opened = Artifact.open(artifact, backend="lava")
    check_program(opened)
    runner = opened.directory / lava.RUNNER_FILE
    python = ensure_environment(log=log, progress=progress)
    samples = len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
    times = []

    def on_line(line: str) -> None:
        # The program prints "sample N run_seconds S" as each sample finishes.
        if line.startswith("sample "):
            times.append(float(line.split()[-1]))
            if progress is not None:
                progress(len(times), samples, "Lava samples")

    with tempfile.TemporaryDirectory(prefix="snnc-lava-") as scratch:
        given = Path(scratch) / ("x.npz" if isinstance(inputs, dict) else "x.npy")
        if isinstance(inputs, dict):
            np.savez(given, **inputs)
        else:
            np.save(given, inputs)
        out = Path(scratch) / "y.npz"
        command = [str(python), str(runner), "--input", str(given), "--out", str(out), "--timing"]
        command += ["--steps", str(steps)] if steps else []
        for name in probes:
            command += ["--probe", name]
        if progress is not None:
            progress(0, samples, "Lava samples")
        result = _run_isolated(command, timeout, on_line)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["(no output)"]
            error = next((line for line in lines if line.startswith("run_lava: error:")), lines[-1])
            raise SnncError(f"the Lava program in {artifact} failed: {error.removeprefix('run_lava: error: ')}")
        if timings is not None:
            timings += times
        with np.load(out, allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}
