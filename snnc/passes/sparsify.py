"""Prune the weakest synapses, and report the synaptic memory that saves on the target.

Magnitude pruning: in every synapse group (an Affine of population form) the weights of smallest
|w| become zero until the group reaches the requested sparsity (the fraction of zero entries of its
matrix, counting those already zero), or every weight with |w| <= a threshold does. A zero weight
is no synapse, so a pruned group costs less memory and fewer synaptic events wherever the target
stores only the synapses that exist.

A convolution that map-cores can store as its kernels, once per core (``shared_kernel``), is
pruned in its kernels instead: the sparsity is the fraction of its kernels' non-zero weights to
zero, and a kernel weight goes from every row that holds it (with every weight of the same |w|),
so the group stays one kernel per channel. Pruning its matrix entry by entry would break the
kernels into synapse lists hundreds of times larger; and as a convolution's matrix is mostly
zeros, a sparsity below its own would prune nothing.

A chip stores each piece of a group on a core in the encoding that takes least memory there:
map-cores chooses it per piece by ``memory_bits`` (dense, sparse or shared). The pass reports the
same function's figures for each group as a whole, before and after pruning, so that pruning never
increases synaptic memory as map-cores counts it: no encoding's memory grows when synapses go, and
kernels stay kernels.

The report gives per layer the sparsity reached, the largest pruned |w|, that memory, and how the
layer's target population spikes with this layer alone pruned, against the unpruned network, on
calibration inputs (shared with quantize-weights). Without a sparsity or threshold the pass does
nothing, so targets can list it in their pipelines.
"""

from __future__ import annotations

import numpy as np

from snnc.errors import IRError, SnncError
from snnc.ir import Affine, Graph
from snnc.passes import Pass
from snnc.passes.fuse import is_population_form
from snnc.passes.mapping import index_bits, memory_bits, shared_kernel, synapse_bits
from snnc.passes.quantize import Calibration
from snnc.targets import Target


def prune(weight: np.ndarray, sparsity: float | None = None, threshold: float | None = None) -> np.ndarray:
    """``weight`` with its smallest-magnitude entries zeroed: exactly ``round(sparsity · size)`` zeros
    (more if it had more already), or every entry with |w| <= ``threshold``. Ties in |w| go in
    row-major order, so the result is deterministic."""
    if threshold is not None:
        return np.where(np.abs(weight) <= threshold, 0.0, weight)
    zeros = round(sparsity * weight.size)
    if zeros <= weight.size - np.count_nonzero(weight):
        return weight
    flat = weight.ravel().copy()
    flat[np.argsort(np.abs(flat), kind="stable")[:zeros]] = 0.0
    return flat.reshape(weight.shape)


def kernel_weights(weight: np.ndarray, rows: int) -> np.ndarray:
    """The non-zero weights of every channel's kernel in a convolution's matrix of ``rows`` rows
    per channel: those of the channel's first row with the most synapses (``shared_kernel``)."""
    channels = [weight[start:start + rows] for start in range(0, weight.shape[0], rows)]
    full = [block[np.argmax(np.count_nonzero(block, axis=1))] for block in channels]
    return np.concatenate([row[row != 0] for row in full])


def prune_group(weight: np.ndarray, out_shape: tuple[int, ...], sparsity: float | None = None,
                threshold: float | None = None) -> tuple[np.ndarray, dict]:
    """``prune`` for one synapse group, and what it pruned in kernels; a convolution with shared
    kernels (``shared_kernel``) loses the ``sparsity`` of its kernels' weights, every weight of the
    same |w| together, which a threshold does by itself."""
    shared = shared_kernel(weight, out_shape)
    if shared is None:
        return prune(weight, sparsity, threshold), {}
    kernels = np.abs(kernel_weights(weight, shared[1]))
    if threshold is None:
        zeros = round(sparsity * kernels.size)
        threshold = np.sort(kernels)[zeros - 1] if zeros else -1.0
    return prune(weight, threshold=threshold), {"kernel_weights": int(kernels.size),
                                                  "kernel_weights_pruned": int(np.count_nonzero(kernels <= threshold))}


def group_memory(weight: np.ndarray, out_shape: tuple[int, ...], bits: int, index: int) -> dict:
    """``memory_bits`` of a whole group in every encoding it can take, and the least of them."""
    shared = shared_kernel(weight, out_shape)
    by_encoding = memory_bits(bits, index, weight.shape[0], int(np.count_nonzero(np.any(weight != 0, axis=0))),
                              int(np.count_nonzero(weight)), None if shared is None else int(shared[0].sum()))
    held = {encoding: int(size) for encoding, size in by_encoding.items() if size is not None}
    return {**held, "least": min(held.values())}


class Sparsify(Pass):
    """Prune every synapse group of a population-form graph by magnitude to a sparsity or threshold."""

    name = "sparsify"

    def __init__(self, target: Target, sparsity: float | None = None, threshold: float | None = None,
                 calibration: str | None = None):
        if sparsity is not None and not 0 <= sparsity < 1:
            raise SnncError(f"--sparsity {sparsity}: give a fraction from 0 up to (not including) 1")
        if threshold is not None and (sparsity is not None or threshold < 0):
            raise SnncError(f"sparsify: give a sparsity or a threshold >= 0, not {sparsity=} and {threshold=}")
        self.target, self.sparsity, self.threshold, self.calibration = target, sparsity, threshold, calibration
        self.layers: dict[str, dict] = {}
        self.network: dict = {}
        self.calibrated_on: dict = {}

    def report(self) -> dict:
        return {"sparsity": self.sparsity, "threshold": self.threshold, "calibration": self.calibrated_on,
                "layers": self.layers, "network": self.network}

    def run(self, graph: Graph) -> Graph:
        if self.sparsity is None and self.threshold is None:
            return graph
        if not is_population_form(graph):
            raise IRError(None, "sparsify needs a graph in population form: run fuse-synapses first")
        graph = graph.copy()
        calibration = Calibration(graph, self.calibration)
        self.calibrated_on = calibration.description
        reference = calibration.reference(graph)
        pruned = {}
        self.layers = {}
        for node in graph:
            if isinstance(node.op, Affine):
                weight = node.op.weight
                after, kernels = prune_group(weight, node.output_shape, self.sparsity, self.threshold)
                pruned[node.name] = after
                removed = np.abs(weight[(weight != 0) & (after == 0)])
                layer = self.layers[node.name] = {
                    "sparsity_before": 1 - np.count_nonzero(weight) / weight.size,
                    "sparsity": 1 - np.count_nonzero(after) / after.size, **kernels,
                    "pruned": int(removed.size), "largest_pruned": float(removed.max(initial=0.0))}
                if self.target.has_hardware:
                    bits, index = synapse_bits(node, self.target), index_bits(self.target)
                    layer["memory_bits"] = {"before": group_memory(weight, node.output_shape, bits, index),
                                            "after": group_memory(after, node.output_shape, bits, index)}
                layer["alone"] = calibration.layer_change(graph, node.name, after, reference)
        for name, weight in pruned.items():
            graph[name].op.weight = weight
        self.network = calibration.network_change(graph, reference)
        return graph
