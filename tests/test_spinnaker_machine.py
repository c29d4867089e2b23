"""The SpiNNaker backend's machine data and the machine-level simulator that executes it.

The machine-level simulator reads only the emitted words (neuron data, synaptic rows, master
population tables, routing tables); its spikes equal the IR-level ``spinnaker`` simulation, which is
what shows that keys, tables, rows and delay extensions are right."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snnc import ir
from snnc.backends import compile_graph, lower
from snnc.backends.artifact import Artifact
from snnc.backends.spinnaker.machine import (MACHINE_JSON, ROW_HEADER_WORDS, MachineData, build_machine, decode_words,
                                             encode_words)
from snnc.errors import SnncError
from snnc.frontend.nir import load_nir
from snnc.runtime.simulator import simulate
from snnc.runtime.spinnaker_machine import MachineSimulator
from snnc.targets import load_target

from graphs import chain, lif, mlp, random_network, spikes

SPINNAKER = load_target("spinnaker")


def small_chips(tmp_path, neurons=8, cores_per_chip=3, board=(4, 3)):
    """The spinnaker target with small cores and chips, so that small networks span several chips."""
    text = SPINNAKER.path.read_text()
    for key, value in (("neurons", neurons), ("cores_per_tile", cores_per_chip), ("board_width", board[0]),
                       ("board_height", board[1])):
        start = text.index(f"\n{key} = {{ value = ") + len(f"\n{key} = {{ value = ")
        text = text[:start] + str(value) + text[text.index(",", start):]
    path = tmp_path / "small-spinnaker.toml"
    path.write_text(text.replace('name = "spinnaker"', 'name = "small-spinnaker"'))
    return load_target(str(path))


def machine_and_reference(graph, target, x):
    """The machine-level run and the IR-level spinnaker run of ``graph`` on ``x``: the outputs and
    every population's spikes (``NODE:spikes``) of each."""
    lowered, _ = lower(graph, target)
    machine = build_machine(lowered, target)
    simulator = MachineSimulator(machine)
    ours = simulator.run({lowered.inputs[0]: x}, x.shape[1])
    ours.update({f"{node}:spikes": values for node, values in simulator.spikes.items()})
    reference = simulate(lowered, x, probes=list(simulator.spikes), target=target)
    reference = {name: values for name, values in reference.items() if ":" not in name or name.endswith(":spikes")}
    return ours, reference, simulator, machine


def assert_same_spikes(ours, reference):
    assert set(ours) == set(reference)
    for name in reference:
        np.testing.assert_array_equal(ours[name], reference[name].astype(np.int8), err_msg=name)
    assert sum(values.sum() for values in reference.values()) > 0


# ----------------------------------------------------------------------------- words and rows


def test_synaptic_words_hold_weight_delay_type_and_index_as_spynnaker_packs_them():
    words = encode_words(np.array([0xFFFF, 1]), np.array([16, 3]), np.array([1, 0]), np.array([5, 255]), 8, 4)
    # 16 ticks are stored as 0 in 4 bits; the 16-slot ring reads that slot 16 ticks later
    assert words.tolist() == [0xFFFF << 16 | 0 << 9 | 1 << 8 | 5, 1 << 16 | 3 << 9 | 0 << 8 | 255]
    weight, delay, kind, index = decode_words(words, 8, 4)
    assert weight.tolist() == [0xFFFF, 1] and delay.tolist() == [16, 3]
    assert kind.tolist() == [1, 0] and index.tolist() == [5, 255]


def test_rows_and_master_population_table_by_hand():
    weight = np.array([[1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])  # 3 neurons from 2 inputs
    graph = chain(("in", ir.Input(shape=(2,))), ("fc", ir.Affine(weight=weight, delay=np.array([[2, 0], [0, 0], [0, 1]]))),
                  ("n", lif(shape=(3,))), ("out", ir.Output()))
    lowered, _ = lower(graph, SPINNAKER)
    machine = build_machine(lowered, SPINNAKER)
    population = next(v for v in machine.vertices if v.kind == "population")
    source = next(v for v in machine.vertices if v.kind == "spike_source")
    table = machine.population_tables[population.id]
    assert table.tolist() == [[source.key, source.mask, 0, 2, 2]]  # rows of 2 words, 2 source neurons
    fixed = lowered["fc"].annotations["spinnaker"]
    words = machine.synaptic_matrices[population.id].reshape(2, ROW_HEADER_WORDS + 2)
    assert words[:, :ROW_HEADER_WORDS].tolist() == [[0, 2, 0], [0, 2, 0]]
    expected = [sorted(encode_words(np.array([fixed["excitatory"][0, 0], fixed["excitatory"][2, 0]]), np.array([3, 1]),
                                    np.array([0, 0]), np.array([0, 2]), 8, 4).tolist()),
                sorted(encode_words(np.array([fixed["inhibitory"][1, 1], fixed["excitatory"][2, 1]]), np.array([1, 2]),
                                    np.array([1, 0]), np.array([1, 2]), 8, 4).tolist())]
    assert [sorted(row[ROW_HEADER_WORDS:].tolist()) for row in words] == expected


# ----------------------------------------------------------------------------- machine = IR, spike for spike


@pytest.mark.parametrize("seed", range(6))
def test_random_recurrent_networks_with_delays_match_the_ir(seed):
    rng = np.random.default_rng(seed)
    graph = random_network(rng)
    x = spikes(rng, (3, 60, *graph["in"].op.shape))
    ours, reference, simulator, _ = machine_and_reference(graph, SPINNAKER, x)
    assert_same_spikes(ours, reference)
    assert simulator.counts.population_table_misses == 0
    assert simulator.counts.packets_sent.sum() > 0


def test_a_network_over_many_chips_matches_the_ir(tmp_path):
    target = small_chips(tmp_path)
    rng = np.random.default_rng(4)
    graph = mlp(rng, sizes=(30, 40, 20, 10))
    x = spikes(rng, (2, 50, 30))
    ours, reference, simulator, machine = machine_and_reference(graph, target, x)
    assert_same_spikes(ours, reference)
    assert len({v.chip for v in machine.vertices}) == 5  # 10 population and 4 input cores, 3 per chip
    assert simulator.counts.hops > 0 and simulator.counts.router_lookups > simulator.counts.hops


def test_delays_beyond_sixteen_ticks_go_through_delay_extensions(tmp_path):
    rng = np.random.default_rng(1)
    graph = mlp(rng, sizes=(12, 10, 6))
    graph["fc0"].op.delay = rng.integers(0, 60, size=(10, 12))
    graph["fc1"].op.delay = rng.integers(0, 40, size=(6, 10))
    x = spikes(rng, (2, 120, 12), rate=0.2)
    ours, reference, simulator, machine = machine_and_reference(graph, small_chips(tmp_path), x)
    assert_same_spikes(ours, reference)
    extensions = [v for v in machine.vertices if v.kind == "delay_extension"]
    assert extensions and max(max(v.stages) for v in extensions) == 3  # 60 ticks: 16 * 3 + 12
    assert reference["out"].sum() > 0


def test_a_convolutional_network_over_two_cores_matches_the_ir():
    """Conv2d -> IF (324 neurons: two cores) -> SumPool2d -> Flatten -> Affine -> LIF, fused into rows."""
    rng = np.random.default_rng(0)
    graph = chain(("in", ir.Input(shape=(2, 9, 9))),
                  ("conv", ir.Conv2d(weight=rng.normal(0, 1, (4, 2, 3, 3)), bias=rng.normal(0, 0.1, 4), stride=1,
                                     padding=1, dilation=1)),
                  ("if1", ir.IF(v_gain=np.array(1.0), bias=np.array(0.0), v_threshold=np.array(1.0),
                                v_reset=np.array(0.0))),
                  ("sum", ir.SumPool2d(kernel_size=2, stride=2)), ("flat", ir.Flatten(start_dim=0, end_dim=-1)),
                  ("fc", ir.Affine(weight=rng.normal(0, 0.5, (6, 64)))), ("lif1", lif(shape=(6,))),
                  ("out", ir.Output()))
    x = spikes(rng, (2, 30, 2, 9, 9))
    ours, reference, _, machine = machine_and_reference(graph, SPINNAKER, x)
    assert_same_spikes(ours, reference)
    assert sum(v.node == "if1" for v in machine.vertices) == 2 and reference["out"].sum() > 0


@pytest.mark.parametrize("name", ["03_rnn/braille_noDelay_bias_zero.nir", "03_rnn/braille_noDelay_noBias_subtract.nir"])
def test_nir_paper_fixtures_match_the_ir(nir_paper, name):
    graph = load_nir(nir_paper / name)
    rng = np.random.default_rng(0)
    x = spikes(rng, (2, 40, *graph[graph.inputs[0]].op.shape), rate=0.1)
    try:
        ours, reference, *_ = machine_and_reference(graph, SPINNAKER, x)
    except SnncError as e:
        pytest.fail(f"{name} does not compile for spinnaker: {e}")
    assert_same_spikes(ours, reference)


# ----------------------------------------------------------------------------- the data is what runs


def mlp_machine(seed):
    """An MLP lowered for spinnaker, its machine data, and 30 steps of input."""
    rng = np.random.default_rng(seed)
    lowered, _ = lower(mlp(rng), SPINNAKER)
    return lowered, build_machine(lowered, SPINNAKER), spikes(rng, (1, 30, 40))


def test_the_machine_runs_its_routing_tables_not_the_ir():
    """Take an entry out of a router's table: the packets it carried no longer arrive."""
    lowered, machine, x = mlp_machine(2)
    reference = simulate(lowered, x)
    (chip, table), = machine.routing_tables.items()
    last_hidden = max(v.id for v in machine.vertices if v.node == "lif1")
    key = next(v.key for v in machine.vertices if v.id == last_hidden)
    machine.routing_tables[chip] = table[(table[:, 0] & table[:, 1]) != (key & table[:, 1])]
    with pytest.raises(SnncError, match="dropped|no route|matches no"):
        MachineSimulator(machine).run({"in": x}, 30)
    machine.routing_tables[chip] = table
    np.testing.assert_array_equal(MachineSimulator(machine).run({"in": x}, 30)["out"], reference["out"])


def test_the_machine_runs_its_synaptic_rows_not_the_ir():
    _, machine, x = mlp_machine(3)
    before = MachineSimulator(machine).run({"in": x}, 30)["out"]
    readout = next(v.id for v in machine.vertices if v.node == "lif2")
    words = machine.synaptic_matrices[readout]
    excitatory = ((words >> 16) > 0) & ((words >> 8) & 1 == 0)  # headers stay below 2**16
    words[excitatory] |= np.uint32(0xFFFF << 16)  # every excitatory weight at its largest
    after = MachineSimulator(machine).run({"in": x}, 30)["out"]
    assert after.sum() > before.sum()


def test_compiling_writes_the_machine_data_and_it_loads_back(tmp_path):
    rng = np.random.default_rng(5)
    graph = random_network(rng)
    out = compile_graph(graph, "spinnaker", tmp_path / "model.nir", tmp_path / "net")
    artifact = Artifact.open(out)
    description = json.loads((out / MACHINE_JSON).read_text())
    assert description["synaptic_word"] == {"weight_bits": 16, "delay_bits": 4, "type_bits": 1, "index_bits": 8}
    assert all(r["entries"] <= description["router_entries"] == 1024 for r in description["routing"])
    lowered = artifact.graph()
    machine = MachineData.load(out, lowered, SPINNAKER)
    x = spikes(rng, (2, 40, *graph["in"].op.shape))
    assert_same_spikes(MachineSimulator(machine).run({"in": x}, 40), simulate(lowered, x))


# ----------------------------------------------------------------------------- snnc run --backend spinnaker


def test_run_backend_spinnaker_gives_the_simulators_outputs_and_a_machine_report(tmp_path):
    from test_cli import snnc

    rng = np.random.default_rng(6)
    model = tmp_path / "net.snnir"
    ir.save(ir.verify(random_network(rng)), model)
    x = spikes(rng, (2, 50, *ir.load(model)["in"].op.shape))
    np.save(tmp_path / "x.npy", x)
    assert snnc("compile", model, "--target", "spinnaker", "-o", tmp_path / "art").returncode == 0
    runs = {}
    for backend in ("sim", "spinnaker"):
        result = snnc("run", tmp_path / "art", "--input", tmp_path / "x.npy", "-o", tmp_path / f"{backend}.npz",
                      "--backend", backend, "--report", tmp_path / f"{backend}.json")
        assert result.returncode == 0, result.stderr
        runs[backend] = (np.load(tmp_path / f"{backend}.npz")["out"], json.loads((tmp_path / f"{backend}.json").read_text()),
                         result.stdout)
    np.testing.assert_array_equal(runs["spinnaker"][0], runs["sim"][0])
    report, stdout = runs["spinnaker"][1], runs["spinnaker"][2]
    assert report["counts"]["spikes"] == runs["sim"][1]["counts"]["spikes"]  # the machine's activity, priced alike
    machine = report["machine"]
    assert machine["packets_sent"] > 0 and machine["router_lookups"] >= machine["packets_sent"]
    assert machine["population_table_misses"] == 0 and 0 < machine["routing_tables"]["largest"] <= 1024
    assert machine["energy_j"] == pytest.approx(sum(machine["energy_breakdown_j"].values()))
    assert machine["latency_s"] >= 50 * SPINNAKER.step_time_min_s
    assert "machine traffic" in stdout and "routing tables" in stdout
    refused = snnc("run", tmp_path / "art", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz", "--backend",
                   "spinnaker", "--probe", "hidden")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--probe" in refused.stderr
    loihi = snnc("compile", model, "--target", "loihi2", "-o", tmp_path / "loihi")
    assert loihi.returncode == 0
    wrong = snnc("run", tmp_path / "loihi", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz", "--backend", "spinnaker")
    assert wrong.returncode == 2 and "compile it with --target spinnaker" in wrong.stderr
