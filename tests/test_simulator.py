"""The float simulator against naive loops written straight from docs/semantics.md."""

import numpy as np
import pytest

from snnc import ir
from snnc.errors import SnncError
from snnc.runtime.simulator import Simulator, simulate

from graphs import chain, conv_net, lif, recurrent_mlp, spikes


def naive_conv2d(x, w, b, stride, padding, dilation, groups):
    c_in, h, wd = x.shape
    c_out, c_group, kh, kw = w.shape
    out_h = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((c_out, out_h, out_w))
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for i in range(out_h):
            for j in range(out_w):
                total = 0.0 if b is None else b[o]
                for c in range(c_group):
                    for k in range(kh):
                        for l in range(kw):
                            r = i * stride[0] + k * dilation[0] - padding[0]
                            s = j * stride[1] + l * dilation[1] - padding[1]
                            if 0 <= r < h and 0 <= s < wd:
                                total += w[o, c, k, l] * x[g * c_group + c, r, s]
                y[o, i, j] = total
    return y


@pytest.mark.parametrize("stride, padding, dilation, groups", [
    ((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 1), 1), ((1, 2), (2, 1), (2, 1), 2), ((1, 1), (1, 1), (1, 1), 4)])
def test_conv2d_matches_the_definition(stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 4 // groups, 3, 2))
    b = rng.normal(size=4)
    op = ir.Conv2d(weight=w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    graph = chain(("in", ir.Input(shape=(4, 7, 6))), ("conv", op), ("out", ir.Output()))
    x = rng.normal(size=(2, 3, 4, 7, 6))
    y = simulate(graph, x)["out"]
    for n in range(2):
        for t in range(3):
            np.testing.assert_allclose(y[n, t], naive_conv2d(x[n, t], w, b, stride, padding, dilation, groups), atol=1e-12)


def test_conv1d_matches_conv2d_with_unit_height():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 2, 4))
    conv1 = ir.Conv1d(weight=w, bias=None, stride=2, padding=1, dilation=2)
    graph = chain(("in", ir.Input(shape=(2, 11))), ("conv", conv1), ("out", ir.Output()))
    x = rng.normal(size=(1, 2, 2, 11))
    y = simulate(graph, x)["out"]
    expected = naive_conv2d(x[0, 1][:, None, :], w[:, :, None, :], None, (1, 2), (0, 1), (1, 2), 1)[:, 0]
    np.testing.assert_allclose(y[0, 1], expected, atol=1e-12)


def test_pooling_and_flatten_match_the_definition():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 1, 2, 5, 5))
    for op, reduce, pad_value in [(ir.SumPool2d(kernel_size=2, stride=2, padding=1), np.sum, 0.0),
                                  (ir.AvgPool2d(kernel_size=3, stride=2, padding=1), np.mean, 0.0),
                                  (ir.MaxPool2d(kernel_size=2, stride=1, padding=1), np.max, -np.inf)]:
        graph = chain(("in", ir.Input(shape=(2, 5, 5))), ("pool", op), ("flat", ir.Flatten(start_dim=1)), ("out", ir.Output()))
        y = simulate(graph, x)["out"][0, 0]
        padded = np.pad(x[0, 0], [(0, 0), (op.padding[0],) * 2, (op.padding[1],) * 2], constant_values=pad_value)
        k, s = op.kernel_size[0], op.stride[0]
        size = (5 + 2 * op.padding[0] - k) // s + 1
        expected = np.array([[[reduce(padded[c, i * s:i * s + k, j * s:j * s + k]) for j in range(size)]
                              for i in range(size)] for c in range(2)])
        np.testing.assert_allclose(y, expected.reshape(2, -1), err_msg=op.kind)


def naive_neuron(x, d):
    """One neuron population stepped by hand, straight from section 4 of docs/semantics.md."""
    steps = x.shape[0]
    i = np.zeros(x.shape[1:])
    v = np.zeros(x.shape[1:])
    ys, vs = [], []
    for t in range(steps):
        u = x[t]
        if d.get("i_decay") is not None:
            i = d["i_decay"] * i + d["i_gain"] * x[t]
            u = i
        v = d["v_decay"] * v + d["v_gain"] * u + d["bias"]
        if d.get("v_threshold") is not None:
            s = (v > d["v_threshold"]).astype(float)
            v = np.where(s > 0, d["v_reset"] if d["reset"] == "value" else v - d["v_threshold"], v)
            ys.append(s)
        else:
            ys.append(v)
        vs.append(v)
    return np.array(ys), np.array(vs)


NEURON_CASES = {
    "LIF value": (ir.LIF, dict(v_decay=0.9, v_gain=0.7, bias=0.05, v_threshold=1.0, v_reset=-0.2, reset="value")),
    "LIF subtract": (ir.LIF, dict(v_decay=0.8, v_gain=1.1, bias=0.0, v_threshold=0.5, v_reset=0.0, reset="subtract")),
    "IF": (ir.IF, dict(v_gain=0.6, bias=0.01, v_threshold=1.0, v_reset=0.0, reset="value")),
    "CubaLIF": (ir.CubaLIF, dict(i_decay=0.6, i_gain=0.9, v_decay=0.85, v_gain=0.5, bias=0.0, v_threshold=0.8,
                                 v_reset=0.0, reset="subtract")),
    "LI": (ir.LI, dict(v_decay=0.7, v_gain=0.3, bias=0.1)),
    "I": (ir.I, dict(v_gain=0.2, bias=-0.01)),
    "CubaLI": (ir.CubaLI, dict(i_decay=0.5, i_gain=1.0, v_decay=0.9, v_gain=0.4, bias=0.0)),
}


@pytest.mark.parametrize("case", NEURON_CASES)
def test_neurons_follow_the_written_update(case):
    cls, params = NEURON_CASES[case]
    rng = np.random.default_rng(3)
    shape = (6,)
    arrays = {k: (v if k == "reset" else np.full(shape, v)) for k, v in params.items()}
    graph = chain(("in", ir.Input(shape=shape)), ("n", cls(**arrays)), ("out", ir.Output()))
    x = rng.uniform(-0.5, 1.5, size=(1, 60, *shape))
    result = simulate(graph, x, probes=["n"])
    dynamics = {**{"v_decay": 1.0}, **params}
    expected_y, expected_v = naive_neuron(x[0], dynamics)
    np.testing.assert_array_equal(result["out"][0], expected_y)
    np.testing.assert_array_equal(result["n:v"][0], expected_v)
    if "i_decay" in params:
        assert "n:i" in result
    if "v_threshold" in params:
        assert result["out"].sum() > 0 and "n:spikes" in result


def test_threshold_is_strict_and_input_reaches_v_in_the_same_step():
    graph = chain(("in", ir.Input(shape=(1,))), ("n", lif(v_decay=1.0, v_threshold=1.0)), ("out", ir.Output()))
    x = np.zeros((1, 4, 1))
    x[0, 1] = 1.0  # v reaches exactly the threshold: no spike
    x[0, 2] = 1e-9  # crosses it in this same step
    y = simulate(graph, x)["out"][0, :, 0]
    np.testing.assert_array_equal(y, [0, 0, 1, 0])


def test_recurrent_edge_carries_the_previous_step():
    # A neuron that excites itself: one input spike at step 0 makes it fire at 0, then every step
    # after through the recurrent weight, each one step later.
    graph = chain(("in", ir.Input(shape=(1,))), ("n", lif(v_decay=0.0, v_threshold=0.5)), ("out", ir.Output()))
    graph.add("self", ir.Affine(weight=np.array([[1.0]])))
    graph.connect("n", "self")
    graph.connect("self", "n")
    x = np.zeros((1, 5, 1))
    x[0, 0] = 1.0
    result = simulate(graph, x, probes=["self"])
    np.testing.assert_array_equal(result["out"][0, :, 0], [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(result["self:output"][0, :, 0], [0, 1, 1, 1, 1])


def test_delays_per_synapse_and_per_channel():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(3, 4))
    d = rng.integers(0, 5, size=(3, 4))
    graph = chain(("in", ir.Input(shape=(4,))), ("fc", ir.Affine(weight=w, delay=d)),
                  ("delay", ir.Delay(delay=np.array([0, 2, 7]))), ("out", ir.Output()))
    x = rng.normal(size=(2, 12, 4))
    y = simulate(graph, x, probes=["fc"])
    fc = np.zeros((2, 12, 3))
    for t in range(12):
        for i in range(3):
            for j in range(4):
                if t - d[i, j] >= 0:
                    fc[:, t, i] += w[i, j] * x[:, t - d[i, j], j]
    np.testing.assert_allclose(y["fc:output"], fc, atol=1e-12)
    expected = np.zeros_like(fc)
    for c, delay in enumerate([0, 2, 7]):
        expected[:, delay:, c] = fc[:, :12 - delay, c]
    np.testing.assert_allclose(y["out"], expected, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("build", [recurrent_mlp, conv_net])
def test_sequence_and_stepwise_execution_agree(seed, build):
    rng = np.random.default_rng(seed)
    graph = build(rng)
    shape = ir.verify(graph)[graph.inputs[0]].output_shape
    x = spikes(rng, (3, 25, *shape))
    probes = list(graph.nodes)
    a = simulate(graph, x, probes=probes)
    b = simulate(graph, x, probes=probes, stepwise=True)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert a["out"].any()


def test_batches_are_independent():
    rng = np.random.default_rng(5)
    graph = recurrent_mlp(rng)
    x = spikes(rng, (4, 30, 5))
    together = simulate(graph, x)["out"]
    alone = np.concatenate([simulate(graph, x[i:i + 1])["out"] for i in range(4)])
    np.testing.assert_array_equal(together, alone)


def test_steps_pad_or_cut_the_input():
    rng = np.random.default_rng(6)
    graph = recurrent_mlp(rng)
    x = spikes(rng, (1, 10, 5))
    longer = simulate(graph, x, steps=15, probes=["in"])
    assert longer["out"].shape[1] == 15 and not longer["in:output"][:, 10:].any()
    np.testing.assert_array_equal(simulate(graph, x, steps=6)["out"], simulate(graph, x)["out"][:, :6])


def test_float32_precision_and_compact_spikes():
    rng = np.random.default_rng(7)
    graph = recurrent_mlp(rng)
    x = spikes(rng, (1, 10, 5))
    result = simulate(graph, x, dtype=np.float32, probes=["hidden", "fc1"])
    assert result["hidden:v"].dtype == np.float32 and result["fc1:output"].dtype == np.float32
    assert result["out"].dtype == np.int8 and result["hidden:spikes"].dtype == np.int8  # spikes are 0 or 1
    assert (result["out"] == simulate(graph, x)["out"]).mean() > 0.9  # float32 and float64 rarely differ


@pytest.mark.parametrize("inputs, message", [
    (np.zeros((1, 10, 4)), r"input 'in' must have shape \(batch, T, 5\)"),
    ({"nope": np.zeros((1, 10, 5))}, "missing"),
])
def test_bad_inputs_are_reported(inputs, message):
    with pytest.raises(SnncError, match=message):
        simulate(recurrent_mlp(np.random.default_rng(8)), inputs)


def test_unknown_probe_is_reported():
    with pytest.raises(SnncError, match="--probe 'ghost'"):
        simulate(recurrent_mlp(np.random.default_rng(9)), np.zeros((1, 3, 5)), probes=["ghost"])


@pytest.mark.parametrize("block", [1, 3, 7])
@pytest.mark.parametrize("build", [recurrent_mlp, conv_net])
def test_running_in_blocks_of_steps_gives_the_same_result(monkeypatch, block, build):
    """Kernels carry state and delay lines across blocks, so the block length changes nothing but
    the order of float sums inside matrix products (the Loihi test checks exact equality)."""
    rng = np.random.default_rng(11)
    graph = build(rng)
    graph.add("late", ir.Delay(delay=np.full(ir.verify(graph)[graph.outputs[0]].input_shape, 5)))
    source = graph.predecessors(graph.outputs[0])[0]
    graph.disconnect(source, graph.outputs[0])
    graph.connect(source, "late")
    graph.connect("late", graph.outputs[0])
    x = spikes(rng, (2, 23, *ir.verify(graph)[graph.inputs[0]].output_shape))
    probes = [n.name for n in graph if isinstance(n.op, ir.NEURONS)]
    whole = simulate(graph, x, probes=probes)
    monkeypatch.setattr(Simulator, "block_length", lambda self, batch, length: block)
    blocks = simulate(graph, x, probes=probes)
    for key in whole:
        np.testing.assert_allclose(whole[key], blocks[key], rtol=1e-12, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("stepwise", [False, True])
def test_a_diverging_state_is_one_error_naming_the_node(stepwise):
    """A decay below -1 (forward Euler with dt over twice tau) grows the state past the float range:
    that is an error naming the neuron, not numpy warnings followed by NaN outputs."""
    graph = chain(("in", ir.Input(shape=(1,))), ("n", lif(v_decay=-1e300, v_threshold=1e308)), ("out", ir.Output()))
    x = np.ones((1, 5, 1))
    with pytest.raises(SnncError, match=r"node 'n': its state overflows the float simulation"):
        Simulator(graph, stepwise=stepwise).run(x)
