"""The Loihi backend: a self-contained Lava program for a quantized population-form graph.

The artifact holds ``network.py`` (a readable ``build`` function that creates one LIF process per
population and one Dense or DelayDense process per synapse group), ``params.npz`` (the integer
parameters that the IR does not hold as they are, loaded with ``allow_pickle=False``),
``network.json`` (node names, shapes, which generated identifier stands for which node, and which
parameters the runner reads from ``model.snnir``, the IR the artifact holds anyway: a dense
network's weights are written once) and ``run_lava.py`` (the runner). No model text reaches the
generated code as code: identifiers are generated, names and numbers are written by
``codegen.literal``, and the graph is checked against the ``loihi`` contract
(``snnc.ir.contracts``) for the target the artifact is compiled for before the program is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import snnc
from snnc.backends.artifact import IR_FILE, LAVA_FILES, TARGET_FILE, ArtifactWriter
from snnc.backends.codegen import GeneratedProgram, literal
from snnc.errors import SnncError
from snnc.ir import NEURONS, Affine, Graph
from snnc.ir.serialize import array_members
from snnc.targets import Target, parse_target

RUNNER = Path(__file__).with_name("lava_runner.py")
#: The files it writes, named once in LAVA_FILES, which readers of an artifact check for.
PROGRAM, PARAMETERS, DESCRIPTION, RUNNER_FILE = LAVA_FILES
#: Below this fraction of non-zero weights a synapse group becomes a Sparse process.
SPARSE_DENSITY = 0.25


class _Program(GeneratedProgram):
    arithmetic = "loihi"
    needs = "the Lava backend (pass quantize-loihi)"

    def __init__(self, graph: Graph, target: Target):
        super().__init__(graph, target)
        #: parameters for params.npz, and those the IR file holds as they are (key -> its member there)
        self.params: dict[str, np.ndarray] = {}
        self.in_ir: dict[str, str] = {}
        self.ir_members = array_members(graph)

    def parameter(self, key: str, array: np.ndarray) -> None:
        member = self.ir_members.get(id(array))
        if member is None:
            self.params[key] = array
        else:
            self.in_ir[key] = member

    def emit(self) -> str:
        graph = self.graph
        body = self.body()
        groups = {kind: [i for i in self.ids.values() if i.startswith(kind + "_")]
                  for kind in ("input", "population", "synapse", "output")}
        returned = ",\n".join(f'        "{kind}": {{{", ".join(f"{literal(i)}: {i}" for i in ids)}}}'
                               for kind, ids in groups.items())
        return f'''"""Lava process graph of {literal(graph.name or "main")}, compiled by snnc {snnc.__version__} for {literal(graph.metadata.get("target", "loihi"))}.

Each population is a LIF process with Lava's fixed-point parameters and each synapse group a Dense,
Sparse (mostly-zero matrices, such as a convolution's) or DelayDense process. Every synapse group delivers its spikes one step after they were sent (and
`delays` more with DelayDense), so a layer's spikes reach the next population one step later than
in the float semantics. Integer parameters come from params.npz and model.snnir; node names from
network.json.
"""

from lava.proc.dense.process import Dense, DelayDense
from lava.proc.io.sink import RingBuffer as SpikeSink
from lava.proc.io.source import RingBuffer as SpikeSource
from lava.proc.lif.process import LIF
from lava.proc.sparse.process import Sparse
from scipy.sparse import csr_matrix


def build(params, inputs, steps):
    """Create and connect the processes.

    params: the integer parameters by key; inputs: each input's spikes, shape (neurons, steps),
    by identifier; steps: how many steps the output sinks record.
    """
{body}
    return {{
{returned},
    }}
'''

    def _input(self, node) -> None:
        ident = self.identifier(node.name, "input")
        self.lines += [f"# input {literal(node.name)}: {literal(int(np.prod(node.output_shape)))} neurons",
                       f"{ident} = SpikeSource(data=inputs[{literal(ident)}])", ""]

    def _population(self, node) -> None:
        ident = self.identifier(node.name, "population")
        fixed = self.fixed[node.name]
        self.params[f"{ident}.bias_mant"] = np.asarray(fixed["bias_mant"], np.int32)
        self.params[f"{ident}.bias_exp"] = np.asarray(fixed["bias_exp"], np.int32)
        size = int(np.prod(node.output_shape))
        self.lines += [f"# population {literal(node.name)}: {node.op.kind}, {literal(size)} neurons",
                       f"{ident} = LIF(shape={literal((size,))}, du={literal(fixed['du'])}, dv={literal(fixed['dv'])}, "
                       f"vth={literal(fixed['vth'])},",
                       f"    bias_mant=params[{literal(ident + '.bias_mant')}], "
                       f"bias_exp=params[{literal(ident + '.bias_exp')}])",
                       ""]

    def _synapse(self, node) -> None:
        ident = self.identifier(node.name, "synapse")
        fixed = self.fixed[node.name]
        (source,) = self.graph.predecessors(node.name)
        weights = np.asarray(fixed["weights"], np.int32)
        delayed = fixed["delays"] is not None and np.any(fixed["delays"])
        out, size_in = weights.shape
        process = self.process(fixed)
        if process == "Sparse":
            rows, columns = np.nonzero(weights)
            self.params[f"{ident}.data"] = weights[rows, columns]
            self.params[f"{ident}.indices"] = columns.astype(np.int32)
            self.params[f"{ident}.indptr"] = np.searchsorted(rows, np.arange(out + 1)).astype(np.int32)
            matrix = (f"csr_matrix((params[{literal(ident + '.data')}], params[{literal(ident + '.indices')}], "
                      f"params[{literal(ident + '.indptr')}]), shape={literal((out, size_in))})")
        else:
            self.parameter(f"{ident}.weights", weights)
            matrix = f"params[{literal(ident + '.weights')}]"
        extra = ""
        if delayed:
            self.parameter(f"{ident}.delays", np.asarray(fixed["delays"], np.int64))  # DelayDense checks dtype == int
            extra = f", delays=params[{literal(ident + '.delays')}]"
        self.lines.append(f"# synapses {literal(node.name)}: {literal(source)} -> "
                          f"{', '.join(map(literal, self.graph.successors(node.name)))}, {literal(out)} x "
                          f"{literal(size_in)}, {literal(np.count_nonzero(weights))} non-zero")
        self.lines.append(f"{ident} = {process}(weights={matrix}, weight_exp={literal(fixed['weight_exp'])}{extra})")
        self.lines.append(f"{self.ids[source]}.s_out.connect({ident}.s_in)")
        for target in self.graph.successors(node.name):
            self.lines.append(f"{ident}.a_out.connect({self.ids[target]}.a_in)")
        self.lines.append("")

    @staticmethod
    def process(fixed: dict) -> str:
        """The Lava process of a synapse group: Sparse holds a mostly-zero matrix (a convolution's,
        say) in a fraction of Dense's memory and time. Delayed groups stay DelayDense, whose delay
        matrix lines up with the weights one to one."""
        if fixed["delays"] is not None and np.any(fixed["delays"]):
            return "DelayDense"
        weights = np.asarray(fixed["weights"])
        return "Sparse" if np.count_nonzero(weights) < SPARSE_DENSITY * weights.size else "Dense"

    def _output(self, node) -> None:
        ident = self.identifier(node.name, "output")
        (source,) = self.graph.predecessors(node.name)
        size = int(np.prod(node.input_shape))
        self.lines += [f"# output {literal(node.name)}: the spikes of {literal(source)}",
                       f"{ident} = SpikeSink(shape={literal((size,))}, buffer=steps)",
                       f"{self.ids[source]}.s_out.connect({ident}.a_in)", ""]

    def description(self) -> dict:
        graph = self.graph

        def entry(name, process):
            return {"id": self.ids[name], "process": process, "shape": list(graph[name].output_shape),
                    "op": graph[name].op.kind, "from": graph[name].annotations.get("fused_from", [name])}

        return {"parameters_in_ir": self.in_ir,
                "inputs": {n: entry(n, "SpikeSource") for n in graph.inputs},
                "outputs": {n: entry(n, "SpikeSink") for n in graph.outputs},
                "populations": {n.name: entry(n.name, "LIF") for n in graph if isinstance(n.op, NEURONS)},
                "synapses": {n.name: entry(n.name, self.process(self.fixed[n.name]))
                             for n in graph if isinstance(n.op, Affine)}}


def emit(graph: Graph, writer: ArtifactWriter) -> None:
    """Write the Lava program of ``graph``, checked against the target the artifact holds."""
    if not writer.path(IR_FILE).is_file():
        raise SnncError(f"the Lava program reads parameters from the artifact's {IR_FILE}: emit the IR first")
    if not writer.path(TARGET_FILE).is_file():
        raise SnncError(f"the Lava program is checked against the artifact's {TARGET_FILE}: copy the target first")
    program = _Program(graph, parse_target(writer.path(TARGET_FILE)))
    writer.path(PROGRAM).write_text(program.emit())
    np.savez(writer.path(PARAMETERS), **program.params)
    writer.path(DESCRIPTION).write_text(json.dumps(program.description(), indent=2) + "\n")
    shutil.copyfile(RUNNER, writer.path(RUNNER_FILE))
