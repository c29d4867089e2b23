"""Prune the weakest synapses, and hold each synapse group in the encoding that takes less memory.

Magnitude pruning: in every synapse group (an Affine of population form) the weights of smallest
|w| become zero until the group reaches the requested sparsity (the fraction of zero entries of its
matrix, counting those already zero), or every weight with |w| <= a threshold does. A zero weight
is no synapse, so a pruned group costs less memory and fewer synaptic events wherever the target
stores only the synapses that exist.

A chip stores a group either dense (every entry, ``rows · cols · synapse_bits``) or sparse (each
synapse with the index of its target neuron, ``nnz · (synapse_bits + ceil(log2 rows))``, Loihi's
per-axon synapse lists). The pass writes the cheaper one into ``annotations["encoding"]``; the
crossover is at a density of ``synapse_bits / (synapse_bits + index_bits)``.

The report gives per layer the sparsity reached, the largest pruned |w|, the memory of both
encodings and the choice, and how the layer's target population spikes with this layer alone
pruned, against the unpruned network, on calibration inputs (shared with quantize-weights).
Without a sparsity or threshold the pass does nothing, so targets can list it in their pipelines.
"""

from __future__ import annotations

import math

import numpy as np

from snnc.errors import IRError, SnncError
from snnc.ir import Affine, Graph
from snnc.passes import Pass
from snnc.passes.fuse import is_population_form
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


def encoding_memory(weight: np.ndarray, synapse_bits: int) -> dict:
    """The bits a chip needs to hold ``weight`` dense and sparse, and the cheaper encoding (dense on a tie)."""
    rows, columns = weight.shape
    index_bits = max(1, math.ceil(math.log2(rows)))
    dense = rows * columns * synapse_bits
    sparse = int(np.count_nonzero(weight)) * (synapse_bits + index_bits)
    return {"dense_bits": dense, "sparse_bits": sparse, "index_bits": index_bits,
            "encoding": "sparse" if sparse < dense else "dense"}


class Sparsify(Pass):
    """Prune the weakest synapses and hold each synapse group in the cheaper encoding, dense or sparse."""

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
                after = pruned[node.name] = prune(weight, self.sparsity, self.threshold)
                removed = np.abs(weight[(weight != 0) & (after == 0)])
                layer = self.layers[node.name] = {
                    "sparsity_before": 1 - np.count_nonzero(weight) / weight.size,
                    "sparsity": 1 - np.count_nonzero(after) / after.size,
                    "pruned": int(removed.size), "largest_pruned": float(removed.max(initial=0.0))}
                if self.target.has_hardware:
                    layer.update(encoding_memory(after, self.target.core["synapse_bits"]))
                    node.annotations["encoding"] = layer["encoding"]
                layer["alone"] = calibration.layer_change(graph, node.name, after, reference)
        for name, weight in pruned.items():
            graph[name].op.weight = weight
        self.network = calibration.network_change(graph, reference)
        return graph
