"""Compile time and peak memory against network size (issue 7, item 6).

The IR stores every synapse group as a dense matrix, so a network of 1 million neurons and 100
million synapses fits in memory only if its matrices are dense: here a chain of P populations of
100 LIF neurons, each fed by the previous one through a dense 100 x 100 Affine (P = 10,000: 1M
neurons, 100M synapses, 800 MB of float64 weights). Each size is compiled in a fresh process for
a Loihi 2 target with a board of 4 x 2 chips (1M neurons at 800 bits each need about 763 cores):
the stages fuse-synapses, quantize-loihi and map-cores (run by one pass manager, as ``snnc
compile`` runs a target's pipeline: it copies its input once, counted with fuse-synapses, and
verifies the graph after each pass), then the artifact (model.snnir, and Lava's network.py and
params.npz). Peak memory is the process's maximum resident set (getrusage).

    .venv/bin/python tools/bench/scale.py [--populations 625,1250,2500,5000,10000] [--timeout 1800] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NEURONS = 100
GOALS = {"seconds": 60.0, "peak_gb": 8.0}


def target_file(directory: Path) -> Path:
    """Loihi 2 on a board of 4 x 2 chips."""
    from snnc.targets import TARGET_DIR

    text = (TARGET_DIR / "loihi2.toml").read_text()
    text = text.replace('name = "loihi2"', 'name = "loihi2-board-4x2"')
    for key, value in (("board_width", 4), ("board_height", 2)):
        text = text.replace(f'{key} = {{ value = 1, source = "one chip" }}',
                            f'{key} = {{ value = {value}, source = "a board of 4 x 2 chips (benchmark)" }}')
    path = directory / "loihi2-board-4x2.toml"
    path.write_text(text)
    return path


def chain(populations: int):
    from snnc import ir

    rng = np.random.default_rng(0)
    graph = ir.Graph(dt=1e-3, name=f"chain-{populations}x{NEURONS}")
    graph.add("in", ir.Input(shape=(NEURONS,)))
    previous = "in"
    shape = (NEURONS,)
    for i in range(populations):
        graph.add(f"w{i}", ir.Affine(weight=rng.normal(0, 0.3, (NEURONS, NEURONS))))
        graph.add(f"p{i}", ir.LIF(v_decay=np.full(shape, 0.9), v_gain=np.ones(shape), bias=np.zeros(shape),
                                  v_threshold=np.ones(shape), v_reset=np.zeros(shape)))
        graph.connect(previous, f"w{i}")
        graph.connect(f"w{i}", f"p{i}")
        previous = f"p{i}"
    graph.add("out", ir.Output())
    graph.connect(previous, "out")
    return graph


def one(populations: int) -> dict:
    """Compile one size in this process; return the seconds of every stage and the peak memory."""
    from snnc.backends import EMITTERS, sim
    from snnc.backends.artifact import ArtifactWriter
    from snnc.ir import verify
    from snnc.passes import PassManager
    from snnc.passes.fuse import FuseSynapses
    from snnc.passes.loihi import QuantizeLoihi
    from snnc.passes.mapping import MapCores
    from snnc.targets import load_target

    seconds = {}
    with tempfile.TemporaryDirectory() as scratch:
        target = load_target(str(target_file(Path(scratch))))
        started = time.perf_counter()
        graph = verify(chain(populations))
        seconds["build"] = time.perf_counter() - started
        cpu_started = time.process_time()
        mapper = MapCores(target)
        manager = PassManager([FuseSynapses(), QuantizeLoihi(target), mapper])
        started = time.perf_counter()
        graph = manager.run(graph)
        # The manager's copy and verify of its input are counted with the first pass.
        seconds.update(manager.seconds)
        seconds["fuse-synapses"] += time.perf_counter() - started - sum(manager.seconds.values())
        mapping = {key: mapper.summary[key] for key in ("cores", "chips", "cores_over_lower_bound")}
        started = time.perf_counter()
        with ArtifactWriter(Path(scratch) / "artifact", target.name, Path(scratch)) as writer:
            sim.emit(graph, writer)
            for emit in EMITTERS[target.arithmetic]:
                emit(graph, writer)
            artifact = writer.commit()
        seconds["emit"] = time.perf_counter() - started
        # CPU seconds are what other users of the shared machine inflate least.
        cpu_seconds = time.process_time() - cpu_started
        artifact_gb = sum(f.stat().st_size for f in artifact.iterdir()) / 2 ** 30
    compile_seconds = sum(value for key, value in seconds.items() if key != "build")
    return {"populations": populations, "neurons": populations * NEURONS, "synapses": populations * NEURONS ** 2,
            "seconds": seconds, "compile_seconds": compile_seconds, **mapping, "artifact_gb": artifact_gb,
            "cpu_seconds": cpu_seconds,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def compile_once(populations: int, timeout: float) -> dict | None:
    """One size compiled in a fresh process; None (and a row saying why) if it failed or ran out of time."""
    try:
        run = subprocess.run([sys.executable, __file__, "--one", str(populations)], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"| {populations} | {populations * NEURONS} | {populations * NEURONS ** 2} | not finished within "
              f"{timeout:.0f} s |")
        return None
    if run.returncode:
        print(f"| {populations} | failed: {run.stderr.strip().splitlines()[-1]} |")
        return None
    return json.loads(run.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", default="625,1250,2500,5000,10000")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for one size")
    parser.add_argument("--repeat", type=int, default=1,
                        help="compile each size this many times; the fastest run is shown, with the spread")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    stages = ("fuse-synapses", "quantize-loihi", "map-cores", "emit")
    print("| populations x 100 | neurons | synapses | build s | " + " | ".join(f"{s} s" for s in stages)
          + " | compile s | compile s, all runs | s per 1M synapses | compile CPU s | peak GB | artifact GB "
          "| cores (chips) | cores / bound |")
    print("|" + " --- |" * (len(stages) + 12))
    results = []
    for populations in map(int, args.populations.split(",")):
        runs = [run for run in (compile_once(populations, args.timeout) for _ in range(args.repeat)) if run]
        if len(runs) < args.repeat:
            break
        r = min(runs, key=lambda run: run["compile_seconds"])
        results.append(r)
        spread = " ".join(f"{run['compile_seconds']:.1f}" for run in sorted(runs, key=lambda run: run["compile_seconds"]))
        print(f"| {populations} | {r['neurons']} | {r['synapses']} | {r['seconds']['build']:.1f} | "
              + " | ".join(f"{r['seconds'][s]:.1f}" for s in stages)
              + f" | {r['compile_seconds']:.1f} | {spread} | {r['compile_seconds'] / r['synapses'] * 1e6:.2f} | "
              f"{r['cpu_seconds']:.1f} | {r['peak_gb']:.2f} | {r['artifact_gb']:.2f} | {r['cores']} ({r['chips']}) | "
              f"{r['cores_over_lower_bound']:.3f} |", flush=True)
    if len(results) >= 2:
        sizes = np.log([r["synapses"] for r in results])
        slope = np.polyfit(sizes, np.log([r["compile_seconds"] for r in results]), 1)[0]
        print(f"\ngrowth: compile time ~ size^{slope:.2f} (1 is linear)")
    largest = results[-1] if results else None
    if largest:
        met = largest["compile_seconds"] < GOALS["seconds"] and largest["peak_gb"] < GOALS["peak_gb"]
        print(f"goal at {largest['neurons']} neurons, {largest['synapses']} synapses: under {GOALS['seconds']:.0f} s "
              f"and {GOALS['peak_gb']:.0f} GB: {'met' if met else 'NOT met'} ({largest['compile_seconds']:.1f} s, "
              f"{largest['peak_gb']:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
