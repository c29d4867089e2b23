"""Tests of the quantize-spinnaker mapping and the SpiNNaker fixed-point simulation.

The vectorized kernels are checked against an independent reference written here straight from
sPyNNaker's C code (the lines quoted in snnc/runtime/spinnaker.py): plain Python integers, one
neuron and one synapse at a time, ring buffers of 16 slots, the tick in sPyNNaker's order.
"""

import subprocess
import sys

import numpy as np
import pytest

from snnc import ir
from snnc.backends import lower
from snnc.errors import IRError
from snnc.runtime.simulator import Simulator, simulate
from snnc.targets import load_target

from graphs import chain, cuba_chain, lif, mlp, random_network, spikes

SPINNAKER = load_target("spinnaker")


# -- the reference: sPyNNaker's C, one integer at a time


def s32(value):
    """An accum result: + and - wrap at 32 bits."""
    return (value + 2 ** 31) % 2 ** 32 - 2 ** 31


def mulk(a, b):
    """accum * accum, gcc/config/arm/arm-fixed.md mulsa3: smull, then (lo >> 15) | (hi << 17)."""
    return s32((a * b) >> 15)


def decay_s1615(x, decay):
    """neuron/decay.h: (int64_t) bitsk(x) * (int64_t) bitsulr(decay) >> 32."""
    return (x * decay) >> 32


class Neuron:
    """neuron_impl_standard.h with the LIF (or IF_trunc) model, a static threshold, exponential or
    delta synapses and the current or delta input type, for one neuron."""

    def __init__(self, fixed, index):
        self.model = fixed["model"]
        self.p = {k: int(np.ravel(v)[index]) if np.ndim(v) and k != "ring_buffer_shifts" else v
                  for k, v in fixed.items()}
        self.exc = self.inh = self.v = 0

    def add_input(self, synapse_type, ring_value):
        """neuron_transfer: synapse_row_convert_weight_to_input, then the synapse type's add_input."""
        value = s32(ring_value << int(self.p["ring_buffer_shifts"][synapse_type]))
        name = ("exc", "inh")[synapse_type]
        if self.model == "IF_curr_exp":  # add_input_exp
            value = decay_s1615(value, self.p[f"{name}_init"])
        setattr(self, name, s32(getattr(self, name) + value))

    def update(self):
        """One neuron_impl_do_timestep_update; returns (spike, exc, inh) as recorded."""
        p = self.p
        exc, inh = self.exc, self.inh  # gsyn_exc, gsyn_inh
        if self.model != "IF_curr_exp":  # input_type_delta.h
            exc, inh = mulk(exc, p["input_scale"]), mulk(inh, p["input_scale"])
        input_this_timestep = s32(s32(s32(s32(exc - inh) + 0) + p["i_offset"]) + 0)
        if self.model == "IF_trunc_delta":  # neuron_model_if_trunc.h
            self.v = s32(mulk(input_this_timestep, p["r_membrane"]) + self.v)
            if self.v < p["v_reset"]:
                self.v = p["v_reset"]
        else:  # neuron_model_lif_impl.h lif_neuron_closed_form
            alpha = s32(mulk(input_this_timestep, p["r_membrane"]) + p["v_rest"])
            self.v = s32(alpha - mulk(p["exp_tc"], s32(alpha - self.v)))
        spike = self.v >= p["v_thresh"]  # threshold_type_static.h
        if spike:
            self.v = p["v_reset"]
        recorded = (spike, self.exc, self.inh)
        if self.model == "IF_curr_exp":  # exp_shaping
            self.exc, self.inh = decay_s1615(self.exc, p["exc_decay"]), decay_s1615(self.inh, p["inh_decay"])
        else:  # delta shaping
            self.exc = self.inh = 0
        return recorded


def reference(lowered, x):
    """Run one sample (x: T x inputs) as sPyNNaker's cores do; returns spikes and traces per population."""
    slots = 16  # SYNAPSE_DELAY_MASK + 1
    populations = {n.name: [Neuron(n.annotations["spinnaker"], i) for i in range(int(np.prod(n.output_shape)))]
                   for n in lowered if n.op.stateful}
    rings = {name: [[[0] * len(cells) for _ in range(2)] for _ in range(slots)] for name, cells in populations.items()}
    projections = [(lowered.predecessors(n.name)[0], lowered.successors(n.name)[0], n.annotations["spinnaker"])
                   for n in lowered if isinstance(n.op, ir.Affine)]
    steps = x.shape[0]
    record = {f"{name}:{what}": np.zeros((steps, len(cells)), np.int64)
              for name, cells in populations.items() for what in ("spikes", "exc", "inh", "v")}
    for t in range(steps):
        # timer_callback: process_ring_buffers hands this tick's slot to neuron_transfer.
        for name, cells in populations.items():
            for synapse_type in range(2):
                for i, cell in enumerate(cells):
                    value = rings[name][t % slots][synapse_type][i]
                    if value > 0:
                        cell.add_input(synapse_type, value)
                    rings[name][t % slots][synapse_type][i] = 0
        # background_callback: neuron_do_timestep_update.
        fired = {"in": [j for j, s in enumerate(x[t]) if s]}
        for name, cells in populations.items():
            fired[name] = []
            for i, cell in enumerate(cells):
                spike, exc, inh = cell.update()
                for what, value in (("spikes", int(spike)), ("exc", exc), ("inh", inh), ("v", cell.v)):
                    record[f"{name}:{what}"][t, i] = value
                if spike:
                    fired[name].append(i)
        # The spikes of this tick: process_fixed_synapses into slot (t + delay) & mask, saturating.
        for source, target, synapses in projections:
            for j in fired[source]:
                for synapse_type, weights in enumerate((synapses["excitatory"], synapses["inhibitory"])):
                    for i in range(weights.shape[0]):
                        if weights[i, j]:
                            slot = rings[target][(t + int(synapses["delays"][i, j])) % slots][synapse_type]
                            accumulation = slot[i] + int(weights[i, j])
                            slot[i] = 0xFFFF if accumulation & 0x10000 else accumulation
    return record


def assert_reference_matches(lowered, x):
    populations = [n.name for n in lowered if n.op.stateful]
    ours = simulate(lowered, x, probes=populations)
    for b in range(x.shape[0]):
        theirs = reference(lowered, x[b].astype(np.int64))
        for key, value in theirs.items():
            np.testing.assert_array_equal(ours[key][b], value, err_msg=f"{key}, sample {b}")
    return ours


# -- equivalence with the reference


@pytest.mark.parametrize("seed", range(6))
def test_kernels_equal_the_reference_on_random_recurrent_networks_with_delays(seed):
    rng = np.random.default_rng(seed)
    lowered, _ = lower(random_network(rng), SPINNAKER)
    assert any(n.annotations["spinnaker"]["delays"].max() > 1 for n in lowered if isinstance(n.op, ir.Affine))
    ours = assert_reference_matches(lowered, spikes(rng, (2, 40, lowered["in"].output_shape[0])))
    assert ours["out"].sum() > 0 and ours["hidden:spikes"].sum() > 0, "silent network: the test would prove little"


def test_all_three_models_are_exercised():
    lowered = [lower(random_network(np.random.default_rng(seed)), SPINNAKER)[0] for seed in range(6)]
    models = {graph["hidden"].annotations["spinnaker"]["model"] for graph in lowered}
    assert models == {"IF_curr_exp", "IF_curr_delta", "IF_trunc_delta"}


def test_saturation_and_wrap_equal_the_reference():
    """Integers at the edges: ring buffers saturate at 0xFFFF, and the shifted slot, the current and
    the exponential synaptic input wrap at 32 bits, exactly as in the reference."""
    graph = chain(("in", ir.Input(shape=(60,))), ("fc", ir.Affine(weight=np.full((4, 60), 2.0))),
                  ("n", lif(v_decay=0.99, shape=(4,))), ("fc2", ir.Affine(weight=np.full((3, 4), 1.0))),
                  ("m", ir.CubaLIF(i_decay=np.array(0.9), i_gain=np.array(1.0), v_decay=np.array(0.99),
                                   v_gain=np.array(1.0), bias=np.array(0.0), v_threshold=np.array(1.0),
                                   v_reset=np.array(0.0))), ("out", ir.Output()))
    lowered, _ = lower(graph, SPINNAKER)
    fc, n = lowered["fc"].annotations["spinnaker"], lowered["n"].annotations["spinnaker"]
    fc["excitatory"][:] = 40000  # 60 spikes saturate the slot at 0xFFFF
    fc["inhibitory"][:2] = 40000
    n["ring_buffer_shifts"][:] = (15, 16)  # 0xFFFF << 16 wraps negative; exc - inh then wraps too
    lowered["fc2"].annotations["spinnaker"]["excitatory"][:] = 0xFFFF
    lowered["m"].annotations["spinnaker"]["ring_buffer_shifts"][:] = 15
    ours = assert_reference_matches(lowered, np.ones((1, 30, 60), np.int64))
    assert ours["n:exc"].max() == 0xFFFF << 15 and ours["n:inh"].min() < 0
    assert ours["n:spikes"][:, 1:, 2:].all() and ours["m:exc"].min() < 0 < ours["m:exc"].max()


# -- the mapping


def test_quantized_parameters_fit_spinnakers_formats():
    lowered, reports = lower(random_network(np.random.default_rng(0)), SPINNAKER)
    for node in lowered:
        fixed = node.annotations.get("spinnaker")
        if isinstance(node.op, ir.Affine):
            assert fixed["excitatory"].dtype == fixed["inhibitory"].dtype == np.uint16
            assert not (fixed["excitatory"].astype(bool) & fixed["inhibitory"].astype(bool)).any()
            assert 1 <= fixed["delays"].min() and fixed["delays"].max() <= SPINNAKER.formats["max_delay"]
        elif node.op.stateful:
            assert all(0 <= s <= 16 for s in fixed["ring_buffer_shifts"])
            assert fixed["v_thresh"].dtype == np.int32 and fixed["r_membrane"] == 1 << 15
    assert set(reports["quantize-spinnaker"]["populations"]) == {"hidden", "readout"}


def test_decays_map_to_s1615_and_u032():
    graph = cuba_chain()
    lowered, reports = lower(graph, SPINNAKER)
    fixed = lowered["n"].annotations["spinnaker"]
    assert fixed["model"] == "IF_curr_exp"
    assert (fixed["exp_tc"] == round(0.9 * 2 ** 15)).all() and (fixed["exc_decay"] == 0.75 * 2 ** 32).all()
    # init = (tau_syn / dt) (1 - decay) with decay = exp(-dt / tau_syn)
    assert np.allclose(fixed["exc_init"] / 2 ** 32, 0.25 / -np.log(0.75))
    tau_m = reports["quantize-spinnaker"]["populations"]["n"]["pynn"]["tau_m"]
    assert tau_m[0] == pytest.approx(-1 / np.log(0.9), rel=1e-4)  # ms, for dt = 1 ms


def test_the_irs_strict_threshold_holds_on_the_grid():
    """sPyNNaker fires at V >= threshold; a v that reaches the IR's threshold exactly must not fire."""
    def run(weight):
        graph = chain(("in", ir.Input(shape=(1,))), ("fc", ir.Affine(weight=np.array([[weight]]))),
                      ("n", lif(v_decay=0.0, v_threshold=1.0, shape=(1,))), ("out", ir.Output()))
        lowered, _ = lower(graph, SPINNAKER)
        return simulate(lowered, np.ones((1, 3, 1)))["out"].sum(), simulate(graph, np.ones((1, 3, 1)))["out"].sum()

    assert run(1.0) == (0, 0)
    assert run(1.001) == (2, 3)  # the first step is the synapse's tick of latency


def test_a_spike_reaches_v_after_delay_plus_one_ticks():
    graph = chain(("in", ir.Input(shape=(1,))), ("fc", ir.Affine(weight=np.ones((1, 1)), delay=np.full((1, 1), 2))),
                  ("n", lif(shape=(1,))), ("out", ir.Output()))
    lowered, _ = lower(graph, SPINNAKER)
    assert lowered["fc"].annotations["spinnaker"]["delays"][0, 0] == 3
    x = np.zeros((1, 6, 1))
    x[0, 0, 0] = 1
    exc = simulate(lowered, x, probes=["n"])["n:exc"][0, :, 0]
    assert np.flatnonzero(exc).tolist() == [3]


@pytest.mark.parametrize("change, node, fragment", [
    (lambda g: setattr(g["lif0"].op, "reset", "subtract"), "lif0", "resets by subtraction"),
    (lambda g: setattr(g["lif2"], "op", ir.LI(v_decay=np.array(0.9), v_gain=np.array(1.0), bias=np.array(0.0))),
     "lif2", "does not spike"),
])
def test_what_spinnaker_cannot_hold_is_refused_by_node(change, node, fragment):
    graph = mlp(np.random.default_rng(2))
    change(graph)
    with pytest.raises(IRError, match=f"node '{node}'.*{fragment}"):
        lower(graph, SPINNAKER)


def test_delays_beyond_the_delay_extension_stages_are_relayed_or_refused():
    """144 ticks fit (16 on the core, 8 stages of 16 in delay extensions); longer delays are relayed
    by split-delays, and without it quantize-spinnaker names the synapse."""
    assert SPINNAKER.longest_delay == 143
    graph = mlp(np.random.default_rng(2))
    graph["fc0"].op.delay = np.full((30, 40), 143)
    lowered, _ = lower(graph, SPINNAKER)
    assert lowered["fc0"].annotations["spinnaker"]["delays"].max() == 144
    graph["fc0"].op.delay = np.full((30, 40), 144)
    lowered, reports = lower(graph, SPINNAKER)
    assert reports["split-delays"]["relays"][0]["synapses"] == "fc0"
    passes = [p for p in SPINNAKER.pipeline if p != "split-delays"]
    with pytest.raises(IRError, match="node 'fc0'.*beyond the 143 .*run split-delays"):
        lower(graph, SPINNAKER, passes=passes)


def test_a_delay_of_fifteen_steps_fits_sixteen_ticks():
    """The longest delay wraps the 16-slot ring buffer onto the slot being read: it still arrives on time."""
    rng = np.random.default_rng(2)
    graph = mlp(rng)
    graph["fc0"].op.delay = rng.integers(13, 16, size=(30, 40))
    lowered, _ = lower(graph, SPINNAKER)
    assert lowered["fc0"].annotations["spinnaker"]["delays"].max() == 16
    ours = assert_reference_matches(lowered, spikes(rng, (1, 40, 40), rate=0.5))
    assert not ours["lif0:exc"][0, :14].any() and ours["lif0:exc"][0, 14:].any()


@pytest.mark.parametrize("block", [1, 4])
def test_runs_in_blocks_of_steps_give_the_same_result(monkeypatch, block):
    """Neuron state and ring-buffer delay lines carry across blocks of steps."""
    rng = np.random.default_rng(3)
    lowered, _ = lower(random_network(rng), SPINNAKER)
    x = spikes(rng, (2, 30, lowered["in"].output_shape[0]))
    probes = [n.name for n in lowered if n.op.stateful]
    whole = simulate(lowered, x, probes=probes)
    monkeypatch.setattr(Simulator, "block_length", lambda self, batch, length: block)
    blocks = simulate(lowered, x, probes=probes)
    for key in whole:
        np.testing.assert_array_equal(whole[key], blocks[key], err_msg=key)


# -- the command line


def test_compile_and_run_on_the_command_line(tmp_path):
    model, x = tmp_path / "mlp.snnir", tmp_path / "x.npy"
    graph = ir.verify(mlp(np.random.default_rng(4)))
    ir.save(graph, model)
    np.save(x, spikes(np.random.default_rng(5), (2, 50, 40)))
    snnc = lambda *args: subprocess.run([sys.executable, "-m", "snnc", *map(str, args)],  # noqa: E731
                                        capture_output=True, text=True)
    compiled = snnc("compile", model, "--target", "spinnaker", "-o", tmp_path / "art")
    assert compiled.returncode == 0, compiled.stderr
    ran = snnc("run", tmp_path / "art", "--input", x, "--probe", "lif0", "-o", tmp_path / "y.npz")
    assert ran.returncode == 0, ran.stderr
    lowered, _ = lower(graph, SPINNAKER)
    expected = simulate(lowered, np.load(x), probes=["lif0"])
    with np.load(tmp_path / "y.npz") as saved:
        assert set(saved.files) == {"out", "lif0:spikes", "lif0:exc", "lif0:inh", "lif0:v"}
        for key in saved.files:
            np.testing.assert_array_equal(saved[key], expected[key], err_msg=key)
