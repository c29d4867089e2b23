"""Synaptic sums of spikes, ``rows @ weights``, by whichever of two exact ways is cheaper.

A dense matrix product (BLAS) does every multiply-add whether the input spiked or not; the
event-driven sum adds only the weight rows of the inputs that spiked. Their costs cross at an input
density measured by tools/bench/synaptic_sums.py, so each call picks one by the activity of its
rows. Both give the same values whenever the sums are exact in the weights' dtype (integers held in
floats), which is how the fixed-point kernels use them.
"""

from __future__ import annotations

import numba
import numpy as np

# numba's own thread pool rather than OpenMP: on a machine whose cores other processes share, an
# OpenMP thread that waits for a descheduled peer spins, and a call slows down tenfold.
numba.config.THREADING_LAYER = "workqueue"

#: The input density (non-zero entries per entry) under which the event-driven sum is faster than
#: BLAS, measured by tools/bench/synaptic_sums.py on the development machine.
EVENT_DRIVEN_DENSITY = 0.2
#: Rows per parallel task of the event-driven sum.
ROWS_PER_TASK = 16


@numba.njit(parallel=True, cache=True)
def _accumulate(rows, weights, out):
    n_rows, n_in = rows.shape
    n_out = weights.shape[1]
    for task in numba.prange((n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        spiking = np.empty(n_in, np.int64)
        values = np.empty(n_in, weights.dtype)
        for r in range(task * ROWS_PER_TASK, min(n_rows, (task + 1) * ROWS_PER_TASK)):
            # Gather the row's non-zero inputs without a branch per input: spikes are too irregular
            # for branch prediction.
            count = 0
            for i in range(n_in):
                spiking[count] = i
                values[count] = rows[r, i]
                count += rows[r, i] != 0
            for j in range(n_out):
                out[r, j] = 0
            # Four weight rows per pass over the output row: a quarter of its loads and stores.
            k = 0
            while k + 4 <= count:
                a, b, c, d = spiking[k], spiking[k + 1], spiking[k + 2], spiking[k + 3]
                va, vb, vc, vd = values[k], values[k + 1], values[k + 2], values[k + 3]
                for j in range(n_out):
                    out[r, j] += va * weights[a, j] + vb * weights[b, j] + vc * weights[c, j] + vd * weights[d, j]
                k += 4
            for k in range(k, count):
                a, va = spiking[k], values[k]
                for j in range(n_out):
                    out[r, j] += va * weights[a, j]


def event_driven_sum(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``rows @ weights`` over the non-zero entries of ``rows`` only; weights (n_in, n_out) C-ordered."""
    out = np.empty((rows.shape[0], weights.shape[1]), weights.dtype)
    _accumulate(rows, weights, out)
    return out


def dense_sum(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return rows.astype(weights.dtype, copy=False) @ weights


def synaptic_sum(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``rows @ weights`` (rows (n, n_in), weights (n_in, n_out)), event-driven for sparse rows."""
    sparse = np.count_nonzero(rows) < EVENT_DRIVEN_DENSITY * rows.size
    return (event_driven_sum if sparse else dense_sum)(rows, weights)
