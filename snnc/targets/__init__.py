"""Target descriptions as data: one TOML file per target, loaded and validated here.

A target file gives the number formats of the chip's arithmetic, the limits of a core, the layout
of cores, tiles and chips, and the time and energy of each operation. Every number is written as
``{ value = ..., source = "..." }`` so that a report can say where it came from; a user adds a
target by writing one file (``snnc ... --target path/to/mychip.toml``).

A target file is input like a model: every key must be known and every number within the bounds
below (``Bound``), which every real chip fits with room and which keep the compiler's loops and
arithmetic finite; the formats that define an arithmetic the simulator implements are fixed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from snnc.errors import SnncError

TARGET_DIR = Path(__file__).parent
#: A target file is a page of numbers; anything larger is not one.
MAX_FILE_BYTES = 1 << 20
#: A target's name: it names the artifact's target and appears in reports and generated programs.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
#: A pass name as the pass registry spells them (snnc.passes.pipeline checks that each exists).
PASS_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
#: Longest description and source text, and most passes in a pipeline.
MAX_TEXT, MAX_PASSES = 1000, 64


@dataclass(frozen=True)
class Bound:
    """The values one number of a target file may take: ``low`` to ``high``, an integer unless
    ``real``, a power of two if ``power_of_two``; ``why`` says where a bound comes from."""

    low: float
    high: float
    real: bool = False
    power_of_two: bool = False
    why: str = ""

    def problem(self, value) -> str | None:
        """What is wrong with ``value`` (a number from TOML), or None."""
        if isinstance(value, bool) or not isinstance(value, (int, float) if self.real else int) or not (
                self.low <= value <= self.high) or (self.power_of_two and value & (value - 1)):
            kind = "a number" if self.real else "a power of two" if self.power_of_two else "an integer"
            wanted = f"give {self.low}" if self.low == self.high else f"give {kind} from {self.low} to {self.high}"
            return wanted + (f" ({self.why})" if self.why else "")
        return None


def _fixed(value: int, why: str) -> Bound:
    return Bound(value, value, why=why)


#: Why a loihi format is fixed: the simulator and the Lava program implement exactly this arithmetic.
_LAVA = "the loihi arithmetic is Lava's bit-accurate LIF, which snnc simulates and emits"
#: Why a spinnaker format is fixed: the simulators implement sPyNNaker's s16.15 state.
_SPYNNAKER = "the spinnaker arithmetic is sPyNNaker's s16.15 state, which snnc simulates"

#: The arithmetic families the simulator implements, and the number formats each one needs. Bounds
#: that only narrow what the family implements let a target file describe a smaller chip; formats
#: that define the arithmetic itself are fixed, since a different value would be simulated wrongly.
ARITHMETIC_FORMATS: dict[str, dict[str, Bound]] = {
    "float": {},
    "loihi": {
        "weight_bits": Bound(1, 8, why="Lava's Dense weights have 8 bits"),
        "weight_exponent_min": Bound(-8, 0, why="Loihi's weight exponent is -8 to 7"),
        "weight_exponent_max": Bound(0, 7, why="Loihi's weight exponent is -8 to 7"),
        "u_bits": _fixed(24, _LAVA),
        "v_bits": _fixed(24, _LAVA),
        "decay_bits": _fixed(12, _LAVA),
        "threshold_mantissa_bits": Bound(1, 17, why="Lava's vth has 17 bits"),
        "threshold_shift": _fixed(6, _LAVA),
        "bias_mantissa_bits": Bound(2, 13, why="Lava's bias mantissa is a signed 13-bit number"),
        "bias_exponent_max": Bound(0, 7, why="Lava's bias exponent has 3 bits"),
        "activation_bits": _fixed(16, _LAVA),
        "max_delay": Bound(0, 63, why="Lava's synaptic delays have 6 bits"),
    },
    "spinnaker": {
        "weight_bits": Bound(1, 16, why="a sPyNNaker synaptic word holds a 16-bit weight"),
        "state_bits": _fixed(32, _SPYNNAKER),
        "state_fraction_bits": _fixed(15, _SPYNNAKER),
        "max_delay": Bound(1, 256, power_of_two=True, why="the slots of a core's ring buffer"),
        "delay_extension_stages": Bound(1, 64, why="sPyNNaker has up to 8; more are room for a larger machine"),
    },
}

#: Limits of a core. The largest real cores hold 8192 neurons (Loihi 2) and 65536 axons (SpiNNaker);
#: the bounds leave a hundredfold room and keep every count an exact float64 and every loop finite.
_CORE = {"neurons": Bound(1, 2**20), "fan_in_axons": Bound(1, 2**24), "fan_out_axons": Bound(1, 2**24),
         "synaptic_memory_bits": Bound(1, 2**40), "synapse_bits": Bound(1, 64)}
#: Core limits a target may leave out: without ``populations_per_core`` a core holds pieces of any
#: number of populations.
_CORE_OPTIONAL = {"populations_per_core": Bound(1, 2**20)}
#: The layout: SpiNNaker 2 has 152 cores a chip, TrueNorth a 64 x 64 mesh, the million-core SpiNNaker
#: about 240 x 240 chips.
_CHIP = {"cores_per_tile": Bound(1, 1024), "mesh_width": Bound(1, 256), "mesh_height": Bound(1, 256),
         "board_width": Bound(1, 256), "board_height": Bound(1, 256)}
#: All cores of a target together: mapping and placement walk them; the million-core SpiNNaker has 2**20.
MAX_CORES = 2**21
#: Keys of the [chip] table that only one arithmetic's chips have: a SpiNNaker router's table size.
_ARITHMETIC_CHIP = {"spinnaker": {"router_entries": Bound(1, 2**20)}}
_COSTS = ("synaptic_op", "neuron_update_inactive", "neuron_update_active", "spike_out", "message_out",
          "message_in", "hop_east_west", "hop_north_south", "chip_hop")
#: One event's energy and time: real ones are pico- to nanojoules and nano- to microseconds.
_COST_FIELDS = {"energy_j": Bound(0, 1.0, real=True, why="joules per event"),
                "time_s": Bound(0, 1.0, real=True, why="seconds per event")}
_BARRIER = {"barrier_base_s": Bound(0, 1.0, real=True, why="seconds"),
            "barrier_per_tile_s": Bound(0, 1.0, real=True, why="seconds"),
            "step_time_min_s": Bound(0, 1.0, real=True, why="seconds"),
            "static_power_w": Bound(0, 1000.0, real=True, why="watts per chip")}
_TOP = ("name", "description", "arithmetic", "pipeline", "formats", "core", "chip", "costs")


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
        if self.arithmetic == "spinnaker":
            # Imported here: listing targets needs no IR (numpy, networkx).
            from snnc.ir.contracts import spinnaker_delay_ticks

            return spinnaker_delay_ticks(self.formats) - 1
        return self.formats.get("max_delay", 0)

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


def _text(value) -> bool:
    return isinstance(value, str) and value.isprintable() and len(value) <= MAX_TEXT


def _shown(value) -> str:
    """A TOML value as the error shows it: short, and printable whatever the file holds."""
    return ascii(value)[:60]


def _unknown(keys: set) -> str:
    return f"unknown keys {', '.join(sorted(map(_shown, keys)))}"


def _number(path: Path, table: str, key: str, entry, bound: Bound, sources: dict) -> float | int:
    """Read ``{ value, source }``: a source that says where the number comes from, and a value
    within ``bound``."""
    where = f"[{table}] {key}"
    if not isinstance(entry, dict) or set(entry) != {"value", "source"}:
        _fail(path, where, 'write it as { value = <number>, source = "<where the number comes from>" }')
    return _checked(path, table, key, entry["value"], entry["source"], bound, sources)


def _checked(path: Path, table: str, key: str, value, source, bound: Bound, sources: dict) -> float | int:
    if not _text(source) or not source.strip():
        _fail(path, f"[{table}] {key}", f"source must say where the number comes from, in printable text of at most "
                                       f"{MAX_TEXT} characters")
    problem = bound.problem(value)
    if problem:
        _fail(path, f"[{table}] {key} = {_shown(value)}", problem)
    sources[f"{table}.{key}"] = source
    return value


def _section(path: Path, document: dict, name: str, keys: dict[str, Bound], sources: dict,
             optional: dict[str, Bound] | None = None) -> dict:
    table = document.get(name, {})
    optional = optional or {}
    if not isinstance(table, dict):
        _fail(path, f"[{name}]", "must be a table")
    unknown = set(table) - set(keys) - set(optional)
    if unknown:
        _fail(path, f"[{name}]", f"{_unknown(unknown)}; expected {list(keys)}"
                                 + (f" and optionally {list(optional)}" if optional else ""))
    values = {}
    for key, bound in (*keys.items(), *((key, bound) for key, bound in optional.items() if key in table)):
        if key not in table:
            _fail(path, f"[{name}] {key}", "is missing")
        values[key] = _number(path, name, key, table[key], bound, sources)
    return values


def _read_document(path: Path) -> dict:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TargetError(f"{path}: {size} bytes is not a target file; one is at most {MAX_FILE_BYTES} bytes")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TargetError(f"{path}: cannot read target file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise TargetError(f"{path}: not valid TOML (not UTF-8 text at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{path}: not valid TOML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise TargetError(f"{path}: not valid TOML (nests deeper than Python can read)") from None


def _header(path: Path, document: dict) -> tuple[str, str, str, list[str]]:
    """name, description, arithmetic and pipeline, each checked."""
    unknown = set(document) - set(_TOP)
    if unknown:
        _fail(path, "top level", f"{_unknown(unknown)}; a target file has {list(_TOP)}")
    name, description, arithmetic = (document.get(key) for key in ("name", "description", "arithmetic"))
    if not isinstance(name, str) or not NAME.fullmatch(name):
        _fail(path, f"name = {_shown(name)}", "give a name of 1 to 64 letters, digits, '_', '.' or '-' that starts "
                                              "with a letter")
    if not _text(description):
        _fail(path, f"description = {_shown(description)}", f"give printable text of at most {MAX_TEXT} characters")
    if arithmetic not in ARITHMETIC_FORMATS:
        _fail(path, f"arithmetic = {_shown(arithmetic)}", f"give one of {sorted(ARITHMETIC_FORMATS)}")
    pipeline = document.get("pipeline", [])
    if not isinstance(pipeline, list) or len(pipeline) > MAX_PASSES or not all(
            isinstance(each, str) and PASS_NAME.fullmatch(each) for each in pipeline):
        _fail(path, f"pipeline = {_shown(pipeline)}", f"give a list of at most {MAX_PASSES} pass names "
                                                      "(see 'snnc passes')")
    return name, description, arithmetic, pipeline


def parse_target(path: Path) -> Target:
    """The target file at ``path``, every key known and every value within its ``Bound``; errors
    name the file, the table and the key: ``chip.toml: [chip] mesh_width = 0: give an integer
    from 1 to 256``."""
    document = _read_document(path)
    name, description, arithmetic, pipeline = _header(path, document)
    sources: dict[str, str] = {}
    target = Target(name=name, description=description, arithmetic=arithmetic, path=path, sources=sources,
                    pipeline=pipeline)
    target.formats = _section(path, document, "formats", ARITHMETIC_FORMATS[arithmetic], sources)
    if arithmetic == "float":
        extra = set(document) - {"name", "description", "arithmetic", "formats", "pipeline"}
        if extra:
            _fail(path, "float target", f"models no hardware; remove {sorted(extra)}")
        return target
    target.core = _section(path, document, "core", _CORE, sources, optional=_CORE_OPTIONAL)
    target.chip = _section(path, document, "chip", {**_CHIP, **_ARITHMETIC_CHIP.get(arithmetic, {})}, sources)
    if target.cores_per_chip * target.chips > MAX_CORES:
        _fail(path, "[chip]", f"{target.cores_per_chip * target.chips} cores in all (cores_per_tile x mesh x board); "
                              f"give at most {MAX_CORES}")
    _costs(path, document, target, sources)
    return target


def _costs(path: Path, document: dict, target: Target, sources: dict) -> None:
    costs = document.get("costs", {})
    if not isinstance(costs, dict):
        _fail(path, "[costs]", "must be a table")
    unknown = set(costs) - set(_COSTS) - set(_BARRIER)
    if unknown:
        _fail(path, "[costs]", f"{_unknown(unknown)}; expected {[*_COSTS, *_BARRIER]}")
    for kind in _COSTS:
        entry = costs.get(kind)
        if not isinstance(entry, dict) or set(entry) != {*_COST_FIELDS, "source"}:
            _fail(path, f"[costs] {kind}", 'write it as { energy_j = <J>, time_s = <s>, source = "..." }')
        numbers = {f: _checked(path, "costs", f"{kind}.{f}", entry[f], entry["source"], bound, sources)
                   for f, bound in _COST_FIELDS.items()}
        target.costs[kind] = Cost(numbers["energy_j"], numbers["time_s"], entry["source"])
    for key, bound in _BARRIER.items():
        if key not in costs:
            _fail(path, f"[costs] {key}", "is missing")
        setattr(target, key, _number(path, "costs", key, costs[key], bound, sources))


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
