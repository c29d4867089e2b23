"""Numpy kernels for each IR operation, batched and vectorized.

A kernel computes a node's output either for a whole sequence at once (``sequence``: arrays of
shape (batch, T, *shape)), which is how nodes outside cycles run, or one step at a time (``step``:
arrays of shape (batch, *shape)), which is how the nodes of a recurrent cycle run. Stateless kernels
do both through one ``apply`` over any number of leading samples.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from snnc.ir import ops
from snnc.runtime.activity import PopulationActivity
from snnc.runtime.synaptic_sums import dense_sum

#: Upper bound on the bytes of unfolded convolution windows held at once.
_WINDOW_BYTES = 1 << 27


class Kernel:
    stateful = False

    def __init__(self, node, dtype):
        self.node, self.op, self.dtype = node, node.op, dtype

    def reset(self, batch: int) -> None:
        """Clear the state for a new run of ``batch`` samples."""

    def step(self, x: np.ndarray) -> np.ndarray:
        return self.apply(x)

    def sequence(self, x: np.ndarray) -> np.ndarray:
        batch, steps = x.shape[:2]
        y = self.apply(x.reshape(batch * steps, *x.shape[2:]))
        return y.reshape(batch, steps, *y.shape[1:])

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Identity(Kernel):
    def apply(self, x):
        return x


class Flatten(Kernel):
    def apply(self, x):
        return x.reshape(x.shape[0], *self.node.output_shape)


class Scale(Kernel):
    def apply(self, x):
        return x * self.op.scale


class Threshold(Kernel):
    def apply(self, x):
        return (x > self.op.threshold).astype(self.dtype)


def _windows(x, kernel, stride, padding, dilation, pad_value):
    """Unfold (N, C, *spatial) into (N, C, *out, *kernel) views, zero- or value-padded."""
    n = len(kernel)
    if any(padding):
        x = np.pad(x, [(0, 0), (0, 0), *[(p, p) for p in padding]], constant_values=pad_value)
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    view = sliding_window_view(x, extent, axis=tuple(range(2, 2 + n)))
    index = (slice(None), slice(None), *[slice(None, None, s) for s in stride], *[slice(None, None, d) for d in dilation])
    return view[index]


def _chunks(count: int, bytes_per_item: int):
    size = max(1, _WINDOW_BYTES // max(1, bytes_per_item))
    for start in range(0, count, size):
        yield slice(start, min(count, start + size))


class Conv(Kernel):
    """Cross-correlation with groups, as a batched matrix product over unfolded windows."""

    def __init__(self, node, dtype):
        super().__init__(node, dtype)
        op = self.op
        out_channels, group_channels, *kernel = op.weight.shape
        self.kernel = tuple(kernel)
        self.weight = op.weight.astype(dtype).reshape(op.groups, out_channels // op.groups, group_channels, -1)
        self.bias = None if op.bias is None else op.bias.astype(dtype).reshape(-1, *[1] * len(kernel))

    def apply(self, x):
        op, groups = self.op, self.op.groups
        out_shape = self.node.output_shape
        y = np.empty((x.shape[0], *out_shape), dtype=self.dtype)
        per_item = x[0].size * int(np.prod(self.kernel)) * x.itemsize
        for part in _chunks(x.shape[0], per_item):
            w = _windows(x[part], self.kernel, op.stride, op.padding, op.dilation, 0)
            n = w.shape[0]
            w = w.reshape(n, groups, w.shape[1] // groups, int(np.prod(out_shape[1:])), -1)
            y[part] = np.einsum("ngcok,gpck->ngpo", w, self.weight, optimize=True).reshape(n, *out_shape)
        if self.bias is not None:
            y += self.bias
        return y


class Pool(Kernel):
    """Sum, average and max pooling over 2-D windows."""

    def apply(self, x):
        op = self.op
        pad_value = -np.inf if isinstance(op, ops.MaxPool2d) else 0
        w = _windows(x, op.kernel_size, op.stride, op.padding, (1, 1), pad_value)
        if isinstance(op, ops.MaxPool2d):
            return w.max(axis=(-2, -1))
        y = w.sum(axis=(-2, -1))
        return y / np.prod(op.kernel_size) if isinstance(op, ops.AvgPool2d) else y


class DelayLine:
    """The last ``depth`` steps of a kernel's input, carried from one block of steps to the next, in
    the input's dtype (spikes stay int8)."""

    def __init__(self, depth: int):
        self.depth = depth
        self.past: np.ndarray | None = None

    def reset(self) -> None:
        self.past = None

    def extend(self, x: np.ndarray) -> np.ndarray:
        """``x`` (batch, steps, ...) preceded by the ``depth`` steps before it (zeros before the
        first step); remembers the last ones."""
        if not self.depth:
            return x
        if self.past is None:
            self.past = np.zeros((x.shape[0], self.depth, *x.shape[2:]), x.dtype)
        extended = np.concatenate([self.past, x], axis=1)
        self.past = extended[:, extended.shape[1] - self.depth:].copy()
        return extended


class TappedSynapse(Kernel):
    """Synapses whose inputs arrive after per-synapse delays: the weight matrix split by delay into
    taps, each reading the input ``shift`` steps back through a delay line. Subclasses say how a
    block of input rows (in the input's dtype: spikes arrive as int8) meets a tap's matrix
    (``product``) and how the sum becomes the output (``finish``)."""

    stateful = True

    def __init__(self, node, dtype, weights: np.ndarray, delays: np.ndarray | None, latency: int = 0):
        super().__init__(node, dtype)
        #: (steps back, W^T restricted to the synapses of that delay), for each delay in use.
        # C-ordered (n_in, n_out): an input's weights are one contiguous row, as an event-driven sum reads them.
        if delays is None or not delays.any():  # no need to sort a large matrix of zeros
            self.taps = [(latency, np.ascontiguousarray(weights.T))]
        else:
            self.taps = [(int(d) + latency, np.ascontiguousarray(np.where(delays == d, weights, 0).T))
                         for d in np.unique(delays)]
        self.line = DelayLine(max(shift for shift, _ in self.taps))

    def reset(self, batch):
        self.line.reset()

    def product(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def finish(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sequence(self, x):
        batch, steps = x.shape[:2]
        extended, depth = self.line.extend(x.reshape(batch, steps, -1)), self.line.depth
        # One product per tap over every (sample, step) row that the tap reads: one large product
        # runs far faster than one per step.
        y = None
        for shift, weights in self.taps:
            rows = extended[:, depth - shift: depth - shift + steps].reshape(batch * steps, -1)
            part = self.product(rows, weights)
            y = part if y is None else y + part
        return self.finish(y).reshape(batch, steps, *self.node.output_shape)

    def step(self, x):
        if self.line.depth == 0:  # the common recurrent case: no delay line to keep
            (_, weights), = self.taps
            rows = x.reshape(x.shape[0], -1)
            return self.finish(self.product(rows, weights)).reshape(x.shape[0], *self.node.output_shape)
        return self.sequence(x[:, None])[:, 0]


class Affine(TappedSynapse):
    """Dense synapses, y = x W^T + b, with per-synapse delays."""

    def __init__(self, node, dtype):
        super().__init__(node, dtype, node.op.weight.astype(dtype), node.op.delay)
        self.bias = None if node.op.bias is None else node.op.bias.astype(dtype)

    def product(self, rows, weights):
        return dense_sum(rows, weights)

    def finish(self, y):
        return y if self.bias is None else y + self.bias


class Delay(Kernel):
    """Per-channel delay line: y[t] = x[t - d]."""

    stateful = True

    def __init__(self, node, dtype):
        super().__init__(node, dtype)
        self.delay = np.broadcast_to(self.op.delay, node.output_shape)
        self.line = DelayLine(int(self.delay.max(initial=0)))

    def reset(self, batch):
        self.line.reset()

    def sequence(self, x):
        steps, depth = x.shape[1], self.line.depth
        extended = self.line.extend(x)
        y = np.empty_like(x)
        for d in np.unique(self.delay):
            mask = self.delay == d
            y[:, :, mask] = extended[:, depth - d: depth - d + steps][:, :, mask]
        return y

    def step(self, x):
        return self.sequence(x[:, None])[:, 0]


class Neuron(Kernel):
    """Shared stepping of every neuron model: state, probes and activity counts around ``update``."""

    stateful = True
    #: Names of the state variables, as probes report them.
    state_names: tuple[str, ...] = ("v",)
    spiking = True

    def __init__(self, node, dtype):
        super().__init__(node, dtype)
        self.state: dict[str, np.ndarray] = {}
        self.trace: dict[str, list] | None = None
        self.counts: dict[str, list] | None = None

    def record(self, states: bool, activity: bool = False) -> None:
        """Keep each step's state (for probes) and each step's spike and activity counts, as blocks
        of steps: states (batch, steps, *shape), counts (steps, *shape)."""
        self.trace = {name: [] for name in self.state_names} if states else None
        self.counts = {"spikes": [], "active": []} if activity else None

    def reset(self, batch):
        self.state = {name: np.zeros((batch, *self.node.output_shape), self.dtype) for name in self.state_names}
        self.record(self.trace is not None, self.counts is not None)

    def update(self, x: np.ndarray) -> np.ndarray | None:
        """Advance ``self.state`` by one step on input ``x``; return the spikes (bool), or None for a
        neuron that does not spike (its output is v)."""
        raise NotImplementedError

    def step(self, x):
        if self.counts is not None:
            active = x != 0
            for value in self.state.values():
                active |= value != 0
            self.counts["active"].append(active.sum(axis=0, dtype=np.int32)[None])
        fired = self.update(x)
        if self.trace is not None:
            for name, values in self.trace.items():
                values.append(self.state[name][:, None])
        if self.counts is not None:
            self.counts["spikes"].append(np.zeros((1, *x.shape[1:]), np.int32) if fired is None
                                         else fired.sum(axis=0, dtype=np.int32)[None])
        return self.state["v"] if fired is None else fired.astype(self.dtype)

    def sequence(self, x):
        # Step along a time-major copy: each step then reads and writes contiguous memory.
        by_step = np.ascontiguousarray(np.moveaxis(x, 1, 0))
        out = np.empty((x.shape[1], x.shape[0], *self.node.output_shape), self.dtype)
        for t, x_t in enumerate(by_step):
            out[t] = self.step(x_t)
        return np.moveaxis(out, 0, 1)

    def traces(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(values, axis=1) for name, values in (self.trace or {}).items()}

    def activity(self) -> PopulationActivity:
        return PopulationActivity(spikes=np.concatenate(self.counts["spikes"]),
                                  active=np.concatenate(self.counts["active"]))


class FloatNeuron(Neuron):
    """Every IR neuron in float through its common ``Dynamics`` (docs/semantics.md, section 4)."""

    def __init__(self, node, dtype):
        super().__init__(node, dtype)
        d = self.op.dynamics()
        cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
        self.d = type(d)(**{k: (v if k == "reset" else cast(v)) for k, v in vars(d).items()})
        self.state_names = self.d.state_names
        self.spiking = self.d.spiking

    def update(self, x):
        d = self.d
        if d.i_decay is not None:
            x = self.state["i"] = d.i_decay * self.state["i"] + d.i_gain * x
        v = d.v_decay * self.state["v"] + d.v_gain * x + d.bias
        fired = None
        if d.spiking:
            fired = v > d.v_threshold
            v = np.where(fired, d.v_reset if d.reset == "value" else v - d.v_threshold, v)
        self.state["v"] = v
        return fired


_KERNELS = {
    ops.Input: Identity, ops.Output: Identity, ops.Add: Identity, ops.Flatten: Flatten, ops.Scale: Scale,
    ops.Threshold: Threshold, ops.Conv1d: Conv, ops.Conv2d: Conv, ops.SumPool2d: Pool, ops.AvgPool2d: Pool,
    ops.MaxPool2d: Pool, ops.Affine: Affine, ops.Delay: Delay, **{cls: FloatNeuron for cls in ops.NEURONS},
}


def make_kernel(node, dtype) -> Kernel:
    return _KERNELS[type(node.op)](node, dtype)
