"""Both fixed-point targets follow the float network they were quantized from."""

import numpy as np
import pytest

from snnc.backends import lower
from snnc.runtime.simulator import simulate
from snnc.targets import load_target

from graphs import mlp, spikes


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
