"""The ``snnc`` command line: inspect, compile, run and export.

Bad input ends with one line on stderr that names the file, node or flag, and exit code 2; an
unexpected failure with one line and exit code 1. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import snnc
from snnc.errors import SnncError, one_line
from snnc.files import atomic_write, check_writable_place, load_arrays

EXIT_USAGE = 2
EXIT_INTERNAL = 1
#: How many names an error lists before it says how many more there are.
MAX_LISTED = 20


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line instead of usage plus message."""

    def error(self, message):
        raise SnncError(f"{message} (see '{self.prog} --help')")


def _number(kind: type, valid: Callable[[float], bool], wanted: str) -> Callable[[str], float]:
    """An argparse type: the flag's text as a ``kind`` for which ``valid`` holds. NaN and infinities
    hold for no range, so a flag never carries them into the work; anything else is refused with
    ``wanted``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; give {wanted}") from None
        if not (math.isfinite(value) and valid(value)):
            raise argparse.ArgumentTypeError(f"{text}: give {wanted}")
        return value

    return parse


def _pass_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passes", help="comma-separated passes to run instead of the target's pipeline")
    parser.add_argument("--weight-bits", type=int, choices=(2, 4, 8), help="bits of the quantized weights")
    parser.add_argument("--quantization", choices=("entropy", "error", "minmax"),
                        help="how quantization picks its scale (default entropy, QSD-style)")
    parser.add_argument("--granularity", choices=("layer", "channel"),
                        help="one quantization scale per layer (default) or per output channel")
    parser.add_argument("--sparsity", type=_number(float, lambda v: 0 <= v < 1, "a fraction from 0 up to (not including) 1"),
                        help="prune this fraction of the weights by magnitude (0 up to, not including, 1)")
    parser.add_argument("--calibration", metavar="FILE", help="inputs (.npy/.npz) that passes measure spikes on")
    parser.add_argument("--allow-lossy", action="store_true",
                        help="clip parameters the target cannot hold, with a warning, instead of refusing them")


def _options(args):
    from snnc.passes.pipeline import PassOptions

    return PassOptions(weight_bits=args.weight_bits, quantization=args.quantization, granularity=args.granularity,
                       sparsity=args.sparsity, calibration=args.calibration, allow_lossy=args.allow_lossy)


def _warn(reports: dict) -> None:
    """Print the warnings the passes' reports hold (a parameter clipped under --allow-lossy), one
    line each on stderr."""
    for name, report in reports.items():
        for warning in report.get("warnings", []):
            print(one_line(f"snnc: warning: {name}: {warning}"), file=sys.stderr)


#: The model formats that take each model flag (load_model): NIR stores neither a time step nor a
#: reset mode, ONNX no time step; the IR and artifacts hold both, so the flags would change nothing.
_MODEL_FLAGS = {"--dt": (".nir", ".onnx"), "--reset": (".nir",)}


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dt", type=_number(float, lambda v: v > 0, "a time step in seconds > 0"), default=None,
                        help="time step in seconds (.nir, .onnx; default 1e-4, or an .onnx file's own)")
    parser.add_argument("--reset", choices=("value", "subtract"), default=None,
                        help="reset mode of neurons whose model names none (.nir; default value)")


def _load(args):
    """The model ``args.model`` as a verified graph, refusing a model flag its format does not read.
    A NIR model's time constants become decays at dt, so a dt that makes one negative is warned
    about on stderr, a line per node."""
    from snnc.frontend import FORMATS, load_model
    from snnc.frontend.euler import decay_warnings

    path = Path(args.model)
    kind = "artifact directory" if path.is_dir() else path.suffix.lower()
    for flag, value in (("--dt", args.dt), ("--reset", args.reset)):
        if value is not None and kind in FORMATS and kind not in _MODEL_FLAGS[flag]:
            raise SnncError(f"{flag} {value}: applies to {' and '.join(_MODEL_FLAGS[flag])} models only; "
                            f"{args.model} ({kind}) defines its own")
    graph = load_model(path, dt=args.dt, reset=args.reset)
    if kind == ".nir":
        for line in decay_warnings(graph):
            print(one_line(f"snnc: warning: {args.model}: {line}"), file=sys.stderr)
    return graph


@contextlib.contextmanager
def _about(flag: str, value: str):
    """Errors raised inside name the flag and the value they are about."""
    try:
        yield
    except SnncError as e:
        raise SnncError(f"{flag} {value}: {e}") from None


def _writable(flag: str, path: str, what: str = "", suffixes: tuple[str, ...] = (), directory: bool = False) -> None:
    """Check an output path before any work, creating nothing: ``what`` is written as a file with
    one of ``suffixes`` (or as a ``directory``), the path is not already the other kind, and its
    nearest existing parent is a directory this user may write in (missing ones are made then)."""
    given = Path(path)
    if suffixes and given.suffix not in suffixes:
        raise SnncError(f"{flag} {path}: {what} is written as {' or '.join(suffixes)}; "
                        f"name the file {' or '.join('*' + s for s in suffixes)}")
    if given.exists() and given.is_dir() != directory:
        kind, wanted = ("a file", "a directory") if directory else ("a directory", "a file name")
        raise SnncError(f"{flag} {path}: is {kind}; give {wanted}")
    check_writable_place(given, f"{flag} {path}")


def _progress(args, title: str):
    """A progress bar on stderr for work that may take long: drawn only on a terminal, after a
    second, and never with --json, whose reader wants nothing but the result."""
    from snnc.progress import ProgressBar

    return ProgressBar(title, enabled=not getattr(args, "json", False))


def cmd_inspect(args) -> int:
    from snnc.ir.printer import FORMATS

    if args.output:
        _writable("-o", args.output)
    if args.mapping and args.format != "text":
        raise SnncError(f"--format {args.format}: --mapping prints text only; leave out --format")
    passes = _until(args, *_pipeline(args))
    graph = _load(args)
    if passes:
        from snnc.passes import PassManager

        manager = PassManager(passes)
        with _progress(args, "lowering") as bar:
            graph = manager.run(graph, progress=bar)
        _warn(manager.reports)
    if args.mapping:
        from snnc.passes.mapping import mapping_text

        text = mapping_text(graph)
    else:
        text = FORMATS[args.format](graph)
        if args.format == "text" and Path(args.model).is_dir():
            text += _artifact_tables(Path(args.model))
    if args.output:
        atomic_write(Path(args.output), lambda p: p.write_text(text))
    else:
        sys.stdout.write(text)
    return 0


def _pass_names(value: str | None) -> list[str] | None:
    return None if value is None else [name.strip() for name in value.split(",") if name.strip()]


def _pipeline(args) -> tuple:
    """The target and the passes of its pipeline (or of --passes), built with the pass options, so
    that an unknown target or pass, or a pass option no pass reads, is refused before any work."""
    from snnc.passes.pipeline import build_pipeline
    from snnc.targets import load_target

    target = load_target(args.target or "sim")
    return target, build_pipeline(target, _pass_names(args.passes), _options(args))


def _until(args, target, passes: list) -> list:
    """``passes`` up to and including the pass named by --after (all of them without it). A pass
    option that only the passes after it read would change nothing shown, so it is refused, naming
    the pass that would read it."""
    from snnc.passes.pipeline import REGISTRY, flag

    after = args.after
    names = [each.name for each in passes]
    if after is None:
        return passes
    if after not in names:
        raise SnncError(f"--after {after}: not in the pipeline {names or '(empty)'} of --target "
                        f"{target.name}; choose one of them, or give --passes")
    kept = names.index(after) + 1
    read = {option for name in names[:kept] for option in REGISTRY[name].reads}
    for option, value in _options(args).given().items():
        if option not in read:
            # build_pipeline refused options that no pass reads, so a later pass reads this one.
            reader = next(name for name in names[kept:] if option in REGISTRY[name].reads)
            raise SnncError(f"{flag(option, value)}: read by {reader}, which runs after --after {after}, so it "
                            f"would change nothing shown; give --after {reader} (or a later pass), or leave it out")
    return passes[:kept]


def _artifact_tables(directory: Path) -> str:
    """The lowering table (network.json, Loihi artifacts) and the pass reports (passes.json) of the
    artifact in ``directory``, each checked to have the structure its printer reads: a file that
    lacks it is refused in one line naming the artifact and the file."""
    from snnc.backends.artifact import malformed, read_json
    from snnc.backends.lava import DESCRIPTION

    text = ""
    for name, what, problem, table in ((DESCRIPTION, "a Lava lowering table", _lowering_problem, _lowering_table),
                                       ("passes.json", "a table of pass reports", _reports_problem, _pass_reports)):
        if (directory / name).is_file():
            document = read_json(directory, name, what)
            why = problem(document)
            if why:
                raise malformed(directory, name, what, why)
            text += table(document)
    return text


def _reports_problem(reports) -> str | None:
    """What keeps ``reports`` from being passes.json as ``_pass_reports`` reads it: an object of pass
    names, each with an object of its report (whose values it prints or skips by type); None if nothing."""
    from snnc.ir.printer import show_name

    if not isinstance(reports, dict):
        return "not an object of passes"
    name = next((name for name, report in reports.items() if not isinstance(report, dict)), None)
    return None if name is None else f"the report of {show_name(name)} is not an object"


#: The groups of nodes in network.json, and what each entry of a group holds as text.
LOWERING_GROUPS = ("inputs", "populations", "synapses", "outputs")
LOWERING_TEXT = ("op", "process", "id")


def _lowering_problem(described) -> str | None:
    """What keeps ``described`` from being network.json as ``_lowering_table`` reads it: an object
    whose groups each map node names to an entry with the strings op, process and id and a list of
    node names, from; None if nothing."""
    from snnc.ir.printer import show_name

    if not isinstance(described, dict):
        return "not an object"
    for group in LOWERING_GROUPS:
        entries = described.get(group)
        if not isinstance(entries, dict):
            return f"{group!r} is not an object of nodes"
        for name, entry in entries.items():
            if not (isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in LOWERING_TEXT)
                    and isinstance(entry.get("from"), list) and all(isinstance(n, str) for n in entry["from"])):
                return (f"{group} entry {show_name(name)} is not an object with the strings "
                        f"{', '.join(LOWERING_TEXT)} and a list of node names, from")
    return None


def _pass_reports(reports: dict) -> str:
    """passes.json as text for `snnc inspect ARTIFACT`: per pass, its settings, then one line per
    layer, population or synapse group with its plain numbers (nested details stay in the JSON).
    Its strings hold the model's node names, so each is shown through ``show_name``."""
    from snnc.ir.printer import show_name

    def plain(values: dict) -> str:
        return " ".join(f"{show_name(k)}={v:.4g}" if isinstance(v, float) else
                        f"{show_name(k)}={show_name(v) if isinstance(v, str) else v}" for k, v in values.items()
                        if isinstance(v, (int, float, str, bool)) and not isinstance(v, dict))

    lines = ["passes (passes.json):"]
    for name, report in reports.items():
        lines.append(f"  {show_name(name)}: {plain(report)}".rstrip())
        for key, value in report.items():
            if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
                lines += [f"    {show_name(key)} {show_name(entry)}: {plain(fields)}".rstrip()
                          for entry, fields in value.items()]
            elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
                lines += [f"    {show_name(key)}: {plain(fields)}".rstrip() for fields in value]
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                lines += [f"    {show_name(key)}: {show_name(entry)}" for entry in value]
    return "\n".join(lines) + "\n"


def _lowering_table(described: dict) -> str:
    """How each node of a Loihi artifact became a Lava process, for `snnc inspect ARTIFACT`."""
    from snnc.ir.printer import show_name

    rows = [(show_name(name), *(show_name(entry[key]) for key in LOWERING_TEXT),
             ", ".join(map(show_name, entry["from"])))
            for group in LOWERING_GROUPS for name, entry in described[group].items()]
    header = ("node", "op", "lava process", "in network.py", "from the model's nodes")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["lowered to Lava (network.py):"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines) + "\n"


def cmd_compile(args) -> int:
    from snnc.backends import compile_graph
    from snnc.backends.artifact import check_destination

    check_destination(Path(args.output))
    if args.dump_ir:
        _writable("--dump-ir", args.dump_ir, directory=True)
    target, _ = _pipeline(args)
    graph = _load(args)
    dump = Path(args.dump_ir) if args.dump_ir else None
    with _progress(args, "compiling") as bar:
        out = compile_graph(graph, args.target, Path(args.model), Path(args.output), _pass_names(args.passes), dump,
                            _options(args), progress=bar)
    _warn(json.loads((out / "passes.json").read_text()))
    if args.json:
        _print_json(_compile_summary(args, target, graph, out))
    else:
        print(f"compiled {args.model} for {args.target}: {len(graph)} nodes -> {out}"
              + (f"; IR after each pass in {dump}" if dump else ""))
    return 0


def _op_counts(graph) -> dict:
    """The nodes of ``graph``: how many, and how many of each op."""
    ops = sorted(node.op.kind for node in graph)
    return {"total": len(ops), "by_op": {op: ops.count(op) for op in dict.fromkeys(ops)}}


def _compile_summary(args, target, graph, out: Path) -> dict:
    """What ``snnc compile --json`` prints: what was written where, for which target, the nodes
    before and after lowering, and each pass with the warnings its report holds."""
    from snnc.backends.artifact import Artifact

    artifact = Artifact.open(out)
    reports = json.loads((out / "passes.json").read_text())
    return {"model": str(args.model), "target": target.name, "arithmetic": target.arithmetic,
            "output": str(out), "files": sorted(artifact.manifest["files"]),
            "dump_ir": args.dump_ir, "nodes": {"model": _op_counts(graph), "compiled": _op_counts(artifact.graph())},
            "passes": [{"name": name, "warnings": report.get("warnings", [])} for name, report in reports.items()]}


def _print_json(document: dict) -> None:
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def cmd_run(args) -> int:
    from snnc.runtime.simulator import Simulator

    _writable("-o", args.output, "the output", (".npz",))
    if args.report:
        from snnc.runtime.report import RENDERERS

        _writable("--report", args.report, "a report", tuple(RENDERERS))
    graph = _load(args)
    _check_run_flags(args, graph)
    simulator = Simulator(graph, dtype=np.dtype(args.precision or "float64"), target=_compiled_target(args))
    with _about("--input", args.input):
        arrays = load_arrays(args.input)
    _check_run_size(args, simulator, arrays)
    with _about("--input", args.input):
        inputs = simulator.check_inputs(arrays, args.steps)
    started = time.perf_counter()
    with _progress(args, f"running ({args.backend})") as bar:
        if args.backend == "lava":
            from snnc.runtime.lava_run import run_lava

            if not Path(args.model).is_dir():
                raise SnncError(f"--backend lava runs a compiled artifact; compile {args.model} with --target loihi2 first")
            results = run_lava(Path(args.model), inputs, probes=args.probe, log=bar.message, progress=bar)
        elif args.backend == "spinnaker":
            results, machine_summary = _run_machine(args, simulator, inputs)
        else:
            results = simulator.run(inputs, probes=args.probe, count=True, progress=bar)
    elapsed = time.perf_counter() - started
    report, why_not = _cost_report(graph, simulator, inputs, args)
    if report is not None and args.backend == "spinnaker":
        report["machine"] = machine_summary
    if args.report:
        from snnc.runtime.report import write_report

        write_report(report, args.report)
    atomic_write(Path(args.output), lambda p: np.savez(p, **results))
    if args.json:
        _print_json(_run_summary(args, results, elapsed, report, why_not))
        return 0
    first = next(iter(results.values()))
    print(f"ran {args.model} ({args.backend}): batch={first.shape[0]} steps={first.shape[1]} in {elapsed:.3f} s -> {args.output}")
    from snnc.ir.printer import show_name

    shown = {show_name(key): value for key, value in results.items()}  # the keys are the model's node names
    width = max(len(k) for k in shown)
    print(f"  {'array'.ljust(width)}  {'shape'.ljust(20)}  {'sum'.ljust(12)}  mean")
    for key, value in shown.items():
        print(f"  {key.ljust(width)}  {str(value.shape).ljust(20)}  {value.sum():<12.6g}  {value.mean():.6g}")
    if report is None:
        print(f"  (no cost summary: {why_not})")
        return 0
    from snnc.runtime.report import summary_table

    print(summary_table(report))
    if args.report:
        print(f"report -> {args.report}")
    return 0


def _check_run_flags(args, graph) -> None:
    """Refuse, before the inputs are read, a --probe that names no node and a --precision that the
    run would not use: fixed-point graphs run their own integers, and only --backend sim takes it."""
    unknown = [name for name in args.probe if name not in graph.nodes]
    if unknown:
        names = list(graph.nodes)
        shown = ", ".join(names[:MAX_LISTED]) + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")
        raise SnncError(f"--probe {unknown[0]}: no such node in {args.model}; its nodes are {shown}")
    from snnc.runtime.simulator import arithmetic_of

    arithmetic = arithmetic_of(graph)
    if args.precision is not None and (args.backend != "sim" or arithmetic != "float"):
        raise SnncError(f"--precision {args.precision}: sets the float simulation of --backend sim only; "
                        + (f"{args.model} is compiled for {arithmetic} arithmetic, which runs its own integers"
                           if arithmetic != "float" else f"--backend {args.backend} runs its own arithmetic"))


def _check_run_size(args, simulator, arrays) -> None:
    """Refuse a run whose arrays would not fit snnc's memory budget, from their shapes, before any
    is allocated: each input padded to --steps, each output, and each probed node's state (at most
    v and i beside its spikes)."""
    from snnc.files import Budget, check_declared_array

    first = next(iter(arrays.values())) if isinstance(arrays, dict) else arrays
    if first.ndim < 2:
        return  # check_inputs says which shape it takes
    batch, steps = first.shape[0], args.steps or first.shape[1]
    graph, budget = simulator.graph, Budget()
    declared = [(name, simulator.dtype) for name in graph.inputs]
    declared += [(name, np.int8 if simulator.sends_spikes(name) else simulator.dtype) for name in graph.outputs]
    declared += [(name, simulator.dtype) for name in args.probe for _ in ("v", "i")]
    where = f"--steps {args.steps}" if args.steps else f"--input {args.input}: {steps} steps"
    for name, dtype in declared:
        check_declared_array((batch, steps, *graph[name].output_shape), dtype, f"{where}, node {name!r}", budget)


#: The cost report's headline numbers, which ``snnc run --json`` prints (the report file has all).
SUMMARY_KEYS = ("target", "latency_s", "latency_per_step_s", "step_time_s", "energy_j", "energy_breakdown_j", "counts",
                "paper_convention", "warnings", "machine", "note")


def _run_summary(args, results: dict, elapsed: float, report: dict | None, why_not: str) -> dict:
    """What ``snnc run --json`` prints: what was written where, the run's shape and time, each
    output array's shape and sums, and the cost summary (or why there is none)."""
    batch, steps = next(iter(results.values())).shape[:2]
    return {"model": str(args.model), "backend": args.backend, "output": args.output, "report": args.report,
            "batch": batch, "steps": steps, "seconds": elapsed,
            "outputs": {key: {"shape": list(value.shape), "dtype": str(value.dtype), "sum": value.sum().item(),
                              "mean": value.mean().item()} for key, value in results.items()},
            "cost": None if report is None else {key: report[key] for key in SUMMARY_KEYS if key in report},
            "no_cost_reason": why_not or None}


def _run_machine(args, simulator, inputs) -> tuple[dict, dict]:
    """Run the artifact's SpiNNaker machine data on the machine-level simulator: its outputs, and
    its own report. Its activity becomes the simulator's, so the cost report counts what it did."""
    from snnc.backends.artifact import Artifact
    from snnc.runtime.spinnaker_machine import load_machine, machine_report

    if not Path(args.model).is_dir():
        raise SnncError(f"--backend spinnaker runs a compiled artifact; compile {args.model} with --target spinnaker first")
    if args.probe:
        raise SnncError("--probe: the machine-level SpiNNaker simulator records output spikes only; probe with "
                        "--backend sim, which is bit-exact with it")
    artifact = Artifact.open(args.model, backend="spinnaker")
    machine = load_machine(artifact.directory, simulator.graph, simulator.target)  # the artifact's target.toml
    batch, steps = next(iter(inputs.values())).shape[:2]
    outputs = machine.run(inputs, steps)
    simulator.activity = machine.activity
    return outputs, machine_report(machine, simulator.target, batch)


def _compiled_target(args):
    """The target an artifact was compiled for (its copy of the target file), or None for a model
    file, whose graph names its target."""
    from snnc.backends.artifact import TARGET_FILE
    from snnc.targets import parse_target

    compiled_for = Path(args.model) / TARGET_FILE
    return parse_target(compiled_for) if compiled_for.is_file() else None


def _cost_report(graph, simulator, inputs, args) -> tuple[dict | None, str]:
    """The cost report of this run on the graph's target, from the simulator's counts (also for
    --backend lava: the simulator is bit-exact with Lava, so its counts are Lava's).

    The cost model reads populations and synapse matrices, so a graph not yet in that form is fused
    first; a graph that cannot be (MaxPool, Threshold) has no report, which is an error only when
    --report asked for one."""
    from snnc.errors import IRError
    from snnc.passes import PassManager
    from snnc.passes.fuse import FuseSynapses, is_population_form
    from snnc.runtime.cost import cost_model
    from snnc.runtime.report import build_report
    from snnc.runtime.simulator import graph_target

    if simulator.activity is None:
        with _progress(args, "counting spikes for the cost report") as bar:
            simulator.run(inputs, count=True, progress=bar)
    try:
        populations = graph if is_population_form(graph) else PassManager([FuseSynapses()]).run(graph)
    except IRError as e:
        if args.report:
            raise SnncError(f"--report {args.report}: cannot count costs: {e}") from None
        return None, str(e)
    target = simulator.target or graph_target(graph, "sim")
    cost = cost_model(populations, target, simulator.activity)
    raster = {name: p.spikes for name, p in simulator.activity.populations.items()}
    return build_report(cost, raster=raster), ""


#: What ``snnc export`` writes, by the suffix of -o: the module and the function (graph, path) that
#: write it; imported only when used.
EXPORTERS = {".nir": ("snnc.backends.nir", "write_nir"), ".onnx": ("snnc.export", "write_onnx")}


def cmd_export(args) -> int:
    _writable("-o", args.output, "an export", tuple(EXPORTERS))
    graph = _load(args)
    out = Path(args.output)
    module, function = EXPORTERS[out.suffix]
    write = getattr(importlib.import_module(module), function)
    atomic_write(out, lambda p: write(graph, p))
    print(f"exported {args.model} -> {out}")
    return 0


def cmd_targets(args) -> int:
    from snnc.targets import available_targets, load_target

    targets = [load_target(name) for name in available_targets()]
    listed = [{"name": t.name, "arithmetic": t.arithmetic, "description": t.description, "pipeline": t.pipeline}
              for t in targets]
    if args.format == "json":
        _print_json({"targets": listed})
        return 0
    for entry in listed:
        print(f"{entry['name']}  ({entry['arithmetic']} arithmetic)  {entry['description']}")
        print(f"    pipeline: {', '.join(entry['pipeline']) or '(none: the model runs as given)'}")
    return 0


def cmd_passes(args) -> int:
    from snnc.passes.pipeline import REGISTRY, flag

    listed = [{"name": name, "doc": entry.kind.__doc__.strip().splitlines()[0],
               "options": [flag(option) for option in entry.reads]} for name, entry in REGISTRY.items()]
    if args.format == "json":
        _print_json({"passes": listed})
        return 0
    width = max(len(entry["name"]) for entry in listed)
    for entry in listed:
        print(f"{entry['name'].ljust(width)}  {entry['doc']}")
        print(f"{''.ljust(width)}  options: {', '.join(entry['options']) or '(none)'}")
    return 0


def cmd_env(args) -> int:
    from snnc.runtime import lava_env

    with _progress(args, "Lava environment") as bar:
        python = lava_env.ensure_environment(log=bar.message, recreate=args.recreate, progress=bar)
    print(python)
    return 0


def _model_argument(parser: argparse.ArgumentParser) -> None:
    from snnc.frontend import FORMATS

    parser.add_argument("model", help="the model, one of " + "; ".join(f"{kind}: {what}" for kind, what in FORMATS.items()))


def build_parser() -> argparse.ArgumentParser:
    from snnc.targets import available_targets

    target_help = f"{', '.join(available_targets())} (see snnc targets), or the path of a target .toml file"
    parser = _Parser(prog="snnc", description="A compiler and toolchain for spiking neural networks.")
    parser.add_argument("--version", action="version", version=f"snnc {snnc.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    inspect = commands.add_parser("inspect", help="print a model's IR: nodes, shapes, parameters, edges",
                                  description="Print a deterministic dump of a model's IR or an artifact's.")
    _model_argument(inspect)
    inspect.add_argument("--format", choices=("text", "json", "dot"), default="text", help="dump format (default text)")
    inspect.add_argument("-o", "--output", help="write to this file instead of stdout")
    inspect.add_argument("--target", help=f"lower for this target first (its pipeline of passes): {target_help}")
    inspect.add_argument("--after", metavar="PASS", help="show the IR after this pass of the pipeline")
    inspect.add_argument("--mapping", action="store_true",
                         help="print how map-cores placed the populations: cores, fill of each limit, traffic, links")
    _pass_options(inspect)
    _model_options(inspect)
    inspect.set_defaults(handler=cmd_inspect)

    compile_ = commands.add_parser("compile", help="compile a model into an artifact directory for a target",
                                   description="Import, verify and emit a model for a target into an artifact directory.")
    _model_argument(compile_)
    compile_.add_argument("--target", default="sim", help=f"{target_help} (default sim)")
    compile_.add_argument("-o", "--output", required=True, help="artifact directory to write")
    _pass_options(compile_)
    compile_.add_argument("--dump-ir", metavar="DIR", help="write the IR as text before and after every pass into DIR")
    compile_.add_argument("--json", action="store_true",
                          help="print a JSON summary on stdout (files written, target, node counts, passes and "
                               "their warnings) instead of text")
    _model_options(compile_)
    compile_.set_defaults(handler=cmd_compile)

    run = commands.add_parser("run", help="simulate an artifact or model on inputs",
                              description="Run an artifact (or a model file) in the reference simulator and save "
                                          "each output node's spikes under its name in an .npz.")
    _model_argument(run)
    run.add_argument("--input", required=True,
                     help=".npy of shape (batch, T, *input_shape), or .npz keyed by input node name")
    run.add_argument("--steps", type=_number(int, lambda v: v >= 1, "a number of steps >= 1"), default=None,
                     help="steps to run (default: the input's T; more steps receive no input, fewer cut it)")
    run.add_argument("-o", "--output", required=True, help=".npz to write")
    run.add_argument("--probe", action="append", default=[], metavar="NODE",
                     help="also record NODE (repeatable): NODE:spikes, NODE:v, NODE:i for neurons, NODE:output otherwise")
    run.add_argument("--precision", choices=("float64", "float32"), default=None,
                     help="precision of the float simulation, --backend sim of a float model (default float64; "
                          "fixed-point targets run their own integers)")
    run.add_argument("--report", metavar="FILE",
                     help="write the latency and energy report: FILE.json, or FILE.html with plots")
    run.add_argument("--backend", choices=("sim", "lava", "spinnaker"), default="sim",
                     help="sim: snnc's simulator in the artifact's arithmetic (default); lava: the emitted Lava "
                          "program in the Lava environment (Loihi targets); spinnaker: the machine-level simulator "
                          "on the artifact's SpiNNaker machine data (spinnaker targets)")
    run.add_argument("--json", action="store_true",
                     help="print a JSON summary on stdout (files written, batch, steps, each output's shape and "
                          "sums, the cost summary) instead of text")
    _model_options(run)
    run.set_defaults(handler=cmd_run)

    export = commands.add_parser("export", help="export a model or artifact to NIR or ONNX",
                                 description="Write a model's IR as a NIR file that nir.read accepts (.nir), or "
                                             "as ONNX in snnc's ai.snnc operator domain, which snnc reads back "
                                             "as the same graph, annotations included (.onnx).")
    _model_argument(export)
    export.add_argument("-o", "--output", required=True,
                        help=f"file to write; its suffix chooses the format: {' or '.join(EXPORTERS)}")
    _model_options(export)
    export.set_defaults(handler=cmd_export)

    targets = commands.add_parser("targets", help="list the bundled targets",
                                  description="List each bundled target: its name, arithmetic, description and "
                                              "pipeline of passes. --target also takes the path of a .toml file "
                                              "written like snnc/targets/*.toml.")
    targets.add_argument("--format", choices=("text", "json"), default="text", help="listing format (default text)")
    targets.set_defaults(handler=cmd_targets)

    passes = commands.add_parser("passes", help="list the passes pipelines and --passes name",
                                 description="List each pass: its name, what it does, and the options it reads.")
    passes.add_argument("--format", choices=("text", "json"), default="text", help="listing format (default text)")
    passes.set_defaults(handler=cmd_passes)

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
        print(one_line(f"snnc: error: {e}"), file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        if debug:
            raise
        print(one_line(f"snnc: error: {e.filename or ''}: {e.strerror or e}"), file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a bug in snnc, not the user's input
        if debug:
            raise
        print(one_line(f"snnc: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)"),
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
