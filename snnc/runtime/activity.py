"""What a run did, counted: the input of cost models and reports.

Counts are summed over the batch, per step and per neuron, so that a cost model can map neurons
to cores and steps to time. Synaptic operations are not stored: they follow from the spikes of a
synapse's source and the synapse's non-zero weights (see ``synaptic_ops``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PopulationActivity:
    """One node's spikes and neuron updates, summed over the batch."""

    #: (T, *shape) spikes sent (for an Input node: non-zero input values).
    spikes: np.ndarray
    #: (T, *shape) neurons whose update was not trivial: non-zero input or non-zero state before the
    #: step. None for Input nodes, which do not update.
    active: np.ndarray | None = None


@dataclass
class Activity:
    batch: int
    steps: int
    populations: dict[str, PopulationActivity] = field(default_factory=dict)

    def total_spikes(self) -> int:
        return int(sum(p.spikes.sum() for p in self.populations.values()))


def synaptic_ops(source_spikes: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Synaptic operations per step and target neuron: each source spike costs one operation for
    every non-zero weight it fans out to. ``source_spikes`` is (T, n_in), ``weight`` (n_out, n_in)."""
    return source_spikes.reshape(source_spikes.shape[0], -1) @ (weight != 0).T.astype(np.int64)
