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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from snnc.errors import IRError, shown
from snnc.ir.graph import Graph
from snnc.ir.ops import IF, LIF, Affine, CubaLIF, Input, Output

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
    and every annotation to hold exactly its fields, within the target's ``formats``; else an
    IRError naming the first node at fault, the field and what would be valid."""
    arithmetic = graph.metadata.get("arithmetic")
    if not (isinstance(arithmetic, str) and arithmetic in CONTRACTS):
        raise IRError(None, f"the graph's arithmetic is {shown(arithmetic)}, not a fixed-point one: "
                            f"{', '.join(CONTRACTS)}")
    written_by, fields_for = CONTRACTS[arithmetic]
    _check_form(graph, arithmetic, written_by)
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
