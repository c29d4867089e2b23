"""Loihi: the quantize-loihi mapping, the fixed-point simulator, and its equivalence with Lava.

The equivalence tests run the emitted Lava program in Lava's own bit-accurate simulation
(Loihi2SimCfg, select_tag="fixed_pt") in the Python 3.10 environment that snnc manages, and require
the same spikes, u and v at every step as snnc's loihi2 fixed-point simulation.
"""

import json

import numpy as np
import pytest

from snnc import ir
from snnc.backends import compile_graph, lava, lower, sim
from snnc.backends.artifact import ArtifactWriter
from snnc.errors import IRError, SnncError
from snnc.frontend.nir import load_nir
from snnc.runtime.lava_env import ensure_environment
from snnc.runtime.lava_run import run_lava
from snnc.runtime.simulator import Simulator, simulate
from snnc.targets import load_target

from graphs import HOSTILE_NAMES, chain, cuba_chain, hostile_mlp, lif, mlp, random_network, spikes

LOIHI2 = load_target("loihi2")


@pytest.fixture(scope="session")
def lava_python():
    return ensure_environment(log=lambda line: None)


def compile_for_loihi(tmp_path, graph, name="model"):
    source = tmp_path / f"{name}.snnir"
    ir.save(ir.verify(graph), source)
    return compile_graph(graph, "loihi2", source, tmp_path / name), ir.verify(ir.load(tmp_path / name / "model.snnir"))


def assert_lava_matches(artifact, lowered, x):
    populations = [n.name for n in lowered if n.op.stateful]
    ours = simulate(lowered, x, probes=populations)
    theirs = run_lava(artifact, x, probes=populations, log=lambda line: None)
    assert set(theirs) == {*lowered.outputs, *(f"{p}:{s}" for p in populations for s in ("u", "v"))}
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
    assert sum(ours[o].sum() for o in lowered.outputs) > 0, "the outputs never fired: the test would prove little"


# -- the mapping


def test_quantized_parameters_fit_lavas_formats():
    lowered, reports = lower(random_network(np.random.default_rng(0)), LOIHI2)
    formats = LOIHI2.formats
    for node in lowered:
        fixed = node.annotations.get("loihi")
        if isinstance(node.op, ir.Affine):
            weights = fixed["weights"]
            assert weights.dtype == np.int32 and (weights % 2 == 0).all() and weights.min() >= -256 and weights.max() <= 254
            assert formats["weight_exponent_min"] <= fixed["weight_exp"] <= formats["weight_exponent_max"]
        elif node.op.stateful:
            assert 1 <= fixed["vth"] < 2 ** formats["threshold_mantissa_bits"]
            assert 0 <= fixed["du"] < 4096 and 0 <= fixed["dv"] < 4096
            assert np.abs(fixed["bias_mant"]).max() < 2 ** 12 and 0 <= fixed["bias_exp"].min() <= fixed["bias_exp"].max() <= 7
    assert set(reports["quantize-loihi"]["populations"]) == {"hidden", "readout"}


def test_decays_map_to_lavas_twelve_bit_constants():
    graph = cuba_chain()
    lowered, _ = lower(graph, LOIHI2)
    fixed = lowered["n"].annotations["loihi"]
    assert fixed["dv"] == round(4096 * 0.1)  # v decays by (4096 - dv) / 4096
    assert fixed["du"] == 4095 - 3072  # u decays by (4096 - (du + 1)) / 4096 = 0.75


@pytest.mark.parametrize("change, fragment", [
    (lambda g: setattr(g["lif0"].op, "reset", "subtract"), "resets by subtraction"),
    (lambda g: setattr(g["lif0"].op, "v_reset", np.full(30, 0.2)), "resets to a non-zero value"),
    (lambda g: setattr(g["lif0"].op, "v_decay", np.linspace(0.5, 0.9, 30)), "v_decay differs between neurons"),
])
def test_what_lava_cannot_hold_is_refused_by_node(change, fragment):
    graph = mlp(np.random.default_rng(2))
    change(graph)
    with pytest.raises(IRError, match=fragment):
        lower(graph, LOIHI2)


def test_delays_beyond_loihi2s_limit_are_relayed_or_refused():
    graph = mlp(np.random.default_rng(2))
    graph["fc0"].op.delay = np.full((30, 40), 64)
    lowered, reports = lower(graph, LOIHI2)  # the pipeline splits them through relay neurons
    assert reports["split-delays"]["relays"] and max(
        int(n.annotations["loihi"]["delays"].max()) for n in lowered
        if isinstance(n.op, ir.Affine) and n.annotations["loihi"]["delays"] is not None) <= 63
    with pytest.raises(IRError, match="'fc0': has a delay of 64 steps; loihi2 holds at most 63"):
        lower(graph, LOIHI2, passes=["fuse-synapses", "quantize-loihi"])


# -- equivalence with Lava


def test_dense_mlp_matches_lava(lava_python, tmp_path):
    rng = np.random.default_rng(4)
    artifact, lowered = compile_for_loihi(tmp_path, mlp(rng))
    assert_lava_matches(artifact, lowered, spikes(rng, (2, 60, 40)).astype(np.int64))
    # Dense weights are written once, in the IR, and the program reads them from there.
    described = json.loads((artifact / "network.json").read_text())
    with np.load(artifact / "params.npz") as params, np.load(artifact / "model.snnir") as stored:
        for name, synapse in described["synapses"].items():
            assert synapse["process"] == "Dense" and f"{synapse['id']}.weights" not in params.files
            np.testing.assert_array_equal(stored[described["parameters_in_ir"][f"{synapse['id']}.weights"]],
                                          lowered[name].annotations["loihi"]["weights"])


def test_the_lava_program_needs_the_ir_beside_it(tmp_path):
    lowered, _ = lower(mlp(np.random.default_rng(4)), LOIHI2)
    with ArtifactWriter(tmp_path / "alone", "loihi2", tmp_path) as writer, \
            pytest.raises(SnncError, match="reads parameters from the artifact's model.snnir"):
        lava.emit(lowered, writer)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_random_recurrent_networks_with_delays_match_lava(lava_python, tmp_path, seed):
    rng = np.random.default_rng(seed)
    artifact, lowered = compile_for_loihi(tmp_path, random_network(rng))
    assert any(n.annotations["loihi"]["delays"] is not None for n in lowered if isinstance(n.op, ir.Affine))
    assert_lava_matches(artifact, lowered, spikes(rng, (2, 50, lowered["in"].output_shape[0])).astype(np.int64))


@pytest.mark.parametrize("name", ["03_rnn/braille_noDelay_bias_zero.nir", "03_rnn/braille_noDelay_bias_zero_subgraph.nir",
                                  "03_rnn/braille_noDelay_noBias_subtract.nir",
                                  "03_rnn/braille_noDelay_noBias_subtract_subgraph.nir"])
def test_braille_recurrent_network_matches_lava(lava_python, nir_paper, tmp_path, name):
    artifact, lowered = compile_for_loihi(tmp_path, load_nir(nir_paper / name))
    assert_lava_matches(artifact, lowered, spikes(np.random.default_rng(8), (2, 60, 12), rate=0.2).astype(np.int64))


def test_sinabs_cnn_matches_lava(lava_python, nir_paper, tmp_path):
    artifact, lowered = compile_for_loihi(tmp_path, load_nir(nir_paper / "02_cnn/cnn_sinabs.nir"))
    assert_lava_matches(artifact, lowered, spikes(np.random.default_rng(9), (1, 25, 2, 34, 34), rate=0.2).astype(np.int64))


def test_wrap_and_saturation_match_lava(lava_python, tmp_path):
    """Integers at the edges of Lava's formats: u wraps past 24 bits and v saturates, exactly as in Lava."""
    graph = chain(("in", ir.Input(shape=(60,))), ("fc", ir.Affine(weight=np.full((4, 60), 40.0))),
                  ("n", lif(v_decay=0.99, v_threshold=1.0, shape=(4,))), ("fc2", ir.Affine(weight=np.full((3, 4), 5.0))),
                  ("m", lif(v_decay=0.99, v_threshold=1.0, bias=0.01, shape=(3,))), ("out", ir.Output()))
    lowered, _ = lower(graph, LOIHI2)
    # 60 spikes of 254 << (4 + 6) each sum to 15.6M: past 2**23, so u wraps to a negative value.
    lowered["fc"].annotations["loihi"].update(weights=np.full((4, 60), 254, np.int32), weight_exp=4)
    with ArtifactWriter(tmp_path / "edge", "loihi2", tmp_path) as writer:
        sim.emit(lowered, writer)
        writer.path("target.toml").write_bytes(LOIHI2.path.read_bytes())  # the program is checked against it
        lava.emit(lowered, writer)
        artifact = writer.commit()
    x = np.ones((1, 30, 60), np.int64)
    ours = simulate(lowered, x, probes=["n", "m"])
    assert ours["n:u"].min() < 0 and ours["n:v"].min() == -(2 ** 23 - 1)
    theirs = run_lava(artifact, x, probes=["n", "m"], log=lambda line: None)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_loihi_runs_in_blocks_of_steps_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(12)
    lowered, _ = lower(random_network(rng), LOIHI2)
    x = spikes(rng, (2, 37, lowered["in"].output_shape[0]))
    probes = [n.name for n in lowered if n.op.stateful]
    whole = simulate(lowered, x, probes=probes)
    monkeypatch.setattr(Simulator, "block_length", lambda self, batch, length: 4)
    blocks = simulate(lowered, x, probes=probes)
    for key in whole:
        np.testing.assert_array_equal(whole[key], blocks[key], err_msg=key)


def test_hardware_run_needs_intels_extension(lava_python, tmp_path):
    import subprocess

    artifact, lowered = compile_for_loihi(tmp_path, mlp(np.random.default_rng(13), sizes=(4, 3)))
    np.save(tmp_path / "x.npy", np.ones((1, 5, 4), np.int64))
    result = subprocess.run([str(lava_python), str(artifact / "run_lava.py"), "--input", str(tmp_path / "x.npy"),
                             "--out", str(tmp_path / "y.npz"), "--hw"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "lava-loihi" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "y.npz").exists()


def test_a_hung_lava_program_is_stopped():
    import sys
    import time

    from snnc.runtime.lava_run import _run_isolated

    started = time.perf_counter()
    with pytest.raises(SnncError, match="did not finish within 1 s"):
        _run_isolated([sys.executable, "-c", "import subprocess, sys, time; "
                       "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"], 1.0)
    assert time.perf_counter() - started < 10


def test_hostile_node_names_stay_inert_data(lava_python, tmp_path):
    """Names holding quotes, newlines and Python code compile to a program that runs and executes
    none of it: names reach network.py only as string literals inside comments, and network.json."""
    rng = np.random.default_rng(14)
    renamed = hostile_mlp(rng)
    artifact, lowered = compile_for_loihi(tmp_path, renamed)
    code = (artifact / "network.py").read_text()
    compile(code, "network.py", "exec")  # still valid Python
    x = spikes(rng, (1, 30, 6)).astype(np.int64)
    ours = simulate(lowered, x, probes=[HOSTILE_NAMES["lif0"]])
    theirs = run_lava(artifact, x, probes=[HOSTILE_NAMES["lif0"]], log=lambda line: None)
    np.testing.assert_array_equal(ours["out"], theirs["out"])
    np.testing.assert_array_equal(ours[HOSTILE_NAMES["lif0"] + ":v"], theirs[HOSTILE_NAMES["lif0"] + ":v"])
    assert not list(tmp_path.rglob("PWNED*")) and not list(artifact.parent.parent.rglob("PWNED*"))
    import os
    assert not any(p.startswith("PWNED") for p in os.listdir("."))


def test_inspect_shows_how_each_node_was_lowered(tmp_path, nir_paper):
    import subprocess
    import sys

    artifact, _ = compile_for_loihi(tmp_path, load_nir(nir_paper / "02_cnn/cnn_sinabs.nir"))
    text = subprocess.run([sys.executable, "-m", "snnc", "inspect", str(artifact)], capture_output=True, text=True).stdout
    table = text[text.index("lowered to Lava"):].splitlines()
    row = next(line.split() for line in table if line.split()[:1] == ["3->6"])
    assert row[1:4] == ["Affine", "Sparse", "synapse_2"] and row[4:] == ["4,", "5"]  # the pooling and the conv
    assert any(line.split()[:3] == ["12", "IF", "LIF"] for line in table)
    assert '@fused_from=[4, 5]' in text  # inspect summarises annotations (c38ed9f)
