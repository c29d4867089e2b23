"""Round the delays a DCLS layer learned to whole steps: one delay per synapse, as hardware holds them.

A DCLS ``Dcls1d`` (Hammouamri et al., "Learning Delays in SNNs using Dilated Convolutions with
Learnable Spacings") learns each synapse's delay as a fractional position, and during training its
kernel spreads the synapse's weight over the taps around it ('v1': the two neighbouring taps,
linearly; 'gauss': a Gaussian over all of them). The PyTorch importer keeps that kernel exactly, as
one Affine per tap rank (``NAME``, ``NAME.tap1``, ...: every synapse's first non-zero tap, its
second, ...), and writes ``annotations["dcls"]`` on the first: the layer's tap nodes, and for each
synapse (each kernel element when ``kernel_count`` > 1) its learned delay in steps and its share of
the kernel's sum over taps.

This pass gives each synapse the delay the paper uses for inference (its ``round_pos``:
``P.round_()``, ties to even, then clamped to the kernel) and its whole weight, the kernel's sum over
taps, which is the weight it was trained with. A layer becomes one Affine (with ``kernel_count`` > 1,
one per element rank where elements land on different taps). The weight is the graph's own sum over
the layer's taps, so a scale that ``canonicalize`` folded into the rows stays in it.

The report gives per layer the synapses, how many moved, the largest and mean |rounding| in steps,
and how what the layer feeds changes with this layer alone rounded; for the network, how every
Output changes with all layers rounded (spike agreement and counts), on calibration inputs
(quantize-weights' ``Calibration``). A graph without DCLS layers passes unchanged.
"""

from __future__ import annotations

import numpy as np

from snnc.errors import IRError
from snnc.ir import Affine, Graph
from snnc.ir.contracts import DCLS, check_dcls
from snnc.passes import Pass
from snnc.passes.quantize import Calibration

#: The annotation the PyTorch importer writes on the first tap node of a Dcls1d.
ANNOTATION = DCLS


def tap_node_name(layer: str, rank: int) -> str:
    """The node holding tap rank ``rank`` of a DCLS layer."""
    return layer if rank == 0 else f"{layer}.tap{rank}"


def kernel_synapses(kernel: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A kernel (out, in, taps) whose tap ``k`` is the delay ``taps - 1 - k``, as synapse matrices:
    one (weight, per-synapse delay) per tap rank (each synapse's first non-zero tap, its second, ...),
    at least one. Exact for any kernel; one matrix when every synapse has one tap."""
    taps = kernel.shape[2]
    nonzero = kernel != 0
    rank = np.cumsum(nonzero, axis=2) - 1
    synapses = []
    for r in range(max(1, int(nonzero.sum(axis=2).max(initial=0)))):
        chosen = nonzero & (rank == r)
        weight = np.where(chosen, kernel, 0).sum(axis=2)
        delay = np.where(chosen.any(axis=2), taps - 1 - chosen.argmax(axis=2), 0).astype(np.int64)
        synapses.append((weight, delay))
    return synapses


def rounded_delays(delay: np.ndarray, kernel_size: int) -> np.ndarray:
    """Learned delays (steps) rounded as DCLS rounds its positions: ``P.round_()`` on the position
    ``P = c - delay`` (``c = kernel_size - 1 - kernel_size // 2``; ties to even), clamped to the
    kernel, whose taps hold delays 0 to ``kernel_size - 1``."""
    centre = kernel_size - 1 - kernel_size // 2
    return np.clip(centre - np.rint(centre - delay), 0, kernel_size - 1).astype(np.int64)


class RoundDelays(Pass):
    """Round the delays DCLS layers learned to whole steps: one delay and one weight per synapse."""

    name = "round-delays"

    def __init__(self, calibration: str | None = None):
        self.calibration = calibration
        self.layers: dict[str, dict] = {}
        self.network: dict = {}
        self.calibrated_on: dict = {}

    def report(self) -> dict:
        return {"calibration": self.calibrated_on, "layers": self.layers, "network": self.network}

    def run(self, graph: Graph) -> Graph:
        self.layers, self.network, self.calibrated_on = {}, {}, {}
        annotated = list(check_dcls(graph))
        if not annotated:
            return graph
        calibration = Calibration(graph, self.calibration)
        self.calibrated_on = calibration.description
        plans = {name: _plan(graph, name) for name in annotated}
        fed = sorted({sink for name in annotated for sink in graph.successors(name)} | set(graph.outputs))
        reference = calibration.observe(graph, fed)
        for name, (synapses, layer) in plans.items():
            alone = _apply(graph.copy(), name, synapses)
            sinks = alone.successors(name)
            changed = calibration.observe(alone, sinks)
            layer["alone"] = {sink: Calibration.compare(reference[sink], changed[sink], sink in calibration.spiking)
                              for sink in sinks}
            self.layers[graph[name].annotations[ANNOTATION]["layer"]] = layer
        rounded = graph.copy()
        for name, (synapses, _) in plans.items():
            _apply(rounded, name, synapses)
        self.network = calibration.network_change(rounded, reference)
        return rounded.sort()


def _plan(graph: Graph, name: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """The synapse matrices of DCLS layer ``name`` with rounded delays, and its rounding report."""
    info = graph[name].annotations[ANNOTATION]
    taps = _tap_nodes(graph, name, info)
    total = np.sum([graph[t].op.weight for t in taps], axis=0)
    learned, share = np.asarray(info["delay"], np.float64), np.asarray(info["weight"], np.float64)
    if learned.shape[:2] != total.shape or share.shape != learned.shape:
        raise IRError(name, f"round-delays: annotation {ANNOTATION!r} holds delays {learned.shape} and weights "
                            f"{share.shape} for synapses {total.shape}; re-import the model")
    # Each element keeps its share of its synapse's weight as it stands in the graph now.
    imported = share.sum(axis=2, keepdims=True)
    fraction = np.divide(share, imported, out=np.zeros_like(share), where=imported != 0)
    weight = np.where(imported != 0, total[..., None] * fraction, share)
    size = int(info["kernel_size"])
    delay = rounded_delays(learned, size)
    kernel = np.zeros((*total.shape, size))
    rows, columns = np.indices(total.shape)
    for element in range(learned.shape[2]):
        kernel[rows, columns, size - 1 - delay[..., element]] += weight[..., element]
    rounding = np.abs(delay - learned)[_group_members(total.shape, int(info["groups"]), learned.shape[2])]
    synapses = kernel_synapses(kernel)
    return synapses, {"node": name, "version": info["version"], "kernel_size": size, "taps_before": len(taps),
                      "taps_after": len(synapses), "synapses": int(rounding.size),
                      "rounded": int(np.count_nonzero(rounding)), "max_rounding": float(rounding.max(initial=0.0)),
                      "mean_rounding": float(rounding.mean())}


def _tap_nodes(graph: Graph, name: str, info: dict) -> list[str]:
    """The tap nodes of the DCLS layer annotated on ``name``, checked to be as the importer made them."""
    taps = list(info["taps"])
    advice = "run round-delays before passes that rewrite synapses (fuse-synapses)"
    if not taps or taps[0] != name:
        raise IRError(name, f"round-delays: its {ANNOTATION!r} annotation names tap nodes {taps}, which do not "
                            f"start with the node itself; {advice}")
    for tap in taps:
        if tap not in graph.nodes or not isinstance(graph[tap].op, Affine):
            raise IRError(tap, f"round-delays: this tap of DCLS layer {info['layer']!r} is gone or no longer an "
                               f"Affine; {advice}")
        if sorted(graph.predecessors(tap)) != sorted(graph.predecessors(name)) or \
                sorted(graph.successors(tap)) != sorted(graph.successors(name)):
            raise IRError(tap, f"round-delays: this tap of DCLS layer {info['layer']!r} no longer joins the same "
                               f"nodes as {name!r}; {advice}")
        if tap != name and graph[tap].op.bias is not None:
            raise IRError(tap, f"round-delays: this tap of DCLS layer {info['layer']!r} holds a bias, which only "
                               f"{name!r} holds; {advice}")
    return taps


def _group_members(shape: tuple[int, int], groups: int, elements: int) -> np.ndarray:
    """Which (out, in, element) entries are synapses of a layer of ``groups`` groups."""
    out_channels, in_channels = shape
    rows, columns = np.indices(shape)
    member = rows // (out_channels // groups) == columns // (in_channels // groups)
    return np.repeat(member[..., None], elements, axis=2)


def _apply(graph: Graph, name: str, synapses: list[tuple[np.ndarray, np.ndarray]]) -> Graph:
    """Replace the tap nodes of the DCLS layer on ``name`` by ``synapses``, the first on ``name``."""
    node = graph[name]
    taps = node.annotations.pop(ANNOTATION)["taps"]
    sources, sinks = graph.predecessors(name), graph.successors(name)
    for tap in taps[1:]:
        graph.remove(tap)
    first = node.op
    for rank, (weight, delay) in enumerate(synapses):
        op = Affine(weight=weight, bias=first.bias if rank == 0 else None, delay=delay, out_shape=first.out_shape)
        if rank == 0:
            node.op = op
            continue
        added = graph.add(tap_node_name(name, rank), op).name
        for source in sources:
            graph.connect(source, added)
        for sink in sinks:
            graph.connect(added, sink)
    return graph
