"""Speed of snnc's loihi2 fixed-point simulator against Lava's own, on identical spikes.

Runs two networks for 1000 steps: a 784-512-512-10 dense LIF network and a 1000-neuron recurrent
LIF network (100 inputs, 1000 x 1000 recurrent weights). Each is compiled for loihi2; snnc's
simulator runs a batch of samples, Lava (Loihi2SimCfg, select_tag="fixed_pt", in the Python 3.10
environment of `snnc env lava`) runs the first few of them one at a time. The script checks that the
output spikes are identical and prints the time per sample of each and their ratio, as a Markdown
table for docs/benchmarks.md. snnc's run is timed ``--repeat`` times: the table shows the best time
and, in brackets, the slowest (the machine may be shared). ``--lava-samples 0`` times snnc alone.

    .venv/bin/python tools/bench/sim_vs_lava.py [--batch 64] [--lava-samples 2] [--steps 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from mapping import chain  # noqa: E402

from snnc import ir  # noqa: E402
from snnc.backends import compile_graph  # noqa: E402
from snnc.runtime.lava_run import run_lava  # noqa: E402
from snnc.runtime.simulator import Simulator  # noqa: E402


def dense_network(rng) -> ir.Graph:
    sizes = (784, 512, 512, 10)
    return chain("dense-784-512-512-10", [ir.Input(shape=(784,)), *(
        (ir.Affine(weight=rng.normal(0, 1.0 / np.sqrt(0.1 * n_in), (n_out, n_in))), (n_out,))
        for n_in, n_out in zip(sizes, sizes[1:]))])


def recurrent_network(rng) -> ir.Graph:
    graph = chain("recurrent-1000", [ir.Input(shape=(100,)), (ir.Affine(weight=rng.normal(0, 0.6, (1000, 100))), (1000,))])
    graph.add("rec", ir.Affine(weight=rng.normal(0, 0.04, (1000, 1000))))
    graph.connect("lif0", "rec")
    graph.connect("rec", "lif0")
    return graph


def measure(graph: ir.Graph, batch: int, lava_samples: int, steps: int, rate: float, repeat: int, scratch: Path,
            rng) -> dict:
    source = scratch / f"{graph.name}.snnir"
    ir.save(ir.verify(graph), source)
    artifact = compile_graph(graph, "loihi2", source, scratch / graph.name)
    lowered = ir.verify(ir.load(artifact / "model.snnir"))
    x = (rng.random((batch, steps, *lowered[lowered.inputs[0]].output_shape)) < rate).astype(np.float64)
    simulator = Simulator(lowered)
    simulator.run(x[:1, :10])  # warm-up: imports and first allocations are not simulation
    snnc_seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        ours = simulator.run(x, count=True)
        snnc_seconds.append((time.perf_counter() - started) / batch)
    rates = {name: float(p.spikes.mean() / batch) for name, p in simulator.activity.populations.items()}
    result = {"network": graph.name, "steps": steps, "batch": batch, "lava_samples": lava_samples,
              "snnc_s_per_sample": min(snnc_seconds), "snnc_s_per_sample_slowest": max(snnc_seconds), "rates": rates}
    if lava_samples:
        timings: list[float] = []
        theirs = run_lava(artifact, x[:lava_samples].astype(np.int64), timings=timings, log=lambda line: None)
        lava_seconds = float(np.mean(timings))
        result.update(lava_s_per_sample=lava_seconds, speedup=lava_seconds / min(snnc_seconds),
                      identical=all(np.array_equal(ours[k][:lava_samples], theirs[k]) for k in theirs))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lava-samples", type=int, default=2, help="samples Lava runs; 0 times snnc alone")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.05, help="input spike probability per step")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of snnc; the best is compared")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for build in (dense_network, recurrent_network):
            rows.append(measure(build(rng), args.batch, args.lava_samples, args.steps, args.rate, args.repeat,
                                Path(scratch), rng))
    print("| network | steps | snnc ms/sample, best (slowest) | batch | Lava ms/sample | speed-up | identical spikes "
          "| firing rates |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        rates = ", ".join(f"{k} {v:.3f}" for k, v in r["rates"].items())
        lava = (f"{1000 * r['lava_s_per_sample']:.0f} | {r['speedup']:.0f}x | {'yes' if r['identical'] else 'NO'}"
                if r["lava_samples"] else "not run | | ")
        print(f"| {r['network']} | {r['steps']} | {1000 * r['snnc_s_per_sample']:.1f} "
              f"({1000 * r['snnc_s_per_sample_slowest']:.1f}) | {r['batch']} | {lava} | {rates} |")


if __name__ == "__main__":
    main()
