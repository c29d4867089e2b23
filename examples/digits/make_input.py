"""Write the first held-out digits, rate-coded as in training, as input for `snnc run`.

Usage: python examples/digits/make_input.py [OUT.npy] [--count N]   (needs scikit-learn)
Writes OUT.npy (N, 16 steps, 64 pixels) of 0/1 as uint8 and the labels as OUT.labels.npy. The
default, examples/digits/test_digits.npy with 8 digits, ships with the example for the demo.
"""

import argparse
from pathlib import Path

import numpy as np

import data

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", nargs="?", default=str(Path(__file__).resolve().parent / "test_digits.npy"))
parser.add_argument("--count", type=int, default=8)
args = parser.parse_args()
spikes, labels = data.load("test")
out = Path(args.out)
np.save(out, spikes[:args.count].astype(np.uint8))
np.save(out.with_suffix(".labels.npy"), labels[:args.count])
print(f"wrote {out}: {args.count} test digits x {data.STEPS} steps x 64 pixels; labels {labels[:args.count].tolist()}")
