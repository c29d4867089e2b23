"""Synaptic sums of spikes, ``rows @ weights``, by whichever of two exact ways is cheaper.

A dense matrix product (BLAS) does every multiply-add whether the input spiked or not; the
event-driven sum adds only the weight rows of the inputs that spiked, at a cost per spike that
does not shrink with the number of outputs. Their costs cross at an input density that
tools/bench/synaptic_sums.py measures for a range of layer shapes (``crossover_density`` follows
it), so each call picks one by the activity of its rows. Both are exact, and so give the same
values, for integer weights held in floats whose sums fit the float's mantissa, which is how the
fixed-point kernels use them.
"""

from __future__ import annotations

import numba
import numpy as np

# numba's own thread pool rather than OpenMP: on a machine whose cores other processes share, an
# OpenMP thread that waits for a descheduled peer spins, and a call slows down tenfold.
numba.config.THREADING_LAYER = "workqueue"

#: The input density (non-zero entries per entry) under which the event-driven sum is faster than
#: BLAS for wide layers, and the number of outputs under which BLAS is always faster: fitted to the
#: crossovers that tools/bench/synaptic_sums.py measured on the development machine (docs/benchmarks.md).
EVENT_DRIVEN_DENSITY = 0.4
EVENT_DRIVEN_OUTPUTS = 55
#: Rows per parallel task of the event-driven sum.
ROWS_PER_TASK = 16
#: Additions that make an event-driven sum worth running in parallel (about 1 ms in one thread):
#: below that, starting and joining numba's threads costs more than it saves. Measured on the
#: development machine, 128 rows of a 1000 x 1000 layer at 12% take 0.31 ms in one thread and 0.47
#: in two, 1024 rows 3.0 and 2.2 ms. So one step of a recurrent layer runs in the caller's thread.
PARALLEL_ADDITIONS = 1 << 25


class SynapticWeights:
    """A matrix of integer weights (n_in, n_out), held in floats, in the two forms the sums read.

    BLAS reads the floats. The event-driven sum reads the same integers divided by their greatest
    common divisor, in int8 when they fit, summed in int16 lanes (twice as many per instruction as
    float32, and a quarter of the memory), else int16 summed in int32, else the floats themselves;
    each partial sum is scaled back by the divisor, exactly, into the floats' dtype.
    """

    def __init__(self, weights: np.ndarray):
        self.floats = np.ascontiguousarray(weights)
        integers = self.floats.astype(np.int64)
        divisor = int(np.gcd.reduce(integers, axis=None)) or 1
        largest = int(np.abs(integers).max(initial=0)) // divisor
        for weight_type, partial_type in ((np.int8, np.int16), (np.int16, np.int32)):
            if largest <= np.iinfo(weight_type).max and np.array_equal(integers, self.floats):
                self.events = (integers // divisor).astype(weight_type)
                #: Spikes whose weights a partial sum can take in, at one spike per input.
                self.budget = np.iinfo(partial_type).max // max(largest, 1)
                #: An empty array of the partial sums' dtype (numba reads a dtype from an array fastest).
                self.partial, self.scale = np.empty(0, partial_type), float(divisor)
                break
        else:
            self.events, self.budget = self.floats, np.iinfo(np.int32).max  # no limit: a float sum cannot overflow
            self.partial, self.scale = np.empty(0, self.floats.dtype), 1.0

    @property
    def shape(self):
        return self.floats.shape


@numba.njit(cache=True)
def _accumulate(rows, weights, budget, scale, partial_like, out, first, last):
    """out[r] = scale * (sum over the non-zero entries v = rows[r, i] of v * weights[i]) for the
    rows first..last - 1, in groups of spikes small enough that a partial sum in the dtype of
    ``partial_like`` cannot overflow."""
    n_in = rows.shape[1]
    n_out = weights.shape[1]
    spiking = np.empty(n_in, np.int64)
    # Inputs that sent more than one spike (the sum of several sources), with the spikes beyond the first.
    repeated = np.empty(n_in, np.int64)
    repeats = np.empty(n_in, partial_like.dtype)
    partial = np.empty(n_out, partial_like.dtype)
    for r in range(first, last):
        # Gather the row's non-zero inputs without a branch per input: spikes are too irregular
        # for branch prediction (the branch for repeats is almost never taken).
        count, n_repeated = 0, 0
        for i in range(n_in):
            spiking[count] = i
            count += rows[r, i] != 0
            if rows[r, i] != 0 and rows[r, i] != 1:
                repeated[n_repeated] = i
                repeats[n_repeated] = rows[r, i] - 1
                n_repeated += 1
        # One spike of each input first, without multiplications (a row without spikes takes one
        # empty group, which writes its zeros).
        for start in range(0, max(count, 1), budget):
            end = min(count, start + budget)
            for j in range(n_out):
                partial[j] = 0
            # Four weight rows per pass over the partial sum: a quarter of its loads and stores.
            k = start
            while k + 4 <= end:
                a, b, c, d = spiking[k], spiking[k + 1], spiking[k + 2], spiking[k + 3]
                for j in range(n_out):
                    partial[j] += weights[a, j] + weights[b, j] + weights[c, j] + weights[d, j]
                k += 4
            for k in range(k, end):
                a = spiking[k]
                for j in range(n_out):
                    partial[j] += weights[a, j]
            if start == 0:
                for j in range(n_out):
                    out[r, j] = partial[j] * scale
            else:
                for j in range(n_out):
                    out[r, j] += partial[j] * scale
        for k in range(n_repeated):
            a, times = repeated[k], repeats[k]
            for j in range(n_out):
                out[r, j] += times * weights[a, j] * scale


@numba.njit(parallel=True, cache=True)
def _accumulate_in_parallel(rows, weights, budget, scale, partial_like, out):
    n_rows = rows.shape[0]
    for task in numba.prange((n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        _accumulate(rows, weights, budget, scale, partial_like, out, task * ROWS_PER_TASK,
                    min(n_rows, (task + 1) * ROWS_PER_TASK))


def event_driven_sum(rows: np.ndarray, weights: SynapticWeights, spikes: int | None = None) -> np.ndarray:
    """``rows @ weights`` over the non-zero entries of ``rows`` (integers: spike counts) only;
    ``spikes``, the number of non-zero entries if known, decides whether to run in parallel."""
    out = np.empty((rows.shape[0], weights.shape[1]), weights.floats.dtype)
    arguments = (rows, weights.events, weights.budget, weights.scale, weights.partial, out)
    if spikes is None:
        spikes = np.count_nonzero(rows)
    if spikes * weights.shape[1] >= PARALLEL_ADDITIONS:
        _accumulate_in_parallel(*arguments)
    else:
        _accumulate(*arguments, 0, rows.shape[0])
    return out


def dense_sum(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return rows.astype(weights.dtype, copy=False) @ weights


def crossover_density(n_out: int) -> float:
    """The input density under which the event-driven sum into ``n_out`` outputs is the faster."""
    return EVENT_DRIVEN_DENSITY * (1 - EVENT_DRIVEN_OUTPUTS / n_out)


def synaptic_sum(rows: np.ndarray, weights: SynapticWeights) -> np.ndarray:
    """``rows @ weights`` (rows (n, n_in), weights (n_in, n_out)), event-driven for sparse rows."""
    spikes = np.count_nonzero(rows)
    return event_driven_sum(rows, weights, spikes) if spikes < crossover_density(weights.shape[1]) * rows.size \
        else dense_sum(rows, weights.floats)
