"""The PyNN script of a SpiNNaker artifact, run through PyNN in a subprocess.

sPyNNaker runs on a virtual board (``virtual_board = True`` in the ~/.spynnaker.cfg of a home
directory made for the test): it maps the network and generates its data as for a real board,
which checks the script against sPyNNaker's own API, and records no spikes. NEST runs the same
network with PyNN's standard models and spikes, which are compared with snnc's float simulation.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from snnc import ir
from snnc.backends import compile_graph
from snnc.backends.artifact import Artifact
from snnc.runtime.simulator import simulate

from graphs import HOSTILE_NAMES, chain, hostile_mlp, lif, mlp, spikes

pytest.importorskip("spynnaker")
pytest.importorskip("nest")
from spinn_front_end_common.interface.ds import DataType  # noqa: E402 - after the skip

#: The class each simulator's PyNN makes for each sPyNNaker model.
CELL_TYPES = {"spiNNaker": {"IF_curr_exp": "IFCurrExpBase", "IF_curr_delta": "IFCurrDelta",
                            "IF_trunc_delta": "IFTruncDelta"},
              "nest": {"IF_curr_exp": "IF_curr_exp", "IF_curr_delta": "IF_curr_delta"}}
RECEPTORS = ("excitatory", "inhibitory")


def cuba(n, i_decay=0.7, v_decay=0.9, threshold=1.0):
    full = lambda value: np.full(n, value, np.float64)  # noqa: E731
    return ir.CubaLIF(i_decay=full(i_decay), i_gain=full(1.0), v_decay=full(v_decay), v_gain=full(1.0),
                      bias=full(0.0), v_threshold=full(threshold), v_reset=full(0.0))


def lif_chain(rng):
    """Input -> LIF -> LIF."""
    return mlp(rng, sizes=(16, 12, 8))


def cuba_network(rng):
    """Input -> CubaLIF -> CubaLIF, with a bias into the first."""
    return chain(("in", ir.Input(shape=(16,))),
                 ("fc1", ir.Affine(weight=rng.normal(0.02, 0.12, (12, 16)), bias=np.full(12, 0.01))),
                 ("hidden", cuba(12, i_decay=0.6, v_decay=0.85, threshold=1.0)),
                 ("fc2", ir.Affine(weight=rng.normal(0.05, 0.25, (6, 12)))),
                 ("readout", cuba(6, i_decay=0.5, v_decay=0.9, threshold=1.0)), ("out", ir.Output()))


def delayed_inhibitory_network(rng):
    """Input -> LIF with per-synapse delays and many negative weights, and a recurrent layer."""
    graph = ir.Graph(dt=1e-3)
    graph.add("in", ir.Input(shape=(20,)))
    graph.add("fc1", ir.Affine(weight=rng.normal(0.15, 0.5, (14, 20)), delay=rng.integers(0, 6, (14, 20))))
    graph.add("hidden", lif(v_decay=0.9, v_threshold=1.0, shape=(14,)))
    graph.add("rec", ir.Affine(weight=rng.normal(-0.1, 0.3, (14, 14)), delay=rng.integers(0, 3, (14, 14))))
    graph.add("fc2", ir.Affine(weight=rng.normal(0.2, 0.5, (6, 14)), delay=rng.integers(0, 4, (6, 14))))
    graph.add("readout", lif(v_decay=0.8, v_threshold=0.7, shape=(6,)))
    graph.add("out", ir.Output())
    for edge in [("in", "fc1"), ("fc1", "hidden"), ("hidden", "rec"), ("rec", "hidden"), ("hidden", "fc2"),
                 ("fc2", "readout"), ("readout", "out")]:
        graph.connect(*edge)
    return graph


def if_network(rng):
    """Input -> IF, which sPyNNaker runs as IF_trunc_delta."""
    return chain(("in", ir.Input(shape=(8,))), ("fc", ir.Affine(weight=rng.normal(0.3, 0.3, (5, 8)))),
                 ("integrator", ir.IF(v_gain=np.ones(5), bias=np.zeros(5), v_threshold=np.ones(5), v_reset=np.zeros(5))),
                 ("out", ir.Output()))


def compile_spinnaker(tmp_path, graph):
    artifact = compile_graph(graph, "spinnaker", tmp_path / "model.snnir", tmp_path / "artifact")
    return artifact, Artifact.open(artifact).graph()


def run_script(artifact, x, simulator, tmp_path):
    """Run the artifact's script on spikes ``x`` in a fresh directory whose home has a virtual
    board; return the process, its output spikes and what it built."""
    work = tmp_path / f"run-{simulator}"
    (work / "home").mkdir(parents=True)
    (work / "home" / ".spynnaker.cfg").write_text("[Machine]\nvirtual_board = True\nversion = 5\n")
    np.save(work / "x.npy", x)
    env = {**os.environ, "HOME": str(work / "home")}
    env.pop("XDG_CONFIG_HOME", None)
    process = subprocess.run([sys.executable, str(artifact / "pynn_script.py"), "x.npy", "y.npy", "--simulator", simulator,
                              "--dump-network", "built.npz"], cwd=work, env=env, capture_output=True, text=True)
    if process.returncode != 0:
        return process, None, None
    with np.load(work / "built.npz", allow_pickle=False) as built:
        return process, np.load(work / "y.npy", allow_pickle=False), {key: built[key] for key in built.files}


def grouped(built):
    """The dump by population identifier or projection key, each a dict of its fields."""
    groups = {}
    for key, value in built.items():
        prefix, field = key.rsplit(".", 1)
        groups.setdefault(prefix, {})[field] = value
    return groups


def assert_built_equals_artifact(lowered, built, simulator):
    """The populations, sizes, parameters, projections, weights and delays that PyNN built are the
    artifact's: on sPyNNaker, the integers it writes (S1615 encoding, weight scales 2**(15 - shift),
    its own ring-buffer shifts) are the annotations' exactly."""
    dt_ms = lowered.dt * 1000
    groups = grouped(built)
    populations = {str(group["label"]): group for group in groups.values() if "size" in group}
    # Each projection's (label, receptor): its rows (pre, post, weight, delay).
    projections = {(str(group["label"]), key.rsplit(".", 1)[1]): group["connections"]
                   for key, group in groups.items() if "connections" in group}
    for node in lowered:
        if isinstance(node.op, ir.Input):
            assert int(populations[node.name]["size"]) == int(np.prod(node.output_shape))
        if not node.op.stateful:
            continue
        fixed, built_population = node.annotations["spinnaker"], populations[node.name]
        size = int(np.prod(node.output_shape))
        assert int(built_population["size"]) == size
        assert str(built_population["celltype"]) == CELL_TYPES[simulator][fixed["model"]]
        s1615 = lambda values: DataType.S1615.encode_as_numpy_int_array(np.asarray(values, np.float64))  # noqa: E731
        for name in ("v_thresh", "v_reset", "i_offset") + (("v_rest",) if fixed["model"] != "IF_trunc_delta" else ()):
            np.testing.assert_array_equal(s1615(built_population[name]), np.broadcast_to(fixed[name], size), err_msg=name)
        assert (built_population["tau_refrac"] == 0).all()
        np.testing.assert_allclose(built_population["cm"], built_population["tau_m"], rtol=1e-12)
        if fixed["model"] != "IF_trunc_delta":
            exp_tc = np.rint(np.exp(-dt_ms / built_population["tau_m"]) * 2 ** 15)
            np.testing.assert_array_equal(exp_tc, np.broadcast_to(fixed["exp_tc"], size))
        if fixed["model"] == "IF_curr_exp":
            for receptor, tau in (("exc", "tau_syn_E"), ("inh", "tau_syn_I")):
                decay = np.rint(np.exp(-dt_ms / built_population[tau]) * 2.0 ** 32)
                np.testing.assert_array_equal(decay, np.broadcast_to(fixed[f"{receptor}_decay"], size))
        if simulator == "spiNNaker":
            np.testing.assert_array_equal(built_population["ring_buffer_shifts"], fixed["ring_buffer_shifts"])

    assert {label for label, _ in projections} <= {n.name for n in lowered if isinstance(n.op, ir.Affine)}
    for node in lowered:
        if not isinstance(node.op, ir.Affine):
            continue
        fixed = node.annotations["spinnaker"]
        post = lowered[lowered.successors(node.name)[0]]
        shifts = post.annotations["spinnaker"]["ring_buffer_shifts"]
        for receptor, shift in zip(RECEPTORS, shifts):
            magnitudes = fixed[receptor]
            rows = projections.get((node.name, receptor), np.zeros((0, 4)))
            assert len(rows) == np.count_nonzero(magnitudes), (node.name, receptor)
            if not len(rows):
                continue
            pre, post_index = rows[:, 0].astype(int), rows[:, 1].astype(int)
            np.testing.assert_array_equal(rows[:, 3] / dt_ms, fixed["delays"][post_index, pre])
            weights = rows[:, 2]
            if simulator == "nest":  # PyNN's standard current synapses: inhibitory weights negative
                weights = -weights if receptor == "inhibitory" else weights
                if post.annotations["spinnaker"]["model"] == "IF_curr_delta":  # a jump in mV, back to nA
                    tau_m = populations[post.name]["tau_m"][post_index]
                    weights = weights * dt_ms / -np.expm1(-dt_ms / tau_m)
                np.testing.assert_allclose(weights * 2.0 ** (15 - int(shift)), magnitudes[post_index, pre], rtol=1e-9)
            else:
                np.testing.assert_array_equal(np.rint(weights * 2.0 ** (15 - int(shift))), weights * 2.0 ** (15 - int(shift)))
                np.testing.assert_array_equal(weights * 2.0 ** (15 - int(shift)), magnitudes[post_index, pre])


NETWORKS = {"lif_chain": lif_chain, "cuba_network": cuba_network, "delayed_inhibitory": delayed_inhibitory_network}


@pytest.mark.parametrize("network", NETWORKS)
def test_spinnaker_virtual_board_builds_the_artifacts_network(network, tmp_path):
    rng = np.random.default_rng(3)
    artifact, lowered = compile_spinnaker(tmp_path, NETWORKS[network](rng))
    x = spikes(rng, (2, 40, lowered[lowered.inputs[0]].output_shape[0]), rate=0.3)
    process, y, built = run_script(artifact, x, "spiNNaker", tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Generating data specifications" in process.stdout + process.stderr  # sPyNNaker mapped it
    assert y.shape == (2, 40, lowered["out"].input_shape[0]) and y.dtype == np.int8
    assert_built_equals_artifact(lowered, built, "spiNNaker")


@pytest.mark.parametrize("network", NETWORKS)
def test_nest_runs_the_network_close_to_the_float_simulation(network, tmp_path):
    """NEST's spikes follow snnc's float simulation once each layer's extra steps are counted: one
    per synapse layer (as on sPyNNaker), and on NEST one more per exponential-synapse layer, since
    iaf_psc_exp lets a spike's current reach V from the step after its arrival on.

    Tolerance, as the fraction of (sample, step, neuron) entries that agree after that shift: 0.98
    for the delta-synapse networks, whose NEST update (iaf_psc_delta's exact propagator) is the
    float recurrence with s16.15-rounded parameters, so only a neuron that ends a step within a
    rounding error of its threshold can differ; 0.85 with exponential synapses, which NEST
    integrates in continuous time where snnc and sPyNNaker add a step's whole input at once, moving
    some spikes by a step. Total spike counts agree within 10 %."""
    rng = np.random.default_rng(3)
    graph = NETWORKS[network](rng)
    artifact, lowered = compile_spinnaker(tmp_path, graph)
    steps = 150
    x = spikes(rng, (3, steps, lowered[lowered.inputs[0]].output_shape[0]), rate=0.3)
    process, y, built = run_script(artifact, x, "nest", tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    assert_built_equals_artifact(lowered, built, "nest")
    floating = simulate(graph, x)["out"]
    assert floating.sum() > 200, "a quiet network would prove little"
    models = [n.annotations["spinnaker"]["model"] for n in lowered if n.op.stateful]
    depth = len(models) + models.count("IF_curr_exp")  # both layers lie on the path to the output
    ours, theirs = floating[:, : steps - depth], y[:, depth:]
    assert abs(int(theirs.sum()) - int(ours.sum())) <= 0.1 * ours.sum(), (theirs.sum(), ours.sum())
    assert (ours == theirs).mean() >= (0.85 if "IF_curr_exp" in models else 0.98)
    if "IF_curr_exp" not in models:  # the same recurrence as sPyNNaker's, in float64
        np.testing.assert_array_equal(y, simulate(lowered, x)["out"])


def test_if_trunc_delta_runs_on_spinnaker_and_is_refused_elsewhere(tmp_path):
    rng = np.random.default_rng(4)
    artifact, lowered = compile_spinnaker(tmp_path, if_network(rng))
    assert lowered["integrator"].annotations["spinnaker"]["model"] == "IF_trunc_delta"
    x = spikes(rng, (1, 20, 8))
    process, _, built = run_script(artifact, x, "spiNNaker", tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    assert_built_equals_artifact(lowered, built, "spiNNaker")
    process, _, _ = run_script(artifact, x, "nest", tmp_path)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1] == (
        "pynn_script: error: population 'integrator' is sPyNNaker's IF_trunc_delta (a non-leaky IF that never "
        "falls below v_reset), which nest does not have; run it with --simulator spiNNaker")


def test_inputs_of_one_sample_and_bad_inputs(tmp_path):
    """A (T, n) input is one sample; a wrong shape or a non-spike value ends with one error line."""
    rng = np.random.default_rng(5)
    artifact, lowered = compile_spinnaker(tmp_path, lif_chain(rng))
    x = spikes(rng, (30, 16), rate=0.5)
    process, y, _ = run_script(artifact, x, "nest", tmp_path / "one")
    assert process.returncode == 0, process.stderr[-3000:]
    _, batched, _ = run_script(artifact, x[None], "nest", tmp_path / "batched")
    np.testing.assert_array_equal(y, batched)
    assert y.shape == (1, 30, 8)
    for bad, message in ((x[:, :5], "input 'in' must have shape (T, 16) or (batch, T, 16), got (30, 5)"),
                         (x * 2, "input 'in' holds values other than 0 and 1; inputs are spikes")):
        process, _, _ = run_script(artifact, bad, "nest", tmp_path / f"bad{len(message)}")
        assert process.returncode == 2 and process.stderr.strip().splitlines()[-1].endswith(message)


def test_hostile_node_names_stay_inert_data(tmp_path):
    """Names holding quotes, newlines and Python code reach the script only as string literals: it
    still compiles, runs, and labels the populations and projections with the names exactly."""
    rng = np.random.default_rng(6)
    renamed = hostile_mlp(rng)
    artifact, lowered = compile_spinnaker(tmp_path, renamed)
    compile((artifact / "pynn_script.py").read_text(), "pynn_script.py", "exec")
    for simulator in ("nest", "spiNNaker"):
        process, _, built = run_script(artifact, spikes(rng, (1, 20, 6)), simulator, tmp_path)
        assert process.returncode == 0, process.stderr[-3000:]
        assert_built_equals_artifact(lowered, built, simulator)
        assert {str(built[k]) for k in built if k.endswith(".label")} >= {HOSTILE_NAMES[n] for n in ("in", "lif0", "lif1", "fc0")}
    assert not list(tmp_path.rglob("PWNED*"))
