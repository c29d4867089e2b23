"""The PyNN script: the network that quantize-spinnaker lowered, for sPyNNaker on a real board.

The artifact holds ``pynn_script.py`` (a readable ``build`` function that creates one PyNN
Population per input and population and one Projection per synapse group and receptor type,
followed by the runner in ``pynn_runner.py``) and ``pynn_network.npz`` (the PyNN parameters, loaded
with ``allow_pickle=False``). Every parameter is chosen so that sPyNNaker initialises the integers
of the ``spinnaker`` annotations (docs/spinnaker.md, "PyNN script"): ``cm = tau_m`` (R_membrane =
1 MOhm), voltages in mV and currents in nA as the raw s16.15 values / 2**15, weights in nA as the
16-bit magnitudes times 2**(shift - 15) of their receptor type, delays in ms as ticks x dt, and
``max_expected_summed_weight`` so that sPyNNaker picks the ring-buffer shifts of the annotations.
No model text reaches the generated code as code: identifiers are generated, names and numbers are
written by ``codegen.literal``, and the graph is checked against the ``spinnaker`` contract
(``snnc.ir.contracts``) for the target the artifact is compiled for before the script is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import snnc
from snnc.backends.artifact import TARGET_FILE, ArtifactWriter
from snnc.backends.codegen import GeneratedProgram, literal
from snnc.errors import SnncError
from snnc.ir import Graph
from snnc.ir.contracts import RECEPTORS
from snnc.passes.spinnaker import ONE, membrane_tau_ms, synapse_tau_ms
from snnc.targets import Target, parse_target

SCRIPT = "pynn_script.py"
DATA = "pynn_network.npz"
RUNNER = Path(__file__).with_name("pynn_runner.py")
#: The line of RUNNER from which on it is copied into every script.
RUNNER_MARKER = "# -- the runner (the same for every network) --"


def max_expected_summed_weight(shift: int) -> float:
    """The smallest summed weight (nA) for which sPyNNaker's rule (get_ring_buffer_shifts: the
    smallest shift with max_w < 2**shift) picks ``shift``."""
    return 2.0 ** (shift - 1) if shift > 0 else 0.0


def population_parameters(node, dt: float) -> dict[str, np.ndarray]:
    """The PyNN parameters, one value per neuron, from which sPyNNaker initialises ``node``'s integers."""
    fixed = node.annotations["spinnaker"]
    size = int(np.prod(node.output_shape))
    per_neuron = lambda raw: np.broadcast_to(np.asarray(raw, np.float64) / ONE, (size,)).copy()  # noqa: E731
    parameters = {"v_reset": per_neuron(fixed["v_reset"]), "v_thresh": per_neuron(fixed["v_thresh"]),
                  "i_offset": per_neuron(fixed["i_offset"]), "tau_refrac": np.zeros(size)}
    if fixed["model"] == "IF_trunc_delta":
        # The non-leaky IF has no time constant; R_membrane = tau_m / cm = 1 all the same.
        parameters.update(tau_m=np.ones(size), cm=np.ones(size))
    else:
        tau_m = np.broadcast_to(membrane_tau_ms(dt, fixed["exp_tc"]), (size,)).copy()
        parameters.update(tau_m=tau_m, cm=tau_m.copy(), v_rest=per_neuron(fixed["v_rest"]))
    if fixed["model"] == "IF_curr_exp":
        parameters.update(tau_syn_E=np.broadcast_to(synapse_tau_ms(dt, fixed["exc_decay"]), (size,)).copy(),
                          tau_syn_I=np.broadcast_to(synapse_tau_ms(dt, fixed["inh_decay"]), (size,)).copy())
    return parameters


def synapse_connections(node, post, dt: float) -> dict[str, np.ndarray]:
    """Per receptor type, the rows (pre, post, weight nA, delay ms) of a FromListConnector."""
    fixed = node.annotations["spinnaker"]
    shifts = np.asarray(post.annotations["spinnaker"]["ring_buffer_shifts"], np.int64)
    connections = {}
    for receptor, shift in zip(RECEPTORS, shifts):
        magnitudes = np.asarray(fixed[receptor])
        posts, pres = np.nonzero(magnitudes)
        weights = magnitudes[posts, pres] * 2.0 ** (int(shift) - 15)
        delays = np.asarray(fixed["delays"])[posts, pres] * dt * 1000
        connections[receptor] = np.column_stack([pres, posts, weights, delays]).astype(np.float64).reshape(-1, 4)
    return connections


class _Script(GeneratedProgram):
    arithmetic = "spinnaker"
    needs = "the PyNN script (pass quantize-spinnaker)"

    def __init__(self, graph: Graph, target: Target):
        super().__init__(graph, target)
        self.dt = graph.dt
        self.data: dict[str, np.ndarray] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.models: list[str] = []

    def emit(self) -> str:
        graph = self.graph
        body = self.body()
        return f'''"""PyNN network of {literal(graph.name or "main")}, compiled by snnc {snnc.__version__} for {literal(graph.metadata.get("target", "spinnaker"))}.

One Population per input (SpikeSourceArray) and per population (sPyNNaker's IF_curr_exp,
IF_curr_delta or IF_trunc_delta), one Projection per synapse group and receptor type
(FromListConnector with each synapse's weight and delay). The parameters in {DATA} are those
from which sPyNNaker initialises the integers snnc compiled (cm = tau_m, so R_membrane = 1 MOhm;
tau_refrac = 0; max_expected_summed_weight fixes the ring-buffer shifts). V starts at 0 mV, as the
compiled network's state does. Every synapse takes at least one time step, so a layer's spikes
reach the next population one step later than in snnc's float simulation.

    python {SCRIPT} INPUT.npy OUTPUT.npy [--simulator spiNNaker|nest] [--steps T] [--dump-network FILE.npz]

INPUT.npy: spikes of shape (T, *input_shape) or (batch, T, *input_shape) (an .npz keyed by input
name for several inputs), as for `snnc run --input`; the samples run one after another.
OUTPUT.npy receives the output populations' spikes as int8, shape (batch, T, *output_shape) (an
.npz keyed by output name for several outputs), step t holding the spikes of time t * dt.
--simulator spiNNaker (the default) needs a board or a virtual board in ~/.spynnaker.cfg; on a
virtual board sPyNNaker maps the network and generates its data but records no spikes.
--simulator nest runs the same network in NEST with PyNN's standard models (IF_trunc_delta
populations are sPyNNaker-only and are refused). This file is written by snnc.
"""

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().with_name({literal(DATA)})
#: One time step, in ms.
DT = {literal(self.dt * 1000)}
#: Each input's generated identifier: its node name and shape.
INPUTS = {{{", ".join(self.inputs)}}}
#: Each output's identifier: its node name, shape, and the identifier of what it records.
OUTPUTS = {{{", ".join(self.outputs)}}}
#: Each population's identifier: its sPyNNaker model.
MODELS = {{{", ".join(self.models)}}}


def build(network, spike_times):
    """Create the populations and projections through ``network`` (a Network, below).

    spike_times: each input's spike times in ms, one list per neuron, by identifier.
    Returns the PyNN populations (inputs included) by identifier.
    """
    populations = {{}}
{body}
    return populations


'''

    def _input(self, node) -> None:
        ident = self.identifier(node.name, "input")
        self.inputs.append(f"{literal(ident)}: ({literal(node.name)}, {literal(tuple(node.output_shape))})")
        size = literal(int(np.prod(node.output_shape)))
        self.lines += [f"# input {literal(node.name)}: {size} spike sources",
                       f"populations[{literal(ident)}] = network.spike_sources({size}, spike_times[{literal(ident)}], "
                       f"label={literal(node.name)})", ""]

    def _population(self, node) -> None:
        ident = self.identifier(node.name, "population")
        model = self.fixed[node.name]["model"]
        self.models.append(f"{literal(ident)}: {literal(model)}")
        for key, values in population_parameters(node, self.dt).items():
            self.data[f"{ident}.{key}"] = values
        shifts = self.fixed[node.name]["ring_buffer_shifts"]
        self.data[f"{ident}.max_expected_summed_weight"] = np.array(
            [max_expected_summed_weight(int(s)) for s in shifts], np.float64)
        size = literal(int(np.prod(node.output_shape)))
        self.lines += [f"# population {literal(node.name)}: {model}, {size} neurons, ring-buffer shifts "
                       f"{literal(shifts[0])} (excitatory) and {literal(shifts[1])} (inhibitory)",
                       f"populations[{literal(ident)}] = network.neurons({literal(ident)}, {size}, "
                       f"label={literal(node.name)})",
                       ""]

    def _synapse(self, node) -> None:
        ident = self.identifier(node.name, "synapse")
        (source,) = self.graph.predecessors(node.name)
        for target in self.graph.successors(node.name):
            post = self.ids[target]
            key = ident if len(self.graph.successors(node.name)) == 1 else f"{ident}.{post}"
            connections = synapse_connections(node, self.graph[target], self.dt)
            delays = np.concatenate([c[:, 3] for c in connections.values()]) / (self.dt * 1000)
            span = (f"delays {literal(int(round(delays.min())))} to {literal(int(round(delays.max())))} ticks"
                    if delays.size else "no synapses")
            self.lines.append(f"# synapses {literal(node.name)}: {literal(source)} -> {literal(target)}, "
                              + ", ".join(f"{literal(len(c))} {receptor}" for receptor, c in connections.items())
                              + f", {span}")
            for receptor, rows in connections.items():
                if len(rows):
                    self.data[f"{key}.{receptor}"] = rows
                    self.lines.append(f"network.connect(populations[{literal(self.ids[source])}], "
                                      f"populations[{literal(post)}], {literal(key + '.' + receptor)}, "
                                      f"{literal(receptor)}, label={literal(node.name)})")
        self.lines.append("")

    def _output(self, node) -> None:
        ident = self.identifier(node.name, "output")
        (source,) = self.graph.predecessors(node.name)
        self.outputs.append(f"{literal(ident)}: ({literal(node.name)}, {literal(tuple(node.input_shape))}, "
                            f"{literal(self.ids[source])})")
        self.lines += [f"# output {literal(node.name)}: the spikes of {literal(source)}",
                       f"populations[{literal(self.ids[source])}].record('spikes')", ""]


def emit(graph: Graph, writer: ArtifactWriter) -> None:
    """Write the PyNN script of ``graph``, checked against the target the artifact holds."""
    if not writer.path(TARGET_FILE).is_file():
        raise SnncError(f"the PyNN script is checked against the artifact's {TARGET_FILE}: copy the target first")
    script = _Script(graph, parse_target(writer.path(TARGET_FILE)))
    runner = RUNNER.read_text()
    writer.path(SCRIPT).write_text(script.emit() + runner[runner.index(RUNNER_MARKER):])
    np.savez(writer.path(DATA), **script.data)
