"""ONNX import: single-step exports of every framework, snnc's operator domain, the errors, and the
bundled trained example."""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from snnc import ir
from snnc.backends import compile_graph
from snnc.backends.artifact import Artifact
from snnc.errors import FrontendError
from snnc.export import to_onnx
from snnc.frontend import load_model
from snnc.frontend.onnx import DOMAIN, from_onnx, load_onnx
from snnc.ir import serialize
from snnc.runtime.simulator import simulate

from graphs import conv_net, mlp, random_network, recurrent_mlp

torch = pytest.importorskip("torch")
from frameworks import (BATCH, DOUBLE, N_IN, STEP_MODULES, export, inputs, run_graph, run_step_module,  # noqa: E402
                        step_module)


# ----------------------------------------------------------------------------- equivalence with the frameworks


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("kind", STEP_MODULES)
def test_imported_step_export_spikes_like_the_framework(kind, dynamo):
    """200 steps of random input spikes: the framework's simulation and snnc's float simulation of
    the imported ONNX give identical output spikes."""
    module = step_module(kind)
    x = inputs(seed=1)
    expected = run_step_module(module, x)
    graph = from_onnx(export(module, [x[0], *module.zero_states()], dynamo), kind)
    assert expected.sum() > 100, "the test network must spike"
    np.testing.assert_array_equal(run_graph(graph, x), expected)


def _ops(graph):
    return {node.name: node.op for node in graph if not isinstance(node.op, (ir.Input, ir.Output, ir.Affine))}


def test_snntorch_delayed_subtraction_becomes_a_lif_with_reset_feedback():
    """snnTorch subtracts the threshold one step late, after the decay: the IR subtracts at once and
    returns the difference (beta - 1) * threshold through a recurrent Scale."""
    module = step_module("snntorch-leaky-subtract")
    graph = from_onnx(export(module, [inputs(0)[0], *module.zero_states()], dynamo=True))
    lifs = [op for op in _ops(graph).values() if isinstance(op, ir.LIF)]
    assert [op.reset for op in lifs] == ["subtract", "subtract"]
    np.testing.assert_allclose([op.v_threshold for op in lifs], [1.0, 1.2], rtol=1e-7)  # snnTorch keeps float32
    scales = sorted(float(op.scale) for op in _ops(graph).values() if isinstance(op, ir.Scale))
    np.testing.assert_allclose(scales, [(0.8 - 1) * 1.2, (0.9 - 1) * 1.0], rtol=1e-6)
    assert all(edge in graph.recurrent_edges for edge in graph.edges if edge[1].endswith("reset_feedback"))


def test_snntorch_delayed_zero_reset_is_the_irs_reset_to_zero():
    module = step_module("snntorch-leaky-zero")
    graph = from_onnx(export(module, [inputs(0)[0], *module.zero_states()], dynamo=False))
    ops = _ops(graph)
    assert [type(op) for op in ops.values()] == [ir.LIF, ir.LIF]
    assert all(op.reset == "value" and op.v_reset == 0 for op in ops.values())
    np.testing.assert_allclose(sorted(float(op.v_decay) for op in ops.values()), [0.8, 0.9], rtol=1e-7)


def test_greater_or_equal_threshold_becomes_the_float_below():
    """SpikingJelly fires on v >= threshold; the IR on v > v_threshold, so v_threshold is the float
    just below, which fires for exactly the same values."""
    module = step_module("spikingjelly-if")
    graph = from_onnx(export(module, [inputs(0)[0], *module.zero_states()], dynamo=True))
    first, second = _ops(graph).values()
    assert isinstance(first, ir.IF) and first.reset == "value"
    assert float(first.v_threshold) == np.nextafter(1.0, 0) and float(second.v_threshold) == np.nextafter(0.5, 0)
    assert second.reset == "subtract"


def test_norse_current_and_leak():
    """Norse's LIFCell is a CubaLIF whose current jumps by the input (i_gain 1) and reaches v with
    dt/tau_mem; v_leak and v_reset keep their values since the test passes zero states."""
    module = step_module("norse-lif")
    graph = from_onnx(export(module, [inputs(0)[0], *module.zero_states()], dynamo=True))
    first, second = _ops(graph).values()
    assert isinstance(first, ir.CubaLIF)
    np.testing.assert_allclose([first.i_decay, first.v_decay, first.v_gain], [1 - 1e-3 / 5e-3, 1 - 1e-3 / 1e-2, 0.1])
    np.testing.assert_allclose([second.v_decay, second.bias, second.v_reset], [1 - 0.3, 0.3 * 0.1, -0.1])


class ConvNet(torch.nn.Module):
    """Conv -> BatchNorm -> LIF -> AvgPool -> MaxPool -> Flatten -> Linear -> LIF, and a second branch
    concatenated: the standard layers the ONNX frontend imports."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.avg, self.max = torch.nn.AvgPool2d(2), torch.nn.MaxPool2d(2, stride=1)
        self.fc_a, self.fc_b = torch.nn.Linear(36, 6), torch.nn.Linear(2 * 8 * 8, 3)
        self.fc = torch.nn.Linear(9, 5)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 1.5)
            for layer in (self.conv, self.fc_a, self.fc_b, self.fc):
                layer.weight.mul_(3)
        self.to(DOUBLE).eval()

    def forward(self, x, v1, v2):
        v1 = 0.8 * v1 + self.bn(self.conv(x))
        s1 = (v1 > 1).to(x.dtype)
        v1 = torch.where(s1 > 0, torch.zeros_like(v1), v1)
        pooled = torch.flatten(self.max(self.avg(s1)), 1)
        joined = torch.cat([self.fc_a(pooled), self.fc_b(x.reshape(x.shape[0], -1))], dim=1)
        v2 = 0.9 * v2 + self.fc(joined)
        s2 = (v2 > 1).to(x.dtype)
        return s2, v1, v2 - s2


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_convolution_batchnorm_pooling_flatten_concat(dynamo):
    module = ConvNet()
    x = inputs(seed=2, shape=(2, 8, 8))
    states = [torch.zeros(BATCH, 4, 8, 8, dtype=DOUBLE), torch.zeros(BATCH, 5, dtype=DOUBLE)]
    expected, s = [], list(states)
    with torch.no_grad():
        for x_t in x:
            out, *s = module(x_t, *s)
            expected.append(out)
    expected = torch.stack(expected, 1).numpy()
    graph = from_onnx(export(module, [x[0], *states], dynamo))
    kinds = sorted(node.op.kind for node in graph)
    assert kinds.count("Conv2d") == 1 and "BatchNormalization" not in kinds  # folded into the convolution
    assert {"AvgPool2d", "MaxPool2d", "Flatten", "Add"} <= set(kinds)
    assert expected.sum() > 50
    np.testing.assert_array_equal(run_graph(graph, x), expected)


# ----------------------------------------------------------------------------- snnc's operator domain


def _canonical(graph: ir.Graph) -> bytes:
    """The IR file of ``graph`` with nodes and edges in name order: equal for equal graphs."""
    copy = ir.Graph(dt=graph.dt, name=graph.name, metadata=graph.metadata)
    for name in sorted(graph.nodes):
        copy.add(name, graph[name].op)
    for edge in sorted(graph.edges):
        copy.connect(*edge)
    return serialize.to_bytes(copy)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("build", [random_network, recurrent_mlp, conv_net, mlp])
def test_snnc_domain_round_trip_is_lossless(build, seed):
    graph = ir.verify(build(np.random.default_rng(seed)))
    graph.name, graph.dt, graph.metadata = "net", 2.5e-4, {"note": "kept"}
    model = to_onnx(graph)
    assert any(node.domain == DOMAIN for node in model.graph.node)
    assert _canonical(from_onnx(model)) == _canonical(graph)


def test_snnc_domain_file_loads_by_suffix_and_uses_standard_synapses(tmp_path):
    graph = ir.verify(mlp(np.random.default_rng(0)))
    graph.name = "mlp"
    to_onnx(graph, path=tmp_path / "mlp.onnx")
    model = onnx.load(tmp_path / "mlp.onnx")
    assert [n.op_type for n in model.graph.node if n.domain != DOMAIN] == ["Gemm", "Gemm", "Gemm", "Identity"]
    assert {n.op_type for n in model.graph.node if n.domain == DOMAIN} == {"LIF"}
    for loaded in (load_onnx(tmp_path / "mlp.onnx"), load_model(tmp_path / "mlp.onnx")):
        assert _canonical(loaded) == _canonical(graph)


# ----------------------------------------------------------------------------- errors


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _tensor(name, *shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def test_unsupported_operator_is_named_with_its_node_and_the_supported_list():
    model = _model([helper.make_node("Tanh", ["x"], ["y"], name="squash")], [_tensor("x", 1, 3)], [_tensor("y", 1, 3)])
    with pytest.raises(FrontendError, match=r"m.onnx: node 'squash' \(Tanh\): unsupported ONNX operator; "
                                            r"supported: Add, .*Gemm.*, and the ai.snnc operators .*LIF"):
        from_onnx(model, "m.onnx")


def test_product_of_two_signals_is_refused():
    nodes = [helper.make_node("Mul", ["x", "v"], ["p"], name="square"), helper.make_node("Add", ["p", "v"], ["w"])]
    model = _model(nodes, [_tensor("x", 1, 3), _tensor("v", 1, 3)], [_tensor("p", 1, 3), _tensor("w", 1, 3)])
    with pytest.raises(FrontendError, match="'square' \\(Mul\\): multiplies two signals"):
        from_onnx(model)


def test_snntorch_synaptic_zero_reset_is_refused_with_the_reason():
    snn = pytest.importorskip("snntorch")
    from frameworks import TwoLayers, _snntorch_step

    module = TwoLayers(snn.Synaptic(alpha=0.8, beta=0.7, reset_mechanism="zero"), snn.Leaky(beta=0.9), (2, 1),
                       _snntorch_step).to(DOUBLE)
    states = [torch.zeros(1, 10, dtype=DOUBLE), torch.zeros(1, 10, dtype=DOUBLE), torch.zeros(1, 5, dtype=DOUBLE)]
    with pytest.raises(FrontendError, match="discards input"):
        from_onnx(export(module, [torch.zeros(1, N_IN, dtype=DOUBLE), *states], dynamo=True))


def test_unreadable_file_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("not onnx")
    with pytest.raises(FrontendError, match="model.onnx: not a readable ONNX file"):
        load_model(path)


def test_state_count_that_leaves_no_input_is_refused():
    model = _model([helper.make_node("Identity", ["x"], ["y"])], [_tensor("x", 1, 3)], [_tensor("y", 1, 3)])
    with pytest.raises(FrontendError, match="1 state inputs do not fit"):
        from_onnx(model, states=1)


# ----------------------------------------------------------------------------- the bundled trained example

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
#: Test accuracies recorded in examples/digits/README.md: snnc's float simulation (equal to the
#: PyTorch model's) and the Loihi 2 fixed-point simulation.
DIGITS_FLOAT, DIGITS_LOIHI = "0.9778", "0.9778"


@pytest.fixture(scope="module")
def digits_test_set():
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(DIGITS))
    try:
        import data
    finally:
        sys.path.remove(str(DIGITS))
    return data, *data.load("test")


def test_bundled_digits_model_has_its_recorded_accuracy(digits_test_set):
    data, x, labels = digits_test_set
    graph = load_model(DIGITS / "model.onnx")
    assert [n.op.kind for n in graph] == ["Input", "Affine", "LIF", "Affine", "LIF", "Output"]
    accuracy = data.accuracy(simulate(graph, x)["output"], labels)
    readme = (DIGITS / "README.md").read_text()
    assert f"{accuracy:.4f}" == DIGITS_FLOAT and DIGITS_FLOAT in readme and DIGITS_LOIHI in readme
    nir_graph = load_model(DIGITS / "model.nir")  # the NIR export holds the same network
    np.testing.assert_array_equal(simulate(nir_graph, x)["output"], simulate(graph, x)["output"])


def test_bundled_digits_model_compiles_for_loihi2(digits_test_set, tmp_path):
    data, x, labels = digits_test_set
    compile_graph(load_model(DIGITS / "model.onnx"), "loihi2", DIGITS / "model.onnx", tmp_path / "loihi")
    loihi = Artifact.open(tmp_path / "loihi").graph()
    spikes = simulate(loihi, x, steps=data.STEPS + 2)["output"]  # two synapse layers: two steps later
    assert f"{data.accuracy(spikes, labels):.4f}" == DIGITS_LOIHI
