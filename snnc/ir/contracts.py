"""What a graph quantized for a fixed-point arithmetic holds, checked once before anything runs or is
written from it.

A graph whose metadata names the ``loihi`` or ``spinnaker`` arithmetic is in the population form its
chip runs: inputs, spiking populations (LIF, IF, CubaLIF) that read only synapse groups, synapse
groups (Affine) that read one input or population and feed populations only, and outputs that
record one population's or input's spikes. Every population and synapse group carries, under the
arithmetic's name, an annotation with exactly the integers the chip takes (``Field``). The quantize
passes write these; a ``.snnir`` file or an artifact may hold anything. So the emitters and the
simulator call ``check_fixed_point`` once on a graph, before they read it: it refuses the first node
that breaks the form, or whose annotation lacks a field, holds an unknown one or a value outside the
target's number formats, in one line naming the node, the field and what would be valid. The ranges
come from the target's ``[formats]`` table, passed in as a plain mapping: this module knows no target.

The other annotations and metadata that passes write and later code reads back are checked the same
way, each by one function that its reader calls where it starts: ``check_placement`` (map-cores'
pieces of every population, against the board the cost model or the SpiNNaker backend places them
on), ``check_mapping`` (map-cores' summary, which ``snnc inspect --mapping`` prints),
``check_quant`` (quantize-weights' mantissas and scale), ``check_encoding`` (a synapse group's
memory encoding), ``check_dcls`` (the DCLS layers round-delays rounds) and, within
``check_fixed_point``, ``fused_from`` (the model's nodes a synapse group was fused from, which the
Lava lowering table lists). Their values are plain data (lists, tables, strings, numbers, arrays),
described by small schemas (``Number``, ``Text``, ``Items``, ``Table``, ...) that name the path of
the first value at fault: ``node 'v1': annotation placement[1].core is '0' (str); give an integer >= 0``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from snnc.errors import IRError, shown
from snnc.files import MEMORY_BUDGET_VARIABLE, memory_budget
from snnc.ir.graph import Graph
from snnc.ir.ops import IF, LIF, NEURONS, Affine, CubaLIF, Input, Output

#: The neurons that every fixed-point arithmetic here runs.
SPIKING = (LIF, IF, CubaLIF)
#: Lava's weights are even: every sign mode of its Dense keeps even values in [-256, 254] as they
#: are (mixed mode truncates the lowest bit), so quantize-loihi writes 2 x an 8-bit mantissa.
WEIGHT_STEP = 2
#: u0.32 (``unsigned long fract``, sPyNNaker's decay_t): 1.0 is 2**32.
U032_ONE = 1 << 32
#: The receptor types of sPyNNaker's current-based models, in the order of their ring-buffer shifts.
RECEPTORS = ("excitatory", "inhibitory")
#: sPyNNaker's current-based LIF models that quantize-spinnaker chooses from.
SPINNAKER_MODELS = ("IF_curr_exp", "IF_curr_delta", "IF_trunc_delta")
#: Values of an annotation array checked for a step at a time: a few MB of remainders, also for a
#: weight matrix of 10**8 synapses.
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Field:
    """One field of an annotation: one integer (``shape`` None) or an integer array of ``shape`` (a
    tuple, or "neurons": one per neuron of the node, "synapses": the node's weight matrix), every
    value from ``low`` to ``high`` and a multiple of ``step`` (a power of two); with ``names``, one
    of those strings instead. ``optional`` admits None."""

    low: int = 0
    high: int = 0
    shape: tuple[int, ...] | str | None = None
    step: int = 1
    names: tuple[str, ...] = ()
    optional: bool = False

    def valid(self, node) -> str:
        """What a valid value is, as the end of an error message."""
        if self.names:
            return "give one of " + ", ".join(map(repr, self.names))
        if self.shape is None:
            text = f"an integer from {self.low} to {self.high}"
        else:
            text = f"an array of shape {self.expected_shape(node)} of integers from {self.low} to {self.high}"
        if self.step > 1:
            text += f", multiples of {self.step}"
        return "give " + ("None or " if self.optional else "") + text

    def expected_shape(self, node) -> tuple[int, ...]:
        if self.shape == "neurons":
            return (int(np.prod(node.output_shape)),)
        return tuple(node.op.weight.shape) if self.shape == "synapses" else self.shape

    def check(self, node, where: str, value) -> None:
        """Refuse ``value`` unless it is valid, naming the node and the field ``where``."""
        def refuse(what: str):
            raise IRError(node.name, f"annotation {where} {what}; {self.valid(node)}")

        if value is None and self.optional:
            return
        if self.names:
            if not (isinstance(value, str) and value in self.names):
                refuse(f"is {_shown(value)}")
            return
        if self.shape is None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                refuse(f"is {_shown(value)}")
            if not (self.low <= int(value) <= self.high and int(value) % self.step == 0):
                refuse(f"is {int(value)}")
            return
        if not isinstance(value, np.ndarray):
            refuse(f"is {_shown(value)}")
        if value.dtype.kind not in "iu":
            refuse(f"is an array of {value.dtype}")
        if value.shape != self.expected_shape(node):
            refuse(f"is an array of shape {value.shape}")
        if value.size:
            # Python ints: a uint64 array compares with a negative bound exactly.
            smallest, largest = int(value.min()), int(value.max())
            if smallest < self.low or largest > self.high:
                refuse(f"holds {smallest if smallest < self.low else largest}")
        flat = value.reshape(-1)
        for start in range(0, flat.size if self.step > 1 else 0, _BLOCK):
            # A bit mask, as step is a power of two: an integer division would take seconds on 10**8 weights.
            remainders = np.bitwise_and(flat[start:start + _BLOCK], self.step - 1)
            if remainders.any():
                refuse(f"holds {int(flat[start + np.flatnonzero(remainders)[0]])}")


def _shown(value) -> str:
    """A value in an error message: short, on one line, with its type."""
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} and shape {value.shape}"
    return f"{shown(value, 40)} ({type(value).__name__})"


def loihi_fields(formats: Mapping[str, int]) -> dict[str, dict[str, Field]]:
    """The fields of a population's and a synapse group's ``loihi`` annotation, with the ranges of
    Lava's formats: what quantize-loihi writes and Lava holds unchanged."""
    decay = Field(0, (1 << formats["decay_bits"]) - 1)
    bias = 1 << (formats["bias_mantissa_bits"] - 1)
    weight = 1 << formats["weight_bits"]
    return {"population": {"du": decay, "dv": decay, "vth": Field(0, (1 << formats["threshold_mantissa_bits"]) - 1),
                           "bias_mant": Field(-bias, bias - 1, "neurons"),
                           "bias_exp": Field(0, formats["bias_exponent_max"], "neurons")},
            "synapse": {"weights": Field(-weight, weight - WEIGHT_STEP, "synapses", step=WEIGHT_STEP),
                        "weight_exp": Field(formats["weight_exponent_min"], formats["weight_exponent_max"]),
                        "delays": Field(0, formats["max_delay"], "synapses", optional=True)}}


def spinnaker_delay_ticks(formats: Mapping[str, int]) -> int:
    """The longest delay a sPyNNaker synapse holds, in ticks: ``max_delay`` on its core and as many
    more on each delay-extension stage."""
    return formats["max_delay"] * (1 + formats["delay_extension_stages"])


def spinnaker_fields(formats: Mapping[str, int]) -> dict[str | None, dict[str, Field]]:
    """The fields of a synapse group's ``spinnaker`` annotation (key "synapse") and of a population's
    for each of sPyNNaker's models (key None: the model alone, which is checked first), with the
    ranges of the target's formats: s16.15 values in the state's bits, u0.32 decays, ring-buffer
    shifts that keep a shifted weight in the state, 16-bit weight magnitudes per receptor type, and
    delays from 1 tick up to what a core and its delay extensions hold."""
    state = 1 << (formats["state_bits"] - 1)
    value, per_neuron = Field(-state, state - 1), Field(-state, state - 1, "neurons")
    decay = Field(0, U032_ONE - 1, "neurons")
    model = {"model": Field(names=SPINNAKER_MODELS)}
    tables: dict[str | None, dict[str, Field]] = {None: model}
    for name in SPINNAKER_MODELS:
        fields = {**model, "r_membrane": value, "i_offset": per_neuron, "v_reset": per_neuron, "v_thresh": per_neuron,
                  "ring_buffer_shifts": Field(0, formats["state_bits"] - formats["weight_bits"], (len(RECEPTORS),))}
        if name != "IF_trunc_delta":
            fields.update(exp_tc=Field(0, (1 << formats["state_fraction_bits"]) - 1, "neurons"), v_rest=per_neuron)
        if name == "IF_curr_exp":
            fields.update(exc_decay=decay, exc_init=decay, inh_decay=decay, inh_init=decay)
        else:
            fields["input_scale"] = value
        tables[name] = fields
    weight = Field(0, (1 << formats["weight_bits"]) - 1, "synapses")
    tables["synapse"] = {**dict.fromkeys(RECEPTORS, weight),
                         "delays": Field(1, spinnaker_delay_ticks(formats), "synapses")}
    return tables


def _loihi(formats: Mapping[str, int]) -> Callable[[object, dict], dict[str, Field]]:
    tables = loihi_fields(formats)
    return lambda node, fixed: tables["synapse" if isinstance(node.op, Affine) else "population"]


def _spinnaker(formats: Mapping[str, int]) -> Callable[[object, dict], dict[str, Field]]:
    tables = spinnaker_fields(formats)

    def fields(node, fixed: dict) -> dict[str, Field]:
        if isinstance(node.op, Affine):
            return tables["synapse"]
        model = fixed.get("model")
        return tables[model if isinstance(model, str) and model in SPINNAKER_MODELS else None]

    return fields


#: Each fixed-point arithmetic: the pass that writes its annotations, and its fields for a target's
#: formats (a function of the node and its annotation).
CONTRACTS: dict[str, tuple[str, Callable]] = {"loihi": ("quantize-loihi", _loihi),
                                              "spinnaker": ("quantize-spinnaker", _spinnaker)}


def check_fixed_point(graph: Graph, formats: Mapping[str, int]) -> dict[str, dict]:
    """Each population's and synapse group's annotation, by node name, once ``graph`` (verified,
    quantized for the arithmetic its metadata names) is checked to be in its chip's population form
    and every annotation to hold exactly its fields, within the target's ``formats``, and the rest
    that programs are written from to be text: the metadata's target and each ``fused_from``; else
    an IRError naming the first node at fault, the field and what would be valid."""
    arithmetic = graph.metadata.get("arithmetic")
    if not (isinstance(arithmetic, str) and arithmetic in CONTRACTS):
        raise IRError(None, f"the graph's arithmetic is {shown(arithmetic)}, not a fixed-point one: "
                            f"{', '.join(CONTRACTS)}")
    check_value(Maybe(Text()), graph.metadata.get("target"), None, "metadata target")
    written_by, fields_for = CONTRACTS[arithmetic]
    _check_form(graph, arithmetic, written_by)
    for node in graph:
        if "fused_from" in node.annotations:
            check_value(FUSED_FROM, node.annotations["fused_from"], node.name, "annotation fused_from")
    fields_of = fields_for(formats)
    return {node.name: _checked(node, arithmetic, written_by, fields_of) for node in graph
            if isinstance(node.op, (*SPIKING, Affine))}


def _kind(graph: Graph, name: str) -> str:
    return f"{shown(name)} (a {graph[name].op.kind})"


def _check_form(graph: Graph, arithmetic: str, written_by: str) -> None:
    """Refuse the first node that is not where the population form allows it, naming what it is
    and what would be allowed."""
    for node in graph:
        sources, targets = graph.predecessors(node.name), graph.successors(node.name)
        if isinstance(node.op, Affine):
            if len(sources) != 1 or not isinstance(graph[sources[0]].op, (*SPIKING, Input)):
                raise IRError(node.name, f"reads {', '.join(_kind(graph, s) for s in sources)}; a {arithmetic} synapse "
                                         "group reads the spikes of one input or spiking population")
            for target in targets:
                if not isinstance(graph[target].op, SPIKING):
                    raise IRError(node.name, f"feeds {_kind(graph, target)}; a {arithmetic} synapse group feeds "
                                             "spiking populations only")
        elif isinstance(node.op, SPIKING):
            for source in sources:
                if not isinstance(graph[source].op, Affine):
                    raise IRError(node.name, f"reads {_kind(graph, source)}; a {arithmetic} population reads "
                                             "synapse groups (Affine) only")
        elif isinstance(node.op, Output):
            if len(sources) != 1 or not isinstance(graph[sources[0]].op, (*SPIKING, Input)):
                raise IRError(node.name, f"records {', '.join(_kind(graph, s) for s in sources)}; a {arithmetic} "
                                         "output records the spikes of one spiking population or input")
        elif not isinstance(node.op, Input):
            raise IRError(node.name, f"is a {node.op.kind}; a graph quantized for {arithmetic} arithmetic holds "
                                     "inputs, outputs, spiking LIF, IF and CubaLIF populations and the synapse "
                                     f"groups (Affine) between them, as pass {written_by} leaves it")


def _checked(node, arithmetic: str, written_by: str, fields_of: Callable) -> dict:
    """``node``'s annotation, unless it lacks a field, holds one that is not a field, or holds an
    invalid value: then one line names the node, the field and what is valid."""
    fixed = node.annotations.get(arithmetic)
    if not isinstance(fixed, dict):
        state = "is missing" if fixed is None else f"is not a table of fields but {_shown(fixed)}"
        raise IRError(node.name, f"annotation {arithmetic} {state}; pass {written_by} writes one on every "
                                 "population and synapse group")
    fields = fields_of(node, fixed)
    for name, field in fields.items():
        if name not in fixed:
            raise IRError(node.name, f"annotation {arithmetic} has no field {name}; {field.valid(node)}")
        field.check(node, f"{arithmetic}.{name}", fixed[name])
    unknown = [name for name in fixed if name not in fields]
    if unknown:
        raise IRError(node.name, f"annotation {arithmetic} holds {shown(unknown[0], 40)}, which is not one of its "
                                 f"fields: {', '.join(fields)}")
    return fixed


# ----------------------------------------------------------------------------- schemas of plain data

#: The largest count, index or size an annotation or the metadata may hold: numpy's 64-bit indices
#: hold it, and so does every sum, division and format a report makes of it.
MAX_COUNT = (1 << 63) - 1


@dataclass(frozen=True)
class Problem:
    """The first value at fault within a checked value: its ``path`` from there (``.core``,
    ``[2]``), what it is, and what would be valid."""

    path: str
    what: str
    valid: str

    def within(self, step: str) -> Problem:
        return Problem(step + self.path, self.what, self.valid)


def _wrong(schema, value) -> Problem:
    return Problem("", f"is {_shown(value)}", schema.valid())


@dataclass(frozen=True)
class Number:
    """An integer from ``low`` to ``high``, never a bool; with ``real``, any finite number there,
    and with ``above``, greater than ``low``."""

    low: float = 0
    high: float = MAX_COUNT
    real: bool = False
    above: bool = False

    def valid(self) -> str:
        kind = "a finite number" if self.real else "an integer"
        lowest = f"> {self.low}" if self.above else f">= {self.low}"
        if self.high == MAX_COUNT:
            return f"{kind} {lowest}, below 2**63"
        return f"{kind} {lowest}" if self.high == math.inf else f"{kind} from {self.low} to {self.high}"

    def problem(self, value) -> Problem | None:
        kinds = (int, np.integer, float, np.floating) if self.real else (int, np.integer)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, kinds):
            return _wrong(self, value)
        # NaN fails every comparison; an integer beyond every float is never converted.
        finite = not isinstance(value, (float, np.floating)) or math.isfinite(value)
        if not (finite and self.low <= value <= self.high and not (self.above and value == self.low)):
            return Problem("", f"is {shown(value, 40)}", self.valid())
        return None


#: A count, an index or a size; a finite amount (a rate, a load) that is not negative.
COUNT, AMOUNT = Number(), Number(0, math.inf, real=True)


@dataclass(frozen=True)
class Text:
    """A string; with ``names``, one of them."""

    names: tuple[str, ...] = ()

    def valid(self) -> str:
        return "one of " + ", ".join(map(repr, self.names)) if self.names else "a string"

    def problem(self, value) -> Problem | None:
        if not isinstance(value, str) or (self.names and value not in self.names):
            return _wrong(self, value)
        return None


@dataclass(frozen=True)
class Flag:
    """True or False."""

    def valid(self) -> str:
        return "True or False"

    def problem(self, value) -> Problem | None:
        return None if isinstance(value, bool) else _wrong(self, value)


@dataclass(frozen=True)
class Maybe:
    """None, or what ``schema`` allows."""

    schema: object

    def valid(self) -> str:
        return "None or " + self.schema.valid()

    def problem(self, value) -> Problem | None:
        problem = None if value is None else self.schema.problem(value)
        return Problem("", problem.what, self.valid()) if problem and not problem.path else problem


@dataclass(frozen=True)
class Either:
    """What one of ``schemas`` allows."""

    schemas: tuple

    def valid(self) -> str:
        return " or ".join(schema.valid() for schema in self.schemas)

    def problem(self, value) -> Problem | None:
        return _wrong(self, value) if all(schema.problem(value) for schema in self.schemas) else None


@dataclass(frozen=True)
class Array:
    """A numpy array of ``ndim`` axes whose dtype is of ``kinds`` (numpy's kind letters), its values
    finite, and with ``positive``, greater than 0."""

    kinds: str
    ndim: int
    positive: bool = False

    def valid(self) -> str:
        kinds = ("finite numbers" if set("fi") <= set(self.kinds) else
                 "finite floats" if "f" in self.kinds else "integers")
        return f"a {self.ndim}-D array of {'positive ' if self.positive else ''}{kinds}"

    def problem(self, value) -> Problem | None:
        if not isinstance(value, np.ndarray) or value.dtype.kind not in self.kinds or value.ndim != self.ndim:
            return _wrong(self, value)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return Problem("", f"holds {shown(value[~np.isfinite(value)][0].item())}", self.valid())
        if self.positive and value.size and value.min() <= 0:
            return Problem("", f"holds {shown(value.min().item())}", self.valid())
        return None


@dataclass(frozen=True)
class Items:
    """A list of ``low`` to ``high`` items, each what ``item`` allows."""

    item: object
    low: int = 0
    high: int = MAX_COUNT

    def valid(self) -> str:
        count = (f"{self.low}" if self.low == self.high else
                 f"{self.low} or more" if self.high == MAX_COUNT else f"{self.low} to {self.high}")
        return f"a list of {count} items, each {self.item.valid()}"

    def problem(self, value) -> Problem | None:
        if not isinstance(value, list) or not self.low <= len(value) <= self.high:
            return _wrong(self, value)
        for i, item in enumerate(value):
            problem = self.item.problem(item)
            if problem:
                return problem.within(f"[{i}]")
        return None


@dataclass(frozen=True)
class Table:
    """A dict of exactly ``fields`` (those named in ``optional`` may be left out), each value what
    its schema allows."""

    fields: Mapping[str, object]
    optional: tuple[str, ...] = ()

    def valid(self) -> str:
        return "a table of the fields " + ", ".join(self.fields)

    def problem(self, value) -> Problem | None:
        if not isinstance(value, dict):
            return _wrong(self, value)
        for name, schema in self.fields.items():
            if name not in value:
                if name in self.optional:
                    continue
                return Problem("", f"has no field {name}", schema.valid())
            problem = schema.problem(value[name])
            if problem:
                return problem.within(f".{name}")
        unknown = next((key for key in value if key not in self.fields), None)
        if unknown is not None:
            return Problem("", f"holds {shown(unknown, 40)}, which is not one of its fields",
                           "only " + ", ".join(self.fields))
        return None


@dataclass(frozen=True)
class Keyed:
    """A dict of string keys, each value what ``value`` allows."""

    value: object

    def valid(self) -> str:
        return "a table of names, each with " + self.value.valid()

    def problem(self, value) -> Problem | None:
        if not isinstance(value, dict):
            return _wrong(self, value)
        for key, item in value.items():
            if not isinstance(key, str):
                return Problem("", f"holds the key {_shown(key)}", self.valid())
            problem = self.value.problem(item)
            if problem:
                return problem.within(f"[{shown(key, 40)}]")
        return None


@dataclass(frozen=True)
class Switch:
    """A table whose field ``key`` chooses its schema: the case of that field's value (of the same
    type: True is no 1), else ``default``."""

    key: str
    cases: Mapping[object, object]
    default: object

    def chosen(self, value):
        if isinstance(value, dict):
            given = value.get(self.key)
            for case, schema in self.cases.items():
                if type(given) is type(case) and given == case:
                    return schema
        return self.default

    def valid(self) -> str:
        return self.default.valid()

    def problem(self, value) -> Problem | None:
        return self.chosen(value).problem(value)


def check_value(schema, value, node: str | None, where: str):
    """``value`` once ``schema`` allows it; else an IRError naming ``node`` (None: the graph), and
    ``where`` (``annotation placement``, ``metadata mapping``) with the path of the value at fault."""
    problem = schema.problem(value)
    if problem:
        raise IRError(node, f"{where}{problem.path} {problem.what}; give {problem.valid}")
    return value


def population_sizes(graph: Graph) -> dict[str, int]:
    """The neuron populations of ``graph`` in schedule order, with their number of neurons."""
    return {name: int(np.prod(graph[name].output_shape)) for name in graph.schedule
            if isinstance(graph[name].op, NEURONS)}


# ----------------------------------------------------------------------------- map-cores: placement and mapping

#: The per-core resources map-cores fills and reports, in the order its demand vectors hold them.
RESOURCES = ("neurons", "fan_in_axons", "fan_out_axons", "synaptic_memory_bits")
#: How a synapse group's weights may be stored on a core (annotation ``encoding``, map-cores' choice).
ENCODINGS = ("dense", "sparse", "shared")
#: map-cores' pieces of a population, in neuron order: neurons ``start`` to ``stop - 1`` (flattened,
#: C order) on core ``core``.
PIECES = Items(Table({"core": COUNT, "start": COUNT, "stop": COUNT}), low=1)
_BOUND = Table({"demand": AMOUNT, "cores": COUNT, "population": Text()}, optional=("population",))
_RATES = {"mean_per_population": Keyed(AMOUNT)}
#: map-cores' summary (metadata ``mapping``): what it placed on which core, the bound it compares
#: against, the greedy fill, and the spike traffic of the placement.
MAPPING = Table({
    "target": Text(),
    "rates": Switch("source", {"estimate": Table({"source": Text(), "rate": AMOUNT, **_RATES})},
                    Table({"source": Text(), "batch": COUNT, "steps": COUNT, **_RATES})),
    "capacity": Table(dict.fromkeys(RESOURCES, Number(1))),
    "policy": Text(), "channel_last": Items(Text()),
    "cores": COUNT, "tiles": COUNT, "chips": COUNT,
    "lower_bound": Table({"cores": Number(1), "binding": Text(RESOURCES),
                          "by_resource": Table(dict.fromkeys(RESOURCES, _BOUND))}),
    "cores_over_lower_bound": AMOUNT, "traffic_per_step": AMOUNT, "traffic_hops_per_step": AMOUNT,
    "greedy": Switch("fits", {True: Table({"cores": COUNT, "fits": Flag(), "traffic_hops_per_step": AMOUNT})},
                     Table({"cores": Maybe(COUNT), "fits": Flag()})),
    "links": Items(Table({"from": Items(COUNT, 3, 3), "to": Items(COUNT, 3, 3), "kind": Text(),
                          "messages_per_step": AMOUNT})),
    "per_core": Items(Table({
        "core": COUNT, "chip": COUNT, "tile": Items(COUNT, 2, 2), "core_in_tile": COUNT,
        "pieces": Items(Table({"population": Text(), "start": COUNT, "stop": COUNT,
                               "encodings": Keyed(Text(ENCODINGS))})),
        **dict.fromkeys(RESOURCES, COUNT), "messages_out_per_step": AMOUNT, "messages_in_per_step": AMOUNT})),
    "traffic_hops_vs_greedy": Maybe(AMOUNT),
})


def _placed(graph: Graph) -> dict[str, list[tuple[int, int, int]]] | None:
    """Each neuron population's pieces (core, start, stop) from its annotation ``placement``, once
    every population has one that holds a list of such integers and the metadata holds the
    ``mapping`` map-cores writes beside them, naming a target; None when the graph holds neither."""
    sizes = population_sizes(graph)
    placed = {name: graph[name].annotations["placement"] for name in sizes if "placement" in graph[name].annotations}
    mapping = graph.metadata.get("mapping")
    if not placed and mapping is None:
        return None
    if mapping is None:
        raise IRError(None, "metadata mapping is missing; map-cores writes a table of its mapping beside the "
                            "annotation placement of every neuron population")
    if not isinstance(mapping, dict):
        check_value(MAPPING, mapping, None, "metadata mapping")
    check_value(Text(), mapping.get("target"), None, "metadata mapping.target")
    for name in sizes:
        if name not in placed:
            raise IRError(name, "annotation placement is missing; map-cores writes one on every neuron population "
                                "beside the metadata mapping")
        check_value(PIECES, placed[name], name, "annotation placement")
    return {name: [(int(p["core"]), int(p["start"]), int(p["stop"])) for p in pieces]
            for name, pieces in placed.items()}


def check_pieces(pieces: Mapping[str, list[tuple[int, int, int]]], sizes: Mapping[str, int], where: str,
                 cores: int | None = None, neurons_per_core: int | None = None) -> None:
    """Refuse, naming the population and ``where`` (its ``placement``), pieces (core, start, stop)
    that do not cover every population of ``sizes`` in consecutive runs of one neuron or more, in
    order; and with a board, a core outside its ``cores`` or holding more than ``neurons_per_core``."""
    for name in sizes:
        if name not in pieces:
            raise IRError(name, f"{where} is missing; every neuron population is placed")
    for name in pieces:
        if name not in sizes:
            raise IRError(name, f"{where}: not a neuron population of the graph")
    load: dict[int, int] = {}
    for name, size in sizes.items():
        spans = [(start, stop) for _, start, stop in pieces[name]]
        stops = [stop for _, stop in spans]
        if [start for start, _ in spans] != [0, *stops[:-1]] or stops[-1:] != [size] or \
                any(stop <= start for start, stop in spans):
            raise IRError(name, f"{where}: pieces must cover neurons 0 to {size} in order, each one neuron or more; "
                                f"got {shown(spans, 80)}")
        for core, start, stop in pieces[name] if cores is not None else ():
            if not 0 <= core < cores:
                raise IRError(name, f"{where}: core {shown(core, 40)} does not exist (the board has {cores}: "
                                    f"0 to {cores - 1})")
            load[core] = load.get(core, 0) + stop - start
            if load[core] > neurons_per_core:
                raise IRError(name, f"{where}: core {core} holds {load[core]} neurons, more than the core's "
                                    f"{neurons_per_core}")


def check_placement(graph: Graph, target: str, cores: int, neurons_per_core: int
                    ) -> dict[str, list[tuple[int, int, int]]] | None:
    """Each neuron population's pieces (core, start, stop), as map-cores placed them for ``target``
    (annotation ``placement``), on a board of ``cores`` cores of ``neurons_per_core`` neurons each;
    None when the graph holds no placement. Refused in one line naming the node (or the metadata):
    a placement on some populations only, pieces that are not integers {core, start, stop} covering
    the population in order, a core the board lacks or overfills, and a placement without map-cores'
    metadata mapping, or one made for another target."""
    placed = _placed(graph)
    if placed is None:
        return None
    mapped_for = graph.metadata["mapping"]["target"]
    if mapped_for != target:
        raise IRError(None, f"the graph's placement was made by map-cores for target {shown(mapped_for)}, not "
                            f"{target!r}; compile it again for {target!r}")
    check_pieces(placed, population_sizes(graph), "annotation placement", cores, neurons_per_core)
    return placed


def check_mapping(graph: Graph) -> dict | None:
    """map-cores' summary in the graph's metadata (``mapping``), None if there is none, once it holds
    exactly the fields map-cores writes (counts as integers, rates, loads and traffic as finite
    numbers >= 0), names only the graph's inputs and neuron populations, lists as many cores as it
    counts, each once, and puts on them exactly the pieces of the populations' annotation placement.
    Else one line naming the field (or the node) and what would be valid."""
    mapping = graph.metadata.get("mapping")
    if mapping is None:
        return None
    check_value(MAPPING, mapping, None, "metadata mapping")
    sizes = population_sizes(graph)
    sources = [*graph.inputs, *sizes]
    named = [(f"channel_last[{i}]", name, sizes) for i, name in enumerate(mapping["channel_last"])]
    named += [(f"rates.mean_per_population[{shown(name, 40)}]", name, sources)
              for name in mapping["rates"]["mean_per_population"]]
    named += [(f"lower_bound.by_resource.{r}.population", bound["population"], sizes)
              for r, bound in mapping["lower_bound"]["by_resource"].items() if "population" in bound]
    named += [(f"per_core[{i}].pieces[{j}].population", piece["population"], sizes)
              for i, core in enumerate(mapping["per_core"]) for j, piece in enumerate(core["pieces"])]
    for where, name, valid in named:
        if name not in valid:
            raise IRError(None, f"metadata mapping.{where} is {shown(name)}, which is not a "
                                f"{'neuron population' if valid is sizes else 'population or input'} of the graph")
    listed = [core["core"] for core in mapping["per_core"]]
    if mapping["cores"] != len(listed) or len(set(listed)) != len(listed):
        raise IRError(None, f"metadata mapping.per_core lists the cores {shown(listed)}; give each of the "
                            f"{mapping['cores']} cores of metadata mapping.cores once")
    placed = _placed(graph)
    check_pieces(placed, sizes, "annotation placement")
    annotated = Counter((name, start, stop, core) for name, pieces in placed.items() for core, start, stop in pieces)
    summarised = Counter((piece["population"], piece["start"], piece["stop"], core["core"])
                         for core in mapping["per_core"] for piece in core["pieces"])
    only_placed, only_listed = next(iter(annotated - summarised), None), next(iter(summarised - annotated), None)
    if only_placed or only_listed:
        (name, start, stop, core), said = ((only_placed, "the node's annotation placement") if only_placed else
                                           (only_listed, "metadata mapping.per_core"))
        raise IRError(name, f"{said} alone puts neurons {start} to {stop - 1} on core {core}; map-cores writes the "
                            "two together, so compile the model again")
    return mapping


# ----------------------------------------------------------------------------- what other passes read back

#: fuse-synapses' annotation on a synapse group: the nodes of the model it was made from, which the
#: Lava lowering table lists.
#: Empty where fusion wrote a synapse for a direct edge between two populations (no model node between them).
FUSED_FROM = Items(Text())


#: Bits of quantize-weights' mantissas (--weight-bits).
QUANT_BITS = Number(2, 16)
QUANT = Table({"bits": QUANT_BITS, "method": Text(), "granularity": Text(),
               "scale": Either((Number(0, math.inf, real=True, above=True), Array("f", 1, positive=True))),
               "mantissa": Array("iu", 2), "error": AMOUNT, "entropy": AMOUNT})


def _on_synapse_group(node, key: str, writer: str) -> None:
    if not isinstance(node.op, Affine):
        raise IRError(node.name, f"annotation {key} is on a {node.op.kind}; {writer} writes it on synapse groups "
                                 "(Affine) only")


def check_quant(node) -> dict | None:
    """A synapse group's annotation ``quant`` (None if it has none), once it holds exactly what
    quantize-weights writes: bits, a scale > 0 for the layer or one per row, and integer mantissas
    of the weights' shape within those bits; else one line naming the node and the field."""
    if "quant" not in node.annotations:
        return None
    _on_synapse_group(node, "quant", "quantize-weights")
    quant = check_value(QUANT, node.annotations["quant"], node.name, "annotation quant")
    rows = node.op.weight.shape[0]
    if isinstance(quant["scale"], np.ndarray) and quant["scale"].shape != (rows,):
        raise IRError(node.name, f"annotation quant.scale is an array of shape {quant['scale'].shape}; give one "
                                 f"scale > 0, or one per row: an array of shape ({rows},)")
    top = (1 << (quant["bits"] - 1)) - 1
    Field(-top, top, "synapses").check(node, "quant.mantissa", quant["mantissa"])
    return quant


def check_encoding(node) -> str | None:
    """A synapse group's annotation ``encoding``, once it is one of ENCODINGS; None (or none at all)
    leaves the choice to map-cores."""
    if node.annotations.get("encoding") is None:
        return None
    _on_synapse_group(node, "encoding", "a user")
    return check_value(Text(ENCODINGS), node.annotations["encoding"], node.name, "annotation encoding")


#: The annotation the PyTorch importer writes on the first tap node of a DCLS layer.
DCLS = "dcls"
_DCLS = Table({"layer": Text(), "version": Text(), "kernel_size": Number(1), "groups": Number(1),
               "taps": Items(Text(), 1), "delay": Array("iuf", 3), "weight": Array("iuf", 3)})
#: round-delays holds about this many float64 arrays of a layer's kernel (synapses x kernel size) at once.
_KERNEL_COPIES = 4


def check_dcls(graph: Graph) -> dict[str, dict]:
    """Each DCLS layer's annotation ``dcls`` by the node that holds it, once it holds exactly what
    the PyTorch importer writes: the layer, its version, kernel size and groups (dividing the
    synapse matrix's rows and columns), its tap nodes, and per synapse and kernel element finite
    learned delays and weights, (rows, columns, elements); and its kernel fits the memory budget.
    Else one line naming the node and the field."""
    layers = {}
    for node in graph:
        if DCLS not in node.annotations:
            continue
        _on_synapse_group(node, DCLS, "the PyTorch importer")
        info = check_value(_DCLS, node.annotations[DCLS], node.name, f"annotation {DCLS}")
        rows, columns = node.op.weight.shape
        for name in ("delay", "weight"):
            shape = info[name].shape
            if shape[:2] != (rows, columns) or shape[2] < 1 or shape != info["delay"].shape:
                raise IRError(node.name, f"annotation {DCLS}.{name} is an array of shape {shape}; give delays and "
                                         f"weights of one shape ({rows}, {columns}, elements), elements >= 1")
        if rows % info["groups"] or columns % info["groups"]:
            raise IRError(node.name, f"annotation {DCLS}.groups is {info['groups']}; give a number of groups that "
                                     f"divides the layer's {rows} outputs and {columns} inputs")
        needed, budget = _KERNEL_COPIES * 8 * rows * columns * info["kernel_size"], memory_budget()
        if needed > budget:
            raise IRError(node.name, f"annotation {DCLS}.kernel_size is {info['kernel_size']}: round-delays would hold "
                                     f"{needed} bytes of its kernels, more than snnc's memory budget of {budget} "
                                     f"({MEMORY_BUDGET_VARIABLE} sets it in bytes)")
        layers[node.name] = info
    return layers
