"""Reports of the cost model: a JSON-ready dict, a self-contained HTML page, a plain-text summary.

``build_report`` turns a ``CostReport`` into plain data (numbers, strings, lists), so that the JSON
file, the HTML page and the summary all read the same values and a report can be rendered again
from its JSON. The HTML page draws its charts as inline SVG by hand: no scripts, no external files,
no plotting library, so it opens anywhere and can be attached to a bug report as one file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from html import escape
from pathlib import Path

import numpy as np

from snnc.errors import SnncError
from snnc.files import atomic_write
from snnc.ir.printer import show_name
from snnc.runtime.cost import ENERGY_KINDS, PAPER_CONVENTION, CostReport

#: Most loaded links listed in a report.
TOP_LINKS = 20
#: Size limits of the spike raster kept in a report.
RASTER_NEURONS = 200
RASTER_STEPS = 500

_NO_HARDWARE = ("target {name!r} models no hardware: the report has counts (spikes, synaptic operations, neuron "
                "updates) and the paper convention, but no latency or energy")
_COLOURS = dict(zip(ENERGY_KINDS, ("#4e79a7", "#f28e2b", "#ffbe7d", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                                   "#b07aa1", "#ff9da7", "#9c755f"), strict=True))


def build_report(cost: CostReport, raster: Mapping[str, np.ndarray] | None = None) -> dict:
    """The report as plain data, every count and energy per sample.

    ``raster`` maps population names to spike counts of shape (T, *shape) (an ``Activity``'s
    ``spikes`` will do); it is cut to the first ``RASTER_STEPS`` steps and evenly spaced neurons,
    ``RASTER_NEURONS`` in all, so that the page stays small.
    """
    target = cost.target
    hardware = cost.energy_j is not None
    synaptic_ops = cost.total("synaptic_op")
    report = {
        "target": target.name,
        "target_description": target.description,
        "graph": cost.graph,
        "timesteps": cost.steps,
        "batch": cost.batch,
        "latency_s": cost.latency_s,
        "latency_per_step_s": None if not hardware else cost.latency_s / cost.steps,
        "step_time_s": None if not hardware else {
            "mean": float(cost.step_time_s.mean()), "max": float(cost.step_time_s.max()),
            "busiest_core_mean": float(cost.compute_time_s.mean()),
            "network_mean": float(cost.network_time_s.mean()), "barrier": cost.barrier_s,
            "minimum": target.step_time_min_s,
        },
        "energy_j": cost.total_energy_j,
        "energy_breakdown_j": None if not hardware else {kind: float(cost.energy_j[kind]) for kind in ENERGY_KINDS},
        "counts": {
            "synaptic_ops": synaptic_ops,
            "spikes": cost.total("spikes"),
            "input_spikes": float(sum(layer.counts["spikes"] for layer in cost.layers if layer.op == "Input")),
            "neuron_updates": cost.total("neuron_update_active") + cost.total("neuron_update_inactive"),
            "neuron_updates_active": cost.total("neuron_update_active"),
            "messages": float(sum(layer.counts["message_in"] for layer in cost.layers)) if hardware else None,
            "hops": float(sum(cost.total_hops().values())) if hardware else None,
            "hops_by_kind": cost.total_hops() if hardware else None,
            "cores": len(cost.cores) if hardware else None,
            "tiles": cost.tiles,
            "chips": cost.chips,
        },
        "layout": dict(target.chip) if hardware else None,
        "per_layer": [_layer(layer, cost.steps) for layer in cost.layers],
        "per_core": [_core(core) for core in cost.cores],
        "links": [{"from": list(link.source), "to": list(link.destination), "kind": link.kind,
                   "messages": link.messages, "max_per_step": link.max_per_step} for link in cost.links[:TOP_LINKS]],
        "paper_convention": _paper_convention(synaptic_ops, cost.macs),
        "warnings": list(cost.warnings),
        "sources": {**{key: source for key, source in target.sources.items()
                       if key.split(".")[0] in ("core", "chip", "costs")},
                    "paper_convention": PAPER_CONVENTION["source"]},
    }
    if not hardware:
        report["note"] = _NO_HARDWARE.format(name=target.name)
    if raster is not None:
        report["raster"] = _raster(raster)
    return report


def _layer(layer, steps: int) -> dict:
    energy = None if layer.energy_j is None else {kind: float(value) for kind, value in layer.energy_j.items()}
    return {"name": layer.name, "op": layer.op, "neurons": layer.neurons, "cores": len(layer.cores),
            "spikes": layer.counts["spikes"], "synaptic_ops": layer.counts["synaptic_op"],
            "rate_per_neuron_per_step": layer.rate, "counts": dict(layer.counts),
            "energy_j": energy, "energy_total_j": None if energy is None else sum(energy.values())}


def _core(core) -> dict:
    where = core.location
    return {"core": core.core, "chip": where.chip, "tile_x": where.tile_x, "tile_y": where.tile_y,
            "core_in_tile": where.core_in_tile,
            "pieces": [{"population": p.population, "start": p.start, "stop": p.stop} for p in core.pieces],
            "counts": dict(core.counts),
            "busy_time_per_step_s": {"mean": core.busy_mean_s, "max": core.busy_max_s},
            "energy_j": float(core.energy_j), "synapses": core.synapses, "fan_in_axons": core.fan_in_axons,
            "fan_out_axons": core.fan_out_axons}


def _paper_convention(synaptic_ops: float, macs: int) -> dict:
    snn = synaptic_ops * PAPER_CONVENTION["ac_energy_j"]
    ann = macs * PAPER_CONVENTION["mac_energy_j"]
    return {"synaptic_ops": synaptic_ops, "macs": macs, "snn_energy_j": snn, "ann_energy_j": ann,
            "ratio": ann / snn if snn else None, "ratio_means": "ann_energy_j / snn_energy_j",
            "ac_energy_j": PAPER_CONVENTION["ac_energy_j"], "mac_energy_j": PAPER_CONVENTION["mac_energy_j"],
            "note": PAPER_CONVENTION["note"]}


def _raster(raster: Mapping[str, np.ndarray]) -> dict:
    arrays = {name: np.asarray(spikes).reshape(np.shape(spikes)[0], -1) for name, spikes in raster.items()}
    total = sum(a.shape[1] for a in arrays.values())
    steps = max((a.shape[0] for a in arrays.values()), default=0)
    populations = []
    for name, spikes in arrays.items():
        n = spikes.shape[1]
        keep = max(1, round(RASTER_NEURONS * n / total)) if total > RASTER_NEURONS else n
        shown = np.unique(np.linspace(0, n - 1, min(n, keep)).round().astype(int))
        window = spikes[:RASTER_STEPS, shown]
        t, row = np.nonzero(window)
        populations.append({"name": name, "neurons": n, "shown": shown.tolist(),
                            "events": [[int(a), int(b), float(window[a, b])] for a, b in zip(t, row, strict=True)]})
    return {"steps": min(steps, RASTER_STEPS), "total_steps": steps, "populations": populations}


# ----------------------------------------------------------------------------- text


def _si(value: float | None, unit: str) -> str:
    """``value`` with an SI prefix: 1.23e-6 s -> '1.23 us'."""
    if value is None:
        return "n/a"
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1e0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _summary_rows(report: dict) -> list[tuple[str, str]]:
    """The numbers a reader looks at first, shared by the text summary and the HTML page."""
    counts, paper = report["counts"], report["paper_convention"]
    rows = [("target", f"{report['target']} ({report['target_description']})"),
            ("graph", show_name(report["graph"]) if report["graph"] else "(unnamed)"),
            ("steps x batch", f"{report['timesteps']} x {report['batch']}")]
    if report["latency_s"] is not None:
        step = report["step_time_s"]
        rows += [("latency per sample", f"{_si(report['latency_s'], 's')} ({_si(report['latency_per_step_s'], 's')} "
                                        f"per step: busiest core {_si(step['busiest_core_mean'], 's')}, network "
                                        f"{_si(step['network_mean'], 's')}, barrier {_si(step['barrier'], 's')})"),
                 ("energy per sample", _si(report["energy_j"], "J")),
                 ("top energy", ", ".join(f"{kind} {share:.0%}" for kind, share in _top_energy(report))),
                 ("cores", f"{counts['cores']} (tiles {counts['tiles']}, chips {counts['chips']})")]
    else:
        rows.append(("latency, energy", f"n/a: {report['note']}"))
    rows += [("spikes per sample", f"{counts['spikes']:.6g} (inputs {counts['input_spikes']:.6g})"),
             ("synaptic ops per sample", f"{counts['synaptic_ops']:.6g}"),
             ("paper convention", f"SNN {_si(paper['snn_energy_j'], 'J')} vs ANN {_si(paper['ann_energy_j'], 'J')}"
                                  + (f" (ANN/SNN {paper['ratio']:.3g})" if paper["ratio"] is not None else "")
                                  + "; ignores memory access and bit width")]
    machine = report.get("machine")
    if machine is not None:  # run --backend spinnaker: what the machine-level simulator executed
        tables = machine["routing_tables"]
        rows += [("SpiNNaker machine", f"{machine['chips']} chips, cores {machine['cores']}"),
                 ("machine traffic", f"{machine['packets_sent']:.6g} packets, {machine['router_lookups']:.6g} router "
                                     f"look-ups, {machine['hops']:.6g} hops, {machine['synaptic_words']:.6g} synaptic "
                                     f"words per sample"),
                 ("routing tables", f"largest {tables['largest']} of {tables['limit']} entries"),
                 ("machine latency, energy", f"{_si(machine['latency_s'], 's')}, {_si(machine['energy_j'], 'J')} "
                                             "per sample")]
    return rows


def _top_energy(report: dict, count: int = 3) -> list[tuple[str, float]]:
    breakdown, total = report["energy_breakdown_j"], report["energy_j"]
    ranked = sorted(breakdown.items(), key=lambda item: -item[1])[:count]
    return [(kind, value / total if total else 0.0) for kind, value in ranked]


def summary_table(report: dict) -> str:
    """A short plain-text table of the report's headline numbers, as ``snnc run`` prints it."""
    rows = _summary_rows(report)
    width = max(len(label) for label, _ in rows)
    lines = [f"  {label.ljust(width)}  {value}" for label, value in rows]
    lines += [f"  warning: {warning}" for warning in _warnings(report)]
    return "\n".join(["cost model (per sample)", *lines]) + "\n"


def _warnings(report: dict) -> list[str]:
    return [*report["warnings"], *report.get("machine", {}).get("warnings", [])]


# ----------------------------------------------------------------------------- HTML

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border-bottom: 1px solid #ddd; padding: 0.2em 0.8em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.summary td, .text td, .text th { text-align: left; }
.warning { color: #a00; }
svg text { font: 11px system-ui, sans-serif; }
"""


def _html(report: dict) -> str:
    title = f"snnc cost report: {report['graph'] or 'graph'} on {report['target']}"
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body>", f"<h1>{escape(title)}</h1>",
             "<table class='summary'>" + "".join(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>"
                                                 for label, value in _summary_rows(report)) + "</table>"]
    parts += [f"<p class='warning'>warning: {escape(w)}</p>" for w in _warnings(report)]
    parts.append(f"<p>{escape(report['paper_convention']['note'])}</p>")
    if report["energy_breakdown_j"] is not None:
        parts += ["<h2>Energy per sample by layer and kind</h2>", _energy_chart(report),
                  "<h2>Core load: mean busy time per step</h2>", _core_heatmap(report)]
    if "raster" in report:
        parts += ["<h2>Spike raster</h2>", _raster_chart(report["raster"])]
    parts += ["<h2>Layers</h2>", _layer_table(report)]
    if report["per_core"]:
        parts += ["<h2>Cores</h2>", _table(
            ["core", "chip", "tile", "pieces", "synaptic ops", "messages in", "busy mean", "busy max", "energy"],
            [[c["core"], c["chip"], f"({c['tile_x']}, {c['tile_y']}) #{c['core_in_tile']}",
              ", ".join(f"{p['population']}[{p['start']}:{p['stop']}]" for p in c["pieces"]),
              f"{c['counts']['synaptic_op']:.4g}", f"{c['counts']['message_in']:.4g}",
              _si(c["busy_time_per_step_s"]["mean"], "s"), _si(c["busy_time_per_step_s"]["max"], "s"),
              _si(c["energy_j"], "J")] for c in report["per_core"]])]
    if report["links"]:
        parts += ["<h2>Most loaded links</h2>", _table(
            ["from (chip, x, y)", "to (chip, x, y)", "kind", "messages", "max per step"],
            [[tuple(link["from"]), tuple(link["to"]), link["kind"], f"{link['messages']:.4g}",
              f"{link['max_per_step']:.4g}"] for link in report["links"]])]
    parts += ["<h2>Sources</h2>", _table(["number", "source"], list(report["sources"].items()), "text"),
              "</body></html>\n"]
    return "\n".join(parts)


def _table(header: list[str], rows: list[list], css_class: str = "") -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table class='{css_class}'><tr>{head}</tr>{body}</table>"


def _layer_table(report: dict) -> str:
    return _table(["layer", "op", "neurons", "cores", "spikes", "rate / neuron / step", "synaptic ops received",
                   "energy"],
                  [[layer["name"], layer["op"], layer["neurons"], layer["cores"], f"{layer['spikes']:.6g}",
                    f"{layer['rate_per_neuron_per_step']:.4g}", f"{layer['synaptic_ops']:.6g}",
                    _si(layer["energy_total_j"], "J")] for layer in report["per_layer"]])


def _energy_chart(report: dict) -> str:
    """Horizontal stacked bars, one per layer and one for static energy, with a legend."""
    bars = [(layer["name"], layer["energy_j"]) for layer in report["per_layer"]]
    bars.append(("static (chips in use)", {"static": report["energy_breakdown_j"]["static"]}))
    largest = max((sum(energy.values()) for _, energy in bars), default=0.0) or 1.0
    label_width, chart_width, bar, gap = 180, 560, 18, 6
    out = []
    for i, (name, energy) in enumerate(bars):
        y = i * (bar + gap)
        out.append(f"<text x='{label_width - 6}' y='{y + 13}' text-anchor='end'>{escape(name)}</text>")
        x = float(label_width)
        for kind in ENERGY_KINDS:
            value = energy.get(kind, 0.0)
            if value > 0:
                width = chart_width * value / largest
                out.append(f"<rect x='{x:.2f}' y='{y}' width='{width:.2f}' height='{bar}' fill='{_COLOURS[kind]}'>"
                           f"<title>{escape(name)}: {kind} {escape(_si(value, 'J'))}</title></rect>")
                x += width
        out.append(f"<text x='{x + 4:.2f}' y='{y + 13}'>{escape(_si(sum(energy.values()), 'J'))}</text>")
    x, y = float(label_width), len(bars) * (bar + gap) + 12
    for kind in ENERGY_KINDS:
        if x + 7 * len(kind) > label_width + chart_width:
            x, y = float(label_width), y + 16
        out.append(f"<rect x='{x:.0f}' y='{y}' width='10' height='10' fill='{_COLOURS[kind]}'/>"
                   f"<text x='{x + 13:.0f}' y='{y + 9}'>{kind}</text>")
        x += 13 + 7 * len(kind) + 12
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_width + chart_width + 90}' height='{y + 20}'>"
            + "".join(out) + "</svg>")


def _core_heatmap(report: dict) -> str:
    """The chips in use as their meshes of tiles (y down), each tile a small grid of its cores,
    shaded by mean busy time per step relative to the busiest core."""
    layout, cores = report["layout"], report["per_core"]
    per_tile = layout["cores_per_tile"]
    columns = math.ceil(math.sqrt(per_tile))
    rows = math.ceil(per_tile / columns)
    cell = max(6, 48 // columns)
    tile_w, tile_h = columns * cell + 6, rows * cell + 6
    chips = sorted({c["chip"] for c in cores})
    busiest = max(c["busy_time_per_step_s"]["mean"] for c in cores) or 1.0
    load = {c["core"]: c for c in cores}
    chip_w, chip_h = layout["mesh_width"] * tile_w + 20, layout["mesh_height"] * tile_h + 30
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{len(chips) * chip_w + 10}' height='{chip_h}'>"]
    for n, chip in enumerate(chips):
        left = n * chip_w + 5
        out.append(f"<text x='{left}' y='12'>chip {chip}</text>")
        for ty in range(layout["mesh_height"]):
            for tx in range(layout["mesh_width"]):
                x0, y0 = left + tx * tile_w, 18 + ty * tile_h
                out.append(f"<rect x='{x0}' y='{y0}' width='{tile_w - 2}' height='{tile_h - 2}' fill='#f4f4f4' "
                           f"stroke='#bbb'><title>tile ({tx}, {ty})</title></rect>")
                first = ((chip * layout["mesh_height"] + ty) * layout["mesh_width"] + tx) * per_tile
                for k in range(per_tile):
                    core = load.get(first + k)
                    share = 0.0 if core is None else core["busy_time_per_step_s"]["mean"] / busiest
                    fill = "#fff" if core is None else f"rgb(255,{255 - int(215 * share)},{255 - int(235 * share)})"
                    tip = (f"core {first + k}: idle" if core is None else
                           f"core {first + k}: {_si(core['busy_time_per_step_s']['mean'], 's')} per step, "
                           + ", ".join(p["population"] for p in core["pieces"]))
                    out.append(f"<rect x='{x0 + 2 + (k % columns) * cell}' y='{y0 + 2 + (k // columns) * cell}' "
                               f"width='{cell - 1}' height='{cell - 1}' fill='{fill}' stroke='#999'>"
                               f"<title>{escape(tip)}</title></rect>")
    out.append("</svg>")
    return "".join(out) + (f"<p>White: idle or unused; darkest: {escape(_si(busiest, 's'))} per step (the busiest "
                           "core). Hover over a core for its numbers.</p>")


def _raster_chart(raster: dict) -> str:
    """One row per shown neuron, one column per step; each population's spikes are one SVG path."""
    populations = raster["populations"]
    rows = sum(len(p["shown"]) for p in populations)
    steps = max(raster["steps"], 1)
    label_width, width = 140, 720
    dx, dy = width / steps, 3
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_width + width + 10}' "
           f"height='{rows * dy + len(populations) * 4 + 30}'>"]
    top = 0
    for i, population in enumerate(populations):
        height = len(population["shown"]) * dy
        colour = list(_COLOURS.values())[i % len(_COLOURS)]
        out.append(f"<text x='{label_width - 6}' y='{top + min(height, 12)}' text-anchor='end'>"
                   f"{escape(population['name'])}</text>")
        path = "".join(f"M{label_width + t * dx:.1f} {top + row * dy}h{max(dx, 1):.1f}v{dy}h-{max(dx, 1):.1f}z"
                       for t, row, _ in population["events"])
        if path:
            out.append(f"<path d='{path}' fill='{colour}'/>")
        out.append(f"<line x1='{label_width}' x2='{label_width + width}' y1='{top + height + 2}' "
                   f"y2='{top + height + 2}' stroke='#ccc'/>")
        top += height + 4
    shown = f"first {raster['steps']} of {raster['total_steps']} steps" if raster["steps"] < raster["total_steps"] \
        else f"{raster['steps']} steps"
    out.append(f"<text x='{label_width}' y='{top + 16}'>{escape(shown)}; evenly spaced neurons of each population, "
               "spikes summed over the batch</text></svg>")
    return "".join(out)


# ----------------------------------------------------------------------------- files


#: How a report is written, by the suffix of its file.
RENDERERS = {".json": lambda report: json.dumps(report, indent=2) + "\n", ".html": _html}


def write_report(report: dict, path) -> Path:
    """Write ``report`` as ``.json`` (indent 2) or ``.html`` (one self-contained page), atomically:
    through a temporary file in the same directory, so that a failure leaves no partial file."""
    path = Path(path)
    render = RENDERERS.get(path.suffix)
    if render is None:
        raise SnncError(f"{path}: a report is written as .json or .html, not {path.suffix or 'a file without suffix'}")
    text = render(report)
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
