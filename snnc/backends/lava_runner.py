"""Run the Lava program in this directory.

    python run_lava.py --input X.npy --steps T --out Y.npz [--probe NAME ...] [--hw]

X.npy holds spikes of shape (batch, T, *input_shape) for a network with one input, or X.npz one
such array per input name. Y.npz receives each output's spikes under its name, shape
(batch, T, *shape), and for each probed population NAME:u and NAME:v. By default the program runs
in Lava's bit-accurate CPU simulation (Loihi2SimCfg, select_tag="fixed_pt"); --hw runs it on a Loihi
2 chip through Intel's Lava extension for Loihi. Needs Python 3.10 with lava-nc 0.10.0 (`snnc env lava`).
This file is written by snnc and is the same for every network.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def fail(message):
    print(f"run_lava: error: {message}", file=sys.stderr)
    sys.exit(2)


def load_inputs(path, described):
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        fail(f"--input {path}: not a readable .npy or .npz file ({e})")
    arrays = {k: data[k] for k in data.files} if isinstance(data, np.lib.npyio.NpzFile) else None
    if arrays is None:
        if len(described) != 1:
            fail(f"--input {path}: the network has inputs {sorted(described)}; give an .npz keyed by name")
        arrays = {next(iter(described)): data}
    if set(arrays) != set(described):
        fail(f"--input {path}: expected inputs {sorted(described)}, got {sorted(arrays)}")
    for name, array in arrays.items():
        shape = tuple(described[name]["shape"])
        if array.ndim != len(shape) + 2 or array.shape[2:] != shape:
            fail(f"--input {path}: input {name!r} must have shape (batch, T, {', '.join(map(str, shape))}), got {array.shape}")
        if not np.isin(array, (0, 1)).all():
            fail(f"--input {path}: input {name!r} holds values other than 0 and 1; Loihi inputs are spikes")
    return arrays


def main():
    parser = argparse.ArgumentParser(description="Run this directory's Lava program.")
    parser.add_argument("--input", required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--probe", action="append", default=[], metavar="NAME")
    parser.add_argument("--hw", action="store_true", help="run on Loihi 2 hardware (needs Intel's lava-loihi)")
    parser.add_argument("--timing", action="store_true", help="print each sample's Lava run time (s) to stdout")
    args = parser.parse_args()
    try:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
        from lava.proc.monitor.process import Monitor
    except ImportError as e:
        fail(f"Lava is not importable here ({e}); run with the Python that `snnc env lava` prints")
    if args.hw:
        from lava.utils import loihi

        if not loihi.is_installed():
            fail("--hw runs on Loihi 2 through Intel's Lava extension for Loihi (lava-loihi), which is not "
                 "installed; without --hw the program runs in Lava's bit-accurate simulation")
    # No __pycache__ beside network.py: the artifact holds only the files its manifest lists.
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(HERE))
    import network

    described = json.loads((HERE / "network.json").read_text())
    with np.load(HERE / "params.npz", allow_pickle=False) as stored:
        params = {key: stored[key] for key in stored.files}
    # The IR file is a zip of .npy members, so np.load reads it as it reads an .npz.
    with np.load(HERE / "model.snnir", allow_pickle=False) as ir:
        params.update({key: ir[member] for key, member in described["parameters_in_ir"].items()})
    inputs = load_inputs(args.input, described["inputs"])
    batch, length = next(iter(inputs.values())).shape[:2]
    steps = args.steps or length
    if steps < 1:
        fail(f"--steps {steps}: give a number of steps >= 1")
    for name in args.probe:
        if name not in described["populations"]:
            fail(f"--probe {name!r}: not a population; populations are {sorted(described['populations'])}")
    run_cfg = Loihi2HwCfg() if args.hw else Loihi2SimCfg(select_tag="fixed_pt")
    results = {}
    for sample in range(batch):
        spikes = {}
        for name, array in inputs.items():
            padded = np.zeros((steps, *array.shape[2:]), np.int32)
            padded[: min(steps, length)] = array[sample, :steps]
            spikes[described["inputs"][name]["id"]] = padded.reshape(steps, -1).T
        processes = network.build(params, spikes, steps)
        monitors = {}
        for name in args.probe:
            population = processes["population"][described["populations"][name]["id"]]
            for state in ("u", "v"):
                monitor = Monitor()
                monitor.probe(target=getattr(population, state), num_steps=steps)
                monitors[f"{name}:{state}"] = (monitor, population, state)
        first = next(iter(processes["input"].values()))
        started = time.perf_counter()
        first.run(condition=RunSteps(num_steps=steps), run_cfg=run_cfg)
        if args.timing:
            print(f"sample {sample} run_seconds {time.perf_counter() - started:.6f}")
        for name, entry in described["outputs"].items():
            data = processes["output"][entry["id"]].data.get()  # (neurons, steps)
            results.setdefault(name, []).append(data.T.reshape(steps, *entry["shape"]))
        for key, (monitor, population, state) in monitors.items():
            trace = monitor.get_data()[population.name][state]  # (steps, neurons)
            shape = described["populations"][key.rsplit(":", 1)[0]]["shape"]
            results.setdefault(key, []).append(np.asarray(trace).reshape(steps, *shape))
        first.stop()
    np.savez(args.out, **{key: np.stack(values).astype(np.int64) for key, values in results.items()})


if __name__ == "__main__":
    main()
