"""The runner part of every pynn_script.py: snnc appends what follows the marker below to the
generated constants (DATA, DT, INPUTS, OUTPUTS, MODELS) and ``build`` function; the imports here
repeat the script's, so that this file reads as the module it becomes."""

import argparse
import importlib
import sys

import numpy as np

DATA = DT = INPUTS = OUTPUTS = MODELS = build = None  # the generated part of the script defines these

# -- the runner (the same for every network) --

#: The PyNN backends this script knows: sPyNNaker's, and NEST with PyNN's standard models.
SIMULATORS = ("spiNNaker", "nest")
#: PyNN parameter names of each sPyNNaker model.
PARAMETERS = {
    "IF_curr_exp": ("tau_m", "cm", "v_rest", "v_reset", "v_thresh", "i_offset", "tau_refrac", "tau_syn_E", "tau_syn_I"),
    "IF_curr_delta": ("tau_m", "cm", "v_rest", "v_reset", "v_thresh", "i_offset", "tau_refrac"),
    "IF_trunc_delta": ("tau_m", "cm", "v_reset", "v_thresh", "i_offset", "tau_refrac"),
}


def fail(message):
    print(f"pynn_script: error: {message}", file=sys.stderr)
    sys.exit(2)


class Network:
    """Builds the network on one PyNN backend, with the parameters of DATA."""

    def __init__(self, simulator, data):
        self.name, self.data = simulator, data
        self.spinnaker = simulator == "spiNNaker"
        try:
            self.sim = importlib.import_module(f"pyNN.{simulator}")
        except ImportError as e:
            fail(f"--simulator {simulator}: cannot import pyNN.{simulator} ({e})")
        # PyNN's NEST backend relays spike sources through parrot neurons that fire min_delay (one
        # step) after the source, and NEST refuses a source time of 0: its inputs start two steps late.
        self.lead = 0 if self.spinnaker else 2
        self.projections = {}

    def setup(self):
        if self.spinnaker:
            self.sim.setup(timestep=DT)
        else:
            self.sim.setup(timestep=DT, min_delay=DT, spike_precision="on_grid")
        self.projections = {}

    def spike_sources(self, size, spike_times, label):
        return self.sim.Population(size, self.sim.SpikeSourceArray(spike_times=spike_times), label=label)

    def neurons(self, ident, size, label):
        model = MODELS[ident]
        parameters = {name: self.data[f"{ident}.{name}"] for name in PARAMETERS[model]}
        if self.spinnaker:
            cell = (self.sim.extra_models.IFTruncDelta if model == "IF_trunc_delta" else getattr(self.sim, model))(**parameters)
            # sPyNNaker picks each receptor type's ring-buffer shift from this bound, as snnc did.
            return self.sim.Population(size, cell, label=label, initial_values={"v": 0.0}, additional_parameters={
                "max_expected_summed_weight": self.data[f"{ident}.max_expected_summed_weight"].tolist()})
        if model == "IF_trunc_delta":
            fail(f"population {label!r} is sPyNNaker's IF_trunc_delta (a non-leaky IF that never falls below "
                 f"v_reset), which {self.name} does not have; run it with --simulator spiNNaker")
        population = self.sim.Population(size, getattr(self.sim, model)(**parameters), label=label)
        # PyNN 0.13 cannot set NEST's initial V_m (it names it v), which NEST starts at -70 mV.
        population.node_collection.set(V_m=0.0)
        return population

    def connect(self, pre, post, key, receptor, label):
        rows = self.data[key].copy()
        if not self.spinnaker:
            rows[:, 2] = self.standard_weights(rows, post, receptor)
        projection = self.sim.Projection(pre, post, self.sim.FromListConnector(rows), receptor_type=receptor,
                                         synapse_type=self.sim.StaticSynapse(), label=label)
        self.projections[key] = projection
        return projection

    def standard_weights(self, rows, post, receptor):
        """Weights as PyNN's standard models take them. sPyNNaker's IF_curr_delta turns a weight w
        (nA) into the current w / dt for one step, which moves V by w (1 - exp(-dt / tau_m)) / dt
        mV (R = 1 MOhm); PyNN's IF_curr_delta weight is that jump in mV. NEST tells inhibitory
        current synapses by a negative weight."""
        weights = rows[:, 2]
        if isinstance(post.celltype, self.sim.IF_curr_delta):
            tau_m = np.broadcast_to(np.asarray(post.get("tau_m", gather=True), np.float64), (post.size,))
            weights = weights * -np.expm1(-DT / tau_m[rows[:, 1].astype(np.int64)]) / DT
        return -weights if receptor == "inhibitory" else weights


def load_inputs(path, steps):
    """Each input's spikes by identifier, shape (batch, T, neurons), checked and cut or padded to ``steps``."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        fail(f"INPUT {path}: not a readable .npy or .npz file ({e})")
    names = {name: ident for ident, (name, _) in INPUTS.items()}
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            arrays = {key: data[key] for key in data.files}
        if set(arrays) != set(names):
            fail(f"INPUT {path}: expected arrays named {sorted(names)}, got {sorted(arrays)}")
    elif len(INPUTS) == 1:
        arrays = {next(iter(names)): data}
    else:
        fail(f"INPUT {path}: the network has inputs {sorted(names)}; give an .npz keyed by input name")
    spikes = {}
    for name, array in arrays.items():
        shape = INPUTS[names[name]][1]
        leading = array.ndim - len(shape)  # T, or batch and T
        if leading not in (1, 2) or array.shape[leading:] != shape:
            fail(f"INPUT {path}: input {name!r} must have shape (T, {', '.join(map(str, shape))}) or "
                 f"(batch, T, {', '.join(map(str, shape))}), got {array.shape}")
        if not np.isin(array, (0, 1)).all():
            fail(f"INPUT {path}: input {name!r} holds values other than 0 and 1; inputs are spikes")
        array = array.reshape(-1, array.shape[leading - 1], int(np.prod(shape, dtype=np.int64)))
        length = array.shape[1] if steps is None else steps
        padded = np.zeros((array.shape[0], length, array.shape[2]), np.int8)
        padded[:, :min(length, array.shape[1])] = array[:, :length]
        spikes[names[name]] = padded
    if len({array.shape[:2] for array in spikes.values()}) != 1:
        fail(f"INPUT {path}: all inputs must share batch and T, got {sorted(a.shape[:2] for a in spikes.values())}")
    return spikes


def spike_times(spikes, lead):
    """The spike times (ms) of one sample's (T, neurons) spikes, one list per neuron."""
    return [((np.flatnonzero(spikes[:, i]) + lead) * DT).tolist() for i in range(spikes.shape[1])]


def recorded_spikes(population, steps, lead):
    """A population's recorded spikes as (T, neurons) int8, step t holding those of time t * DT."""
    spikes = np.zeros((steps, population.size), np.int8)
    for index, train in enumerate(population.get_data("spikes").segments[-1].spiketrains):
        neuron = int(train.annotations.get("source_index", index))
        times = np.rint(np.asarray(train.rescale("ms").magnitude) / DT).astype(np.int64) - lead
        spikes[times[(times >= 0) & (times < steps)], neuron] = 1
    return spikes


def dump_network(path, network, populations):
    """What the simulator built, read back through PyNN (and sPyNNaker's ring-buffer shifts)."""
    built = {}
    for ident, population in populations.items():
        built[f"{ident}.size"] = np.array(population.size)
        built[f"{ident}.celltype"] = np.array(type(population.celltype).__name__)
        built[f"{ident}.label"] = np.array(population.label)
        if ident in MODELS:
            for name in PARAMETERS[MODELS[ident]]:
                value = population.get(name, gather=True)
                built[f"{ident}.{name}"] = np.broadcast_to(np.asarray(value, np.float64), (population.size,))
            if network.spinnaker:
                built[f"{ident}.ring_buffer_shifts"] = np.array(population._vertex.get_ring_buffer_shifts())
    for key, projection in network.projections.items():
        rows = np.array([tuple(map(float, row)) for row in projection.get(["weight", "delay"], format="list", gather=True)],
                        np.float64).reshape(-1, 4)
        if not network.spinnaker:
            # PyNN 0.13 reads NEST's weights back as pA, also those of IF_curr_delta, which it set in mV.
            rows[:, 2] /= getattr(projection.post.celltype, "receptor_scale", 1.0)
        built[f"{key}.label"] = np.array(projection.label)
        built[f"{key}.connections"] = rows
    np.savez(path, **built)


def save_outputs(path, outputs):
    arrays = {OUTPUTS[ident][0]: spikes.reshape(spikes.shape[:2] + OUTPUTS[ident][1]) for ident, spikes in outputs.items()}
    with open(path, "wb") as f:
        if len(arrays) == 1:
            np.save(f, next(iter(arrays.values())))
        else:
            np.savez(f, **arrays)


def main(argv):
    parser = argparse.ArgumentParser(description="Run this network through PyNN.")
    parser.add_argument("input", metavar="INPUT", help="spikes, .npy of shape (T, *shape) or (batch, T, *shape)")
    parser.add_argument("output", metavar="OUTPUT", help="where the output spikes go (.npy; .npz for several outputs)")
    parser.add_argument("--simulator", default="spiNNaker", choices=SIMULATORS, help="the PyNN backend (default spiNNaker)")
    parser.add_argument("--steps", type=int, default=None, help="steps to run (default: the input's T)")
    parser.add_argument("--dump-network", metavar="FILE", help="write what PyNN built (first sample) to this .npz")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        fail(f"--steps must be >= 1, got {args.steps}")
    with np.load(DATA, allow_pickle=False) as data:
        parameters = {key: data[key] for key in data.files}
    inputs = load_inputs(args.input, args.steps)
    batch, steps = next(iter(inputs.values())).shape[:2]
    network = Network(args.simulator, parameters)
    outputs = {ident: np.zeros((batch, steps, int(np.prod(shape, dtype=np.int64))), np.int8)
               for ident, (_, shape, _) in OUTPUTS.items()}
    for sample in range(batch):
        network.setup()
        populations = build(network, {ident: spike_times(spikes[sample], network.lead) for ident, spikes in inputs.items()})
        network.sim.run((steps + network.lead) * DT)
        for ident, (_, _, source) in OUTPUTS.items():
            outputs[ident][sample] = recorded_spikes(populations[source], steps, network.lead)
        if sample == 0 and args.dump_network:
            dump_network(args.dump_network, network, populations)
        network.sim.end()
    save_outputs(args.output, outputs)


if __name__ == "__main__":
    main(sys.argv[1:])
