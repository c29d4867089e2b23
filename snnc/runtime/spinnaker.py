"""SpiNNaker fixed-point kernels, integer-exact with sPyNNaker's C code (docs/semantics.md, section 7).

What sPyNNaker does (SpiNNakerManchester/sPyNNaker, neural_modelling/src/ unless noted), and which
line each operation below follows:

- Numbers. ``REAL``, ``input_t`` and ``state_t`` are ``accum``, s16.15 in an int32
  (common/maths-util.h ``typedef accum REAL``; common/neuron-typedefs.h). Synaptic decays are
  ``decay_t = UFRACT``, u0.32 (neuron/decay.h). Plain ``+``/``-`` on accum wrap at 32 bits (the
  types are not ``_Sat``). ``accum * accum`` is GCC's ``mulsa3`` of gcc/config/arm/arm-fixed.md,
  which for the ARM968 (``-march=armv5te``, ARM mode: spinnaker_tools make/spinnaker_tools.mk
  ``THUMB := 0``) is inlined as ``smull`` then ``(lo >> 15) | (hi << 17)``: bits 15..46 of the
  64-bit product, i.e. floor(a * b / 2**15) wrapped to 32 bits ("none of these do any rounding";
  libgcc's out-of-line __mulsa3 would round to nearest). ``decay_s1615(x, d)`` is
  ``(int64) bitsk(x) * (int64) bitsulr(d) >> 32``, a flooring shift (neuron/decay.h).
- A tick (neuron/c_main.c ``timer_callback``): ``process_ring_buffers`` hands the ring-buffer slot
  of this tick to ``neuron_transfer`` (neuron/neuron.c), which for each synapse type and neuron with
  a non-zero entry calls ``synapse_row_convert_weight_to_input(value, rb_shift)`` =
  ``(int_k_t) weight << left_shift`` (neuron/synapse_row.h) and adds it to the synaptic input; then
  ``neuron_impl_do_timestep_update`` (neuron/implementations/neuron_impl_standard.h) reads the
  synaptic inputs, converts them to a current (input type), updates the neuron model, compares with
  the threshold, resets and sends a spike, and last shapes (decays) the synaptic inputs.
- Ring buffers (neuron/synapses.c ``process_fixed_synapses``): a spike that arrives during tick t
  adds each synapse's 16-bit weight to slot ``(t + delay) & mask``: ``accumulation =
  ring_buffers[i] + weight; if (accumulation & 0x10000) accumulation = 0xFFFF``. A slot is read at
  the start of its tick, so a spike of tick t reaches the neuron at tick t + delay, delay >= 1, and
  all projections into a population share its ring buffers.
- Synapse types: exponential (synapse_types/synapse_types_exponential_impl.h with
  exp_synapse_utils.h): ``add_input_exp``: ``value = value + decay_s1615(input, init)``;
  ``exp_shaping``: ``value = decay_s1615(value, decay)``. Delta (synapse_types_delta_impl.h):
  ``exc += input``; shaping sets it to ``ZERO``.
- Input types: current (input_types/input_type_current.h) passes the synaptic input through; delta
  (input_type_delta.h) multiplies it by ``scale_factor = kdivk(1.0, ts)``.
- Neuron models: LIF (models/neuron_model_lif_impl.h): ``input_this_timestep = total_exc -
  total_inh + external_bias + I_offset + current_offset`` (external bias and current sources are
  0 here), ``alpha = input_this_timestep * R_membrane + V_rest``, ``V_membrane = alpha - exp_TC *
  (alpha - V_prev)``. Non-leaky IF (models/neuron_model_if_trunc.h): ``V_membrane =
  input_this_timestep * R_membrane + V_membrane``, then ``if (V_membrane < V_reset) V_membrane =
  V_reset``. Both update only while ``refract_timer <= 0``; the pass writes no refractory period
  (T_refract = 0), so the timer stays 0 and is not modelled.
- Threshold (threshold_types/threshold_type_static.h): ``REAL_COMPARE(value, >=, threshold_value)``,
  a signed compare of the raw bits; on a spike ``V_membrane = V_reset``.
- Parameters (spynnaker/pyNN/models/neuron/...): the LIF's PyNN parameters travel as
  ``DataType.S1615``, ``round(x * 2**15)`` (neuron_models/neuron_model_leaky_integrate_and_fire.py),
  and the core derives its state from them (``neuron_model_initialise``: ``R_membrane =
  kdivk(tau_m, c_m)``, ``exp_TC = expk(-kdivk(ts, tau_m))``, ``T_refract = ceil(tau_refrac / ts)``;
  exp_synapse_utils.h ``decay_and_init``: ``decay = expulr(-ts / tau)``, ``init =
  decay_s1615_to_u032(tau / ts, 1.0ulr - decay)``). Each synapse type's ring-buffer left shift is
  the smallest with its largest possible slot sum below 2**shift
  (abstract_population_vertex.py ``get_ring_buffer_shifts``: the worst case, or a Poisson bound with
  ``ring_buffer_sigma`` when delays vary), and a weight is stored as ``rint(|w| * 2**(16 - (shift +
  1))) & 0xFFFF`` in the synaptic word's top half (``__get_weight_scale``;
  synapse_dynamics/synapse_dynamics_static.py ``get_static_synaptic_data``).

The kernels hold raw s16.15 values in int64 arrays and apply each C operation with its rounding and
32-bit wrap. The simulator carries one integer per neuron on an edge and sums a neuron's input
edges, so a synapse kernel sends its excitatory and inhibitory ring-buffer sums packed into one
int64 (``pack``): summed over a population's synapses they are the two shared ring-buffer totals,
which the neuron kernel saturates and shifts. Probes report ``exc`` and ``inh``, the synaptic inputs
as sPyNNaker records gsyn_exc/gsyn_inh (read at the start of the update, before any shaping), and
``v``, V_membrane after the threshold and reset, all raw s16.15 in the population's state scale.
The kernels read the ``spinnaker`` annotations as the simulator checked them (``snnc.ir.contracts``).
"""

from __future__ import annotations

import numpy as np

from snnc.runtime.kernels import Neuron, TappedSynapse

#: s16.15: 1.0 is 2**15.
ACCUM_FRACTION_BITS = 15
#: A ring-buffer slot holds 16 bits and saturates.
RING_BUFFER_MAX = 0xFFFF
#: The synapse kernels' output: the excitatory sum in the low 32 bits, the inhibitory one above.
#: Each synapse group's sums are saturated at RING_BUFFER_MAX first, so a population's totals stay
#: below 2**31 for fewer than 2**15 synapse groups, whatever their fan-in.
PACK_BITS = 32
#: sPyNNaker's synapse types, in the order of their ring buffers and of the packed sums.
SYNAPSE_TYPES = ("exc", "inh")
#: Which synapse shaping and neuron update each sPyNNaker model runs: (exponential synapses, leaky).
MODELS = {"IF_curr_exp": (True, True), "IF_curr_delta": (False, True), "IF_trunc_delta": (False, False)}


def wrap32(values: np.ndarray) -> np.ndarray:
    """An int32 result: accum addition and subtraction wrap, they do not saturate."""
    return ((values + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """accum * accum as the ARM968 build computes it: floor(a * b / 2**15), wrapped to 32 bits."""
    return wrap32(np.right_shift(a * b, ACCUM_FRACTION_BITS))


def decay_s1615(x: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """neuron/decay.h: an s16.15 value times a u0.32 factor, floored; |x * decay| < 2**63 fits int64."""
    return np.right_shift(x * decay, 32)


def pack(excitatory: np.ndarray, inhibitory: np.ndarray) -> np.ndarray:
    return excitatory + np.left_shift(inhibitory, PACK_BITS)


def unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return packed & ((1 << PACK_BITS) - 1), np.right_shift(packed, PACK_BITS)


class SpiNNakerSynapse(TappedSynapse):
    """One projection's 16-bit weights into the ring buffers: what reaches the neuron at step t left
    the source at step t - delay (delay >= 1 ticks, as sPyNNaker stores it).

    The excitatory and inhibitory matrices are stacked into one product; float64 holds its integer
    sums exactly (they stay far below 2**53). Each sum is saturated at the ring buffer's 16 bits
    before it is packed: the slots saturate on every addition, and as every weight is >= 0, a
    population's total saturates the same whether its groups' sums were saturated first or not. A
    spike takes ``delay`` steps: ``delay - 1`` through the taps plus one of latency, except on a
    recurrent edge, where the runner already delivers the source's previous step; so a recurrent
    loop also takes ``delay`` ticks, as on SpiNNaker.
    """

    def __init__(self, node, dtype, recurrent_input: bool):
        fixed = node.annotations["spinnaker"]
        weights = np.concatenate([fixed["excitatory"], fixed["inhibitory"]]).astype(np.float64)
        delays = np.tile(np.asarray(fixed["delays"], np.int64) - 1, (2, 1))
        super().__init__(node, dtype, weights, delays, latency=0 if recurrent_input else 1)

    def product(self, rows, weights):
        return rows @ weights

    def finish(self, y):
        sums = np.minimum(np.rint(y), RING_BUFFER_MAX).astype(np.int64)
        size = sums.shape[-1] // 2
        return pack(sums[..., :size], sums[..., size:])


class NeuronModel:
    """sPyNNaker's IF_curr_exp, IF_curr_delta or IF_trunc_delta on raw s16.15 values: one tick of
    ``neuron_transfer`` and ``neuron_impl_do_timestep_update`` for neurons whose parameters ``fixed``
    holds (per neuron, shaped ``shape``), as quantize-spinnaker writes them for a population and the
    SpiNNaker backend's machine data for one core's slice of it."""

    state_names = ("exc", "inh", "v")

    def __init__(self, fixed: dict, shape: tuple[int, ...]):
        self.exponential, self.leaky = MODELS[str(fixed["model"])]
        value = lambda key: np.asarray(fixed[key], np.int64).reshape(shape)  # noqa: E731
        self.shifts = np.asarray(fixed["ring_buffer_shifts"], np.int64)
        self.r_membrane, self.i_offset = np.int64(fixed["r_membrane"]), value("i_offset")
        self.v_reset, self.v_thresh = value("v_reset"), value("v_thresh")
        if self.leaky:
            self.exp_tc, self.v_rest = value("exp_tc"), value("v_rest")
        if self.exponential:
            self.decay = (value("exc_decay"), value("inh_decay"))
            self.init = (value("exc_init"), value("inh_init"))
        else:
            self.input_scale = np.int64(fixed["input_scale"])

    def _synaptic_input(self, state: dict, index: int, ring: np.ndarray) -> np.ndarray:
        """neuron_transfer, then the synapse type's add_input on the input shaped at the end of the
        previous step (the shaping moves to the start of this one: nothing reads it in between)."""
        arriving = wrap32(np.left_shift(np.minimum(ring, RING_BUFFER_MAX), self.shifts[index]))
        if not self.exponential:
            return arriving  # delta: shaping zeroed it, the input adds to zero
        shaped = decay_s1615(state[SYNAPSE_TYPES[index]], self.decay[index])
        return wrap32(shaped + decay_s1615(arriving, self.init[index]))

    def step(self, state: dict, excitatory_ring: np.ndarray, inhibitory_ring: np.ndarray) -> np.ndarray:
        """Advance ``state`` (``exc``, ``inh``, ``v``) by one tick on this tick's ring-buffer slots;
        return which neurons fired."""
        for index, ring in enumerate((excitatory_ring, inhibitory_ring)):
            state[SYNAPSE_TYPES[index]] = self._synaptic_input(state, index, ring)
        exc, inh = state["exc"], state["inh"]
        if not self.exponential:  # the delta input type turns the input into a current
            exc, inh = multiply(exc, self.input_scale), multiply(inh, self.input_scale)
        current = wrap32(wrap32(exc - inh) + self.i_offset)
        if self.leaky:
            alpha = wrap32(multiply(current, self.r_membrane) + self.v_rest)
            v = wrap32(alpha - multiply(self.exp_tc, wrap32(alpha - state["v"])))
        else:
            v = np.maximum(wrap32(multiply(current, self.r_membrane) + state["v"]), self.v_reset)
        fired = v >= self.v_thresh
        state["v"] = np.where(fired, self.v_reset, v)
        return fired


class SpiNNakerNeuron(Neuron):
    """A population of the IR on sPyNNaker's neuron models, fed the packed ring-buffer sums."""

    state_names = NeuronModel.state_names

    def __init__(self, node, dtype):
        super().__init__(node, dtype)
        self.model = NeuronModel(node.annotations["spinnaker"], node.output_shape)

    def update(self, x):
        return self.model.step(self.state, *unpack(x))


#: What the simulator runs for this arithmetic: (synapse kernel, neuron kernel).
KERNELS = (SpiNNakerSynapse, SpiNNakerNeuron)
