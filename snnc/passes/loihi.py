"""Map a population-form graph onto Loihi's integers, as Lava's bit-accurate models take them.

For each neuron population the pass picks a state scale (integer state per unit of the IR's v): the
largest that holds its weights, biases and threshold together in the target's number formats (a
parameter that no scale holds is refused, or clipped with a warning under ``--allow-lossy``:
``QuantizePopulations.fit``). Then it writes every parameter as the
integers of Lava's LIF (du, dv, vth, bias_mant, bias_exp) and Dense/DelayDense (weights,
weight_exp, delays) into node annotations under ``"loihi"``. The graph's float parameters stay, so
the float and fixed-point simulations run from the same IR. docs/semantics.md, section 6, gives the
mapping as formulas. A synapse group that quantize-weights quantized keeps its mantissas as Lava's
weights: vth is chosen to put the group's step on Lava's grid (docs/quantization.md).
"""

from __future__ import annotations

import math

import numpy as np

from snnc.errors import IRError
from snnc.ir import Graph
from snnc.ir.contracts import WEIGHT_STEP, check_quant
from snnc.passes.fixed_point import QuantizePopulations

#: Lava's decays are 12-bit: a decay factor of (4096 - d) / 4096.
DECAY_UNITY = 4096
#: Lava left-shifts activations and thresholds by 6 bits to align them with the 24-bit state.
ACTIVATION_SHIFT = 6
#: Weights are written as WEIGHT_STEP x an 8-bit signed mantissa, which Lava keeps unchanged.
MANTISSA_MAX = 127


def _uniform(node, name: str, values: np.ndarray) -> float:
    flat = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(flat == flat[0]):
        raise IRError(node.name, f"{name} differs between neurons ({flat.min():.6g} to {flat.max():.6g}); "
                                 "Lava's LIF has one value per population")
    return float(flat[0])


def _largest_scale(values: np.ndarray, low: float, high: float) -> float:
    """The largest s with low <= values * s <= high (infinite for values all 0)."""
    # Python floats: a quotient beyond every float is inf, which numpy would also warn about.
    top, bottom = float(values.max(initial=0.0)), float(values.min(initial=0.0))
    return min(high / top if top > 0 else math.inf, low / bottom if bottom < 0 else math.inf)


def _power_of_two_exponent(value: float, limit: float) -> int:
    """The smallest e with value / 2**e <= limit."""
    return 0 if value <= 0 else math.ceil(math.log2(value / limit))


class QuantizeLoihi(QuantizePopulations):
    """Write every population and synapse group as the integers of Lava's bit-accurate Loihi models."""

    name = "quantize-loihi"
    arithmetic = "loihi"
    chip = "Lava's Loihi"

    def population(self, graph: Graph, node) -> None:
        formats = self.target.formats
        d = node.op.dynamics()
        per_neuron = lambda a: np.broadcast_to(np.asarray(a, np.float64), node.output_shape).ravel()  # noqa: E731
        if d.reset != "value" or np.any(per_neuron(d.v_reset) != 0):
            raise IRError(node.name, f"resets {'by subtraction' if d.reset == 'subtract' else 'to a non-zero value'}; "
                                     "Lava's LIF resets v to 0")
        threshold = per_neuron(d.v_threshold)
        if np.any(threshold <= 0):
            raise IRError(node.name, "has a threshold <= 0, which Loihi's unsigned threshold cannot hold")
        v_decay = float(self.fit(node.name, "v_decay", per_neuron(_uniform(node, "v_decay", d.v_decay)), 0.0, 1.0)[0])
        current = d.i_decay is not None
        i_decay = _uniform(node, "i_decay", d.i_decay) if current else 0.0
        if current and i_decay >= 1:
            raise IRError(node.name, "has a synaptic current that never decays, which Loihi's u cannot hold")
        if current:
            i_decay = float(self.fit(node.name, "i_decay", per_neuron(i_decay), 0.0, 1.0)[0])
        # The gain from a synapse's output to v; a constant synaptic input b adds gain * b / (1 - i_decay)
        # to v in the steady state, which is how synapse biases fold into the neuron's bias.
        gain = per_neuron(d.v_gain) * (per_neuron(d.i_gain) if current else 1.0)
        bias_gain = gain / (1.0 - i_decay)
        synapses = graph.predecessors(node.name)
        bias = per_neuron(d.bias) / threshold
        for s in synapses:
            if graph[s].op.bias is not None:
                bias = bias + graph[s].op.bias.ravel() * bias_gain / threshold
        steps = self._quantized_steps(graph, synapses, gain / threshold)
        tops = {s: 2 ** (graph[s].annotations["quant"]["bits"] - 1) - 1 if s in steps else MANTISSA_MAX
                for s in synapses}

        # In units of v_threshold, vth = 1 holds the most: integer v is 64 vth per threshold, a
        # synapse is 2 x its mantissa x 2^(largest weight exponent) of it, a bias its 13-bit mantissa
        # x 2^(largest bias exponent). vth is then the largest integer that holds every weight and
        # bias, within the threshold's mantissa, with one step of every input at once inside the 24-bit v.
        unity = 1 << ACTIVATION_SHIFT
        reach = WEIGHT_STEP << formats["weight_exponent_max"]
        weight_range = {s: (-(tops[s] + 1) * reach, tops[s] * reach) for s in synapses}
        weights = {s: self.fit(s, "weight", graph[s].op.weight * gain[:, None] / threshold[:, None], *weight_range[s],
                               " thresholds per spike", "synapses", graph[s].op.weight) for s in synapses}
        half, shift = 1 << (formats["bias_mantissa_bits"] - 1), formats["bias_exponent_max"]
        bias_range = (-half << shift) / unity, ((half - 1) << shift) / unity
        bias = self.fit(node.name, "bias", bias, *bias_range, " thresholds per step", given=bias * threshold)
        swing = max(float((sum(np.abs(w).sum(axis=1) for w in weights.values()) + np.abs(bias)).max()), 1.0)
        limits = [(1 << formats["threshold_mantissa_bits"]) - 1,
                  ((1 << (formats["v_bits"] - 1)) - 1) // (unity * (1 + swing)),
                  _largest_scale(bias, *bias_range), *(_largest_scale(weights[s], *weight_range[s]) for s in synapses)]
        vth = self._threshold(weights, steps, tops, max(int(min(limits)), 1))
        state_scale = vth * unity  # integer v per unit of v / v_threshold

        decay_max = (1 << formats["decay_bits"]) - 1
        dv = int(np.clip(round(DECAY_UNITY * (1 - v_decay)), 0, decay_max))
        # Lava adds one to du (ds_offset), so u decays by (4095 - du) / 4096.
        du = int(np.clip(DECAY_UNITY - 1 - round(DECAY_UNITY * i_decay), 0, decay_max)) if current else decay_max
        bias_int = np.rint(bias * state_scale)
        bias_exp = np.array([_power_of_two_exponent(abs(b), (1 << (formats["bias_mantissa_bits"] - 1)) - 1)
                             for b in bias_int], dtype=np.int64).clip(0, formats["bias_exponent_max"])
        bias_mant = np.rint(bias_int / (1 << bias_exp)).astype(np.int64)
        node.annotations["loihi"] = {"du": du, "dv": dv, "vth": vth, "bias_mant": bias_mant, "bias_exp": bias_exp}
        report = {"vth": vth, "state_scale_per_unit_threshold": state_scale, "du": du, "dv": dv,
                  "v_decay": {"float": v_decay, "fixed": (DECAY_UNITY - dv) / DECAY_UNITY},
                  "bias_error": float(np.abs(bias_mant * (1 << bias_exp) / state_scale - bias).max(initial=0.0)),
                  "synapses": {}}
        if current:
            report["i_decay"] = {"float": i_decay, "fixed": (DECAY_UNITY - 1 - du) / DECAY_UNITY}
        for s in synapses:
            report["synapses"][s] = self._synapse(graph[s], weights[s] * state_scale, state_scale, tops[s])
        self.populations[node.name] = report

    def _quantized_steps(self, graph: Graph, synapses: list[str], units: np.ndarray) -> dict[str, float]:
        """The synapse groups whose mantissas quantize-weights fixed (annotation ``quant``) with one
        step for every neuron (a layer scale, and the same threshold and gain throughout), and that
        step in units of threshold. Only such a group can keep its mantissas on Lava, whose LIF has
        one vth; a group with per-channel steps is rounded onto Lava's 8 bits like any other."""
        steps = {}
        for s in synapses:
            quant = check_quant(graph[s])
            if quant is None:
                continue
            scale = np.broadcast_to(np.asarray(quant["scale"], np.float64), units.shape)
            if not np.array_equal(graph[s].op.weight, quant["mantissa"] * scale[:, None]):
                raise IRError(s, "its weights are no longer its quantization (annotation 'quant'); run "
                                 "quantize-weights after every pass that changes weights")
            # a row that never reaches v (no mantissa, or a gain of 0) has no step to keep
            step = (scale * units)[np.any(quant["mantissa"] != 0, axis=1) & (units != 0)]
            if step.size and np.allclose(step, step[0], rtol=1e-12, atol=0.0):
                steps[s] = float(step[0])
        return steps

    def _threshold(self, weights: dict[str, np.ndarray], steps: dict[str, float], tops: dict[str, int],
                   largest: int) -> int:
        """The population's vth: the largest allowed, or one that puts a quantized group's step ``r``
        (in units of threshold) on Lava's grid of ``2·2^e`` per unit of vth: ``vth`` is ``2^(e+1) / r``
        rounded down or up, with ``e >= 0`` (Lava's right shifts floor). Lava's weights are then twice
        the group's mantissas and the only error left is vth's rounding, less than ``1 / vth`` of each
        weight. Of these candidates the one whose Lava weights differ least from the IR's wins, the
        larger on ties."""
        formats = self.target.formats
        candidates = {largest}
        for step in steps.values():
            for exponent in range(max(formats["weight_exponent_min"], 0), formats["weight_exponent_max"] + 1):
                # No vth above largest is taken, so a step small enough to make this infinite offers none.
                exact = min(2.0 ** (exponent + 1) / step, largest + 1)
                candidates.update(vth for vth in (math.floor(exact), math.ceil(exact)) if 1 <= vth <= largest)
        unity = 1 << ACTIVATION_SHIFT
        synapses = {s: w[w != 0] for s, w in weights.items()}  # zeros stay zero at every vth

        def error(vth: int) -> float:
            return max((self._lava_weights(w * vth * unity, tops[s])[2] / (vth * unity) for s, w in synapses.items()),
                       default=0.0)

        return min(sorted(candidates, reverse=True), key=error)

    def _lava_weights(self, scaled: np.ndarray, top: int) -> tuple[np.ndarray, int, float]:
        """A synapse matrix in units of integer v as Lava's mantissas and weight exponent: the smallest
        exponent whose rounded mantissas fit ``[-top - 1, top]`` (8 bits, or the bits of a quantized
        group). Returns the mantissas, the exponent and the largest error in units of integer v.
        ``population`` chose vth so that the largest exponent holds every weight."""
        formats = self.target.formats
        high, low = scaled.max(initial=0.0), scaled.min(initial=0.0)
        for exponent in range(formats["weight_exponent_min"], formats["weight_exponent_max"] + 1):
            step = WEIGHT_STEP * (1 << ACTIVATION_SHIFT) * 2.0 ** exponent
            if np.rint(high / step) <= top and np.rint(low / step) >= -top - 1:
                break
        else:
            raise RuntimeError(f"weights {low:.6g} to {high:.6g} (integer v) exceed every weight exponent at this vth")
        mantissa = np.rint(scaled / step).astype(np.int64)
        return mantissa, exponent, float(np.abs(mantissa * step - scaled).max(initial=0.0))

    def _synapse(self, node, scaled: np.ndarray, state_scale: int, top: int) -> dict:
        """Write one synapse matrix (already in units of integer v) as Lava weights and exponent."""
        formats = self.target.formats
        if node.op.delay is not None and node.op.delay.max(initial=0) > formats["max_delay"]:
            raise IRError(node.name, f"has a delay of {int(node.op.delay.max())} steps; {self.target.name} holds "
                                     f"at most {formats['max_delay']} (split longer delays into chains)")
        mantissa, exponent, error = self._lava_weights(scaled, top)
        node.annotations["loihi"] = {"weights": (mantissa * WEIGHT_STEP).astype(np.int32), "weight_exp": exponent,
                                     "delays": None if node.op.delay is None else node.op.delay.astype(np.int64)}
        report = {"weight_exp": exponent, "max_error_per_unit_threshold": error / state_scale,
                  "nonzero": int(np.count_nonzero(mantissa)),
                  "zeroed_by_rounding": int(np.count_nonzero(scaled) - np.count_nonzero(mantissa))}
        if "quant" in node.annotations:
            report["mantissas_kept"] = bool(np.array_equal(mantissa, node.annotations["quant"]["mantissa"]))
        return report

