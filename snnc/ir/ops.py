r"""The operations of the snnc IR: one small dataclass per operation.

Every operation works in discrete time. ``x[t]`` is the sum of everything that reaches the node at
step ``t`` (see ``docs/semantics.md`` for what reaches it within the step and what one step later),
``y[t]`` is what it sends. Shapes exclude the batch dimension. Parameters are numpy arrays; the
neurons' parameters are either scalars (shape ``()``) or arrays of the node's shape.

Each class states its update as an equation in its docstring; ``docs/semantics.md`` is the
normative text and the two say the same thing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from snnc.errors import shown

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A shape rule broken by an operation; the verifier adds the node's name."""


@dataclass(kw_only=True, eq=False)
class Op:
    """Base of all operations."""

    #: True when ``y[t]`` depends on inputs before step ``t``; only such nodes may close a cycle.
    stateful: ClassVar[bool] = False
    #: True when the node takes no input edges.
    is_source: ClassVar[bool] = False

    @property
    def kind(self) -> str:
        return type(self).__name__

    def validate(self) -> None:
        """Check the parameters alone; raise ``ShapeError`` on a problem."""

    def check_arrays(self) -> None:
        """Every array parameter is a numpy array of real numbers, all finite (or None where the
        parameter is optional); raise ``ShapeError`` naming the first that is not.

        No equation of the IR means anything with NaN or infinity in it, and every backend would
        turn them into different wrong numbers instead of an error.
        """
        for field in dataclasses.fields(self):
            if "np.ndarray" not in field.type:
                continue
            value = getattr(self, field.name)
            if value is None and "None" in field.type:
                continue
            if not isinstance(value, np.ndarray):
                raise ShapeError(f"{field.name} must be an array of numbers, got {type(value).__name__} {shown(value)}")
            if value.dtype.kind not in "biuf":
                raise ShapeError(f"{field.name} has dtype {value.dtype}; give real numbers (bool, integer or float)")
            # min and max propagate NaN, and find infinities, without a temporary array of the weights' size
            if value.dtype.kind == "f" and value.size and not (np.isfinite(value.min()) and np.isfinite(value.max())):
                raise ShapeError(f"{field.name} holds NaN or infinite values; give finite numbers")

    def output_shape(self, input_shape: Shape) -> Shape:
        """The shape of ``y`` for an input of ``input_shape``; raise ``ShapeError`` if it cannot take it."""
        return input_shape

    def fields(self) -> dict[str, object]:
        """The parameters by name, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.fields().items() if isinstance(v, np.ndarray)}

    def attributes(self) -> dict[str, object]:
        """The non-array parameters (ints, tuples, strings)."""
        return {k: v for k, v in self.fields().items() if not isinstance(v, np.ndarray)}


def whole_numbers(value, name: str) -> tuple[int, ...]:
    """``value`` (a number or a sequence of numbers) as a tuple of ints.

    A fraction, a string, a bool or anything else that is not a whole number is a ``ShapeError``:
    a size of 2.5 is refused, never cut to 2.
    """
    try:
        array = np.atleast_1d(np.asarray(value))
    except ValueError:  # ragged nesting
        array = np.array([None])
    whole = array.dtype.kind in "iu" or \
        array.dtype.kind == "f" and bool(np.all(np.isfinite(array) & (array == np.round(array))))
    if not whole:
        raise ShapeError(f"{name} must be whole numbers, got {shown(value)}")
    return tuple(int(v) for v in array.ravel())


def _integer(value, name: str) -> int:
    values = whole_numbers(value, name)
    if len(values) != 1:
        raise ShapeError(f"{name} must be one whole number, got {shown(value)}")
    return values[0]


def _pair(value, name: str) -> tuple[int, int]:
    values = whole_numbers(value, name)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise ShapeError(f"{name} must be one or two integers, got {values}")
    return values


def _require_shape(array: np.ndarray | None, shape: Shape, what: str) -> None:
    if array is not None and array.shape != shape:
        raise ShapeError(f"{what} has shape {array.shape}, expected {shape}")


# ----------------------------------------------------------------------------- graph boundary


@dataclass(kw_only=True, eq=False)
class Input(Op):
    r"""An input port: :math:`y[t] = u[t]`, the user's input at step t."""

    is_source: ClassVar[bool] = True
    shape: Shape

    def __post_init__(self):
        self.shape = whole_numbers(self.shape, "shape")

    def validate(self):
        if any(s <= 0 for s in self.shape):
            raise ShapeError(f"input shape {self.shape} must have positive sizes")

    def output_shape(self, input_shape):
        return self.shape


@dataclass(kw_only=True, eq=False)
class Output(Op):
    r"""An output port: records :math:`y[t] = x[t]`."""


# ----------------------------------------------------------------------------- synapses


@dataclass(kw_only=True, eq=False)
class Affine(Op):
    r"""Dense synapses: :math:`y_i[t] = \sum_j W_{ij} x_j[t - D_{ij}] + b_i`.

    ``weight`` has shape (out, in). ``bias`` is optional (NIR's Linear has none). ``delay`` is an
    optional integer matrix of the weight's shape: per-synapse delays in steps (0 when absent).
    The input may have any shape of ``in`` elements, read in row-major order; ``out_shape``
    (default ``(out,)``) shapes the output, so synapses can join populations of any shape.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    delay: np.ndarray | None = None
    out_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.out_shape is not None:
            self.out_shape = whole_numbers(self.out_shape, "out_shape")

    def validate(self):
        if self.weight.ndim != 2:
            raise ShapeError(f"weight must be 2-D (out, in), got shape {self.weight.shape}")
        _require_shape(self.bias, self.weight.shape[:1], "bias")
        _require_shape(self.delay, self.weight.shape, "delay")
        if self.out_shape is not None and min(self.out_shape, default=1) < 1:
            raise ShapeError(f"out_shape {self.out_shape} must have positive sizes")
        if self.out_shape is not None and int(np.prod(self.out_shape)) != self.weight.shape[0]:
            raise ShapeError(f"out_shape {self.out_shape} does not hold the {self.weight.shape[0]} outputs")
        if self.delay is not None:
            if self.delay.dtype.kind not in "iu":
                raise ShapeError(f"delay must be integer steps, got dtype {self.delay.dtype}")
            if self.delay.size and self.delay.min() < 0:
                raise ShapeError("delay must be >= 0")

    def output_shape(self, input_shape):
        if int(np.prod(input_shape)) != self.weight.shape[1]:
            raise ShapeError(f"weight {self.weight.shape} needs input ({self.weight.shape[1]},), got {input_shape}")
        return self.out_shape or self.weight.shape[:1]


@dataclass(kw_only=True, eq=False)
class _Conv(Op):
    r"""Shared rules of Conv1d and Conv2d (PyTorch's cross-correlation, zero padding)."""

    spatial_dims: ClassVar[int]
    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1

    def __post_init__(self):
        n = self.spatial_dims
        for name in ("stride", "padding", "dilation"):
            value = whole_numbers(getattr(self, name), name)
            setattr(self, name, value * n if len(value) == 1 else value)
        self.groups = _integer(self.groups, "groups")

    def validate(self):
        n = self.spatial_dims
        if self.weight.ndim != n + 2:
            raise ShapeError(f"weight must have {n + 2} dimensions, got shape {self.weight.shape}")
        for name in ("stride", "padding", "dilation"):
            if len(getattr(self, name)) != n:
                raise ShapeError(f"{name} must have {n} values, got {getattr(self, name)}")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ShapeError("stride and dilation must be >= 1 and padding >= 0")
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise ShapeError(f"groups={self.groups} must divide the {self.weight.shape[0]} output channels")
        _require_shape(self.bias, self.weight.shape[:1], "bias")

    def output_shape(self, input_shape):
        n = self.spatial_dims
        in_channels = self.weight.shape[1] * self.groups
        if len(input_shape) != n + 1 or input_shape[0] != in_channels:
            raise ShapeError(f"needs input (channels={in_channels}, {n} spatial dims), got {input_shape}")
        out = []
        for size, k, s, p, d in zip(input_shape[1:], self.weight.shape[2:], self.stride, self.padding, self.dilation):
            extent = (size + 2 * p - d * (k - 1) - 1) // s + 1
            if extent < 1:
                raise ShapeError(f"kernel {self.weight.shape[2:]} does not fit input {input_shape}")
            out.append(extent)
        return (self.weight.shape[0], *out)


@dataclass(kw_only=True, eq=False)
class Conv1d(_Conv):
    r"""1-D convolution: :math:`y_{o,n}[t] = b_o + \sum_{c,k} W_{o,c,k} x_{g(o)+c,\, sn + dk - p}[t]`.

    ``weight`` (C_out, C_in / groups, K); input (C_in, N).
    """

    spatial_dims: ClassVar[int] = 1


@dataclass(kw_only=True, eq=False)
class Conv2d(_Conv):
    r"""2-D convolution: :math:`y_{o,h,w}[t] = b_o + \sum_{c,k,l} W_{o,c,k,l} x_{g(o)+c,\, s_h h + d_h k - p_h,\, s_w w + d_w l - p_w}[t]`.

    ``weight`` (C_out, C_in / groups, K_h, K_w); input (C_in, H, W); ``groups`` = C_in = C_out makes
    it depthwise. Out-of-range input indices read zero (padding).
    """

    spatial_dims: ClassVar[int] = 2


# ----------------------------------------------------------------------------- shape and pooling


@dataclass(kw_only=True, eq=False)
class _Pool2d(Op):
    """Shared rules of the 2-D pooling operations over windows of (C, H, W) inputs."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        self.kernel_size = _pair(self.kernel_size, "kernel_size")
        self.stride = _pair(self.stride, "stride")
        self.padding = _pair(self.padding, "padding")

    def validate(self):
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ShapeError("kernel_size and stride must be >= 1 and padding >= 0")

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(f"needs input (C, H, W), got {input_shape}")
        out = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(input_shape[1:], self.kernel_size, self.stride, self.padding)]
        if min(out) < 1:
            raise ShapeError(f"kernel {self.kernel_size} does not fit input {input_shape}")
        return (input_shape[0], *out)


@dataclass(kw_only=True, eq=False)
class SumPool2d(_Pool2d):
    r""":math:`y_{c,h,w}[t] = \sum_{k,l} x_{c,\, s_h h + k - p_h,\, s_w w + l - p_w}[t]`; padding reads zero."""


@dataclass(kw_only=True, eq=False)
class AvgPool2d(_Pool2d):
    r""":math:`y = \mathrm{SumPool2d}(x) / (K_h K_w)`; padded positions count in the divisor."""


@dataclass(kw_only=True, eq=False)
class MaxPool2d(_Pool2d):
    r""":math:`y_{c,h,w}[t] = \max_{k,l} x_{c,\, s_h h + k - p_h,\, s_w w + l - p_w}[t]`; padding reads :math:`-\infty`."""


@dataclass(kw_only=True, eq=False)
class Flatten(Op):
    r"""Merges dimensions ``start_dim`` to ``end_dim`` (inclusive, of the non-batch shape) into one."""

    start_dim: int = 0
    end_dim: int = -1

    def __post_init__(self):
        self.start_dim, self.end_dim = _integer(self.start_dim, "start_dim"), _integer(self.end_dim, "end_dim")

    def output_shape(self, input_shape):
        n = len(input_shape)
        start = self.start_dim + n if self.start_dim < 0 else self.start_dim
        end = self.end_dim + n if self.end_dim < 0 else self.end_dim
        if not 0 <= start <= end < n:
            raise ShapeError(f"start_dim={self.start_dim}, end_dim={self.end_dim} do not fit input {input_shape}")
        return (*input_shape[:start], int(np.prod(input_shape[start : end + 1])), *input_shape[end + 1 :])


# ----------------------------------------------------------------------------- elementwise


@dataclass(kw_only=True, eq=False)
class _Elementwise(Op):
    """An operation whose one array parameter has the shape of its input."""

    def parameter(self) -> np.ndarray:
        (array,) = self.arrays().values()
        return array

    def output_shape(self, input_shape):
        shape = self.parameter().shape
        if shape not in ((), input_shape):
            raise ShapeError(f"parameter of shape {shape} does not match input {input_shape}")
        return input_shape


@dataclass(kw_only=True, eq=False)
class Add(Op):
    r"""Joins branches: :math:`y[t] = \sum_k x_k[t]` over its input edges (any node sums its inputs; Add only names the join)."""


@dataclass(kw_only=True, eq=False)
class Scale(_Elementwise):
    r""":math:`y[t] = s \odot x[t]`."""

    scale: np.ndarray


@dataclass(kw_only=True, eq=False)
class Threshold(_Elementwise):
    r""":math:`y[t] = 1` if :math:`x[t] > \theta` else 0 (strict)."""

    threshold: np.ndarray


@dataclass(kw_only=True, eq=False)
class Delay(_Elementwise):
    r"""Per-channel delay: :math:`y[t] = x[t - d]` with integer ``d`` >= 0 steps, zero before the start."""

    stateful: ClassVar[bool] = True
    delay: np.ndarray

    def validate(self):
        if self.delay.dtype.kind not in "iu":
            raise ShapeError(f"delay must be integer steps, got dtype {self.delay.dtype}")
        if self.delay.size and self.delay.min() < 0:
            raise ShapeError("delay must be >= 0")


# ----------------------------------------------------------------------------- neurons

RESET_MODES = ("value", "subtract")


@dataclass(frozen=True)
class Dynamics:
    """The common form of every neuron, which the simulator and backends execute.

    ``i_decay`` is None for neurons without a synaptic current, ``v_threshold`` None for
    neurons that do not spike (their output is v).
    """

    v_decay: np.ndarray
    v_gain: np.ndarray
    bias: np.ndarray
    i_decay: np.ndarray | None = None
    i_gain: np.ndarray | None = None
    v_threshold: np.ndarray | None = None
    v_reset: np.ndarray | None = None
    reset: str = "value"

    @property
    def spiking(self) -> bool:
        return self.v_threshold is not None

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("i", "v") if self.i_decay is not None else ("v",)


_ONE = np.ones((), dtype=np.float64)
_ZERO = np.zeros((), dtype=np.float64)


@dataclass(kw_only=True, eq=False)
class _Neuron(Op):
    """Shared rules of the neurons: per-neuron parameters, scalar or of the node's shape."""

    stateful: ClassVar[bool] = True
    bias: np.ndarray

    def output_shape(self, input_shape):
        for name, array in self.arrays().items():
            if array.shape not in ((), input_shape):
                raise ShapeError(f"parameter {name} of shape {array.shape} does not match input {input_shape}")
        return input_shape

    def dynamics(self) -> Dynamics:
        raise NotImplementedError


@dataclass(kw_only=True, eq=False)
class _SpikingNeuron(_Neuron):
    r"""Shared rules of the spiking neurons: fire when :math:`v > v_{th}`, then reset.

    ``reset="value"`` sets :math:`v = v_{reset}`; ``reset="subtract"`` sets :math:`v = v - v_{th}`.
    """

    v_threshold: np.ndarray
    v_reset: np.ndarray
    reset: str = "value"

    def validate(self):
        if self.reset not in RESET_MODES:
            raise ShapeError(f"reset must be one of {RESET_MODES}, got {self.reset!r}")

    def _spiking(self, **dynamics) -> Dynamics:
        return Dynamics(v_threshold=self.v_threshold, v_reset=self.v_reset, reset=self.reset, bias=self.bias, **dynamics)


@dataclass(kw_only=True, eq=False)
class LIF(_SpikingNeuron):
    r"""Leaky integrate-and-fire.

    :math:`v[t] = \alpha v[t-1] + g\, x[t] + b`; :math:`s[t] = v[t] > v_{th}`; then reset.
    ``v_decay`` is :math:`\alpha`, ``v_gain`` is :math:`g`.
    """

    v_decay: np.ndarray
    v_gain: np.ndarray

    def dynamics(self):
        return self._spiking(v_decay=self.v_decay, v_gain=self.v_gain)


@dataclass(kw_only=True, eq=False)
class IF(_SpikingNeuron):
    r"""Integrate-and-fire: :math:`v[t] = v[t-1] + g\, x[t] + b`; :math:`s[t] = v[t] > v_{th}`; then reset."""

    v_gain: np.ndarray

    def dynamics(self):
        return self._spiking(v_decay=_ONE, v_gain=self.v_gain)


@dataclass(kw_only=True, eq=False)
class CubaLIF(_SpikingNeuron):
    r"""Current-based LIF.

    :math:`i[t] = \beta i[t-1] + h\, x[t]`; :math:`v[t] = \alpha v[t-1] + g\, i[t] + b`;
    :math:`s[t] = v[t] > v_{th}`; then reset. ``i_decay`` is :math:`\beta`, ``i_gain`` :math:`h`.
    """

    i_decay: np.ndarray
    i_gain: np.ndarray
    v_decay: np.ndarray
    v_gain: np.ndarray

    def dynamics(self):
        return self._spiking(i_decay=self.i_decay, i_gain=self.i_gain, v_decay=self.v_decay, v_gain=self.v_gain)


@dataclass(kw_only=True, eq=False)
class LI(_Neuron):
    r"""Leaky integrator: :math:`v[t] = \alpha v[t-1] + g\, x[t] + b`; :math:`y[t] = v[t]`."""

    v_decay: np.ndarray
    v_gain: np.ndarray

    def dynamics(self):
        return Dynamics(v_decay=self.v_decay, v_gain=self.v_gain, bias=self.bias)


@dataclass(kw_only=True, eq=False)
class I(_Neuron):  # noqa: E742 - the name NIR gives the integrator
    r"""Integrator: :math:`v[t] = v[t-1] + g\, x[t] + b`; :math:`y[t] = v[t]`."""

    v_gain: np.ndarray

    def dynamics(self):
        return Dynamics(v_decay=_ONE, v_gain=self.v_gain, bias=self.bias)


@dataclass(kw_only=True, eq=False)
class CubaLI(_Neuron):
    r"""Current-based leaky integrator: :math:`i[t] = \beta i[t-1] + h\, x[t]`; :math:`v[t] = \alpha v[t-1] + g\, i[t] + b`; :math:`y[t] = v[t]`."""

    i_decay: np.ndarray
    i_gain: np.ndarray
    v_decay: np.ndarray
    v_gain: np.ndarray

    def dynamics(self):
        return Dynamics(i_decay=self.i_decay, i_gain=self.i_gain, v_decay=self.v_decay, v_gain=self.v_gain, bias=self.bias)


NEURONS = (LIF, IF, CubaLIF, LI, I, CubaLI)

#: Every operation by name, as the IR file format and the printer spell it.
OPS: dict[str, type[Op]] = {
    cls.__name__: cls
    for cls in (Input, Output, Affine, Conv1d, Conv2d, SumPool2d, AvgPool2d, MaxPool2d, Flatten, Add, Scale,
                Delay, Threshold, *NEURONS)
}
