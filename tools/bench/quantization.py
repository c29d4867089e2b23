"""Accuracy of the bundled digits network after quantize-weights and sparsify, as a Markdown table.

For each configuration (float; 8, 4 and 2 bits with each scale method; pruning) the model is
lowered with the loihi2 pipeline up to quantize-weights and the float simulator runs the quantized
IR on the 450 held-out digits (examples/digits: encoded as in training). The whole pipeline up to
quantize-loihi runs too, and the loihi2 fixed-point simulator gives a second accuracy, the inputs
followed by one silent step per synapse layer (Loihi's latency). A digit's class is the output
neuron that spiked most, ties to the lower class, as examples/digits/data.py decides.

    .venv/bin/python tools/bench/quantization.py [--model examples/digits/model.nir]    (needs scikit-learn)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from snnc.backends import lower
from snnc.frontend import load_model
from snnc.ir import Affine
from snnc.passes.pipeline import PassOptions
from snnc.runtime.simulator import simulate
from snnc.targets import load_target

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"
#: The pass options of each row: no quantization, every bit width and method with layer scales, per-channel
#: scales at low bits, pruning alone and with quantization.
CONFIGURATIONS = [PassOptions(weight_bits=None),
                  *(PassOptions(weight_bits=bits, quantization=method) for bits in (8, 4, 2)
                    for method in ("entropy", "error", "minmax")),
                  *(PassOptions(weight_bits=bits, quantization="error", granularity="channel") for bits in (4, 2)),
                  PassOptions(sparsity=0.5), PassOptions(sparsity=0.8),
                  PassOptions(weight_bits=8, sparsity=0.5),
                  PassOptions(weight_bits=4, quantization="error", sparsity=0.5)]


def accuracy(graph, x: np.ndarray, labels: np.ndarray, steps: int) -> tuple[float, float]:
    """The fraction of digits whose most active output neuron is the label, and the output spikes per digit."""
    (output,) = graph.outputs
    counts = simulate(graph, x, steps=steps)[output].reshape(len(x), steps, -1).sum(axis=1)
    return float(np.mean(counts.argmax(axis=1) == labels)), float(counts.sum() / len(x))


def measure(model: Path, x: np.ndarray, labels: np.ndarray) -> list[dict]:
    target = load_target("loihi2")
    pipeline = target.pipeline
    graph = load_model(model)
    steps = x.shape[1]
    rows = []
    for options in CONFIGURATIONS:
        quantized = options.weight_bits is not None
        floating = pipeline[: pipeline.index("quantize-weights") + quantized]
        lowered, _ = lower(graph, target, passes=floating, options=options)
        weights = [n.op.weight for n in lowered if isinstance(n.op, Affine)]
        row = {"options": options, "nonzero": sum(np.count_nonzero(w) for w in weights) / sum(w.size for w in weights)}
        row["float"], row["spikes"] = accuracy(lowered, x, labels, steps)
        fixed = [name for name in pipeline[: pipeline.index("quantize-loihi") + 1]
                 if quantized or name != "quantize-weights"]
        integers, _ = lower(graph, target, passes=fixed, options=options)
        row["loihi2"], _ = accuracy(integers, x, labels, steps + len(weights))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    reference = rows[0]["float"]
    header = ["configuration", "accuracy (float sim)", "change (points)", "accuracy (loihi2 fixed point)",
              "output spikes per digit", "non-zero weights"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        options = row["options"]
        parts = [f"{options.weight_bits} bits, {options.quantization}" if options.weight_bits else "float weights"]
        if options.weight_bits and options.granularity == "channel":
            parts.append("per channel")
        if options.sparsity is not None:
            parts.append(f"pruned {options.sparsity:.0%}")
        cells = [", ".join(parts), f"{row['float']:.2%}", f"{100 * (row['float'] - reference):+.1f}",
                 f"{row['loihi2']:.2%}", f"{row['spikes']:.1f}", f"{row['nonzero']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(EXAMPLE / "model.nir"), help="the digits network (.nir or .onnx)")
    args = parser.parse_args()
    sys.path.insert(0, str(EXAMPLE))
    import data  # examples/digits/data.py: the held-out split and its spike encoding

    x, labels = data.load("test")
    print(f"{args.model}: {len(x)} held-out digits of {x.shape[1]} steps\n")
    print(table(measure(Path(args.model), x, labels)))


if __name__ == "__main__":
    main()
