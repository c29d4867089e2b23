"""Where forward Euler stops being a decay: warnings about the time step of a NIR model.

NIR stores continuous time constants, and snnc discretises them by forward Euler at the graph's
``dt`` (docs/semantics.md, section 5): the decay of a state with time constant ``tau`` is
``1 - dt / tau``. When ``dt > tau`` that decay is negative: the state flips sign every step and,
below -1, grows instead of leaking, so the network runs but is not the one the file describes. Such
a ``dt`` is not refused (it is the user's to choose), but it is said, with the ``dt`` that would
keep every decay in [0, 1]. Decays above 1 would need a negative ``tau``, which the NIR frontend
refuses.
"""

from __future__ import annotations

import numpy as np

from snnc.ir import NEURONS, Graph

#: Decays this close below 0 count as 0: a float32 ``tau`` equal to ``dt`` in the file gives a decay
#: of about -2e-7, which changes nothing a user would see.
TOLERANCE = 1e-6


def _time_constants(dynamics) -> dict[str, np.ndarray]:
    """Each decay of a neuron by the NIR time constant it comes from."""
    if dynamics.i_decay is None:
        return {"tau": np.asarray(dynamics.v_decay, np.float64)}
    return {"tau_syn": np.asarray(dynamics.i_decay, np.float64), "tau_mem": np.asarray(dynamics.v_decay, np.float64)}


def decay_warnings(graph: Graph) -> list[str]:
    """One line per neuron node with a negative decay at the graph's ``dt``: the node, its
    shortest time constant, ``dt``, the decay they give, and the largest ``dt`` that keeps every
    decay of the node in [0, 1] (its shortest time constant)."""
    dt, lines = graph.dt, []
    for node in graph:
        if not isinstance(node.op, NEURONS):
            continue
        decays = _time_constants(node.op.dynamics())
        if all(np.all(decay >= -TOLERANCE) for decay in decays.values()):
            continue
        # 1 - dt/tau = decay gives back tau; a decay of 1 (no leak) has no time constant to limit dt.
        taus = {name: dt / (1 - decay[decay < 1]) for name, decay in decays.items()}
        field = min((name for name in taus if taus[name].size), key=lambda name: taus[name].min())
        tau, decay = taus[field].min(), decays[field].min()
        negative = np.zeros(node.output_shape, bool)
        for each in decays.values():
            negative |= np.broadcast_to(each < -TOLERANCE, node.output_shape)
        lines.append(f"node {node.name!r}: {field} = {tau:.6g} s is shorter than dt = {dt:.6g} s, so forward Euler "
                     f"gives a decay 1 - dt/{field} = {decay:.6g} (negative in {np.count_nonzero(negative)} of "
                     f"{negative.size} neurons: the state flips sign every step instead of decaying); --dt {tau:.6g} "
                     "or smaller keeps every decay of this node in [0, 1]")
    return lines
