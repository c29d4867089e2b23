"""The snnc IR: operations, the graph, the verifier, the file format and the printers."""

from snnc.ir.graph import DEFAULT_DT, Graph, Node
from snnc.ir.ops import (NEURONS, OPS, Add, AvgPool2d, Affine, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Dynamics,
                         Flatten, I, IF, LI, LIF, Input, MaxPool2d, Op, Output, Scale, SumPool2d, Threshold)
from snnc.ir.serialize import load, save
from snnc.ir.verify import verify

__all__ = ["DEFAULT_DT", "Graph", "Node", "NEURONS", "OPS", "Add", "AvgPool2d", "Affine", "Conv1d", "Conv2d",
           "CubaLI", "CubaLIF", "Delay", "Dynamics", "Flatten", "I", "IF", "LI", "LIF", "Input", "MaxPool2d", "Op",
           "Output", "Scale", "SumPool2d", "Threshold", "load", "save", "verify"]
