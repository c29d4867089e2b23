"""Passes by name, and the pipeline a target names.

A target file lists its passes (``pipeline = [...]``); ``--passes`` replaces that list for one
compile. Options that some passes take (``--weight-bits``, ``--sparsity``) travel in
``PassOptions``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from snnc.errors import SnncError
from snnc.passes import Pass
from snnc.passes.canonicalize import Canonicalize
from snnc.passes.delays import FoldDelays, SplitDelays
from snnc.passes.fuse import FuseSynapses
from snnc.passes.loihi import QuantizeLoihi
from snnc.passes.mapping import MapCores
from snnc.passes.quantize import QuantizeWeights
from snnc.passes.round_delays import RoundDelays
from snnc.passes.sparsify import Sparsify
from snnc.passes.spinnaker import QuantizeSpiNNaker
from snnc.targets import Target


@dataclass
class PassOptions:
    """Settings a user gives on the command line for the passes that read them."""

    #: --weight-bits: bits of the weights' integer mantissas (2, 4 or 8); None keeps the target's.
    weight_bits: int | None = None
    #: --quantization: how the scale is chosen: "entropy" (QSD-style), "error" (search), "minmax".
    quantization: str = "entropy"
    #: --granularity: one scale per "layer" or per output "channel".
    granularity: str = "layer"
    #: --sparsity: fraction of weights to prune by magnitude; None prunes nothing.
    sparsity: float | None = None
    #: --calibration: an .npy/.npz of inputs for the passes that measure spikes; None draws random ones.
    calibration: str | None = None


#: Every pass by the name pipelines and --passes use.
REGISTRY: dict[str, Callable[[Target, PassOptions], Pass]] = {
    Canonicalize.name: lambda target, options: Canonicalize(),
    FoldDelays.name: lambda target, options: FoldDelays(),
    RoundDelays.name: lambda target, options: RoundDelays(options.calibration),
    SplitDelays.name: lambda target, options: SplitDelays(target),
    FuseSynapses.name: lambda target, options: FuseSynapses(),
    Sparsify.name: lambda target, options: Sparsify(target, options.sparsity, calibration=options.calibration),
    QuantizeWeights.name: lambda target, options: QuantizeWeights(target, options.weight_bits, options.quantization,
                                                                  options.granularity, options.calibration),
    QuantizeLoihi.name: lambda target, options: QuantizeLoihi(target),
    QuantizeSpiNNaker.name: lambda target, options: QuantizeSpiNNaker(target),
    MapCores.name: lambda target, options: MapCores(target, options.calibration),
}


#: Every pass's class and the PassOptions fields that its entry in REGISTRY hands it, by name: what
#: ``snnc passes`` lists.
PASSES: dict[str, tuple[type[Pass], tuple[str, ...]]] = {
    Canonicalize.name: (Canonicalize, ()),
    FoldDelays.name: (FoldDelays, ()),
    RoundDelays.name: (RoundDelays, ("calibration",)),
    SplitDelays.name: (SplitDelays, ()),
    FuseSynapses.name: (FuseSynapses, ()),
    Sparsify.name: (Sparsify, ("sparsity", "calibration")),
    QuantizeWeights.name: (QuantizeWeights, ("weight_bits", "quantization", "granularity", "calibration")),
    QuantizeLoihi.name: (QuantizeLoihi, ()),
    QuantizeSpiNNaker.name: (QuantizeSpiNNaker, ()),
    MapCores.name: (MapCores, ("calibration",)),
}


def build_pipeline(target: Target, names: list[str] | None = None, options: PassOptions | None = None) -> list[Pass]:
    """The passes ``names`` (default: the target's pipeline), ready to run for ``target``."""
    names = target.pipeline if names is None else names
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        where = "--passes" if names is not target.pipeline else f"{target.path}: pipeline"
        raise SnncError(f"{where}: unknown pass {unknown[0]!r}; passes are {', '.join(sorted(REGISTRY))}")
    return [REGISTRY[name](target, options or PassOptions()) for name in names]
