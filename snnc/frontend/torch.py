"""Import PyTorch models (plain PyTorch, snnTorch, SpikingJelly, Norse, DCLS) into the snnc IR.

A PyTorch model is Python code, and one time step of it is what ``torch.onnx.export`` records.
``from_module`` exports one step with the neuron states as explicit inputs and outputs and imports
that with the ONNX frontend, which recognises the neurons by their arithmetic; so every framework
goes through one recogniser, and what is imported is what the framework's own code computes. Two
shapes of model are accepted (``docs/onnx.md``):

- a **step module**, ``forward(*inputs, *states) -> (*outputs, *next_states)``, called with
  ``example_input`` as the tuple of all arguments (states as zeros): plain PyTorch LIF code, or
  snnTorch with explicit states;
- a **chain** (``nn.Sequential``, Norse's ``SequentialState``) called once per step on one input:
  the framework neurons in it keep hidden state, so each runs through its framework's own explicit
  state API (snnTorch's ``forward(x, *states)``, SpikingJelly's ``single_step_functional_forward``,
  Norse's ``cell(x, state)``), its initial state shifted to the IR's zero. A DCLS ``Dcls1d`` in a
  chain is a synapse over time, as in "Learning Delays in SNNs using Dilated Convolutions with
  Learnable Spacings": its input is (batch, channels, time) left-padded by ``dilated_kernel_size -
  1`` steps, so kernel tap ``k`` is the delay ``dilated_kernel_size - 1 - k``; it becomes Affine
  synapses with per-synapse delays.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import io
import re
import warnings

import numpy as np

from snnc import ir
from snnc.errors import FrontendError
from snnc.frontend import time_step, verified
from snnc.frontend.onnx import from_onnx
from snnc.ir.graph import DEFAULT_DT
from snnc.passes import round_delays


def from_module(model, example_input, dt: float | None = None, states: int | None = None) -> ir.Graph:
    """Import ``model`` (a ``torch.nn.Module``) as a verified IR graph.

    ``example_input`` is one step's input of a chain, or the tuple of all arguments of a step module
    (network inputs, then states); a batch of one is enough. ``states`` is how many of a step
    module's last arguments are states (by default as ``snnc.frontend.onnx.from_onnx`` decides);
    ``dt`` is the time step in seconds, which no PyTorch model stores in a form snnc reads.
    """
    import torch

    source = type(model).__name__
    dt = time_step(dt, "dt")
    model = copy.deepcopy(model)  # exporting runs the framework's neurons, which may keep state inside
    if isinstance(model, torch.nn.Sequential):
        graph = _chain(model, example_input, source)
    else:
        graph = _step(model, example_input if isinstance(example_input, tuple) else (example_input,), states, source)
    graph.dt, graph.name = DEFAULT_DT if dt is None else dt, source
    return graph


# ----------------------------------------------------------------------------- export of one step


def _step(module, args: tuple, states: int | None, source: str) -> ir.Graph:
    """A step module, its inputs named as its arguments, its outputs ``output`` (or ``output0``, ...)
    and the next states ``ARGUMENT.next``."""
    import torch

    with torch.no_grad():
        results = module(*args)
    count = len(results) if isinstance(results, (tuple, list)) else 1
    if states is None:
        states = max(0, min(len(args), count) - 1)
    parameters = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:len(args)]
    names = parameters if len(parameters) == len(args) else [f"input{i}" for i in range(len(args))]
    outputs = ["output"] if count - states == 1 else [f"output{i}" for i in range(count - states)]
    return _export(module, args, states, source, names, outputs + [f"{n}.next" for n in names[len(args) - states:]])


def _export(module, args: tuple, states: int | None, source: str, names: list[str], outputs: list[str]) -> ir.Graph:
    """One step of ``module`` through torch.onnx.export (dynamo, which also decomposes SpikingJelly's
    custom CPU operators) and the ONNX frontend."""
    import torch

    module.eval()  # a private copy (from_module)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _single_step(module):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, args, dynamo=True, input_names=names, output_names=outputs)
    except Exception as e:  # the exporter raises many types; its first line says what failed
        raise FrontendError(f"{source}: torch.onnx.export cannot export one step of the model: "
                            f"{_reason(e)}") from None
    return from_onnx(program.model_proto, source, states=states)


def _reason(error: Exception) -> str:
    """One line of an exporter error: its exception summary when it gives one (torch.export's
    messages start with generic advice), without terminal colours."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    if "## Exception summary" in lines[:-1]:
        return lines[lines.index("## Exception summary") + 1]
    return lines[0] if lines else type(error).__name__


@contextlib.contextmanager
def _single_step(module):
    """SpikingJelly modules in single-step mode, snnTorch neurons taking their states as arguments."""
    changed = []
    for sub in module.modules():
        if getattr(sub, "step_mode", "s") != "s":
            changed.append((sub, "step_mode", sub.step_mode))
            sub.step_mode = "s"
        if _SnnTorch.owns(sub) and sub.init_hidden:
            changed.append((sub, "init_hidden", True))
            sub.init_hidden = False
    try:
        yield
    finally:
        for sub, attribute, value in changed:
            setattr(sub, attribute, value)


# ----------------------------------------------------------------------------- framework neurons


class _SnnTorch:
    """snnTorch neurons: ``forward(x, *states)`` returns the spikes and the new states."""

    @staticmethod
    def owns(module) -> bool:
        return type(module).__module__.startswith("snntorch.") and hasattr(module, "init_hidden")

    @staticmethod
    def initial(module, x) -> dict:
        names = list(inspect.signature(module.forward).parameters)[1:]
        return {name: x.new_zeros(x.shape) for name in names}

    @staticmethod
    def step(module, x, states):
        result = module(x, *states)
        return result[0], list(result[1:] if len(result) == len(states) + 1 else result)


class _SpikingJelly:
    """SpikingJelly nodes: ``single_step_functional_forward((x,), states)``; ``v`` starts at v_reset."""

    @staticmethod
    def owns(module) -> bool:
        return type(module).__module__.startswith("spikingjelly.") and hasattr(module, "single_step_functional_forward")

    @staticmethod
    def initial(module, x) -> dict:
        import torch

        module.reset()
        values = module.materialize_states((x,), tuple(module._memories.values()), "s")
        return {name: torch.broadcast_to(torch.as_tensor(v, dtype=x.dtype), x.shape).clone()
                for name, v in zip(module._memories, values)}

    @staticmethod
    def step(module, x, states):
        (out,), new = module.single_step_functional_forward((x,), tuple(states))
        return out, list(new)


class _Norse:
    """Norse cells: ``cell(x, state)`` with a named tuple of tensors; LIF's ``v`` starts at v_leak."""

    @staticmethod
    def owns(module) -> bool:
        return type(module).__module__.startswith("norse.") and hasattr(module, "state_fallback")

    @staticmethod
    def initial(module, x) -> dict:
        import torch

        state = module.state_fallback(x)
        if not all(isinstance(v, torch.Tensor) for v in state):
            raise FrontendError(f"{type(module).__name__}: only cells whose state is a tuple of tensors are supported")
        return {name: torch.broadcast_to(v.to(x.dtype), x.shape).clone() for name, v in zip(state._fields, state)}

    @staticmethod
    def step(module, x, states):
        out, state = module(x, type(module.state_fallback(x))(*states))
        return out, list(state)


_FRAMEWORKS = (_SnnTorch, _SpikingJelly, _Norse)


def _framework(module):
    return next((f for f in _FRAMEWORKS if f.owns(module)), None)


# ----------------------------------------------------------------------------- chains


def _chain(model, x, source: str) -> ir.Graph:
    """A chain, exported a run of layers at a time between the Dcls1d synapses, which are read directly."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise FrontendError(f"{source}: a chain takes one example input tensor (batch, *shape)")
    graph = ir.Graph()
    graph.add("input", ir.Input(shape=tuple(x.shape[1:])))
    ends, run = ["input"], []
    for name, layer in [*model.named_children(), (None, None)]:
        if layer is not None and type(layer).__name__ != "Dcls1d":
            run.append((name, layer))
            continue
        if run:
            step = _step_class()(run, x)
            sub = _export(step, (x, *step.zeros), len(step.zeros), source, ["input", *step.names],
                          ["output", *(f"{n}.next" for n in step.names)])
            ends = _splice(graph, sub, ends)
            with torch.no_grad(), _single_step(step):
                x = step(x, *step.zeros)[0]
            run = []
        if layer is not None:
            ends = _delays(graph, name, layer, ends)
            x = x.new_zeros((x.shape[0], layer.out_channels))
    graph.add("output", ir.Output())
    for end in ends:
        graph.connect(end, "output")
    return verified(graph, source).sort()


@functools.cache
def _step_class():
    """The class of one step of a run of layers (built on first use: snnc imports torch lazily)."""
    import torch

    class Step(torch.nn.Module):
        """One step of a run of layers, the framework neurons' states as explicit arguments.

        States are shifted so that the IR's zero state is the framework's initial state, and every
        layer's output is cast to the input's dtype (snnTorch returns float32 spikes)."""

        def __init__(self, layers, x):
            super().__init__()
            for name, layer in layers:  # under the chain's names, which name the IR's nodes
                self.add_module(name, layer)
            self.layers = [layer for _, layer in layers]
            self.kinds, self.counts, self.names, offsets = [], [], [], []
            with torch.no_grad(), _single_step(self):
                for name, layer in layers:
                    kind = _framework(layer)
                    self.kinds.append(kind)
                    if kind is None:
                        x = layer(x).to(x.dtype)
                        continue
                    initial = kind.initial(layer, x)
                    self.counts.append(len(initial))
                    self.names += [name] if len(initial) == 1 else [f"{name}.{k}" for k in initial]
                    offsets += list(initial.values())
                    x = kind.step(layer, x, list(initial.values()))[0].to(x.dtype)
            self.shifted = [bool(o.any()) for o in offsets]
            for i, offset in enumerate(offsets):
                self.register_buffer(f"offset{i}", offset)
            self.zeros = [torch.zeros_like(o) for o in offsets]

        def forward(self, x, *states):
            dtype = x.dtype
            offsets = [getattr(self, f"offset{i}") if shifted else None for i, shifted in enumerate(self.shifted)]
            new, counts = [], iter(self.counts)
            for layer, kind in zip(self.layers, self.kinds):
                if kind is None:
                    x = layer(x).to(dtype)
                    continue
                k = len(new)
                own, shifts = states[k:k + next(counts)], offsets[k:]
                x, updated = kind.step(layer, x, [s if o is None else s + o for s, o in zip(own, shifts)])
                new += [s if o is None else s - o for s, o in zip(updated, shifts)]
                x = x.to(dtype)
            return (x, *new)

    return Step


def _splice(graph: ir.Graph, sub: ir.Graph, ends: list[str]) -> list[str]:
    """Add ``sub`` between ``ends`` (what feeds its input) and what it outputs; returns the new ends."""
    rename = {}
    for node in sub:
        if not isinstance(node.op, (ir.Input, ir.Output)):
            name = node.name
            while name in graph.nodes:
                name += "_"
            rename[node.name] = name
            graph.add(name, node.op)
    new_ends = []
    for s, t in sub.edges:
        sources = ends if isinstance(sub[s].op, ir.Input) else [rename[s]]
        if isinstance(sub[t].op, ir.Output):
            new_ends += [e for e in sources if e not in new_ends]
        else:
            for source in sources:
                graph.connect(source, rename[t])
    return new_ends


def _delays(graph: ir.Graph, name: str, layer, ends: list[str]) -> list[str]:
    """A Dcls1d over time as Affine synapses with per-synapse delays: one Affine per tap rank (the
    first tap of every synapse, the second, ...), which is one Affine when positions are whole
    numbers and the kernel is one-hot (the paper's inference form); any kernel imports exactly.

    The first Affine's ``annotations["dcls"]`` holds what ``round-delays`` needs to give each
    synapse one whole delay: the tap nodes, and per synapse and kernel element the learned delay in
    steps and the element's share of the kernel's sum over taps."""
    import torch

    if tuple(layer.padding) != (0,) or tuple(layer.stride) != (1,) or layer.padding_mode != "zeros":
        raise FrontendError(f"Dcls1d {name!r}: needs padding 0 and stride 1 (the causal padding is applied "
                            "outside the layer, as in the paper)")
    size = layer.dilated_kernel_size[0]
    with torch.no_grad():
        kernel = _ungrouped(layer.DCK(layer.weight, layer.P, layer.SIG).double().numpy(), layer.groups)
        # DCK is linear in the weights: each element alone gives its share of the kernel's sum.
        alone = torch.eye(layer.kernel_count, dtype=layer.weight.dtype)
        share = np.stack([layer.DCK(layer.weight * alone[k], layer.P, layer.SIG).double().sum(-1).numpy()
                          for k in range(layer.kernel_count)], axis=-1)
        # ConstructKernel1d puts a position P at tap P + size // 2, and tap k is the delay size - 1 - k.
        learned = size - 1 - (layer.P[0].double().numpy() + size // 2)
    bias = None if layer.bias is None else layer.bias.detach().double().numpy().copy()
    synapses = round_delays.kernel_synapses(kernel)
    taps = [round_delays.tap_node_name(name, r) for r in range(len(synapses))]
    annotation = {"layer": name, "version": layer.version, "kernel_size": size, "groups": layer.groups,
                  "taps": taps, "delay": _ungrouped(learned, layer.groups),
                  "weight": _ungrouped(share, layer.groups)}
    for r, (weight, delay) in enumerate(synapses):
        graph.add(taps[r], ir.Affine(weight=weight, bias=bias if r == 0 else None, delay=delay),
                  {round_delays.ANNOTATION: annotation} if r == 0 else None)
        for end in ends:
            graph.connect(end, taps[r])
    return taps


def _ungrouped(grouped: np.ndarray, groups: int) -> np.ndarray:
    """A grouped layer's (out, in / groups, ...) array over all (out, in) pairs, zero between groups."""
    out_channels, per_group = grouped.shape[:2]
    full = np.zeros((out_channels, per_group * groups, *grouped.shape[2:]))
    group_out = out_channels // groups
    for g in range(groups):
        rows = slice(g * group_out, (g + 1) * group_out)
        full[rows, g * per_group:(g + 1) * per_group] = grouped[rows]
    return full
