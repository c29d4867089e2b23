"""Networks built with PyTorch SNN frameworks, and how each framework simulates them, for the ONNX and
PyTorch frontend tests.

Every network runs in float64 (ONNX files and IR then hold the framework's parameters exactly);
the framework's own code computes every step. Step modules take their states as arguments, as
``torch.onnx.export`` needs them; chains keep them inside, as the frameworks do.
"""

import contextlib
import io

import numpy as np
import onnx
import pytest
import torch

from snnc.runtime.simulator import simulate

T, BATCH, N_IN, N_HIDDEN, N_OUT = 200, 4, 6, 10, 5
DOUBLE = torch.float64


def inputs(seed: int, shape=(N_IN,), rate: float = 0.3) -> torch.Tensor:
    """Random input spikes (T, batch, *shape)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand((T, BATCH, *shape), generator=generator) < rate).to(DOUBLE)


def linear(n_in: int, n_out: int, seed: int, gain: float = 3.0) -> torch.nn.Linear:
    """A Linear layer strong enough to make the next neurons fire often."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(n_in, n_out).to(DOUBLE)
    with torch.no_grad():
        layer.weight.mul_(gain)
    return layer


# ----------------------------------------------------------------------------- step modules


class TwoLayers(torch.nn.Module):
    """Linear -> neuron -> Linear -> neuron, one step, states as arguments; ``step(layer, x, states)``
    calls a neuron the framework's way and returns (spikes, new states)."""

    def __init__(self, hidden, out, counts, step, gain=3.0):
        super().__init__()
        self.fc1, self.fc2 = linear(N_IN, N_HIDDEN, 0, gain), linear(N_HIDDEN, N_OUT, 1, gain)
        self.hidden, self.out = hidden, out
        self.counts, self.call = counts, step

    def forward(self, x, *states):
        first, second = states[:self.counts[0]], states[self.counts[0]:]
        spikes, first = self.call(self.hidden, self.fc1(x), first)
        spikes, second = self.call(self.out, self.fc2(spikes.to(x.dtype)), second)
        return (spikes.to(x.dtype), *first, *second)

    def zero_states(self, batch=BATCH):
        sizes = [N_HIDDEN] * self.counts[0] + [N_OUT] * self.counts[1]
        return [torch.zeros(batch, n, dtype=DOUBLE) for n in sizes]


def _snntorch_step(layer, x, states):
    spikes, *new = layer(x, *states)
    return spikes, new


def _spikingjelly_step(layer, x, states):
    (spikes,), new = layer.single_step_functional_forward((x,), tuple(states))
    return spikes, list(new)


def _norse_step(layer, x, states):
    spikes, state = layer(x, type(layer.state_fallback(x))(*states))
    return spikes, list(state)


class PlainLIF(torch.nn.Module):
    """LIF code as a PyTorch user writes it: decay, integrate, fire on >=, reset by subtraction."""

    def __init__(self, n_in, n_out, seed, beta=0.85, threshold=1.0):
        super().__init__()
        self.fc, self.beta, self.threshold = linear(n_in, n_out, seed), beta, threshold

    def forward(self, x, v):
        v = self.beta * v + (1 - self.beta) * self.fc(x) * 4
        spikes = (v >= self.threshold).to(x.dtype)
        return spikes, v - spikes * self.threshold


class PlainTwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = PlainLIF(N_IN, N_HIDDEN, 0), PlainLIF(N_HIDDEN, N_OUT, 1, beta=0.7)

    def forward(self, x, v1, v2):
        s, v1 = self.l1(x, v1)
        s, v2 = self.l2(s, v2)
        return s, v1, v2

    def zero_states(self, batch=BATCH):
        return [torch.zeros(batch, N_HIDDEN, dtype=DOUBLE), torch.zeros(batch, N_OUT, dtype=DOUBLE)]


def step_module(kind: str) -> torch.nn.Module:
    """A two-layer step module of the framework neuron ``kind``."""
    if kind == "plain":
        return PlainTwoLayers()
    if kind.startswith("snntorch"):
        snn = pytest.importorskip("snntorch")
        if kind == "snntorch-synaptic":
            layers = snn.Synaptic(alpha=0.8, beta=0.75), snn.Synaptic(alpha=0.6, beta=0.9, threshold=0.8)
            return TwoLayers(*layers, (2, 2), _snntorch_step).to(DOUBLE)
        reset = kind.removeprefix("snntorch-leaky-")
        layers = snn.Leaky(beta=0.9, reset_mechanism=reset), snn.Leaky(beta=0.8, threshold=1.2, reset_mechanism=reset)
        return TwoLayers(*layers, (1, 1), _snntorch_step).to(DOUBLE)
    if kind.startswith("spikingjelly"):
        neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
        layers = {"spikingjelly-lif": (neuron.LIFNode(tau=2.0), neuron.LIFNode(tau=3.0, decay_input=False, v_reset=-0.2)),
                  "spikingjelly-lif-soft": (neuron.LIFNode(tau=2.5, v_reset=None), neuron.LIFNode(tau=4.0, v_reset=None)),
                  "spikingjelly-if": (neuron.IFNode(), neuron.IFNode(v_reset=None, v_threshold=0.5))}[kind]
        return TwoLayers(*layers, (1, 1), _spikingjelly_step, gain=8.0)
    norse = pytest.importorskip("norse.torch")
    if kind == "norse-lif":
        layers = norse.LIFCell(), norse.LIFCell(norse.LIFParameters(v_leak=torch.tensor(0.1), v_reset=torch.tensor(-0.1),
                                                                     tau_mem_inv=torch.tensor(300.0)))
        return TwoLayers(*layers, (2, 2), _norse_step, gain=8.0).to(DOUBLE)
    box = pytest.importorskip("norse.torch.functional.lif_box")
    layers = (norse.LIFBoxCell(box.LIFBoxParameters(tau_mem_inv=torch.tensor(400.0))),
              norse.LIFBoxCell(box.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(0.5))))
    return TwoLayers(*layers, (1, 1), _norse_step, gain=8.0).to(DOUBLE)


STEP_MODULES = ["plain", "snntorch-leaky-subtract", "snntorch-leaky-zero", "snntorch-synaptic", "spikingjelly-lif",
                "spikingjelly-lif-soft", "spikingjelly-if", "norse-lif", "norse-lif-box"]


def run_step_module(module, x: torch.Tensor) -> np.ndarray:
    """The framework's simulation: one call per step, states passed on; spikes (batch, T, out)."""
    states, outputs = module.zero_states(x.shape[1]), []
    with torch.no_grad():
        for x_t in x:
            out, *states = module(x_t, *states)
            outputs.append(out)
    return torch.stack(outputs, 1).numpy()


def export(module, args, dynamo: bool) -> onnx.ModelProto:
    """One step through torch.onnx.export in the given form; states as distinct tensors (the dynamo
    exporter merges arguments that are the same tensor)."""
    buffer = io.BytesIO()
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(module, tuple(args), buffer, dynamo=dynamo)
    return onnx.load_from_string(buffer.getvalue())


def run_graph(graph, x: torch.Tensor) -> np.ndarray:
    """snnc's float simulation of ``graph`` on the framework's input (T, batch, ...); spikes (batch, T, out)."""
    (output,) = graph.outputs
    return simulate(graph, np.moveaxis(x.numpy(), 0, 1))[output]


# ----------------------------------------------------------------------------- chains


def run_chain(chain, x: torch.Tensor) -> np.ndarray:
    """The framework's simulation of a freshly built chain, a step at a time, each layer's output in
    float64: snnTorch and SpikingJelly neurons keep their state inside, Norse cells return it."""
    states, outputs = {}, []
    with torch.no_grad():
        for x_t in x:
            y = x_t
            for name, layer in chain.named_children():
                if hasattr(layer, "state_fallback"):
                    y, states[name] = layer(y, states.get(name))
                else:
                    y = layer(y)
                y = y.to(DOUBLE)
            outputs.append(y)
    return torch.stack(outputs, 1).numpy()
