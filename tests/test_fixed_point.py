"""What both fixed-point targets share: they follow the float network they were quantized from,
they run the same whole blocks of steps as step by step, and they take spikes only."""

import numpy as np
import pytest

from snnc.backends import lower
from snnc.errors import SnncError
from snnc.runtime.simulator import simulate
from snnc.targets import load_target

from graphs import mlp, random_network, spikes


@pytest.mark.parametrize("target", ["loihi2", "spinnaker"])
def test_fixed_point_follows_the_float_network(target):
    """Quantization changes little: spike counts per neuron agree closely once the one step that
    each synapse layer takes on these chips is taken into account."""
    rng = np.random.default_rng(1)
    graph = mlp(rng)
    lowered, _ = lower(graph, load_target(target))
    x = spikes(rng, (8, 200, 40), rate=0.3)
    depth = 3  # three synapse layers, one step each
    floating = simulate(graph, x)["out"][:, : 200 - depth]
    fixed = simulate(lowered, x)["out"][:, depth:]
    assert floating.sum() > 100
    assert abs(fixed.sum() - floating.sum()) / floating.sum() < 0.05
    per_neuron = np.corrcoef(fixed.sum(axis=(0, 1)), floating.sum(axis=(0, 1)))[0, 1]
    assert per_neuron > 0.98 and (fixed == floating).mean() > 0.9


@pytest.mark.parametrize("target", ["loihi2", "spinnaker"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequence_and_stepwise_runs_agree(target, seed):
    rng = np.random.default_rng(seed)
    lowered, _ = lower(random_network(rng), load_target(target))
    x = spikes(rng, (2, 40, lowered["in"].output_shape[0]))
    probes = [n.name for n in lowered if n.op.stateful]
    a, b = simulate(lowered, x, probes=probes), simulate(lowered, x, probes=probes, stepwise=True)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("target", ["loihi2", "spinnaker"])
def test_inputs_must_be_spikes(target):
    lowered, _ = lower(mlp(np.random.default_rng(3)), load_target(target))
    with pytest.raises(SnncError, match="values other than 0 and 1"):
        simulate(lowered, np.full((1, 5, 40), 0.5))
