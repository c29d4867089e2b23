"""Passes by name, and the pipeline a target names.

A target file lists its passes (``pipeline = [...]``); ``--passes`` replaces that list for one
compile. Options that some passes take (``--weight-bits``, ``--sparsity``, ...) travel in
``PassOptions``; an option that no pass of the pipeline reads would change nothing, so
``build_pipeline`` refuses it and says which passes, in which targets' pipelines, read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

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
from snnc.targets import Target, available_targets, load_target


@dataclass
class PassOptions:
    """Settings a user gives on the command line for the passes that read them; a field at its
    default was not given."""

    #: --weight-bits: bits of the weights' integer mantissas (2, 4 or 8); None keeps the target's.
    weight_bits: int | None = None
    #: --quantization: how the scale is chosen: "entropy" (QSD-style, the default), "error" (search), "minmax".
    quantization: str | None = None
    #: --granularity: one scale per "layer" (the default) or per output "channel".
    granularity: str | None = None
    #: --sparsity: fraction of weights to prune by magnitude; None prunes nothing.
    sparsity: float | None = None
    #: --calibration: an .npy/.npz of inputs for the passes that measure spikes; None draws random ones.
    calibration: str | None = None
    #: --allow-lossy: clip parameters the chip cannot hold, with a warning, instead of refusing them.
    allow_lossy: bool = False

    def given(self) -> dict[str, object]:
        """The options set away from their defaults, by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


def flag(option: str, value=True) -> str:
    """How the command line spells a PassOptions field with its value."""
    name = "--" + option.replace("_", "-")
    return name if isinstance(value, bool) else f"{name} {value}"


@dataclass(frozen=True)
class Registered:
    """A pass as pipelines and --passes name it: its class, how it is built for a target with the
    options, and the PassOptions fields that build reads."""

    kind: type[Pass]
    build: Callable[[Target, PassOptions], Pass]
    reads: tuple[str, ...] = ()


#: Every pass by the name pipelines and --passes use.
REGISTRY: dict[str, Registered] = {entry.kind.name: entry for entry in (
    Registered(Canonicalize, lambda target, options: Canonicalize()),
    Registered(FoldDelays, lambda target, options: FoldDelays()),
    Registered(RoundDelays, lambda target, options: RoundDelays(options.calibration), ("calibration",)),
    Registered(SplitDelays, lambda target, options: SplitDelays(target)),
    Registered(FuseSynapses, lambda target, options: FuseSynapses()),
    Registered(Sparsify, lambda target, options: Sparsify(target, options.sparsity, calibration=options.calibration),
               ("sparsity", "calibration")),
    Registered(QuantizeWeights,
               lambda target, options: QuantizeWeights(target, options.weight_bits, options.quantization,
                                                       options.granularity, options.calibration),
               ("weight_bits", "quantization", "granularity", "calibration")),
    Registered(QuantizeLoihi, lambda target, options: QuantizeLoihi(target, options.allow_lossy), ("allow_lossy",)),
    Registered(QuantizeSpiNNaker, lambda target, options: QuantizeSpiNNaker(target, options.allow_lossy),
               ("allow_lossy",)),
    Registered(MapCores, lambda target, options: MapCores(target, options.calibration), ("calibration",)),
)}


def build_pipeline(target: Target, names: list[str] | None = None, options: PassOptions | None = None) -> list[Pass]:
    """The passes ``names`` (default: the target's pipeline), ready to run for ``target``; refuses
    an unknown pass and an option that none of them reads."""
    given = names is not None
    names = target.pipeline if names is None else names
    where = "--passes" if given else f"{target.path}: pipeline"
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise SnncError(f"{where}: unknown pass {unknown[0]!r}; passes are {', '.join(sorted(REGISTRY))}")
    options = options or PassOptions()
    read = {option for name in names for option in REGISTRY[name].reads}
    for option, value in options.given().items():
        if option not in read:
            raise _unread(option, value, "--passes" if given else f"target {target.name}'s pipeline", names)
    return [REGISTRY[name].build(target, options) for name in names]


def _unread(option: str, value, where: str, names: list[str]) -> SnncError:
    """The error for an option that no pass of ``names`` reads: which passes read it, and in which
    bundled targets' pipelines they run."""
    readers = [name for name, entry in REGISTRY.items() if option in entry.reads]
    targets = [name for name in available_targets() if set(readers) & set(load_target(name).pipeline)]
    runs = f", in the pipelines of targets {', '.join(targets)}" if targets else ""
    return SnncError(f"{flag(option, value)}: no pass of {where} ({', '.join(names) or 'none'}) reads it; "
                     f"{', '.join(readers)} read{'s' if len(readers) == 1 else ''} it{runs}; choose such a target, "
                     f"or name {'that pass' if len(readers) == 1 else 'one of those passes'} in --passes")
