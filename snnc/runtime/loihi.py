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
from snnc.runtime.kernels import Neuron, TappedSynapse

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


def _shift(values: np.ndarray, exponent: int) -> np.ndarray:
    """Lava's weight exponent on integer-valued floats: a left shift, or a right shift that floors."""
    return values * float(1 << exponent) if exponent >= 0 else np.floor(values * 2.0 ** exponent)


def _decay_factor(constant: int) -> float:
    """(4096 - constant) / 4096: a 12-bit dyadic fraction, so state * factor is exact in float64."""
    return (DECAY_UNITY - constant) / DECAY_UNITY


class LoihiSynapse(TappedSynapse):
    """Dense or DelayDense: what arrives at step t left the source at step t - 1 - delay.

    When the runner already delivers the source's previous step (a recurrent edge), the kernel
    adds only the delays, so a recurrent loop takes one step, as in Lava. The integer sums run as
    float matrix products, which are exact: float32 when every row's sum of |weights| fits its
    24-bit mantissa, float64 (53 bits) otherwise.
    """

    def __init__(self, node, dtype, recurrent_input: bool):
        fixed = _annotation(node)
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
        self.exponent = exponent

    def product(self, rows, weights):
        return rows @ weights if self.exponent == 0 else _shift(rows @ weights, self.exponent)

    def finish(self, y):
        # float32 sums scaled by powers of two stay exact: no conversion needed before the neurons.
        return y


class LoihiNeuron(Neuron):
    """Lava's bit-accurate LIF on the population's integers; probes report u and v.

    The integers are held in float64, where every operation below is exact (values stay far below
    2**53 and the decay factors are 12-bit dyadic fractions); this spares the conversions between
    the synapses' matrix products and the neurons.
    """

    state_names = ("u", "v")

    def __init__(self, node, dtype):
        super().__init__(node, dtype)
        fixed = _annotation(node)
        shape = node.output_shape
        self.u_factor = _decay_factor(int(fixed["du"]) + U_DECAY_OFFSET)
        self.v_factor = _decay_factor(int(fixed["dv"]) + V_DECAY_OFFSET)
        self.threshold = float(int(fixed["vth"]) << ACTIVATION_SHIFT)
        mantissa = np.asarray(fixed["bias_mant"], np.int64).reshape(shape)
        exponent = np.asarray(fixed["bias_exp"], np.int64).reshape(shape)
        self.bias = np.where(exponent >= 0, np.left_shift(mantissa, np.maximum(exponent, 0)),
                             np.right_shift(mantissa, np.maximum(-exponent, 0))).astype(dtype)
        self.has_bias = bool(self.bias.any())

    def update(self, x):
        # Current: decay (rounded toward zero), add the activation aligned to the state's MSBs.
        current = np.multiply(x, float(1 << ACTIVATION_SHIFT), dtype=np.float64)  # synapses may send float32
        if self.u_factor:
            current += np.trunc(self.state["u"] * self.u_factor)
        # Lava wraps the 24-bit register once: one subtraction or addition of 2**24, never a modulo.
        if current.max(initial=0) > STATE_LIMIT or current.min(initial=0) <= -STATE_LIMIT:
            high, low = current > STATE_LIMIT, current <= -STATE_LIMIT
            current = np.where(high, current - 2 * STATE_LIMIT, np.where(low, current + 2 * STATE_LIMIT, current))
        self.state["u"] = current
        # Voltage: decay, add current and bias, saturate; fire strictly above the threshold, reset to 0.
        v = np.trunc(self.state["v"] * self.v_factor) if self.v_factor != 1 else self.state["v"].copy()
        v += current
        if self.has_bias:
            v += self.bias
        np.clip(v, -STATE_LIMIT + 1, STATE_LIMIT - 1, out=v)
        fired = v > self.threshold
        np.copyto(v, 0.0, where=fired)
        self.state["v"] = v
        return fired

    def traces(self):
        return {name: trace.astype(np.int64) for name, trace in super().traces().items()}


#: What the simulator runs for this arithmetic: (synapse kernel, neuron kernel).
KERNELS = (LoihiSynapse, LoihiNeuron)
