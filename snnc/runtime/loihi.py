"""Loihi fixed-point kernels, bit-exact with Lava 0.10.0's bit-accurate models (tag ``fixed_pt``).

``LoihiSynapse`` is Lava's Dense/DelayDense (``PyDenseModelBitAcc``, ``PyDelayDenseModelBitAcc``):
integer weights summed over the spiking inputs, each delay's sum shifted by ``weight_exp``, sent
one step after the spikes arrived (delay d: 1 + d steps). ``LoihiNeuron`` is Lava's LIF
(``PyLifModelBitAcc``): 24-bit u that wraps, 24-bit v that saturates, 12-bit decays rounded toward
zero, activations and threshold shifted left by 6, reset of v to 0. The arithmetic below follows
Lava's code line by line; docs/semantics.md, section 6, states it as equations.
"""

from __future__ import annotations

import numpy as np

from snnc.errors import SnncError
from snnc.runtime.kernels import Kernel, Neuron

STATE_LIMIT = 1 << 23
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACTIVATION_SHIFT = 6
#: Lava's ds_offset and dm_offset: u's decay constant is du + 1, v's is dv.
U_DECAY_OFFSET, V_DECAY_OFFSET = 1, 0


def _annotation(node, key="loihi") -> dict:
    if key not in node.annotations:
        raise SnncError(f"node {node.name!r} has no Loihi parameters; compile it for a Loihi target")
    return node.annotations[key]


def _shift(values: np.ndarray, exponent) -> np.ndarray:
    """Lava's exponents (of weights and of biases): a left shift, or an arithmetic (flooring) right shift."""
    exponent = np.asarray(exponent)
    return np.where(exponent >= 0, np.left_shift(values, np.maximum(exponent, 0)),
                    np.right_shift(values, np.maximum(-exponent, 0)))


def _decay(state: np.ndarray, constant: int) -> np.ndarray:
    """state * (4096 - constant) / 4096, rounded toward zero as Lava does."""
    product = state * (DECAY_UNITY - constant)
    return np.sign(product) * np.right_shift(np.abs(product), DECAY_SHIFT)


class LoihiSynapse(Kernel):
    """Dense or DelayDense: what arrives at step t left the source at step t - 1 - delay.

    When the runner already delivers the source's previous step (a recurrent edge), the kernel
    adds only the delays, so a recurrent loop takes one step, as in Lava.
    """

    stateful = True

    def __init__(self, node, dtype, recurrent_input: bool):
        super().__init__(node, dtype)
        fixed = _annotation(node)
        weights = np.asarray(fixed["weights"], dtype=np.int64)
        delays = np.zeros(weights.shape, np.int64) if fixed["delays"] is None else np.asarray(fixed["delays"])
        self.exponent = int(fixed["weight_exp"])
        self.latency = 0 if recurrent_input else 1
        # float64 holds these integer sums exactly (|sum| < 2**53), and BLAS computes them fast.
        self.taps = [(int(d) + self.latency, np.where(delays == d, weights, 0).T.astype(np.float64))
                     for d in np.unique(delays)]
        self.depth = max(d for d, _ in self.taps)
        self.history: list[np.ndarray] = []

    def _accumulate(self, spikes: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return _shift(np.rint(spikes @ weights).astype(np.int64), self.exponent)

    def reset(self, batch):
        size = self.op.weight.shape[1]
        self.history = [np.zeros((batch, size)) for _ in range(self.depth)]

    def step(self, x):
        self.history.insert(0, x.reshape(x.shape[0], -1).astype(np.float64))
        y = sum(self._accumulate(self.history[d], w) for d, w in self.taps)
        self.history = self.history[: self.depth]
        return y.reshape(x.shape[0], *self.node.output_shape)

    def sequence(self, x):
        batch, steps = x.shape[:2]
        flat = x.reshape(batch, steps, -1).astype(np.float64)
        y = np.zeros((batch, steps, self.op.weight.shape[0]), np.int64)
        for d, w in self.taps:
            if d < steps:
                y[:, d:] += self._accumulate(flat[:, : steps - d], w)
        return y.reshape(batch, steps, *self.node.output_shape)


class LoihiNeuron(Neuron):
    """Lava's bit-accurate LIF on the population's integers; probes report u and v."""

    state_names = ("u", "v")

    def __init__(self, node, dtype):
        super().__init__(node, dtype)
        fixed = _annotation(node)
        shape = node.output_shape
        self.du, self.dv = int(fixed["du"]), int(fixed["dv"])
        self.threshold = np.int64(fixed["vth"]) << ACTIVATION_SHIFT
        mantissa = np.asarray(fixed["bias_mant"], np.int64).reshape(shape)
        self.bias = _shift(mantissa, np.asarray(fixed["bias_exp"], np.int64).reshape(shape))

    def update(self, x):
        # Current: decay, add the activation aligned to the state's MSBs, wrap into 24 bits once.
        current = _decay(self.state["u"], self.du + U_DECAY_OFFSET) + np.left_shift(x.astype(np.int64), ACTIVATION_SHIFT)
        wrapped = np.where(current > STATE_LIMIT, current - 2 * STATE_LIMIT, current)
        self.state["u"] = np.where(wrapped <= -STATE_LIMIT, current + 2 * STATE_LIMIT, wrapped)
        # Voltage: decay, add current and bias, saturate; fire strictly above the threshold.
        v = np.clip(_decay(self.state["v"], self.dv + V_DECAY_OFFSET) + self.state["u"] + self.bias,
                    -STATE_LIMIT + 1, STATE_LIMIT - 1)
        fired = v > self.threshold
        self.state["v"] = np.where(fired, 0, v)
        return fired


def check_spikes(name: str, values: np.ndarray) -> None:
    if not np.isin(values, (0, 1)).all():
        raise SnncError(f"input {name!r} holds values other than 0 and 1; Loihi inputs are spikes")
