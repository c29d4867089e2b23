"""Synapse fusion: any linear path between populations becomes Affine synapses, computing the same."""

import numpy as np
import pytest

from snnc import ir
from snnc.errors import IRError
from snnc.frontend.nir import load_nir
from snnc.passes import PassManager
from snnc.passes.fuse import FuseSynapses, is_population_form
from snnc.runtime.simulator import simulate

from graphs import chain, conv_net, lif, recurrent_mlp, spikes


def fuse(graph):
    fused = PassManager([FuseSynapses()]).run(graph)
    assert is_population_form(fused)
    return fused


def assert_same_run(graph, fused, x):
    neurons = [n.name for n in graph if isinstance(n.op, ir.NEURONS)]
    a, b = simulate(graph, x, probes=neurons), simulate(fused, x, probes=neurons)
    for key in a:
        if key.endswith(":spikes"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert any(a[k].any() for k in a if k.endswith(":spikes"))


def conv_without_maxpool(rng):
    graph = conv_net(rng)
    graph.remove("max")
    graph.connect("avg", "flat")
    graph["fc"].op.weight = rng.normal(0, 0.5, (6, 64))
    return graph


def test_plain_affines_are_kept_as_they_are():
    rng = np.random.default_rng(0)
    graph = recurrent_mlp(rng)
    fused = fuse(graph)
    assert sorted(n.name for n in fused if isinstance(n.op, ir.Affine)) == ["fc1", "fc2", "rec"]
    for key, value in graph["fc2"].op.fields().items():  # weights, delays and bias kept exactly
        assert np.array_equal(fused["fc2"].op.fields()[key], value) if value is not None else fused["fc2"].op.fields()[key] is None
    assert_same_run(graph, fused, spikes(rng, (2, 50, 5)))


def test_convolutions_pooling_flatten_scale_and_add_fold_into_synapses():
    rng = np.random.default_rng(1)
    graph = conv_without_maxpool(rng)
    fused = fuse(graph)
    assert [n.name for n in fused if isinstance(n.op, ir.Affine)] == ["in->if1", "if1->lif1", "lif1->li"]
    # conv bias reaches if1, the residual branch (Scale) and the depthwise conv share one matrix
    assert fused["in->if1"].op.bias is not None and fused["if1->lif1"].op.weight.shape == (324, 324)
    assert fused["in->if1"].op.out_shape == (4, 9, 9)
    assert_same_run(graph, fused, spikes(rng, (2, 30, 2, 9, 9)))


def test_delay_nodes_become_per_synapse_delays_on_and_off_cycles():
    rng = np.random.default_rng(2)
    graph = chain(("in", ir.Input(shape=(3,))), ("pre", ir.Delay(delay=np.array([2, 0, 5]))),
                  ("fc", ir.Affine(weight=rng.normal(size=(4, 3)))),
                  ("n", lif(shape=(4,), v_decay=0.5, v_threshold=0.5)), ("out", ir.Output()))
    graph.add("d", ir.Delay(delay=np.array([1, 2, 0, 3])))
    graph.add("rec", ir.Affine(weight=rng.normal(size=(4, 4)), bias=np.full(4, 0.1)))
    for edge in [("n", "d"), ("d", "rec"), ("rec", "n")]:
        graph.connect(*edge)
    fused = fuse(graph)
    np.testing.assert_array_equal(fused["in->n"].op.delay, np.tile([2, 0, 5], (4, 1)))
    # the Delay closes the cycle, so it carries one extra step (docs/semantics.md, section 2)
    np.testing.assert_array_equal(fused["n->n"].op.delay, np.tile([2, 3, 1, 4], (4, 1)))
    assert_same_run(graph, fused, spikes(rng, (2, 60, 3)))


def test_two_paths_with_different_delays_need_two_synapse_layers():
    rng = np.random.default_rng(3)
    graph = chain(("in", ir.Input(shape=(2,))), ("late", ir.Delay(delay=np.array([3, 3]))),
                  ("n", lif(shape=(2,), v_threshold=0.5)), ("out", ir.Output()))
    graph.connect("in", "n")
    fused = fuse(graph)
    layers = sorted(n.name for n in fused if isinstance(n.op, ir.Affine))
    assert layers == ["in->n#1", "in->n#2"]
    assert fused["in->n#1"].op.delay is None and (fused["in->n#2"].op.delay[np.eye(2, dtype=bool)] == 3).all()
    assert_same_run(graph, fused, spikes(rng, (1, 30, 2)))


@pytest.mark.parametrize("name", ["02_cnn/cnn_sinabs.nir", "03_rnn/braille_noDelay_bias_zero.nir",
                                  "03_rnn/braille_noDelay_noBias_subtract_subgraph.nir"])
def test_fixtures_fuse_and_compute_the_same(nir_paper, name):
    graph = load_nir(nir_paper / name)
    fused = fuse(graph)
    shape = graph[graph.inputs[0]].output_shape
    assert_same_run(graph, fused, spikes(np.random.default_rng(4), (2, 40, *shape), rate=0.2))


def test_nonlinear_nodes_are_refused_by_name():
    with pytest.raises(IRError, match="'max': MaxPool2d is not linear"):
        fuse(conv_net(np.random.default_rng(5)))


def test_bias_behind_a_delay_is_refused():
    graph = chain(("in", ir.Input(shape=(2,))), ("fc", ir.Affine(weight=np.eye(2), bias=np.ones(2))),
                  ("d", ir.Delay(delay=np.array([1, 1]))), ("n", lif(shape=(2,))), ("out", ir.Output()))
    graph.connect("in", "n")
    with pytest.raises(IRError, match="'n': a bias reaches it through a Delay"):
        fuse(graph)
