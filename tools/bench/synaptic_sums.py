"""Where the event-driven synaptic sum overtakes the dense matrix product (snnc.runtime.synaptic_sums).

Times both ways of summing spikes over weights, for the layer shapes of tools/bench/sim_vs_lava.py,
row counts of one step of a 128-sample batch (how recurrent cycles run) and of a block of steps (how
feed-forward layers run), and input densities from 1% to 50%. Prints the time of each in ns per
row (the best of ``--repeat`` runs: other work on a shared machine only slows a run down), the
density at which they cross, and the density under which snnc.runtime.synaptic_sums picks the
event-driven sum (``crossover_density``, fitted to these crossovers).

    .venv/bin/python tools/bench/synaptic_sums.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from snnc.runtime.synaptic_sums import SynapticWeights, crossover_density, dense_sum, event_driven_sum

SHAPES = ((784, 512), (512, 512), (512, 10), (100, 1000), (1000, 1000), (100, 100))
ROWS = (128, 128 * 40)
DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def best_time(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timings per case; the best is kept")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| n_in x n_out | rows | " + " | ".join(f"{d:.0%}" for d in DENSITIES) + " | crossover | snnc's rule |")
    print("| --- | --- | " + " | ".join("---" for _ in DENSITIES) + " | --- | --- |")
    for n_in, n_out in SHAPES:
        # Loihi's weights: even 8-bit mantissas.
        weights = SynapticWeights((rng.integers(-128, 128, (n_in, n_out)) * 2).astype(np.float32))
        for n_rows in ROWS:
            cells, crossover = [], None
            for density in DENSITIES:
                rows = (rng.random((n_rows, n_in)) < density).astype(np.int8)
                if not np.array_equal(event_driven_sum(rows, weights), dense_sum(rows, weights.floats)):
                    raise SystemExit(f"{n_in}x{n_out}: the two sums differ at density {density}")
                event = best_time(lambda: event_driven_sum(rows, weights), args.repeat) / n_rows * 1e9
                dense = best_time(lambda: dense_sum(rows, weights.floats), args.repeat) / n_rows * 1e9
                cells.append(f"{event:.0f} / {dense:.0f}")
                if crossover is None and event > dense:
                    crossover = density
            rule = crossover_density(n_out)
            print(f"| {n_in} x {n_out} | {n_rows} | " + " | ".join(cells)
                  + f" | {'above 50%' if crossover is None else f'{crossover:.0%}'} | "
                  + (f"below {rule:.0%}" if rule > 0 else "never") + " |")
    print("\ncells: event-driven / dense, ns per row; crossover: the first density where dense is faster; "
          "snnc's rule: where the simulator sums event-driven")


if __name__ == "__main__":
    main()
