"""A --dt longer than a NIR time constant gives a negative forward-Euler decay: said on stderr, a
line per node, with the dt that would keep the decays in [0, 1]."""

import json

import nir
import numpy as np
import pytest

from snnc.cli import main
from snnc.frontend.euler import decay_warnings
from snnc.frontend.nir import from_nir


def network() -> nir.NIRGraph:
    """Input -> Affine -> LIF (tau 1 ms, one neuron at 0.2 ms) -> Affine -> CubaLIF (tau_syn 0.5 ms,
    tau_mem 5 ms) -> Output."""
    rng = np.random.default_rng(0)
    nodes = {
        "in": nir.Input(np.array([3])),
        "fc1": nir.Affine(rng.normal(size=(4, 3)), np.zeros(4)),
        "lif": nir.LIF(tau=np.array([1e-3, 1e-3, 2e-4, 1e-3]), r=np.ones(4), v_leak=np.zeros(4),
                       v_threshold=np.ones(4)),
        "fc2": nir.Affine(rng.normal(size=(2, 4)), np.zeros(2)),
        "cuba": nir.CubaLIF(tau_syn=np.full(2, 5e-4), tau_mem=np.full(2, 5e-3), r=np.ones(2), v_leak=np.zeros(2),
                            v_threshold=np.ones(2)),
        "out": nir.Output(np.array([2])),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("in", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "cuba"),
                                            ("cuba", "out")])


def test_no_warning_while_dt_is_at_most_every_time_constant():
    assert decay_warnings(from_nir(network(), dt=1e-4)) == []
    assert decay_warnings(from_nir(network(), dt=2e-4)) == []  # a decay of exactly 0 is no oscillation


def test_one_warning_per_node_naming_its_shortest_time_constant_and_the_dt_that_fixes_it():
    lines = decay_warnings(from_nir(network(), dt=1e-3))
    assert lines == [
        "node 'lif': tau = 0.0002 s is shorter than dt = 0.001 s, so forward Euler gives a decay 1 - dt/tau = -4 "
        "(negative in 1 of 4 neurons: the state flips sign every step instead of decaying); --dt 0.0002 or smaller "
        "keeps every decay of this node in [0, 1]",
        "node 'cuba': tau_syn = 0.0005 s is shorter than dt = 0.001 s, so forward Euler gives a decay 1 - "
        "dt/tau_syn = -1 (negative in 2 of 2 neurons: the state flips sign every step instead of decaying); --dt "
        "0.0005 or smaller keeps every decay of this node in [0, 1]"]


def test_the_suggested_dt_silences_the_warning():
    assert decay_warnings(from_nir(network(), dt=4e-4)) != []
    assert decay_warnings(from_nir(network(), dt=2e-4)) == []


def test_float32_time_constant_equal_to_dt_is_no_warning():
    graph = network()
    graph.nodes["lif"].tau = np.full(4, 2e-4, np.float32)
    converted = from_nir(graph, dt=2e-4)
    assert converted["lif"].op.v_decay.min() < 0  # float32 rounding: about -1e-7
    assert decay_warnings(converted) == []


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "net.nir"
    nir.write(path, network())
    return path


def test_cli_warns_on_stderr_and_still_does_the_work(model, tmp_path, capsys):
    assert main(["compile", str(model), "--dt", "1e-3", "-o", str(tmp_path / "art"), "--json"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"snnc: warning: {model}: node '") for line in lines)
    assert "'lif'" in lines[0] and "--dt 0.0002 or smaller" in lines[0] and "'cuba'" in lines[1]
    assert json.loads(captured.out)["output"] == str(tmp_path / "art")  # stdout stays machine-readable


@pytest.mark.parametrize("command", [["inspect"], ["export", "-o", "{tmp}/x.onnx"],
                                     ["run", "--input", "{tmp}/x.npy", "-o", "{tmp}/y.npz"]])
def test_every_command_that_loads_a_nir_model_warns(model, tmp_path, capsys, command):
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 3)))
    args = [command[0], str(model), *(a.format(tmp=tmp_path) for a in command[1:]), "--dt", "1e-3"]
    assert main(args) == 0
    assert capsys.readouterr().err.count("snnc: warning:") == 2


def test_cli_is_silent_at_the_default_dt(model, capsys):
    assert main(["inspect", str(model)]) == 0
    assert capsys.readouterr().err == ""
