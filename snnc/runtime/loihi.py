"""Loihi fixed-point kernels, bit-exact with Lava 0.10.0's bit-accurate models (tag ``fixed_pt``).

``LoihiSynapse`` is Lava's Dense/DelayDense (``PyDenseModelBitAcc``, ``PyDelayDenseModelBitAcc``):
integer weights summed over the spiking inputs, each delay's sum shifted by ``weight_exp``, sent
one step after the spikes arrived (delay d: 1 + d steps). ``LoihiNeuron`` is Lava's LIF
(``PyLifModelBitAcc``): 24-bit u that wraps, 24-bit v that saturates, 12-bit decays rounded toward
zero, activations and threshold shifted left by 6, reset of v to 0. The arithmetic below follows
Lava's code line by line; docs/semantics.md, section 6, states it as equations. The kernels read the
``loihi`` annotations as the simulator checked them (``snnc.ir.contracts``).
"""

from __future__ import annotations

import numba
import numpy as np

from snnc.runtime.kernels import Neuron, TappedSynapse
from snnc.runtime.synaptic_sums import SynapticWeights, synaptic_sum

STATE_LIMIT = 1 << 23
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACTIVATION_SHIFT = 6
#: Lava's ds_offset and dm_offset: u's decay constant is du + 1, v's is dv.
U_DECAY_OFFSET, V_DECAY_OFFSET = 1, 0


def _shift(values: np.ndarray, exponent: int) -> np.ndarray:
    """Lava's weight exponent on integer-valued floats: a left shift, or a right shift that floors."""
    return values * float(1 << exponent) if exponent >= 0 else np.floor(values * 2.0 ** exponent)


def _decay_factor(constant: int) -> float:
    """(4096 - constant) / 4096: a 12-bit dyadic fraction, so state * factor is exact in float64."""
    return (DECAY_UNITY - constant) / DECAY_UNITY


class LoihiSynapse(TappedSynapse):
    """Dense or DelayDense: what arrives at step t left the source at step t - 1 - delay.

    When the runner already delivers the source's previous step (a recurrent edge), the kernel
    adds only the delays, so a recurrent loop takes one step, as in Lava. The integer sums run in
    floats (``synaptic_sum``: a matrix product, or event-driven for sparse spikes), which are exact:
    float32 when every row's sum of |weights| fits its 24-bit mantissa, float64 (53 bits) otherwise.
    """

    def __init__(self, node, dtype, recurrent_input: bool):
        fixed = node.annotations["loihi"]
        weights = np.asarray(fixed["weights"], dtype=np.int64)
        exponent = int(fixed["weight_exp"])
        largest_sum = int(np.abs(weights).sum(axis=1).max(initial=0))
        if exponent > 0 and largest_sum << exponent < 1 << 24:
            # A left shift of an exact sum is the sum of the shifted weights: fold it in, once.
            weights, exponent = weights << exponent, 0
        exact32 = (largest_sum << max(exponent, 0)) < 1 << 24
        delays = None if fixed["delays"] is None else np.asarray(fixed["delays"], np.int64)
        super().__init__(node, dtype, weights.astype(np.float32 if exact32 else np.float64), delays,
                         latency=0 if recurrent_input else 1)
        self.taps = [(shift, SynapticWeights(tap)) for shift, tap in self.taps]
        self.exponent = exponent

    def product(self, rows, weights):
        sums = synaptic_sum(rows, weights)
        return sums if self.exponent == 0 else _shift(sums, self.exponent)

    def finish(self, y):
        # float32 sums scaled by powers of two stay exact: no conversion needed before the neurons.
        return y


#: Neuron updates that make a block worth updating in parallel (about 2 ms in one thread): below
#: that, starting and joining numba's threads costs more than it saves. Measured on the development
#: machine, one step of 128 x 1000 neurons takes 0.15 ms in one thread and 0.29 in two, 16 steps
#: 2.2 and 1.8 ms. So one step of a population, as recurrent cycles run, updates in the caller's thread.
PARALLEL_UPDATES = 1 << 21


@numba.njit(cache=True)
def _lif_steps(x, u, v, bias, u_factor, v_factor, threshold, spikes, counts, traces, part, parts):
    """Lava's PyLifModelBitAcc over ``steps`` for part ``part`` of ``parts`` of the batch: x (batch,
    steps, n) activations; u, v (batch, n) updated in place; spikes (batch, steps, n) written as
    0/1. counts (2, parts, steps, n) receives the part's spike and activity counts, or has no steps;
    traces (2, batch, steps, n) receives u and v after each step, or has no samples. Counts and
    traces have loops of their own, so that the update's loop has no branch and vectorizes."""
    batch, steps, n = x.shape
    counting, tracing = counts.shape[2] > 0, traces.shape[1] > 0
    for b in range(part * batch // parts, (part + 1) * batch // parts):
        for t in range(steps):
            if counting:
                for j in range(n):
                    counts[1, part, t, j] += (x[b, t, j] != 0) | (u[b, j] != 0) | (v[b, j] != 0)
            for j in range(n):
                # Current: decay (rounded toward zero), add the activation aligned to the state's
                # MSBs; the 24-bit register wraps once, by one subtraction or addition.
                current = np.trunc(u[b, j] * u_factor) + x[b, t, j] * float(1 << ACTIVATION_SHIFT)
                current = current - 2 * STATE_LIMIT if current > STATE_LIMIT else current
                current = current + 2 * STATE_LIMIT if current <= -STATE_LIMIT else current
                u[b, j] = current
                # Voltage: decay, add current and bias, saturate; fire strictly above the
                # threshold, reset to 0.
                voltage = min(max(np.trunc(v[b, j] * v_factor) + current + bias[j], -STATE_LIMIT + 1),
                              STATE_LIMIT - 1)
                fired = voltage > threshold
                v[b, j] = 0.0 if fired else voltage
                spikes[b, t, j] = fired
            if counting:
                for j in range(n):
                    counts[0, part, t, j] += spikes[b, t, j]
            if tracing:
                traces[0, b, t] = u[b]
                traces[1, b, t] = v[b]


@numba.njit(parallel=True, cache=True)
def _lif_steps_in_parallel(x, u, v, bias, u_factor, v_factor, threshold, spikes, counts, traces):
    parts = counts.shape[1]
    for part in numba.prange(parts):
        _lif_steps(x, u, v, bias, u_factor, v_factor, threshold, spikes, counts, traces, part, parts)


class LoihiNeuron(Neuron):
    """Lava's bit-accurate LIF on the population's integers; probes report u and v.

    The integers are held in float64, where every operation is exact (values stay far below 2**53
    and the decay factors are 12-bit dyadic fractions); this spares the conversions between the
    synapses' sums and the neurons. One compiled loop runs a whole block of steps and sends the
    spikes as int8.
    """

    state_names = ("u", "v")

    def __init__(self, node, dtype):
        super().__init__(node, dtype)
        fixed = node.annotations["loihi"]
        shape = node.output_shape
        self.u_factor = _decay_factor(int(fixed["du"]) + U_DECAY_OFFSET)
        self.v_factor = _decay_factor(int(fixed["dv"]) + V_DECAY_OFFSET)
        self.threshold = float(int(fixed["vth"]) << ACTIVATION_SHIFT)
        mantissa = np.asarray(fixed["bias_mant"], np.int64).reshape(shape)
        exponent = np.asarray(fixed["bias_exp"], np.int64).reshape(shape)
        self.bias = np.where(exponent >= 0, np.left_shift(mantissa, np.maximum(exponent, 0)),
                             np.right_shift(mantissa, np.maximum(-exponent, 0))).astype(dtype).ravel()

    def sequence(self, x):
        batch, steps = x.shape[:2]
        shape, size = self.node.output_shape, self.bias.size
        spikes = np.empty((batch, steps, size), np.int8)
        parallel = batch * steps * size >= PARALLEL_UPDATES
        parts = min(batch, numba.get_num_threads()) if parallel else 1
        counts = np.zeros((2, parts, steps if self.counts is not None else 0, size), np.int32)
        traces = np.empty((2, batch if self.trace is not None else 0, steps, size), self.dtype)
        arguments = (np.ascontiguousarray(x.reshape(batch, steps, size)), self.state["u"].reshape(batch, size),
                     self.state["v"].reshape(batch, size), self.bias, self.u_factor, self.v_factor, self.threshold,
                     spikes, counts, traces)
        if parallel:
            _lif_steps_in_parallel(*arguments)
        else:
            _lif_steps(*arguments, 0, 1)
        if self.counts is not None:
            for name, count in zip(("spikes", "active"), counts.sum(axis=1)):
                self.counts[name].append(count.reshape(steps, *shape))
        if self.trace is not None:
            for name, trace in zip(self.state_names, traces):
                self.trace[name].append(trace.reshape(batch, steps, *shape))
        return spikes.reshape(batch, steps, *shape)

    def step(self, x):
        return self.sequence(x[:, None])[:, 0]

    def traces(self):
        return {name: trace.astype(np.int64) for name, trace in super().traces().items()}


#: What the simulator runs for this arithmetic: (synapse kernel, neuron kernel).
KERNELS = (LoihiSynapse, LoihiNeuron)
