"""Canonicalisation and delay passes: each keeps what the network computes (exact spikes)."""

import numpy as np
import pytest

from snnc import ir
from snnc.errors import IRError
from snnc.passes import PassManager
from snnc.passes.canonicalize import Canonicalize
from snnc.passes.delays import FoldDelays, SplitDelays
from snnc.passes.fuse import FuseSynapses
from snnc.runtime.simulator import simulate
from snnc.targets import load_target

from graphs import chain, conv_net, lif, recurrent_mlp, spikes


def run_pass(graph, *passes):
    manager = PassManager(list(passes))
    return manager.run(graph), manager.reports


def assert_same_spikes(graph, other, x):
    neurons = [n.name for n in graph if isinstance(n.op, ir.NEURONS)]
    a, b = simulate(graph, x, probes=neurons), simulate(other, x, probes=neurons)
    for key in a:
        if key.endswith(":spikes") or a[key].dtype == np.int8:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-9, err_msg=key)
    assert any(a[k].any() for k in a if k.endswith(":spikes"))


def test_canonicalize_folds_avgpool_scales_and_keeps_the_network():
    rng = np.random.default_rng(0)
    graph = conv_net(rng)
    out, reports = run_pass(graph, Canonicalize())
    rewrites = reports["canonicalize"]["rewrites"]
    assert rewrites[0] == "avg: AvgPool2d -> SumPool2d + Scale"
    assert "avg.scale: Scale folded into fc" in rewrites
    assert not any(isinstance(n.op, ir.AvgPool2d) for n in out)
    assert_same_spikes(graph, out, spikes(rng, (2, 25, 2, 9, 9)))


def test_scales_fold_into_neurons_and_affines_and_identities_vanish():
    rng = np.random.default_rng(1)
    graph = chain(("in", ir.Input(shape=(4,))), ("pre", ir.Scale(scale=np.array([1.0, 2.0, 0.5, 3.0]))),
                  ("fc", ir.Affine(weight=rng.normal(size=(6, 4)), bias=rng.normal(size=6))),
                  ("bn", ir.Scale(scale=rng.uniform(0.5, 2, 6))), ("ones", ir.Scale(scale=np.ones(6))),
                  ("zero", ir.Delay(delay=np.zeros(6, np.int64))), ("one", ir.Add()),
                  ("gain", ir.Scale(scale=np.full(6, 0.7))), ("n", lif(shape=(6,), v_threshold=0.8)),
                  ("fc2", ir.Affine(weight=rng.normal(size=(5, 6)))), ("fc3", ir.Affine(weight=rng.normal(size=(3, 5)))),
                  ("m", lif(shape=(3,), v_threshold=0.5)), ("out", ir.Output()))
    out, reports = run_pass(graph, Canonicalize())
    assert [n.name for n in out] == ["in", "fc", "n", "fc2", "m", "out"]
    np.testing.assert_allclose(out["n"].op.v_gain, 0.7)
    assert_same_spikes(graph, out, spikes(rng, (2, 40, 4), rate=0.5))


def test_merged_delays_and_a_recurrent_delay_is_kept():
    rng = np.random.default_rng(2)
    graph = chain(("in", ir.Input(shape=(3,))), ("d1", ir.Delay(delay=np.array([1, 2, 3]))),
                  ("d2", ir.Delay(delay=np.array([4, 0, 1]))), ("fc", ir.Affine(weight=rng.normal(size=(3, 3)))),
                  ("n", lif(shape=(3,), v_threshold=0.3)), ("out", ir.Output()))
    graph.add("loop", ir.Delay(delay=np.zeros(3, np.int64)))
    graph.add("rec", ir.Affine(weight=rng.normal(0, 0.5, (3, 3))))
    for edge in [("n", "rec"), ("rec", "loop"), ("loop", "n")]:
        graph.connect(*edge)
    out, reports = run_pass(graph, Canonicalize())
    np.testing.assert_array_equal(out["d1"].op.delay, [5, 2, 4])
    assert "loop" in out.nodes  # removing it would drop the step its recurrent edge carries
    assert_same_spikes(graph, out, spikes(rng, (2, 40, 3), rate=0.4))


def test_fold_delays_moves_delays_into_synapses_exactly():
    rng = np.random.default_rng(3)
    graph = chain(("in", ir.Input(shape=(4,))), ("d", ir.Delay(delay=np.array([0, 3, 1, 7]))),
                  ("fc", ir.Affine(weight=rng.normal(size=(5, 4)), delay=rng.integers(0, 3, (5, 4)))),
                  ("n", lif(shape=(5,), v_threshold=0.4)), ("out", ir.Output()))
    graph.add("rd", ir.Delay(delay=np.array([2, 0, 1, 1, 4])))
    graph.add("rec", ir.Affine(weight=rng.normal(0, 0.5, (5, 5))))
    for edge in [("n", "rd"), ("rd", "rec"), ("rec", "n")]:
        graph.connect(*edge)
    out, reports = run_pass(graph, FoldDelays())
    assert not any(isinstance(n.op, ir.Delay) for n in out)
    assert [f["delay"] for f in reports["fold-delays"]["folded"]] == ["d", "rd"]
    # the recurrent Delay carried one step more (docs/semantics.md, section 2)
    np.testing.assert_array_equal(out["rec"].op.delay[0], [3, 1, 2, 2, 5])
    assert_same_spikes(graph, out, spikes(rng, (2, 60, 4), rate=0.4))


def test_split_delays_relays_long_delays_within_the_target_limit():
    rng = np.random.default_rng(4)
    delays = rng.integers(0, 200, (6, 5))
    graph = chain(("in", ir.Input(shape=(5,))), ("fc", ir.Affine(weight=rng.normal(1, 0.5, (6, 5)), delay=delays)),
                  ("n", lif(shape=(6,), v_threshold=0.8)), ("out", ir.Output()))
    out, reports = run_pass(graph, FuseSynapses(), SplitDelays(load_target("loihi2")))
    assert all(n.op.delay is None or n.op.delay.max() <= 63 for n in out if isinstance(n.op, ir.Affine))
    assert reports["split-delays"]["relays"][0]["hops"] == 3  # 199 steps = 3 hops of 63 + 10
    x = spikes(rng, (2, 300, 5), rate=0.2)
    np.testing.assert_array_equal(simulate(graph, x)["out"], simulate(out, x)["out"])
    assert simulate(out, x)["out"].any()


def test_split_delays_refuses_what_relays_cannot_carry():
    rng = np.random.default_rng(5)
    graph = recurrent_mlp(rng)
    graph["rec"].op.delay = np.full((7, 7), 100)
    with pytest.raises(IRError, match="'rec': .*inside a recurrent loop"):
        run_pass(graph, SplitDelays(load_target("loihi2")))
    analog = chain(("in", ir.Input(shape=(2,))), ("li", ir.LI(v_decay=np.array(0.9), v_gain=np.array(1.0), bias=np.array(0.0))),
                   ("fc", ir.Affine(weight=np.ones((2, 2)), delay=np.full((2, 2), 70))), ("n", lif(shape=(2,))),
                   ("out", ir.Output()))
    with pytest.raises(IRError, match="'fc': .*does not spike"):
        run_pass(analog, SplitDelays(load_target("loihi2")))
