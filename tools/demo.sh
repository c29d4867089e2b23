#!/usr/bin/env bash
# Sets everything up and runs snnc's main job on the bundled example: inspect, compile, run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
snnc=.venv/bin/snnc
model=examples/braille/braille.nir
mkdir -p out
set -x
$snnc inspect "$model"
$snnc compile "$model" --target sim -o out/braille
.venv/bin/python examples/braille/make_input.py out/braille_input.npy
$snnc run out/braille --input out/braille_input.npy -o out/braille_result.npz --probe lif1.lif
