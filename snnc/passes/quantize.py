"""Quantize every synapse group to b-bit integer mantissas times a scale chosen to keep information.

A chip holds a synapse group (an Affine of population form, after fuse-synapses) as integers: on
Loihi an 8-bit mantissa with one exponent per group. This pass decides those integers before the
target's own pass does: ``W ≈ q·s`` with ``q`` in ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` and ``s`` one
scale per layer or per output row (channel). The range is symmetric so that rounding and clipping
favour neither sign: at 2 bits a level -2 would serve only the negative tail and lower every
layer's mean input. The pass rewrites the IR's weights to exactly ``q·s``, so the float simulator
runs the quantized network, and writes ``q`` and ``s`` into the node's ``"quant"`` annotation,
which quantize-loihi keeps as Lava's mantissas. Thresholds, biases and decays keep the IR's units,
which ``q·s`` shares with the float weights, so the dynamics need no rescaling here; the target
pass scales them with the weights onto its integers (docs/quantization.md).

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

import numpy as np

from snnc.errors import IRError, SnncError
from snnc.files import load_arrays
from snnc.ir import NEURONS, Affine, Graph, Input, Output
from snnc.passes import Pass
from snnc.passes.fuse import is_population_form
from snnc.targets import Target

#: The scale rules and granularities; the first of each is the default.
METHODS = ("entropy", "error", "minmax")
GRANULARITIES = ("layer", "channel")
#: The clip ratios the search tries: clip ranges of 1% to 100% of the largest |w|, in steps of 1%.
CLIP_RATIOS = np.linspace(0.01, 1.0, 100)
#: Entropies closer than this (bits) are equal: the same histogram summed in another order.
ENTROPY_TIE = 1e-9

#: Random calibration inputs: Bernoulli spikes at a sparse rate typical of spike-encoded inputs, a
#: small batch and 100 steps, from a fixed seed so that a compile is reproducible.
RANDOM_RATE, RANDOM_BATCH, RANDOM_STEPS, RANDOM_SEED = 0.1, 8, 100, 0
#: The key of a calibration .npz that holds one class label per sample.
LABELS = "labels"


def check_options(bits: int, method: str, granularity: str) -> None:
    """Refuse settings the quantizer cannot follow, naming the flag."""
    if not 2 <= bits <= 16:
        raise SnncError(f"--weight-bits {bits}: weights are quantized to 2 to 16 bits")
    if method not in METHODS:
        raise SnncError(f"--quantization {method}: choose one of {', '.join(METHODS)}")
    if granularity not in GRANULARITIES:
        raise SnncError(f"--granularity {granularity}: choose one of {', '.join(GRANULARITIES)}")


def entropy_bits(mantissa: np.ndarray, bits: int) -> float:
    """Shannon entropy (bits) of the distribution of ``bits``-bit mantissas."""
    flat = mantissa.ravel()
    one_group = np.zeros(flat.size, np.int64)
    return float(_group_entropies(one_group, flat, 2 ** (bits - 1) - 1, np.array([max(flat.size, 1)]))[0])


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
    check_options(bits, method, granularity)
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
    ratios = CLIP_RATIOS[-1:] if method == "minmax" else CLIP_RATIOS
    errors = np.empty((ratios.size, groups))
    entropies = np.empty((ratios.size, groups))
    for i, ratio in enumerate(ratios):
        scale = (ratio * largest / top)[group]
        q = np.clip(np.rint(values / scale), -top, top)
        errors[i] = np.bincount(group, (q * scale - values) ** 2, minlength=groups) / count
        entropies[i] = _group_entropies(group, q, top, count)
    ratio = ratios[_choose(method, errors, entropies)]
    scale = ratio * largest / top
    if not by_row:
        ratio, scale = np.full(rows, ratio[0]), np.full(rows, scale[0])
    mantissa = np.clip(np.rint(weight / scale[:, None]), -top, top).astype(np.int8 if bits <= 8 else np.int16)
    return Quantization(mantissa, scale, ratio)


def _group_entropies(group: np.ndarray, mantissa: np.ndarray, top: int, count: np.ndarray) -> np.ndarray:
    """The entropy (bits) of each group's mantissas (in ``[-top, top]``); ``count`` holds each group's size."""
    levels = 2 * top + 1
    key = group * levels + mantissa.astype(np.int64) + top
    if count.size * levels <= max(key.size, 1 << 16):  # a histogram no larger than the data: count directly
        counts = np.bincount(key, minlength=count.size * levels).reshape(count.size, levels)
        p = counts / count[:, None]
        return -(p * np.log2(np.where(p > 0, p, 1.0))).sum(axis=1)
    value, counts = np.unique(key, return_counts=True)  # sparse histogram: wide mantissas, many rows
    owner = value // levels
    p = counts / count[owner]
    return np.bincount(owner, -p * np.log2(p), minlength=count.size)


def _choose(method: str, errors: np.ndarray, entropies: np.ndarray) -> np.ndarray:
    """Per group, the index of the clip ratio ``method`` picks; ties go to the larger ratio (less clipping).

    errors and entropies have shape (ratios, groups); the last ratio is 1, min-max, the only one
    that "minmax" tries."""
    last = errors.shape[0] - 1
    if method == "entropy":
        faithful = errors <= errors[last]
        entropy = np.where(faithful, entropies, -np.inf)
        best = entropy >= entropy.max(axis=0) - ENTROPY_TIE
        errors = np.where(best, errors, np.inf)
    return last - np.argmin(errors[::-1], axis=0)


class Calibration:
    """Inputs that passes measure a change of the network on, and the measures they report.

    The inputs are the user's (``--calibration``: an .npy for a graph with one input, or an .npz by
    input name, shaped (batch, T, *input_shape)) or, without them, random spikes (``RANDOM_*``). An
    .npz may also hold ``labels``, one class per sample: then the report gives the accuracy of the
    rate-coded decisions (the most active output neuron) before and after the change."""

    def __init__(self, graph: Graph, path: str | None = None):
        from snnc.runtime.simulator import Simulator

        if path is None:
            rng = np.random.default_rng(RANDOM_SEED)
            inputs = {name: (rng.random((RANDOM_BATCH, RANDOM_STEPS, *graph[name].output_shape)) < RANDOM_RATE)
                      .astype(np.float64) for name in graph.inputs}
            self.description = {"source": "random", "rate": RANDOM_RATE, "batch": RANDOM_BATCH,
                                "steps": RANDOM_STEPS, "seed": RANDOM_SEED}
        else:
            try:
                inputs = load_arrays(path)
            except SnncError as e:
                raise SnncError(f"--calibration {path}: {e}") from None
            self.description = {"source": path}
        self.labels = inputs.pop(LABELS, None) if isinstance(inputs, dict) and LABELS not in graph.inputs else None
        # Checked as the graph's Inputs check them, by a graph of those Inputs alone (no kernels to build).
        ports = Graph(dt=graph.dt)
        for name in graph.inputs:
            ports.add(name, Input(shape=graph[name].output_shape))
            ports.add(f"{name}:output", Output())
            ports.connect(name, f"{name}:output")
        try:
            self.inputs = Simulator(ports).check_inputs(inputs)
        except SnncError as e:
            raise SnncError(f"--calibration {path}: {e}") from None
        batch, steps = next(iter(self.inputs.values())).shape[:2]
        self.description.update(batch=int(batch), steps=int(steps))
        if self.labels is not None:
            if self.labels.shape != (batch,) or self.labels.dtype.kind not in "iu":
                raise SnncError(f"--calibration {path}: labels must be {batch} integer classes, one per sample, "
                                f"got {self.labels.dtype} of shape {self.labels.shape}")
            self.description["labels"] = True
        self.spiking = {n.name for n in graph if isinstance(n.op, NEURONS) and n.op.dynamics().spiking}

    def observe(self, graph: Graph, watched: list[str], weights: dict[str, np.ndarray] | None = None
                ) -> dict[str, np.ndarray]:
        """What each node of ``watched`` sends (spikes, v for a neuron that does not spike, or an
        Output's values) on the inputs, with the Affines named in ``weights`` holding those weights.

        Only the watched nodes and what they depend on run: a layer's change is measured on the
        graph up to the population it feeds."""
        from snnc.runtime.simulator import simulate

        weights = weights or {}
        needed, frontier = set(watched), list(watched)
        while frontier:
            for source in graph.predecessors(frontier.pop()):
                if source not in needed:
                    needed.add(source)
                    frontier.append(source)
        part = Graph(dt=graph.dt, name=graph.name)
        for node in graph:
            if node.name in needed:
                op = node.op
                if node.name in weights:
                    op = Affine(**{**op.fields(), "weight": weights[node.name]})
                part.add(node.name, op)
        for edge in graph.edges:
            if edge[0] in needed and edge[1] in needed:
                part.connect(*edge)
        recorded = {}
        for name in watched:
            recorded[name] = name if name in graph.outputs else f"{name}:observed"
            if recorded[name] != name:
                part.add(recorded[name], Output())
                part.connect(name, recorded[name])
        results = simulate(part, {name: x for name, x in self.inputs.items() if name in needed})
        return {name: results[output] for name, output in recorded.items()}

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

    def reference(self, graph: Graph) -> dict[str, np.ndarray]:
        """What every node a layer can feed (neurons and Outputs) sends in ``graph`` as it is."""
        return self.observe(graph, [n.name for n in graph if isinstance(n.op, (*NEURONS, Output))])

    def layer_change(self, graph: Graph, name: str, weight: np.ndarray, reference: dict) -> dict:
        """How what Affine ``name`` feeds changes when it alone holds ``weight``."""
        sinks = graph.successors(name)
        changed = self.observe(graph, sinks, {name: weight})
        return {sink: self.compare(reference[sink], changed[sink], self._spikes(graph, sink)) for sink in sinks}

    def network_change(self, graph: Graph, reference: dict) -> dict:
        """How every Output of ``graph`` changed from ``reference``; for spiking outputs also the
        fraction of samples whose most active output neuron (the decision of a rate-coded
        classifier) is unchanged, and with labels the accuracy of those decisions."""
        changed = self.observe(graph, graph.outputs)
        report = {}
        for name in graph.outputs:
            spiking = self._spikes(graph, name)
            report[name] = self.compare(reference[name], changed[name], spiking)
            if spiking and np.prod(graph[name].output_shape) > 1:
                before, after = _decisions(reference[name]), _decisions(changed[name])
                report[name]["decisions_kept"] = float(np.mean(before == after))
                if self.labels is not None:
                    report[name].update(accuracy_before=float(np.mean(before == self.labels)),
                                        accuracy_after=float(np.mean(after == self.labels)))
        return report

    def _spikes(self, graph: Graph, name: str) -> bool:
        """True when ``name`` sends spikes: a spiking neuron, or an Output that reads only spiking neurons."""
        if name in self.spiking:
            return True
        sources = graph.predecessors(name)
        return name in graph.outputs and all(s in self.spiking for s in sources)


def _decisions(spikes: np.ndarray) -> np.ndarray:
    """Per sample, the neuron that spiked most: a rate-coded classifier's answer."""
    return spikes.reshape(*spikes.shape[:2], -1).sum(axis=1, dtype=np.int64).argmax(axis=1)


class QuantizeWeights(Pass):
    """Quantize every Affine of a population-form graph to ``bits`` (default: the target's weight width)."""

    name = "quantize-weights"

    def __init__(self, target: Target, bits: int | None = None, method: str | None = None,
                 granularity: str | None = None, calibration: str | None = None):
        method, granularity = method or METHODS[0], granularity or GRANULARITIES[0]
        if bits is None:
            if "weight_bits" not in target.formats:
                raise SnncError(f"--weight-bits: target {target.name} has no weight format; "
                                "give the bits to quantize to")
            bits = target.formats["weight_bits"]
        check_options(bits, method, granularity)
        if "weight_bits" in target.formats and bits > target.formats["weight_bits"]:
            raise SnncError(f"--weight-bits {bits}: target {target.name} holds at most "
                            f"{target.formats['weight_bits']}-bit weights")
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
        reference = calibration.reference(graph)
        quantized = {}
        self.layers = {}
        for node in graph:
            if isinstance(node.op, Affine):
                result = quantized[node.name] = quantize(node.op.weight, self.bits, self.method, self.granularity)
                self.layers[node.name] = self._layer(node.op.weight, result)
                self.layers[node.name]["alone"] = calibration.layer_change(graph, node.name, result.weight, reference)
        for name, result in quantized.items():
            graph[name].op.weight = result.weight
            layer = self.layers[name]
            graph[name].annotations["quant"] = {
                "bits": self.bits, "method": self.method, "granularity": self.granularity,
                "scale": layer["scale"] if self.granularity == "layer" else result.scale,
                "mantissa": result.mantissa, "error": layer["error"]["rms"], "entropy": layer["entropy"]}
        self.network = calibration.network_change(graph, reference)
        return graph

    def _layer(self, weight: np.ndarray, result: Quantization) -> dict:
        rows, columns = np.nonzero(weight)
        w, q = weight[rows, columns], result.mantissa[rows, columns]
        error = result.weight[rows, columns] - w
        rms = float(np.sqrt(np.mean(error ** 2))) if w.size else 0.0
        size = float(np.sqrt(np.mean(w ** 2))) if w.size else 0.0
        minmax = quantize(weight, self.bits, "minmax", self.granularity).mantissa[rows, columns]
        return {"bits": self.bits, "method": self.method, "granularity": self.granularity,
                "scale": self._spread(result.scale), "clip_ratio": self._spread(result.clip_ratio),
                "synapses": int(w.size), "entropy": entropy_bits(q, self.bits),
                "entropy_minmax": entropy_bits(minmax, self.bits),
                "error": {"rms": rms, "relative_rms": rms / size if size else 0.0,
                          "max": float(np.abs(error).max(initial=0.0))},
                # rounding moves a weight by at most half a step; more means the clip range cut it
                "clipped": int(np.count_nonzero(np.abs(error) > result.scale[rows] * (0.5 + 1e-9)))}

    def _spread(self, values: np.ndarray) -> float | dict:
        """A per-row value in a report: the one value of a layer scale, else its range over the rows."""
        if self.granularity == "layer":
            return float(values[0])
        return {"min": float(values.min()), "max": float(values.max())}
