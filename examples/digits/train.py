"""Train the bundled digits SNN and write model.onnx and model.nir beside this script.

64 rate-coded pixels -> 64 LIF -> 10 LIF, classified by output spike count, trained with surrogate
gradients in plain PyTorch. The neurons fit Loihi: reset to 0 (Lava's LIF), one decay per layer.
The script reports the test accuracy of the PyTorch model, of snnc's float simulation of the
exported ONNX (the two must agree sample for sample) and of the Loihi 2 fixed-point simulation.

Usage: python examples/digits/train.py [--epochs N]   (about half a minute on two CPU cores)
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import data
from snnc.backends import compile_graph
from snnc.backends.artifact import Artifact
from snnc.backends.nir import write_nir
from snnc.export import to_onnx
from snnc.frontend.onnx import load_onnx
from snnc.runtime.simulator import simulate

HERE = Path(__file__).resolve().parent
HIDDEN, BETA, THRESHOLD = 64, 0.9, 1.0


class Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid surrogate gradient backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + 10 * x.abs()) ** 2


class DigitsSNN(torch.nn.Module):
    """One time step, the membranes as explicit state: decay, integrate, fire, reset to 0."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(64, HIDDEN), torch.nn.Linear(HIDDEN, 10)

    def forward(self, x, v1, v2):
        v1 = BETA * v1 + self.fc1(x)
        s1 = Spike.apply(v1 - THRESHOLD)
        v1 = v1 * (1 - s1)
        v2 = BETA * v2 + self.fc2(s1)
        s2 = Spike.apply(v2 - THRESHOLD)
        return s2, v1, v2 * (1 - s2)

    def run(self, spikes: torch.Tensor) -> torch.Tensor:
        """Output spikes (batch, T, 10) for input spikes (batch, T, 64)."""
        batch = spikes.shape[0]
        v1, v2 = spikes.new_zeros(batch, HIDDEN), spikes.new_zeros(batch, 10)
        out = []
        for t in range(spikes.shape[1]):
            s2, v1, v2 = self(spikes[:, t], v1, v2)
            out.append(s2)
        return torch.stack(out, 1)


def train(model: DigitsSNN, epochs: int) -> None:
    x, y = (torch.from_numpy(a) for a in data.load("train"))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model.run(x[batch]).sum(1), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = DigitsSNN()
    train(model, args.epochs)

    model = model.double().eval()  # float64: the exported parameters are then exactly the evaluated ones
    x, y = data.load("test")
    with torch.no_grad():
        torch_spikes = model.run(torch.from_numpy(x).double()).numpy()
    example = (torch.zeros(1, 64, dtype=torch.float64), torch.zeros(1, HIDDEN, dtype=torch.float64),
               torch.zeros(1, 10, dtype=torch.float64))
    to_onnx(model, example, HERE / "model.onnx")
    graph = load_onnx(HERE / "model.onnx")
    write_nir(graph, HERE / "model.nir")
    snnc_spikes = simulate(graph, x)["output"]
    agree = np.array_equal(snnc_spikes.sum(1).argmax(1), torch_spikes.sum(1).argmax(1))
    print(f"test accuracy ({len(y)} digits): PyTorch {data.accuracy(torch_spikes, y):.4f}, "
          f"snnc float {data.accuracy(snnc_spikes, y):.4f}, same predictions: {agree}")

    with tempfile.TemporaryDirectory() as tmp:
        compile_graph(load_onnx(HERE / "model.onnx"), "loihi2", HERE / "model.onnx", Path(tmp) / "loihi")
        loihi = Artifact.open(Path(tmp) / "loihi").graph()
        depth = 2  # each synapse layer adds one step on Loihi: run that much longer
        loihi_spikes = simulate(loihi, x, steps=data.STEPS + depth)["output"]
    print(f"Loihi 2 fixed point (snnc's simulator, {data.STEPS + depth} steps): {data.accuracy(loihi_spikes, y):.4f}")
    if not agree:
        sys.exit("snnc's float simulation disagrees with PyTorch")


if __name__ == "__main__":
    main()
