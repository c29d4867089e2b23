"""The event-driven synaptic sum against the dense matrix product: identical values, and identical
fixed-point runs whichever of the two the simulator picks."""

import numpy as np
import pytest

from snnc.backends import lower
from snnc.runtime import loihi, synaptic_sums
from snnc.runtime.simulator import Simulator
from snnc.runtime.synaptic_sums import SynapticWeights, dense_sum, event_driven_sum, synaptic_sum
from snnc.targets import load_target

from graphs import mlp, random_network, spikes

LOIHI2 = load_target("loihi2")


@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("row_dtype, weight_dtype", [(np.int8, np.float32), (np.float64, np.float32),
                                                     (np.int64, np.float64)])
@pytest.mark.parametrize("largest, form", [(127 * 6, np.int8), (300, np.int16), (1 << 16, np.floating)])
@pytest.mark.parametrize("n_out", [1, 7, 100])
def test_event_driven_sum_equals_the_matrix_product(density, row_dtype, weight_dtype, largest, form, n_out):
    rng = np.random.default_rng(int(density * 100) + n_out)
    # Multiples of 6 up to 127 * 6 are int8 once divided by their common divisor.
    step = 6 if form is np.int8 else 1
    weights = rng.integers(-largest // step, largest // step + 1, (300, n_out)) * step
    matrix = SynapticWeights(weights.astype(weight_dtype))
    assert np.issubdtype(matrix.events.dtype, form)
    # Twos as well as ones: a synapse fed by two spiking sources receives their sum. 300 inputs
    # at full density take more than one partial sum in int16.
    rows = ((rng.random((37, 300)) < density) * rng.integers(1, 3, (37, 300))).astype(row_dtype)
    expected = rows.astype(np.int64) @ weights
    event, dense = event_driven_sum(rows, matrix), dense_sum(rows, matrix.floats)
    assert event.dtype == dense.dtype == weight_dtype
    np.testing.assert_array_equal(event, expected)
    np.testing.assert_array_equal(dense, expected)


def test_the_sum_is_event_driven_below_the_crossover_density(monkeypatch):
    calls = []
    for name in ("event_driven_sum", "dense_sum"):
        original = getattr(synaptic_sums, name)
        monkeypatch.setattr(synaptic_sums, name, lambda *a, f=original, n=name: calls.append(n) or f(*a))
    wide = SynapticWeights(np.ones((100, 200), np.float32))
    crossover = int(100 * synaptic_sums.crossover_density(200))
    rows = np.zeros((10, 100), np.int8)
    rows[:, : crossover - 1] = 1
    synaptic_sum(rows, wide)
    rows[:, : crossover + 1] = 1
    synaptic_sum(rows, wide)
    # A few outputs per input: BLAS is faster at any density.
    narrow = SynapticWeights(np.ones((100, synaptic_sums.EVENT_DRIVEN_OUTPUTS), np.float32))
    synaptic_sum(np.eye(100, dtype=np.int8)[:1], narrow)
    assert calls == ["event_driven_sum", "dense_sum", "dense_sum"]


def run_forcing(monkeypatch, path, lowered, x, stepwise=False):
    """Run with every synaptic sum taken by ``path``; return the results, the activity and how many
    sums went each way."""
    calls = {"event_driven_sum": 0, "dense_sum": 0}
    for name in calls:
        original = getattr(synaptic_sums, name)

        def counted(*arguments, original=original, name=name):
            calls[name] += 1
            return original(*arguments)
        monkeypatch.setattr(synaptic_sums, name, counted)
    # Above 1 every row counts as sparse; at 0 none does.
    monkeypatch.setattr(synaptic_sums, "EVENT_DRIVEN_DENSITY", 1.5 if path == "event" else 0.0)
    monkeypatch.setattr(synaptic_sums, "EVENT_DRIVEN_OUTPUTS", 0)
    simulator = Simulator(lowered, stepwise=stepwise)
    probes = [n.name for n in lowered if n.op.stateful]
    results = simulator.run(x, probes=probes, count=True)
    monkeypatch.undo()
    return results, simulator.activity, calls


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rate", [0.02, 0.3, 0.9])
@pytest.mark.parametrize("stepwise", [False, True])
def test_event_driven_and_dense_runs_are_identical(monkeypatch, seed, rate, stepwise):
    """Random networks with per-synapse delays and a recurrent layer, several samples, sparse to
    dense input: outputs, spikes, u and v at every step, and the activity counts agree."""
    rng = np.random.default_rng(seed)
    lowered, _ = lower(random_network(rng), LOIHI2)
    x = spikes(rng, (3, 45, lowered["in"].output_shape[0]), rate=rate)
    event, event_activity, event_calls = run_forcing(monkeypatch, "event", lowered, x, stepwise)
    dense, dense_activity, dense_calls = run_forcing(monkeypatch, "dense", lowered, x, stepwise)
    assert event_calls["dense_sum"] == 0 < event_calls["event_driven_sum"]
    assert dense_calls["event_driven_sum"] == 0 < dense_calls["dense_sum"]
    assert event.keys() == dense.keys()
    for key in event:
        np.testing.assert_array_equal(event[key], dense[key], err_msg=key)
    for name, population in event_activity.populations.items():
        np.testing.assert_array_equal(population.spikes, dense_activity.populations[name].spikes, err_msg=name)
        np.testing.assert_array_equal(population.active, dense_activity.populations[name].active, err_msg=name)
    assert sum(event[f"{n}:spikes"].sum() for n in ("hidden", "readout")) > 0, "nothing fired: the test would prove little"


def test_event_driven_and_dense_runs_of_a_deep_network_are_identical(monkeypatch):
    rng = np.random.default_rng(5)
    lowered, _ = lower(mlp(rng, sizes=(120, 90, 60, 10)), LOIHI2)
    x = spikes(rng, (4, 60, 120), rate=0.1)
    event, _, _ = run_forcing(monkeypatch, "event", lowered, x)
    dense, _, _ = run_forcing(monkeypatch, "dense", lowered, x)
    for key in event:
        np.testing.assert_array_equal(event[key], dense[key], err_msg=key)
    assert event["out"].sum() > 0


@pytest.mark.parametrize("stepwise", [False, True])
def test_parallel_and_serial_kernels_give_identical_runs(monkeypatch, stepwise):
    """The compiled kernels split the batch between threads when a call has enough work; forced
    either way, every output, state and count agrees."""
    rng = np.random.default_rng(7)
    lowered, _ = lower(random_network(rng), LOIHI2)
    x = spikes(rng, (5, 40, lowered["in"].output_shape[0]), rate=0.2)
    probes = [n.name for n in lowered if n.op.stateful]
    runs = []
    for threshold in (0, 1 << 60):
        monkeypatch.setattr(synaptic_sums, "PARALLEL_ADDITIONS", threshold)
        monkeypatch.setattr(loihi, "PARALLEL_UPDATES", threshold)
        simulator = Simulator(lowered, stepwise=stepwise)
        runs.append((simulator.run(x, probes=probes, count=True), simulator.activity))
    (parallel, parallel_activity), (serial, serial_activity) = runs
    for key in parallel:
        np.testing.assert_array_equal(parallel[key], serial[key], err_msg=key)
    for name, population in parallel_activity.populations.items():
        np.testing.assert_array_equal(population.spikes, serial_activity.populations[name].spikes, err_msg=name)
        np.testing.assert_array_equal(population.active, serial_activity.populations[name].active, err_msg=name)
    assert parallel["hidden:spikes"].sum() > 0
