"""SpiNNaker machine data for the mapping benchmark's networks: cores, chips, routing tables before
and after minimisation against the router's 1024 entries, and the machine-level simulator against the
IR-level ``spinnaker`` simulation (issue 8).

The networks are those of tools/bench/mapping.py (the NIR-paper CNN is left out: its Sinabs IAF
neurons reset by subtraction, which sPyNNaker's LIF models cannot do), compiled with the
``spinnaker`` target's pipeline, plus ``fan-in``: 1200 spike-source cores of 16 inputs each,
all projecting onto one population, on a 12 x 12-chip machine with 16 neurons per core, which is
the case that needs compression: every source's route ends on the same chip, whose table gets an
entry for each of them. Each network's machine-level run (a few samples of Bernoulli input) must
give the IR-level simulation's spikes in every population.

    .venv/bin/python tools/bench/spinnaker.py [--networks mlp,recurrent,wide-conv,fan-in] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from mapping import NETWORKS, chain  # noqa: E402

from snnc import ir  # noqa: E402
from snnc.backends import lower  # noqa: E402
from snnc.backends.spinnaker.machine import build_machine  # noqa: E402
from snnc.runtime.simulator import Simulator  # noqa: E402
from snnc.runtime.spinnaker_machine import MachineSimulator  # noqa: E402
from snnc.targets import TARGET_DIR, load_target  # noqa: E402

INPUT_RATE, BATCH = 0.1, 2
FAN_IN_SOURCES, FAN_IN_ATOMS = 1200, 16


def fan_in(rng):
    inputs = FAN_IN_SOURCES * FAN_IN_ATOMS
    weight = np.where(rng.random((FAN_IN_ATOMS, inputs)) < 0.05, rng.normal(0, 0.5, (FAN_IN_ATOMS, inputs)), 0.0)
    return chain("fan-in", [ir.Input(shape=(inputs,)), (ir.Affine(weight=weight), (FAN_IN_ATOMS,))])


def fan_in_target(directory: Path):
    """SpiNNaker with 16 neurons per core on a 12 x 12 mesh of chips."""
    text = (TARGET_DIR / "spinnaker.toml").read_text().replace('name = "spinnaker"', 'name = "spinnaker-12x12"')
    for key, value in (("neurons", FAN_IN_ATOMS), ("board_width", 12), ("board_height", 12)):
        start = text.index(f"\n{key} = {{ value = ") + len(f"\n{key} = {{ value = ")
        text = text[:start] + str(value) + text[text.index(",", start):]
    path = directory / "spinnaker-12x12.toml"
    path.write_text(text.replace('source = "SpiNN-5 board', 'source = "benchmark: a 12 x 12 machine; SpiNN-5 board'))
    return load_target(str(path))


def measure(graph, target, steps: int, rng) -> dict:
    started = time.perf_counter()
    lowered, _ = lower(graph, target)
    lowering = time.perf_counter() - started
    started = time.perf_counter()
    machine = build_machine(lowered, target)
    building = time.perf_counter() - started
    x = {lowered.inputs[0]: (rng.random((BATCH, steps, *lowered[lowered.inputs[0]].output_shape)) < INPUT_RATE)
         .astype(np.int64)}
    started = time.perf_counter()
    simulator = MachineSimulator(machine)
    ours = simulator.run(x, steps)
    running = time.perf_counter() - started
    reference = Simulator(lowered, target=target).run(x, probes=list(simulator.spikes))
    ours.update({f"{node}:spikes": values for node, values in simulator.spikes.items()})
    compared = [name for name in reference if ":" not in name or name.endswith(":spikes")]
    identical = all(np.array_equal(ours[name], reference[name]) for name in compared)
    generated = machine.routing_entries_generated
    return {"cores": len(machine.vertices), "chips": len({v.chip for v in machine.vertices}),
            "largest_generated": max(generated.values()), "largest": max(len(t) for t in machine.routing_tables.values()),
            "limit": machine.router_entries, "entries_generated": sum(generated.values()),
            "entries": sum(len(t) for t in machine.routing_tables.values()),
            "lower_s": lowering, "build_s": building, "run_s": running, "identical": identical,
            "spikes": int(sum(reference[name].sum() for name in compared if name.endswith(":spikes")))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="mlp,recurrent,wide-conv,fan-in")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    builders = {**{name: NETWORKS[name] for name in ("mlp", "recurrent", "wide-conv")}, "fan-in": fan_in}
    print("| network | cores | chips | largest table: generated -> minimised (limit) | all entries: generated -> "
          "minimised | lower s | build machine s | machine run s | every population's spikes identical to the IR |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.networks.split(","):
            rng = np.random.default_rng(0)
            target = fan_in_target(Path(scratch)) if name == "fan-in" else load_target("spinnaker")
            r = measure(builders[name](rng), target, args.steps, rng)
            failed |= not r["identical"] or r["largest"] > r["limit"]
            print(f"| {name} ({target.name}) | {r['cores']} | {r['chips']} | {r['largest_generated']} -> {r['largest']} "
                  f"({r['limit']}) | {r['entries_generated']} -> {r['entries']} | {r['lower_s']:.1f} | "
                  f"{r['build_s']:.1f} | {r['run_s']:.1f} | {'yes' if r['identical'] else 'NO'} "
                  f"({r['spikes']} spikes) |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
