"""Write a batch of Poisson spike trains for the Braille network's 12 input channels.

Usage: python make_input.py OUT.npy [--batch N] [--steps T] [--rate R] [--seed S]
"""

import argparse

import numpy as np

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out")
parser.add_argument("--batch", type=int, default=4)
parser.add_argument("--steps", type=int, default=256)
parser.add_argument("--rate", type=float, default=0.1, help="spike probability per channel and step")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
rng = np.random.default_rng(args.seed)
np.save(args.out, (rng.random((args.batch, args.steps, 12)) < args.rate).astype(np.float32))
print(f"wrote {args.out}: {args.batch} samples x {args.steps} steps x 12 channels")
