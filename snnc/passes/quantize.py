"""Quantize every synapse group to b-bit integer mantissas times a scale chosen to keep information.

A chip holds a synapse group (an Affine of population form, after fuse-synapses) as integers: on
Loihi an 8-bit mantissa with one exponent per group. This pass decides those integers before the
target's own pass does: ``W ≈ q·s`` with ``q`` in ``[-2^(b-1), 2^(b-1) - 1]`` and ``s`` one scale per
layer or per output row (channel). It rewrites the IR's weights to exactly ``q·s``, so the float
simulator runs the quantized network, and writes ``q`` and ``s`` into the node's ``"quant"``
annotation, which quantize-loihi keeps as Lava's mantissas. Thresholds, biases and decays keep the
IR's units, which ``q·s`` shares with the float weights, so the dynamics need no rescaling here; the
target pass scales them with the weights onto its integers (docs/quantization.md).

The scale is the clip range ``a·max|w|`` of a 1-D search over clip ratios ``a``:

- ``minmax``: ``a = 1``, nothing is clipped;
- ``error``: the ``a`` of least mean squared error;
- ``entropy`` (QSD-style): the ``a`` whose mantissas carry the most information (Shannon entropy
  of their distribution) among those no less faithful than min-max, which at low bit widths keeps a
  bimodal or heavy-tailed layer from collapsing onto one or two levels.

The report gives per layer the bits, method, scale, error, entropy and how the layer's target
population spikes with this layer alone quantized, against the float network, on calibration
inputs (``Calibration``, which sparsify shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnc.errors import IRError, SnncError
from snnc.ir import NEURONS, Affine, Graph
from snnc.passes import Pass
from snnc.passes.fuse import is_population_form
from snnc.targets import Target

METHODS = ("entropy", "error", "minmax")
GRANULARITIES = ("layer", "channel")
#: The clip ratios the search tries: clip ranges of 1% to 100% of the largest |w|, in steps of 1%.
CLIP_RATIOS = np.linspace(0.01, 1.0, 100)
#: Entropies closer than this (bits) are equal: the same histogram summed in another order.
ENTROPY_TIE = 1e-9

#: Random calibration inputs: Bernoulli spikes at a sparse rate typical of spike-encoded inputs, a
#: small batch and 100 steps, from a fixed seed so that a compile is reproducible.
RANDOM_RATE, RANDOM_BATCH, RANDOM_STEPS, RANDOM_SEED = 0.1, 8, 100, 0


def mantissa_dtype(bits: int):
    return np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32


def entropy_bits(mantissa: np.ndarray) -> float:
    """Shannon entropy (bits) of the distribution of integer values."""
    _, counts = np.unique(mantissa, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()) if counts.size else 0.0


@dataclass
class Quantization:
    """One synapse matrix quantized: ``weight ≈ mantissa · scale[:, None]``."""

    mantissa: np.ndarray  #: (out, in) integers
    scale: np.ndarray  #: (out,): one value repeated for a layer scale
    clip_ratio: np.ndarray  #: (out,): the clip range as a fraction of the row's (or layer's) largest |w|

    @property
    def weight(self) -> np.ndarray:
        return self.mantissa * self.scale[:, None]


def quantize(weight: np.ndarray, bits: int, method: str = "entropy", granularity: str = "layer") -> Quantization:
    """Quantize a matrix to ``bits``-bit mantissas with the scale ``method`` chooses per layer or row.

    A weight of exactly zero is no synapse (absent in a fused convolution, or pruned): it stays zero
    at every scale, so the statistics that choose the scale count the non-zero weights only.
    """
    if method not in METHODS:
        raise SnncError(f"--quantization {method}: choose one of {', '.join(METHODS)}")
    if granularity not in GRANULARITIES:
        raise SnncError(f"--granularity {granularity}: choose one of {', '.join(GRANULARITIES)}")
    top = 2 ** (bits - 1) - 1
    rows = weight.shape[0]
    by_row = granularity == "channel"
    largest = np.abs(weight).max(axis=1, initial=0.0) if by_row else np.full(1, np.abs(weight).max(initial=0.0))
    largest = np.where(largest > 0, largest, 1.0)  # an all-zero group: any scale keeps it zero
    row, column = np.nonzero(weight)
    values = weight[row, column]
    group = row if by_row else np.zeros_like(row)
    groups = largest.size
    count = np.maximum(np.bincount(group, minlength=groups), 1)
    errors = np.empty((CLIP_RATIOS.size, groups))
    entropies = np.empty((CLIP_RATIOS.size, groups))
    for i, ratio in enumerate(CLIP_RATIOS):
        scale = (ratio * largest / top)[group]
        q = np.clip(np.rint(values / scale), -top - 1, top)
        errors[i] = np.bincount(group, (q * scale - values) ** 2, minlength=groups) / count
        entropies[i] = _group_entropies(group * (2 * top + 2) + (q + top + 1).astype(np.int64), 2 * top + 2, count)
    choice = _choose(method, errors, entropies)
    ratio = CLIP_RATIOS[choice]
    scale = ratio * largest / top
    if not by_row:
        ratio, scale = np.full(rows, ratio[0]), np.full(rows, scale[0])
    mantissa = np.clip(np.rint(weight / scale[:, None]), -top - 1, top).astype(mantissa_dtype(bits))
    return Quantization(mantissa, scale, ratio)


def _group_entropies(key: np.ndarray, levels: int, count: np.ndarray) -> np.ndarray:
    """The entropy of each group's mantissas, from keys ``group · levels + level``."""
    value, counts = np.unique(key, return_counts=True)
    owner = value // levels
    p = counts / count[owner]
    return np.bincount(owner, -p * np.log2(p), minlength=count.size)


def _choose(method: str, errors: np.ndarray, entropies: np.ndarray) -> np.ndarray:
    """Per group, the index of the clip ratio ``method`` picks; ties go to the larger ratio (less clipping).

    errors and entropies have shape (ratios, groups); the last ratio is min-max."""
    last = errors.shape[0] - 1
    if method == "minmax":
        return np.full(errors.shape[1], last)
    if method == "entropy":
        faithful = errors <= errors[last]
        entropy = np.where(faithful, entropies, -np.inf)
        best = entropy >= entropy.max(axis=0) - ENTROPY_TIE
        errors = np.where(best, errors, np.inf)
    return last - np.argmin(errors[::-1], axis=0)


class Calibration:
    """Inputs that passes measure a change of the network on, and the measures they report.

    The inputs are the user's (``--calibration``: an .npy for a graph with one input, or an .npz by
    input name, shaped (batch, T, *input_shape)) or, without them, random spikes (``RANDOM_*``)."""

    def __init__(self, graph: Graph, path: str | None = None):
        from snnc.runtime.simulator import Simulator

        if path is None:
            rng = np.random.default_rng(RANDOM_SEED)
            inputs = {name: (rng.random((RANDOM_BATCH, RANDOM_STEPS, *graph[name].output_shape)) < RANDOM_RATE)
                      .astype(np.float64) for name in graph.inputs}
            self.description = {"source": "random", "rate": RANDOM_RATE, "batch": RANDOM_BATCH,
                                "steps": RANDOM_STEPS, "seed": RANDOM_SEED}
        else:
            inputs = _load(path)
            self.description = {"source": path}
        try:
            self.inputs = Simulator(graph).check_inputs(inputs)
        except SnncError as e:
            raise SnncError(f"--calibration {path}: {e}") from None
        batch, steps = next(iter(self.inputs.values())).shape[:2]
        self.description.update(batch=int(batch), steps=int(steps))
        self.spiking = {n.name for n in graph if isinstance(n.op, NEURONS) and n.op.dynamics().spiking}

    def observe(self, graph: Graph, weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """What every neuron (spikes, or v if it does not spike) and every Output sends on the inputs,
        with the Affines named in ``weights`` holding those weights instead of their own."""
        from snnc.runtime.simulator import simulate

        weights = weights or {}
        kept = {name: graph[name].op.weight for name in weights}
        try:
            for name, weight in weights.items():
                graph[name].op.weight = weight
            neurons = [n.name for n in graph if isinstance(n.op, NEURONS)]
            results = simulate(graph, self.inputs, probes=neurons)
        finally:
            for name, weight in kept.items():
                graph[name].op.weight = weight
        sent = {name: results[f"{name}:spikes" if name in self.spiking else f"{name}:v"] for name in neurons}
        sent.update({name: results[name] for name in graph.outputs})
        return sent

    @staticmethod
    def compare(before: np.ndarray, after: np.ndarray, spiking: bool) -> dict:
        """How a node's output changed: for spikes, the fraction of (sample, step, neuron) entries that
        agree and the spike counts; for values, the relative RMS change."""
        if not spiking:
            norm = float(np.sqrt(np.mean(np.square(before, dtype=np.float64))))
            change = float(np.sqrt(np.mean(np.square(after - before, dtype=np.float64))))
            return {"relative_rms_change": change / norm if norm else change}
        spikes_before, spikes_after = int(before.sum(dtype=np.int64)), int(after.sum(dtype=np.int64))
        return {"agreement": float(np.mean(before == after)), "spikes_before": spikes_before,
                "spikes_after": spikes_after,
                "spike_change": (spikes_after - spikes_before) / spikes_before if spikes_before else None}

    def layer_change(self, graph: Graph, name: str, reference: dict, changed: dict) -> dict:
        """The change of what the populations (or Outputs) that Affine ``name`` feeds send."""
        return {sink: self.compare(reference[sink], changed[sink], self._spikes(graph, sink))
                for sink in graph.successors(name)}

    def network_change(self, graph: Graph, reference: dict, changed: dict) -> dict:
        """The change of every Output; for spiking outputs also the fraction of samples whose most
        active output neuron (the decision of a rate-coded classifier) is unchanged."""
        report = {}
        for name in graph.outputs:
            spiking = self._spikes(graph, name)
            report[name] = self.compare(reference[name], changed[name], spiking)
            if spiking:
                decide = lambda spikes: spikes.reshape(*spikes.shape[:2], -1).sum(axis=1).argmax(axis=1)  # noqa: E731
                report[name]["decisions_kept"] = float(np.mean(decide(reference[name]) == decide(changed[name])))
        return report

    def _spikes(self, graph: Graph, name: str) -> bool:
        """True when ``name`` sends spikes: a spiking neuron, or an Output that reads only spiking neurons."""
        if name in self.spiking:
            return True
        sources = graph.predecessors(name)
        return name in graph.outputs and all(s in self.spiking for s in sources)


def _load(path: str) -> np.ndarray | dict[str, np.ndarray]:
    try:
        data = np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise SnncError(f"--calibration {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise SnncError(f"--calibration {path}: not a readable .npy or .npz file ({e})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {key: data[key] for key in data.files}
    return data


class QuantizeWeights(Pass):
    name = "quantize-weights"

    def __init__(self, target: Target, bits: int | None = None, method: str = "entropy", granularity: str = "layer",
                 calibration: str | None = None):
        if bits is None:
            if "weight_bits" not in target.formats:
                raise SnncError(f"--weight-bits: target {target.name} has no weight format; give the bits to quantize to")
            bits = target.formats["weight_bits"]
        if not 2 <= bits <= 16:
            raise SnncError(f"--weight-bits {bits}: quantize-weights takes 2 to 16 bits")
        if "weight_bits" in target.formats and bits > target.formats["weight_bits"]:
            raise SnncError(f"--weight-bits {bits}: target {target.name} holds at most "
                            f"{target.formats['weight_bits']}-bit weights")
        quantize(np.zeros((1, 1)), bits, method, granularity)  # refuse a bad method or granularity now
        self.bits, self.method, self.granularity, self.calibration = bits, method, granularity, calibration
        self.layers: dict[str, dict] = {}
        self.network: dict = {}
        self.calibrated_on: dict = {}

    def report(self) -> dict:
        return {"bits": self.bits, "method": self.method, "granularity": self.granularity,
                "calibration": self.calibrated_on, "layers": self.layers, "network": self.network}

    def run(self, graph: Graph) -> Graph:
        if not is_population_form(graph):
            raise IRError(None, "quantize-weights needs a graph in population form: run fuse-synapses first")
        graph = graph.copy()
        calibration = Calibration(graph, self.calibration)
        self.calibrated_on = calibration.description
        reference = calibration.observe(graph)
        quantized = {}
        self.layers = {}
        for node in graph:
            if isinstance(node.op, Affine):
                result = quantized[node.name] = quantize(node.op.weight, self.bits, self.method, self.granularity)
                self.layers[node.name] = self._layer(node.op.weight, result)
                alone = calibration.observe(graph, {node.name: result.weight})
                self.layers[node.name]["alone"] = calibration.layer_change(graph, node.name, reference, alone)
        for name, result in quantized.items():
            graph[name].op.weight = result.weight
            layer = self.layers[name]
            graph[name].annotations["quant"] = {
                "bits": self.bits, "method": self.method, "granularity": self.granularity,
                "scale": layer["scale"] if self.granularity == "layer" else result.scale,
                "mantissa": result.mantissa, "error": layer["error"]["rms"], "entropy": layer["entropy"]}
        self.network = calibration.network_change(graph, reference, calibration.observe(graph))
        return graph

    def _layer(self, weight: np.ndarray, result: Quantization) -> dict:
        synapses = weight != 0
        w, q = weight[synapses], result.mantissa[synapses]
        error = result.weight[synapses] - w
        rms = float(np.sqrt(np.mean(error ** 2))) if w.size else 0.0
        size = float(np.sqrt(np.mean(w ** 2))) if w.size else 0.0
        minmax = quantize(weight, self.bits, "minmax", self.granularity).mantissa[synapses]
        top = 2 ** (self.bits - 1) - 1
        spread = (lambda a: float(a[0])) if self.granularity == "layer" else (
            lambda a: {"min": float(a.min(initial=0.0)), "max": float(a.max(initial=0.0))})
        return {"bits": self.bits, "method": self.method, "granularity": self.granularity,
                "scale": spread(result.scale), "clip_ratio": spread(result.clip_ratio),
                "synapses": int(w.size), "entropy": entropy_bits(q), "entropy_minmax": entropy_bits(minmax),
                "error": {"rms": rms, "relative_rms": rms / size if size else 0.0,
                          "max": float(np.abs(error).max(initial=0.0))},
                "clipped": int(np.count_nonzero((q == top) | (q == -top - 1)) and
                               np.count_nonzero(np.abs(error) > result.scale[np.nonzero(synapses)[0]] / 2 * (1 + 1e-9)))}
