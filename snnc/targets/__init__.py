"""Target descriptions as data: one TOML file per target, loaded and validated here.

A target file gives the number formats of the chip's arithmetic, the limits of a core, the layout
of cores, tiles and chips, and the time and energy of each operation. Every number is written as
``{ value = ..., source = "..." }`` so that a report can say where it came from; a user adds a
target by writing one file (``snnc ... --target path/to/mychip.toml``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from snnc.errors import SnncError

TARGET_DIR = Path(__file__).parent

#: The arithmetic families the simulator implements, and the number formats each one needs.
ARITHMETIC_FORMATS = {
    "float": (),
    "loihi": ("weight_bits", "weight_exponent_min", "weight_exponent_max", "u_bits", "v_bits", "decay_bits",
              "threshold_mantissa_bits", "threshold_shift", "bias_mantissa_bits", "bias_exponent_max",
              "activation_bits", "max_delay"),
    "spinnaker": ("weight_bits", "state_bits", "state_fraction_bits", "max_delay", "delay_extension_stages"),
}

#: Integer-valued keys of each section, and keys of each section that hold numbers.
_CORE = ("neurons", "fan_in_axons", "fan_out_axons", "synaptic_memory_bits", "synapse_bits")
#: Core limits a target may leave out: without ``populations_per_core`` a core holds pieces of any
#: number of populations.
_CORE_OPTIONAL = ("populations_per_core",)
_CHIP = ("cores_per_tile", "mesh_width", "mesh_height", "board_width", "board_height")
#: Keys of the [chip] table that only one arithmetic's chips have: a SpiNNaker router's table size.
_ARITHMETIC_CHIP = {"spinnaker": ("router_entries",)}
_COSTS = ("synaptic_op", "neuron_update_inactive", "neuron_update_active", "spike_out", "message_out",
          "message_in", "hop_east_west", "hop_north_south", "chip_hop")
_COST_FIELDS = ("energy_j", "time_s")
_BARRIER = ("barrier_base_s", "barrier_per_tile_s", "step_time_min_s")


@dataclass
class Cost:
    """The energy and time of one event of a kind, with where the numbers come from."""

    energy_j: float
    time_s: float
    source: str


@dataclass
class Target:
    """A validated target description."""

    name: str
    description: str
    arithmetic: str
    path: Path
    formats: dict[str, int] = field(default_factory=dict)
    core: dict[str, int] = field(default_factory=dict)
    chip: dict[str, int] = field(default_factory=dict)
    costs: dict[str, Cost] = field(default_factory=dict)
    barrier_base_s: float = 0.0
    barrier_per_tile_s: float = 0.0
    step_time_min_s: float = 0.0
    static_power_w: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)
    #: The passes that lower a graph for this target, by name (snnc.passes.pipeline).
    pipeline: list[str] = field(default_factory=list)

    @property
    def has_hardware(self) -> bool:
        """False for the float target, which models no chip."""
        return bool(self.core)

    @property
    def longest_delay(self) -> int:
        """The longest synaptic delay, in IR steps, that the chip holds without relay populations
        (0: delays are not limited). A Loihi synapse holds ``max_delay``; a sPyNNaker core holds
        ``max_delay`` ticks and each delay-extension stage ``max_delay`` more, where a delay of d
        steps takes d + 1 ticks (docs/semantics.md, section 7)."""
        limit = self.formats.get("max_delay", 0)
        if self.arithmetic == "spinnaker":
            return limit * (1 + self.formats["delay_extension_stages"]) - 1
        return limit

    @property
    def cores_per_chip(self) -> int:
        return self.chip["cores_per_tile"] * self.chip["mesh_width"] * self.chip["mesh_height"]

    @property
    def chips(self) -> int:
        return self.chip["board_width"] * self.chip["board_height"]


class TargetError(SnncError):
    pass


def _fail(path: Path, where: str, message: str) -> None:
    raise TargetError(f"{path}: {where}: {message}")


def _number(path: Path, where: str, entry, integer: bool, sources: dict) -> float | int:
    """Read ``{ value, source }``; require a source and a non-negative number of the right kind."""
    if not isinstance(entry, dict) or set(entry) != {"value", "source"}:
        _fail(path, where, 'write it as { value = <number>, source = "<where the number comes from>" }')
    value, source = entry["value"], entry["source"]
    if not isinstance(source, str) or not source.strip():
        _fail(path, where, "source must say where the number comes from")
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        _fail(path, where, f"value must be {'an integer' if integer else 'a number'}, got {value!r}")
    sources[where] = source
    return value


def _section(path: Path, document: dict, name: str, keys, integer: bool, sources: dict, signed=(),
             optional=()) -> dict:
    table = document.get(name, {})
    if not isinstance(table, dict):
        _fail(path, name, "must be a table")
    unknown = set(table) - set(keys) - set(optional)
    if unknown:
        _fail(path, name, f"unknown keys {sorted(unknown)}; expected {list(keys)}"
                          + (f" and optionally {list(optional)}" if optional else ""))
    values = {}
    for key in (*keys, *(key for key in optional if key in table)):
        if key not in table:
            _fail(path, f"{name}.{key}", "is missing")
        values[key] = _number(path, f"{name}.{key}", table[key], integer, sources)
        if key not in signed and values[key] < 0:
            _fail(path, f"{name}.{key}", "must not be negative")
    return values


def parse_target(path: Path) -> Target:
    try:
        document = tomllib.loads(path.read_text())
    except OSError as e:
        raise TargetError(f"{path}: cannot read target file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{path}: not valid TOML ({e})") from None
    for key in ("name", "description", "arithmetic"):
        if not isinstance(document.get(key), str):
            _fail(path, key, "is missing (a string)")
    pipeline = document.get("pipeline", [])
    if not isinstance(pipeline, list) or not all(isinstance(name, str) for name in pipeline):
        _fail(path, "pipeline", "must be a list of pass names")
    arithmetic = document["arithmetic"]
    if arithmetic not in ARITHMETIC_FORMATS:
        _fail(path, "arithmetic", f"{arithmetic!r} is not one of {sorted(ARITHMETIC_FORMATS)}")
    sources: dict[str, str] = {}
    target = Target(name=document["name"], description=document["description"], arithmetic=arithmetic, path=path,
                    sources=sources, pipeline=pipeline)
    target.formats = _section(path, document, "formats", ARITHMETIC_FORMATS[arithmetic], True, sources,
                              signed=("weight_exponent_min",))
    if arithmetic == "float":
        extra = set(document) - {"name", "description", "arithmetic", "formats", "pipeline"}
        if extra:
            _fail(path, "float target", f"models no hardware; remove {sorted(extra)}")
        return target
    target.core = _section(path, document, "core", _CORE, True, sources, optional=_CORE_OPTIONAL)
    target.chip = _section(path, document, "chip", _CHIP + _ARITHMETIC_CHIP.get(arithmetic, ()), True, sources)
    costs = document.get("costs", {})
    if not isinstance(costs, dict):
        _fail(path, "costs", "must be a table")
    unknown = set(costs) - set(_COSTS) - set(_BARRIER) - {"static_power_w"}
    if unknown:
        _fail(path, "costs", f"unknown keys {sorted(unknown)}")
    for kind in _COSTS:
        entry = costs.get(kind)
        if not isinstance(entry, dict) or set(entry) != {*_COST_FIELDS, "source"}:
            _fail(path, f"costs.{kind}", 'write it as { energy_j = <J>, time_s = <s>, source = "..." }')
        numbers = {f: _number(path, f"costs.{kind}.{f}", {"value": entry[f], "source": entry["source"]}, False, sources)
                   for f in _COST_FIELDS}
        target.costs[kind] = Cost(numbers["energy_j"], numbers["time_s"], entry["source"])
    for key in (*_BARRIER, "static_power_w"):
        if key not in costs:
            _fail(path, f"costs.{key}", "is missing")
        setattr(target, key, _number(path, f"costs.{key}", costs[key], False, sources))
    return target


def available_targets() -> list[str]:
    return sorted(p.stem for p in TARGET_DIR.glob("*.toml"))


def load_target(name: str) -> Target:
    """A bundled target by name, or a target file by path."""
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise TargetError(f"--target {name}: no such target file")
        return parse_target(path)
    bundled = TARGET_DIR / f"{name}.toml"
    if not bundled.is_file():
        raise TargetError(f"--target {name}: unknown target; available: {', '.join(available_targets())}, "
                          "or the path of a .toml target file")
    return parse_target(bundled)
