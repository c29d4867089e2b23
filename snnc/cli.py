"""The ``snnc`` command line: inspect, compile, run and export.

Bad input ends with one line on stderr that names the file, node or flag, and exit code 2; an
unexpected failure with one line and exit code 1. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import snnc
from snnc.errors import SnncError
from snnc.files import atomic_write, load_arrays

EXIT_USAGE = 2
EXIT_INTERNAL = 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line instead of usage plus message."""

    def error(self, message):
        raise SnncError(f"{message} (see '{self.prog} --help')")


def _pass_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passes", help="comma-separated passes to run instead of the target's pipeline")
    parser.add_argument("--weight-bits", type=int, choices=(2, 4, 8), help="bits of the quantized weights")
    parser.add_argument("--quantization", choices=("entropy", "error", "minmax"), default="entropy",
                        help="how quantization picks its scale (default entropy, QSD-style)")
    parser.add_argument("--granularity", choices=("layer", "channel"), default="layer",
                        help="one quantization scale per layer or per output channel")
    parser.add_argument("--sparsity", type=float, help="prune this fraction of the weights by magnitude (0 to 1)")
    parser.add_argument("--calibration", metavar="FILE", help="inputs (.npy/.npz) that passes measure spikes on")


def _options(args):
    from snnc.passes.pipeline import PassOptions

    if args.sparsity is not None and not 0 <= args.sparsity < 1:
        raise SnncError(f"--sparsity {args.sparsity}: give a fraction from 0 up to (not including) 1")
    return PassOptions(weight_bits=args.weight_bits, quantization=args.quantization, granularity=args.granularity,
                       sparsity=args.sparsity, calibration=args.calibration)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dt", type=float, default=None,
                        help="time step in seconds for formats that store none (NIR; default 1e-4)")
    parser.add_argument("--reset", choices=("value", "subtract"), default=None,
                        help="reset mode of neurons for formats that store none (NIR; default value)")


def cmd_inspect(args) -> int:
    from snnc.frontend import load_model
    from snnc.ir.printer import FORMATS

    graph = load_model(args.model, dt=args.dt, reset=args.reset)
    if args.target or args.after:
        graph = _lower_until(graph, args)
    if args.mapping:
        from snnc.passes.mapping import mapping_text

        text = mapping_text(graph)
    else:
        text = FORMATS[args.format](graph)
        lowering = Path(args.model) / "network.json"
        if args.format == "text" and lowering.is_file():
            text += _lowering_table(json.loads(lowering.read_text()))
        reports = Path(args.model) / "passes.json"
        if args.format == "text" and reports.is_file():
            text += _pass_reports(json.loads(reports.read_text()))
    if args.output:
        atomic_write(Path(args.output), lambda p: p.write_text(text))
    else:
        sys.stdout.write(text)
    return 0


def _pass_names(value: str | None) -> list[str] | None:
    return None if value is None else [name.strip() for name in value.split(",") if name.strip()]


def _lower_until(graph, args):
    """The graph after the pass --after (default: after the whole pipeline) of --target's pipeline
    or of --passes."""
    from snnc.passes import PassManager
    from snnc.passes.pipeline import build_pipeline
    from snnc.targets import load_target

    target = load_target(args.target or "sim")
    passes = build_pipeline(target, _pass_names(args.passes), _options(args))
    names = [each.name for each in passes]
    if args.after:
        if args.after not in names:
            raise SnncError(f"--after {args.after}: not in the pipeline {names or '(empty)'} of --target "
                            f"{target.name}; choose one of them, or give --passes")
        passes = passes[: names.index(args.after) + 1]
    return PassManager(passes).run(graph)


def _pass_reports(reports: dict) -> str:
    """passes.json as text for `snnc inspect ARTIFACT`: per pass, its settings, then one line per
    layer, population or synapse group with its plain numbers (nested details stay in the JSON)."""

    def plain(values: dict) -> str:
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
                        if isinstance(v, (int, float, str, bool)) and not isinstance(v, dict))

    lines = ["passes (passes.json):"]
    for name, report in reports.items():
        lines.append(f"  {name}: {plain(report)}".rstrip())
        for key, value in report.items():
            if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
                lines += [f"    {key} {entry}: {plain(fields)}".rstrip() for entry, fields in value.items()]
            elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
                lines += [f"    {key}: {plain(fields)}".rstrip() for fields in value]
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                lines += [f"    {key}: {entry}" for entry in value]
    return "\n".join(lines) + "\n"


def _lowering_table(described: dict) -> str:
    """How each node of a Loihi artifact became a Lava process, for `snnc inspect ARTIFACT`."""
    from snnc.ir.printer import show_name

    rows = [(show_name(name), entry["op"], entry["process"], entry["id"], ", ".join(map(show_name, entry["from"])))
            for group in ("inputs", "populations", "synapses", "outputs") for name, entry in described[group].items()]
    header = ("node", "op", "lava process", "in network.py", "from the model's nodes")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["lowered to Lava (network.py):"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines) + "\n"


def cmd_compile(args) -> int:
    from snnc.backends import compile_graph
    from snnc.frontend import load_model

    graph = load_model(args.model, dt=args.dt, reset=args.reset)
    dump = Path(args.dump_ir) if args.dump_ir else None
    out = compile_graph(graph, args.target, Path(args.model), Path(args.output), _pass_names(args.passes), dump,
                        _options(args))
    print(f"compiled {args.model} for {args.target}: {len(graph)} nodes -> {out}"
          + (f"; IR after each pass in {dump}" if dump else ""))
    return 0


def cmd_run(args) -> int:
    from snnc.frontend import load_model
    from snnc.runtime.simulator import Simulator

    if args.steps is not None and args.steps < 1:
        raise SnncError(f"--steps {args.steps}: give a number of steps >= 1")
    if Path(args.output).suffix != ".npz":
        raise SnncError(f"-o {args.output}: results are written as .npz; name the file *.npz")
    graph = load_model(args.model, dt=args.dt, reset=args.reset)
    simulator = Simulator(graph, dtype=np.dtype(args.precision))
    try:
        inputs = simulator.check_inputs(load_arrays(args.input), args.steps)
    except SnncError as e:
        raise SnncError(f"--input {args.input}: {e}") from None
    started = time.perf_counter()
    if args.backend == "lava":
        from snnc.runtime.lava_run import run_lava

        if not Path(args.model).is_dir():
            raise SnncError(f"--backend lava runs a compiled artifact; compile {args.model} with --target loihi2 first")
        results = run_lava(Path(args.model), inputs, probes=args.probe, log=lambda line: print(line, file=sys.stderr))
    elif args.backend == "spinnaker":
        results, machine_summary = _run_machine(args, simulator, inputs)
    else:
        results = simulator.run(inputs, probes=args.probe, count=True)
    elapsed = time.perf_counter() - started
    if args.report and Path(args.report).suffix not in (".json", ".html"):
        raise SnncError(f"--report {args.report}: a report is written as .json or .html")
    report, why_not = _cost_report(graph, simulator, inputs, args)
    if report is not None and args.backend == "spinnaker":
        report["machine"] = machine_summary
    atomic_write(Path(args.output), lambda p: np.savez(p, **results))
    first = next(iter(results.values()))
    print(f"ran {args.model} ({args.backend}): batch={first.shape[0]} steps={first.shape[1]} in {elapsed:.3f} s -> {args.output}")
    width = max(len(k) for k in results)
    print(f"  {'array'.ljust(width)}  {'shape'.ljust(20)}  {'sum'.ljust(12)}  mean")
    for key, value in results.items():
        print(f"  {key.ljust(width)}  {str(value.shape).ljust(20)}  {value.sum():<12.6g}  {value.mean():.6g}")
    if report is None:
        print(f"  (no cost summary: {why_not})")
        return 0
    from snnc.runtime.report import summary_table, write_report

    print(summary_table(report))
    if args.report:
        write_report(report, args.report)
        print(f"report -> {args.report}")
    return 0


def _run_machine(args, simulator, inputs) -> tuple[dict, dict]:
    """Run the artifact's SpiNNaker machine data on the machine-level simulator: its outputs, and
    its own report. Its activity becomes the simulator's, so the cost report counts what it did."""
    from snnc.backends.artifact import TARGET_FILE, Artifact
    from snnc.backends.spinnaker.machine import MachineData
    from snnc.runtime.spinnaker_machine import MachineSimulator, machine_report
    from snnc.targets import parse_target

    if not Path(args.model).is_dir():
        raise SnncError(f"--backend spinnaker runs a compiled artifact; compile {args.model} with --target spinnaker first")
    if args.probe:
        raise SnncError("--probe: the machine-level SpiNNaker simulator records output spikes only; probe with "
                        "--backend sim, which is bit-exact with it")
    artifact = Artifact.open(args.model)
    machine = MachineSimulator(MachineData.load(artifact.directory))
    batch, steps = next(iter(inputs.values())).shape[:2]
    outputs = machine.run(inputs, steps)
    simulator.activity = machine.activity
    return outputs, machine_report(machine, parse_target(artifact.directory / TARGET_FILE), batch)


def _cost_report(graph, simulator, inputs, args) -> tuple[dict | None, str]:
    """The cost report of this run on the graph's target, from the simulator's counts (also for
    --backend lava: the simulator is bit-exact with Lava, so its counts are Lava's).

    The cost model reads populations and synapse matrices, so a graph not yet in that form is fused
    first; a graph that cannot be (MaxPool, Threshold) has no report, which is an error only when
    --report asked for one."""
    from snnc.backends import TARGET_FILE
    from snnc.errors import IRError
    from snnc.passes import PassManager
    from snnc.passes.fuse import FuseSynapses, is_population_form
    from snnc.runtime.cost import cost_model
    from snnc.runtime.report import build_report
    from snnc.targets import load_target

    if simulator.activity is None:
        simulator.run(inputs, count=True)
    try:
        populations = graph if is_population_form(graph) else PassManager([FuseSynapses()]).run(graph)
    except IRError as e:
        if args.report:
            raise SnncError(f"--report {args.report}: cannot count costs: {e}") from None
        return None, str(e)
    compiled_for = Path(args.model) / TARGET_FILE
    target = load_target(str(compiled_for) if compiled_for.is_file() else graph.metadata.get("target", "sim"))
    cost = cost_model(populations, target, simulator.activity)
    raster = {name: p.spikes for name, p in simulator.activity.populations.items()}
    return build_report(cost, raster=raster), ""


def cmd_export(args) -> int:
    from snnc.backends.nir import write_nir
    from snnc.frontend import load_model

    graph = load_model(args.model, dt=args.dt, reset=args.reset)
    out = Path(args.output)
    if out.suffix != ".nir":
        raise SnncError(f"-o {out}: NIR files end in .nir")
    atomic_write(out, lambda p: write_nir(graph, p))
    print(f"exported {args.model} -> {out}")
    return 0


def cmd_env(args) -> int:
    from snnc.runtime import lava_env

    python = lava_env.ensure_environment(log=lambda line: print(line, file=sys.stderr), recreate=args.recreate)
    print(python)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="snnc", description="A compiler and toolchain for spiking neural networks.")
    parser.add_argument("--version", action="version", version=f"snnc {snnc.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    inspect = commands.add_parser("inspect", help="print a model's IR: nodes, shapes, parameters, edges",
                                  description="Print a deterministic dump of a model (.nir, .snnir) or an artifact's IR.")
    inspect.add_argument("model", help="model file or artifact directory")
    inspect.add_argument("--format", choices=("text", "json", "dot"), default="text", help="dump format (default text)")
    inspect.add_argument("-o", "--output", help="write to this file instead of stdout")
    inspect.add_argument("--target", help="lower for this target first (its pipeline of passes)")
    inspect.add_argument("--after", metavar="PASS", help="show the IR after this pass of the pipeline")
    inspect.add_argument("--mapping", action="store_true",
                         help="print how map-cores placed the populations: cores, fill of each limit, traffic, links")
    _pass_options(inspect)
    _model_options(inspect)
    inspect.set_defaults(handler=cmd_inspect)

    compile_ = commands.add_parser("compile", help="compile a model into an artifact directory for a target",
                                   description="Import, verify and emit a model for a target into an artifact directory.")
    compile_.add_argument("model", help="model file (.nir, .snnir)")
    compile_.add_argument("--target", default="sim",
                          help="sim, loihi, loihi2, spinnaker, or the path of a target .toml file (default sim)")
    compile_.add_argument("-o", "--output", required=True, help="artifact directory to write")
    _pass_options(compile_)
    compile_.add_argument("--dump-ir", metavar="DIR", help="write the IR as text before and after every pass into DIR")
    _model_options(compile_)
    compile_.set_defaults(handler=cmd_compile)

    run = commands.add_parser("run", help="simulate an artifact or model on inputs",
                              description="Run an artifact (or a model file) in the reference simulator and save "
                                          "each output node's spikes under its name in an .npz.")
    run.add_argument("model", help="artifact directory or model file")
    run.add_argument("--input", required=True,
                     help=".npy of shape (batch, T, *input_shape), or .npz keyed by input node name")
    run.add_argument("--steps", type=int, default=None,
                     help="steps to run (default: the input's T; more steps receive no input, fewer cut it)")
    run.add_argument("-o", "--output", required=True, help=".npz to write")
    run.add_argument("--probe", action="append", default=[], metavar="NODE",
                     help="also record NODE (repeatable): NODE:spikes, NODE:v, NODE:i for neurons, NODE:output otherwise")
    run.add_argument("--precision", choices=("float64", "float32"), default="float64",
                     help="precision of float simulation (fixed-point targets run their own integers)")
    run.add_argument("--report", metavar="FILE",
                     help="write the latency and energy report: FILE.json, or FILE.html with plots")
    run.add_argument("--backend", choices=("sim", "lava", "spinnaker"), default="sim",
                     help="sim: snnc's simulator in the artifact's arithmetic (default); lava: the emitted Lava "
                          "program in the Lava environment (Loihi targets); spinnaker: the machine-level simulator "
                          "on the artifact's SpiNNaker machine data (spinnaker targets)")
    _model_options(run)
    run.set_defaults(handler=cmd_run)

    export = commands.add_parser("export", help="export a model or artifact to NIR",
                                 description="Write a model's IR as a NIR file that nir.read accepts.")
    export.add_argument("model", help="model file or artifact directory")
    export.add_argument("-o", "--output", required=True, help=".nir file to write")
    _model_options(export)
    export.set_defaults(handler=cmd_export)

    env = commands.add_parser("env", help="create or show the Python 3.10 environment that runs Lava",
                              description="Create (once) and reuse the Python 3.10 environment with lava-nc 0.10.0 "
                                          "that runs emitted Lava programs. Location: $SNNC_LAVA_ENV, else "
                                          "~/.cache/snnc/lava-nc-0.10.0. Prints its Python.")
    env.add_argument("name", choices=("lava",), help="the environment (only lava)")
    env.add_argument("--recreate", action="store_true", help="delete and create it again")
    env.set_defaults(handler=cmd_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # --debug is accepted anywhere on the line, before or after the subcommand.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except SnncError as e:
        if debug:
            raise
        print(f"snnc: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        if debug:
            raise
        print(f"snnc: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a bug in snnc, not the user's input
        if debug:
            raise
        print(f"snnc: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
