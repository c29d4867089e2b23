#!/usr/bin/env bash
# Sets everything up and runs snnc's main job on the bundled example: the digits SNN trained in
# PyTorch and shipped as ONNX is inspected, compiled for Loihi 2 and run on 8 encoded test digits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
snnc=.venv/bin/snnc
model=examples/digits/model.onnx
mkdir -p out
set -x
$snnc inspect "$model"
$snnc compile "$model" --target loihi2 -o out/digits
$snnc run out/digits --input examples/digits/test_digits.npy --steps 18 -o out/digits_result.npz \
  --report out/digits_report.html
.venv/bin/python -c "import numpy as np; r = np.load('out/digits_result.npz')['output'].sum(1).argmax(1); \
l = np.load('examples/digits/test_digits.labels.npy'); print('predicted', r.tolist(), 'true', l.tolist())"
