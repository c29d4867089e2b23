"""Map a population-form graph onto sPyNNaker's s16.15 fixed point (docs/semantics.md, section 7).

Every spiking population becomes one of sPyNNaker's current-based LIF models, chosen by its
dynamics: ``IF_curr_exp`` (CubaLIF: exponential synapses), ``IF_curr_delta`` (LIF) or
``IF_trunc_delta`` (IF: with v_decay = 1 the LIF closed form would never move V). The pass
writes the values the model's C structures hold once the core has initialised them (``neuron_t``,
the synapse shaping state, the threshold, the ring-buffer left shifts) as raw integers under the
node annotation ``"spinnaker"``, and every synapse matrix as sPyNNaker's 16-bit weight magnitudes,
split into excitatory and inhibitory by the sign of their effect, with sPyNNaker's delays in ticks.
The float parameters stay, so the float and fixed-point simulations run from the same IR.

The IR's v becomes sPyNNaker's V times a state scale k per population: the largest power of two
that keeps every value the population can reach (synaptic inputs, the ring-buffer sums, the
membrane's target ``alpha``, V itself) within half of s16.15's range, so nothing wraps, while the
fixed 15 fractional bits resolve v as finely as they can. As k is any power of two, every weight,
bias and threshold fits; what sPyNNaker cannot hold is a decay outside its formats, which is
refused, or clipped with a warning under ``--allow-lossy`` (``QuantizePopulations.fit``).
"""

from __future__ import annotations

import math

import numpy as np

from snnc.errors import IRError
from snnc.ir import Graph
from snnc.ir.contracts import U032_ONE
from snnc.passes.fixed_point import QuantizePopulations

#: s16.15 (``accum``, sPyNNaker's REAL): 1.0 is 2**15.
ONE = 1 << 15
#: The pass keeps every state magnitude below this, half of s16.15's 2**16, as headroom for rounding.
HEADROOM = 1 << 15


def _ring_buffer_shift(largest: float) -> int:
    """sPyNNaker's left shift for a synapse type whose ring-buffer slot can sum to ``largest``
    (AbstractPopulationVertex.get_ring_buffer_shifts): the integer bits that hold it; a 16-bit
    weight then keeps 15 - shift of s16.15's fraction bits."""
    shift = 0 if largest <= 0 else int(math.ceil(max(0.0, math.log2(largest))))
    # "If 2^max_weight_power equals the max weight, we have to add another power"
    return shift + 1 if 2 ** shift <= largest else shift


def membrane_tau_ms(dt: float, exp_tc: np.ndarray) -> np.ndarray:
    """PyNN's tau_m (ms) for a raw s16.15 exp_TC = exp(-ts / tau_m): the time step ``dt`` in seconds."""
    with np.errstate(divide="ignore"):
        return -dt * 1000 / np.log(np.asarray(exp_tc, np.float64) / ONE)


def synapse_tau_ms(dt: float, decay: np.ndarray) -> np.ndarray:
    """PyNN's tau_syn (ms) for a raw u0.32 synapse decay = exp(-ts / tau_syn)."""
    return -dt * 1000 / np.log(np.asarray(decay, np.float64) / U032_ONE)


class QuantizeSpiNNaker(QuantizePopulations):
    """Write every population and synapse group as sPyNNaker's s16.15 integers and 16-bit weights."""

    name = "quantize-spinnaker"
    arithmetic = "spinnaker"
    chip = "sPyNNaker"

    def prepare(self, graph: Graph) -> None:
        self.ts = round(graph.dt * 1000 * ONE)  # the time step in ms, as sPyNNaker's DataType.S1615 writes it
        if not 0 < self.ts < 1 << 31:
            raise IRError(None, f"the time step dt={graph.dt} s is not an s16.15 number of milliseconds")

    def population(self, graph: Graph, node) -> None:
        ts = self.ts
        d = node.op.dynamics()
        per_neuron = lambda a: np.broadcast_to(np.asarray(a, np.float64), node.output_shape).ravel()  # noqa: E731
        if d.reset == "subtract":
            raise IRError(node.name, "resets by subtraction; sPyNNaker's LIF models reset V to v_reset")
        v_decay = self.fit(node.name, "v_decay", per_neuron(d.v_decay), 0.0, 1.0)  # exp(-dt/tau_m)
        exp_tc = np.rint(v_decay * ONE).astype(np.int64)
        leaky = exp_tc < ONE
        current = d.i_decay is not None
        if leaky.any() and not leaky.all():
            raise IRError(node.name, "mixes leaky neurons with neurons whose leak rounds to none in s16.15; "
                                     "a SpiNNaker population runs one neuron model")
        if current and not leaky.all():
            raise IRError(node.name, "has a membrane that does not leak; sPyNNaker's LIF closed form needs "
                                     "v_decay < 1 - 2**-16, and its non-leaky IF has no exponential synapses")
        model = "IF_curr_exp" if current else "IF_curr_delta" if leaky.all() else "IF_trunc_delta"
        fixed: dict = {"model": model}

        # The path from a ring-buffer value (s16.15) to the IR's v, with R_membrane = 1: it enters the
        # synaptic input times `entry`, which a constant input holds at `hold` times its value; the
        # input type turns that into a current times `per_current`; V moves by `leak` times the
        # current per step (1 - exp_TC in the LIF closed form, 1 in IF_trunc).
        leak = np.ones_like(v_decay) if model == "IF_trunc_delta" else 1.0 - exp_tc / ONE
        gain = per_neuron(d.v_gain) * (per_neuron(d.i_gain) if current else 1.0)
        if current:
            # exp(-dt/tau_syn) as u0.32: 0 and 1 are no decay sPyNNaker's synapse shaping can take
            i_decay = self.fit(node.name, "i_decay", per_neuron(d.i_decay), 1 / U032_ONE, 1 - 1 / U032_ONE)
            decay = np.rint(i_decay * U032_ONE)
            # exp_synapse_utils.h decay_and_init: init = (tau_syn / ts) * (1 - decay), tau_syn = -ts / ln(decay)
            init = np.minimum(np.rint((1 - decay / U032_ONE) / -np.log(decay / U032_ONE) * U032_ONE), U032_ONE - 1)
            fixed.update(exc_decay=decay.astype(np.uint32), exc_init=init.astype(np.uint32),
                         inh_decay=decay.astype(np.uint32), inh_init=init.astype(np.uint32))
            entry, hold, per_current = init / U032_ONE, 1.0 / (1.0 - decay / U032_ONE), 1.0
        else:
            fixed["input_scale"] = (ONE << 15) // ts  # input_type_delta.h: kdivk(1.0k, ts), the delta's 1 / ts
            entry, hold, per_current = 1.0, 1.0, fixed["input_scale"] / ONE
        unit = gain / (entry * per_current * leak)  # ring-buffer value per unit of W, before the state scale

        synapses = graph.predecessors(node.name)
        scaled = {s: graph[s].op.weight.astype(np.float64) * unit[:, None] for s in synapses}
        excitatory = sum(np.clip(w, 0, None).sum(axis=1) for w in scaled.values())
        inhibitory = sum(np.clip(-w, 0, None).sum(axis=1) for w in scaled.values())
        # A synapse's bias is a constant input: the current it settles to, from step 0 (section 7).
        synapse_bias = sum(graph[s].op.bias.ravel() for s in synapses if graph[s].op.bias is not None)
        i_offset = gain * hold / leak * synapse_bias
        if model == "IF_trunc_delta":
            i_offset = i_offset + per_neuron(d.bias)
        else:
            v_rest = per_neuron(d.bias) / leak
        threshold, v_reset = per_neuron(d.v_threshold), per_neuron(d.v_reset)

        # The largest magnitude each value can reach when every synapse fires every step.
        inputs = (excitatory + inhibitory) * entry * hold
        drive = per_current * inputs + np.abs(i_offset)
        if model == "IF_trunc_delta":
            reach = np.maximum(np.abs(v_reset), np.abs(threshold) + drive)
        else:
            reach = np.maximum.reduce([drive + np.abs(v_rest), np.abs(v_reset), np.abs(threshold)])
        largest = float(np.max([excitatory, inhibitory, inputs, reach]))
        scale = 2.0 ** math.floor(math.log2(HEADROOM / largest)) if largest > 0 else 1.0

        s1615 = lambda values: np.rint(np.asarray(values) * scale * ONE).astype(np.int32)  # noqa: E731
        # sPyNNaker fires when V >= threshold; one LSB above k * v_threshold makes that V > it.
        fixed.update(r_membrane=ONE, i_offset=s1615(i_offset), v_reset=s1615(v_reset), v_thresh=s1615(threshold) + 1)
        if model != "IF_trunc_delta":
            fixed.update(exp_tc=exp_tc.astype(np.int32), v_rest=s1615(v_rest))
        shifts = np.array([_ring_buffer_shift(float(total.max(initial=0.0)) * scale)
                           for total in (excitatory, inhibitory)], dtype=np.int32)
        fixed["ring_buffer_shifts"] = shifts
        node.annotations["spinnaker"] = fixed

        report = {"model": model, "state_scale": scale,
                  "ring_buffer_shifts": {"excitatory": int(shifts[0]), "inhibitory": int(shifts[1])},
                  "pynn": self._pynn(graph.dt, exp_tc, decay if current else None), "synapses": {}}
        if model != "IF_trunc_delta":
            report["v_decay_error"] = float(np.abs(exp_tc / ONE - v_decay).max())
        if current:
            report["i_decay_error"] = float(np.abs(decay / U032_ONE - i_decay).max())
        v_per_value = entry * per_current * leak / scale  # the IR's v moved by a ring-buffer value on arrival
        for s in synapses:
            report["synapses"][s] = self._synapse(graph[s], scaled[s] * scale, shifts, v_per_value)
        self.populations[node.name] = report

    @staticmethod
    def _pynn(dt: float, exp_tc: np.ndarray, decay: np.ndarray | None) -> dict:
        """The PyNN parameters (ms, ranges over the population) whose on-chip initialisation gives
        these integers; cm = tau_m (nF) gives R_membrane = 1 MOhm, tau_refrac = 0 no refractory period."""
        pynn = {"R_membrane": 1.0, "tau_refrac": 0.0}
        if (exp_tc < ONE).all():
            tau_m = membrane_tau_ms(dt, exp_tc)
            pynn["tau_m"] = [float(tau_m.min()), float(tau_m.max())]
        if decay is not None:
            tau_syn = synapse_tau_ms(dt, decay)
            pynn["tau_syn_E"] = pynn["tau_syn_I"] = [float(tau_syn.min()), float(tau_syn.max())]
        return pynn

    def _synapse(self, node, scaled: np.ndarray, shifts: np.ndarray, v_per_value: np.ndarray) -> dict:
        """Write one synapse matrix (in s16.15 value units) as sPyNNaker's 16-bit magnitudes per type."""
        limit = self.target.longest_delay
        delays = (np.zeros(scaled.shape, np.int64) if node.op.delay is None else node.op.delay.astype(np.int64)) + 1
        if delays.max(initial=1) > limit + 1:
            raise IRError(node.name, f"has a delay of {int(delays.max()) - 1} steps, beyond the {limit} that "
                                     f"{self.target.name}'s cores and delay-extension stages hold; run split-delays")
        step = 2.0 ** (shifts.astype(np.float64) - 15)  # the s16.15 value of one weight unit, per type
        excitatory = np.rint(np.clip(scaled, 0, None) / step[0]).astype(np.uint16)
        inhibitory = np.rint(np.clip(-scaled, 0, None) / step[1]).astype(np.uint16)
        node.annotations["spinnaker"] = {"excitatory": excitatory, "inhibitory": inhibitory,
                                         "delays": delays.astype(np.int32)}
        error = np.abs(excitatory * step[0] - inhibitory * step[1] - scaled) * v_per_value[:, None]
        nonzero = np.count_nonzero(excitatory) + np.count_nonzero(inhibitory)
        return {"delay_ticks_max": int(delays.max(initial=1)),
                "max_error_v": float(error.max(initial=0.0)),
                "nonzero": int(nonzero), "zeroed_by_rounding": int(np.count_nonzero(scaled) - nonzero)}
