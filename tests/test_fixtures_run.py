"""Every NIR-paper fixture runs in the float simulator, through the API and the command line."""

import subprocess
import sys

import numpy as np
import pytest

from snnc import ir
from snnc.backends.nir import write_nir
from snnc.frontend.nir import load_nir
from snnc.runtime.simulator import simulate

from graphs import recurrent_mlp, spikes

RUNNABLE = ["01_lif/two_lif_neurons.nir", "02_cnn/cnn_sinabs.nir", "03_rnn/braille_noDelay_bias_zero.nir",
            "03_rnn/braille_noDelay_bias_zero_subgraph.nir", "03_rnn/braille_noDelay_noBias_subtract.nir",
            "03_rnn/braille_noDelay_noBias_subtract_subgraph.nir"]


@pytest.mark.parametrize("name", RUNNABLE)
def test_fixture_runs(nir_paper, name):
    graph = load_nir(nir_paper / name)
    shape = graph[graph.inputs[0]].output_shape
    x = spikes(np.random.default_rng(0), (2, 300, *shape), rate=0.2)  # two_lif_neurons fires after ~180 steps
    result = simulate(graph, x, probes=[n.name for n in graph if isinstance(n.op, ir.NEURONS)])
    out = result[graph.outputs[0]]
    assert out.shape == (2, 300, *graph[graph.outputs[0]].output_shape)
    assert np.isfinite(out).all() and set(np.unique(out)) <= {0.0, 1.0}
    assert sum(v.sum() for k, v in result.items() if k.endswith(":spikes")) > 0, "no neuron fired at all"


def test_flat_and_subgraph_braille_layouts_compute_the_same(nir_paper):
    for variant in ("bias_zero", "noBias_subtract"):
        flat = load_nir(nir_paper / f"03_rnn/braille_noDelay_{variant}.nir")
        nested = load_nir(nir_paper / f"03_rnn/braille_noDelay_{variant}_subgraph.nir")
        x = spikes(np.random.default_rng(1), (3, 80, 12))
        a, b = simulate(flat, x)["output"], simulate(nested, x)["output"]
        if variant == "noBias_subtract":
            np.testing.assert_array_equal(a, b)
        assert a.sum() > 0


def test_exported_nir_simulates_like_the_original(tmp_path):
    """Per-synapse delays and recurrence survive export to NIR and import, spike for spike."""
    graph = ir.verify(recurrent_mlp(np.random.default_rng(2)))
    write_nir(graph, tmp_path / "m.nir")
    again = load_nir(tmp_path / "m.nir")
    x = spikes(np.random.default_rng(3), (2, 50, 5))
    np.testing.assert_array_equal(simulate(graph, x)["out"], simulate(again, x)["out"])


def test_cli_compiles_and_runs_the_cnn(nir_paper, tmp_path):
    def snnc(*args):
        return subprocess.run([sys.executable, "-m", "snnc", *map(str, args)], capture_output=True, text=True)

    np.save(tmp_path / "x.npy", spikes(np.random.default_rng(4), (1, 20, 2, 34, 34), rate=0.1))
    assert snnc("compile", nir_paper / "02_cnn/cnn_sinabs.nir", "-o", tmp_path / "cnn").returncode == 0
    result = snnc("run", tmp_path / "cnn", "--input", tmp_path / "x.npy", "--probe", "1", "-o", tmp_path / "y.npz")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "y.npz") as y:
        assert y["output"].shape == (1, 20, 10) and y["1:v"].shape == (1, 20, 16, 16, 16)
    dump = snnc("inspect", tmp_path / "cnn").stdout.splitlines()
    assert [line.split()[1] for line in dump[2:17]] == ["input", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
                                                        "10", "11", "12", "output"]
