"""Reports: the JSON keys and numbers, the self-contained HTML page, the text summary, atomic files."""

import json

import numpy as np
import pytest

from snnc.errors import SnncError
from snnc.runtime.cost import ENERGY_KINDS, cost_model
from snnc.runtime.report import RASTER_NEURONS, RASTER_STEPS, build_report, summary_table, write_report
from snnc.targets import load_target

from test_cost import activity, populations, toy_target

W1 = [[1, 0], [1, 1], [0, 1]]
W2 = [[1, 0, 1], [0, 1, 0]]


def network(name="a"):
    """in (2) -> NAME (3) -> b (2) with a known spike pattern; see test_cost for its counts."""
    graph = populations({"in": 2, name: 3, "b": 2}, {("in", name): W1, (name, "b"): W2})
    record = activity(**{"in": ([[1, 0], [1, 1], [0, 0]], None),
                         name: ([[1, 0, 0], [0, 1, 1], [1, 1, 1]], [[1, 1, 0], [1, 1, 1], [1, 1, 1]]),
                         "b": ([[0, 0], [1, 0], [0, 1]], [[1, 0], [1, 1], [1, 1]])})
    return graph, record


@pytest.fixture
def report():
    graph, record = network()
    return build_report(cost_model(graph, toy_target(), record),
                        raster={name: p.spikes for name, p in record.populations.items()})


def test_json_report_has_every_key_and_per_sample_numbers(report, tmp_path):
    path = write_report(report, tmp_path / "cost.json")
    data = json.loads(path.read_text())
    for key in ("target", "timesteps", "batch", "latency_s", "latency_per_step_s", "energy_j", "energy_breakdown_j",
                "counts", "per_layer", "per_core", "links", "paper_convention", "sources"):
        assert key in data, key
    assert (data["target"], data["timesteps"], data["batch"]) == ("toy", 3, 1)
    assert list(data["energy_breakdown_j"]) == list(ENERGY_KINDS)
    assert data["energy_j"] == pytest.approx(sum(data["energy_breakdown_j"].values()), rel=1e-12)
    assert data["latency_per_step_s"] == pytest.approx(data["latency_s"] / 3)
    counts = data["counts"]
    assert (counts["synaptic_ops"], counts["spikes"], counts["input_spikes"]) == (12, 8, 3)
    assert (counts["neuron_updates"], counts["messages"], counts["hops"], counts["cores"]) == (15, 9, 0, 2)
    layer = data["per_layer"][1]
    assert (layer["name"], layer["neurons"], layer["cores"]) == ("a", 3, 1)
    assert (layer["spikes"], layer["synaptic_ops"]) == (6, 6)
    assert layer["rate_per_neuron_per_step"] == pytest.approx(6 / 9)
    assert set(layer["energy_j"]) == set(ENERGY_KINDS) - {"static"}
    core = data["per_core"][0]
    assert (core["core"], core["chip"], core["tile_x"], core["tile_y"], core["core_in_tile"]) == (0, 0, 0, 0, 0)
    assert core["pieces"] == [{"population": "a", "start": 0, "stop": 3}]
    assert core["busy_time_per_step_s"]["max"] == pytest.approx(79e-9)
    assert data["sources"]["core.neurons"] == "toy" and "Horowitz" in data["sources"]["paper_convention"]


def test_paper_convention_is_beside_the_hardware_numbers(report):
    paper = report["paper_convention"]
    assert paper["snn_energy_j"] == pytest.approx(12 * 0.9e-12)
    assert paper["macs"] == 4 + 3  # non-zero weights of both Affines: one pass of the equivalent ANN
    assert paper["ann_energy_j"] == pytest.approx(7 * 4.6e-12)
    assert paper["ratio"] == pytest.approx(7 * 4.6 / (12 * 0.9))
    assert "memory access" in paper["note"] and "STEP" in paper["note"] and "never instead" in paper["note"]
    assert report["energy_j"] is not None  # shown beside the hardware model


def test_sim_target_report_has_no_latency_or_energy(tmp_path):
    graph, record = network()
    report = build_report(cost_model(graph, load_target("sim"), record))
    assert report["latency_s"] is None and report["energy_j"] is None and report["energy_breakdown_j"] is None
    assert report["latency_per_step_s"] is None and report["counts"]["cores"] is None
    assert "models no hardware" in report["note"]
    assert report["counts"]["synaptic_ops"] == 12 and report["paper_convention"]["snn_energy_j"] > 0
    html = write_report(report, tmp_path / "sim.html").read_text()
    assert "models no hardware" in html
    json.loads(write_report(report, tmp_path / "sim.json").read_text())
    assert "n/a" in summary_table(report)


def test_html_is_self_contained_svg_with_escaped_names(tmp_path):
    graph, record = network(name="<script>")
    report = build_report(cost_model(graph, toy_target(), record),
                          raster={name: p.spikes for name, p in record.populations.items()})
    html = write_report(report, tmp_path / "cost.html").read_text()
    assert html.count("<svg") == 3  # energy by layer, core heatmap, raster
    assert "&lt;script&gt;" in html and "<script" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    for kind in ENERGY_KINDS:
        assert kind in html


def test_raster_is_subsampled():
    rng = np.random.default_rng(0)
    raster = {"big": rng.random((900, 1000)) < 0.01, "small": rng.random((900, 10)) < 0.5}
    graph, record = network()
    shown = build_report(cost_model(graph, toy_target(), record), raster=raster)["raster"]
    assert shown["steps"] == RASTER_STEPS and shown["total_steps"] == 900
    rows = {p["name"]: p["shown"] for p in shown["populations"]}
    assert sum(map(len, rows.values())) <= RASTER_NEURONS + 1 and len(rows["small"]) >= 1
    assert rows["big"][0] == 0 and rows["big"][-1] == 999
    big = shown["populations"][0]
    expected = np.asarray(raster["big"])[:RASTER_STEPS][:, rows["big"]]
    assert len(big["events"]) == expected.sum() and all(t < RASTER_STEPS for t, _, _ in big["events"])


def test_summary_table_lists_the_headline_numbers(report):
    text = summary_table(report)
    for needle in ("toy", "3 x 1", "latency per sample", "per step", "energy per sample", "top energy",
                   "2 (tiles 1, chips 1)", "synaptic ops per sample  12", "paper convention"):
        assert needle in text, needle


def test_unknown_suffix_is_refused_naming_the_path(report, tmp_path):
    with pytest.raises(SnncError, match=r"cost\.txt: a report is written as \.json or \.html"):
        write_report(report, tmp_path / "cost.txt")
    assert list(tmp_path.iterdir()) == []


def test_reports_are_written_atomically(report, tmp_path, monkeypatch):
    path = tmp_path / "cost.json"
    path.write_text("old")
    write_report(report, path)
    assert [p.name for p in tmp_path.iterdir()] == ["cost.json"]  # no temporary file left
    written = path.read_text()

    def fail(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr("snnc.files.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(dict(report, target="other"), path)
    assert path.read_text() == written  # the earlier report is intact
    assert [p.name for p in tmp_path.iterdir()] == ["cost.json"]
