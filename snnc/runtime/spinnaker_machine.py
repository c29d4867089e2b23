"""The machine-level SpiNNaker simulator: it executes the backend's machine data, not the IR.

Each tick (neuron/c_main.c ``timer_callback``), for a batch of samples at once:

1. every population core reads and clears its ring-buffer slot for the tick and updates its neurons
   from its own neuron data (``NeuronModel``, sPyNNaker's s16.15 arithmetic); spike-source cores read
   their spikes of the tick; delay-extension cores send what their source sent 16 x stage ticks ago;
2. every spike leaves its core as a multicast packet with its key; the packet goes through the
   routers' tables (first match; default route straight on) to the cores the tables name;
3. a population core looks the key up in its master population table, fetches the row, and adds
   each synaptic word's weight to ring-buffer slot ``(tick + delay) mod 16`` of its type and neuron.

The tables are static, so each key's journey (the cores it reaches, its hops and look-ups) and each
core's row for it are worked out once, when the machine is loaded, by running them on that key;
each tick then moves the packets of the spikes that happened. Slots are saturated at 16 bits when
read: sPyNNaker saturates each addition, and with non-negative weights both give min(sum, 0xFFFF).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnc.backends.artifact import malformed
from snnc.backends.spinnaker import routing
from snnc.backends.spinnaker.machine import (DELAY_EXTENSION, MACHINE_ARRAYS, POPULATION, ROW_HEADER_WORDS,
                                             SPIKE_SOURCE, WHAT, MachineData, Vertex, decode_words)
from snnc.errors import SnncError
from snnc.ir import Graph
from snnc.runtime.activity import Activity, PopulationActivity
from snnc.runtime.spinnaker import SYNAPSE_TYPES, NeuronModel
from snnc.targets import Target


@dataclass
class _Incoming:
    """The packets of one sending vertex that reach one population core: which of the sender's keys
    (positions in its emission) arrive, and what their rows add, as one weight matrix per
    (synapse type, delay) present: (arriving keys, neurons of the core)."""

    sender: int
    keys: np.ndarray
    matrices: dict[tuple[int, int], np.ndarray]
    #: synaptic words in each arriving key's row
    row_words: np.ndarray


@dataclass
class MachineCounts:
    """What the machine did, summed over the batch: per tick and vertex (columns in vertex id order),
    and in total over the run."""

    packets_sent: np.ndarray  # (T, vertices)
    packets_received: np.ndarray  # (T, vertices): packets that found a row on a population core
    synaptic_words: np.ndarray  # (T, vertices): synaptic words processed
    router_lookups: int = 0
    hops: int = 0
    #: packets that reached a core whose master population table has no entry for their key
    population_table_misses: int = 0


class MachineSimulator:
    def __init__(self, machine: MachineData):
        self.machine = machine
        self.vertices = {v.id: v for v in machine.vertices}
        mesh = routing.Machine(machine.width, machine.height, machine.cores_per_chip, machine.router_entries)
        self.routers = routing.Routers(mesh, {chip: [routing.RoutingEntry(int(k), int(m), int(r)) for k, m, r in table]
                                              for chip, table in machine.routing_tables.items()})
        self.models = {i: NeuronModel(params, (self.vertices[i].atoms,)) for i, params in machine.neurons.items()}
        self.journeys = {v.id: self._journeys(v) for v in machine.vertices}
        self.incoming: dict[int, list[_Incoming]] = {i: [] for i in machine.neurons}
        self.misses_per_key: dict[int, np.ndarray] = {}
        #: delay extension -> the keys (neurons) of its source that reach it
        self.delayed_keys: dict[int, np.ndarray] = {}
        for vertex in machine.vertices:
            self._fetch_rows(vertex)
        self.counts: MachineCounts | None = None
        self.activity: Activity | None = None
        #: after a run: every population's spikes, (batch, T, *shape) int8
        self.spikes: dict[str, np.ndarray] = {}

    def _journeys(self, vertex: Vertex):
        """For each key the vertex sends: the vertices it reaches, and its hops and router look-ups.
        A key may reach population cores, and its sender's delay extension; a core that runs
        nothing, a spike source or another vertex's delay extension has nothing to do with it."""
        keys = vertex.keys(self.machine.index_bits)
        at = self.machine.vertex_at()
        reached, hops, lookups = [], np.zeros(len(keys), np.int64), np.zeros(len(keys), np.int64)
        if not vertex.sends:
            return [[] for _ in keys], hops, lookups
        for position, delivery in enumerate(self.routers.deliver_keys(vertex.chip, keys.tolist())):
            packet = f"routing: key {int(keys[position]):#010x} of {vertex.kind} vertex {vertex.id}"
            missing = sorted(place for place in delivery.destinations if place not in at)
            if missing:
                raise SnncError(f"{packet} reaches (chip, core) {missing}, which run nothing")
            receivers = [at[place] for place in delivery.destinations]
            wrong = next((r for r in receivers if r.kind == SPIKE_SOURCE
                          or (r.kind == DELAY_EXTENSION and r.source != vertex.id)), None)
            if wrong is not None:
                takes = "no packets" if wrong.kind == SPIKE_SOURCE else f"only those of vertex {wrong.source}"
                raise SnncError(f"{packet} reaches {wrong.kind} vertex {wrong.id}, which takes {takes}")
            reached.append([r.id for r in receivers])
            hops[position], lookups[position] = delivery.hops, delivery.lookups
        return reached, hops, lookups

    def _fetch_rows(self, sender: Vertex) -> None:
        """For every population core that ``sender``'s keys reach: the master population table look-up
        and the rows of those keys, decoded."""
        machine = self.machine
        keys = sender.keys(machine.index_bits)
        reached, _, _ = self.journeys[sender.id]
        receivers = sorted({r for reaching in reached for r in reaching})
        for receiver in receivers:
            arriving = np.array([p for p, reaching in enumerate(reached) if receiver in reaching], np.int64)
            if self.vertices[receiver].kind == DELAY_EXTENSION:
                self.delayed_keys[receiver] = arriving  # it holds the spikes themselves
                continue
            table = machine.population_tables[receiver]
            words_of = machine.synaptic_matrices[receiver]
            k = keys[arriving][:, None]
            match = (k & table[:, 1][None, :]) == table[:, 0][None, :]
            found = match.any(axis=1)
            self.misses_per_key.setdefault(sender.id, np.zeros(len(keys), np.int64))[arriving[~found]] += 1
            arriving, entry = arriving[found], table[match[found].argmax(axis=1)]
            if not len(arriving):
                continue
            key, mask, address, row_length, atoms = (entry[:, c].astype(np.int64) for c in range(5))
            local = keys[arriving].astype(np.int64) & ~mask
            rows = (local >> machine.index_bits) * atoms + (local & ((1 << machine.index_bits) - 1))
            starts = address + rows * (row_length + ROW_HEADER_WORDS)
            n_fixed = words_of[starts + 1].astype(np.int64)
            size = self.vertices[receiver].atoms
            key_of_word = np.repeat(np.arange(len(arriving)), n_fixed)
            within_row = np.arange(n_fixed.sum()) - np.repeat(np.cumsum(n_fixed) - n_fixed, n_fixed)
            words = words_of[np.repeat(starts + ROW_HEADER_WORDS, n_fixed) + within_row]
            weight, delay, synapse_type, index = decode_words(words, machine.index_bits, machine.delay_bits)
            matrices = {}
            for kind, ticks in sorted(set(zip(synapse_type.tolist(), delay.tolist()))):
                chosen = (synapse_type == kind) & (delay == ticks)
                matrix = np.zeros((len(arriving), size))
                np.add.at(matrix, (key_of_word[chosen], index[chosen]), weight[chosen])
                matrices[(kind, ticks)] = matrix
            self.incoming[receiver].append(_Incoming(sender.id, arriving, matrices, n_fixed))

    def run(self, inputs: dict[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
        """Output spikes by Output node, (batch, steps, *shape) int8, from inputs (batch, steps, *shape)
        of 0/1; ``self.counts`` and ``self.activity`` afterwards hold what the machine did."""
        machine = self.machine
        batch = next(iter(inputs.values())).shape[0]
        slots = machine.ring_buffer_slots
        flat = {name: np.asarray(x).reshape(batch, steps, -1) for name, x in inputs.items()}
        rings = {i: np.zeros((batch, slots, len(SYNAPSE_TYPES), self.vertices[i].atoms), np.int64)
                 for i in machine.neurons}
        states = {i: {name: np.tile(np.asarray(params[f"initial_{name}"], np.int64), (batch, 1))
                      for name in NeuronModel.state_names} for i, params in machine.neurons.items()}
        extensions = [v for v in machine.vertices if v.kind == DELAY_EXTENSION]
        held = {v.id: np.zeros((batch, slots * len(v.stages) + 1, v.atoms), bool) for v in extensions}
        spikes = {i: np.zeros((batch, steps, self.vertices[i].atoms), np.int8) for i in machine.neurons}
        active = {i: np.zeros((steps, self.vertices[i].atoms), np.int32) for i in machine.neurons}
        sent = {v.id: np.zeros(len(v.keys(machine.index_bits)), np.int64) for v in machine.vertices}
        shape = (steps, len(machine.vertices))
        counts = MachineCounts(np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64))

        for tick in range(steps):
            emitted: dict[int, np.ndarray] = {}
            for vertex in machine.vertices:
                if vertex.kind == POPULATION:
                    ring = rings[vertex.id][:, tick % slots]
                    state = states[vertex.id]
                    busy = ring.any(axis=1)
                    for value in state.values():
                        busy |= value != 0
                    active[vertex.id][tick] = busy.sum(axis=0)
                    fired = self.models[vertex.id].step(state, ring[:, 0], ring[:, 1])
                    ring[:] = 0
                    spikes[vertex.id][:, tick] = fired
                    emitted[vertex.id] = fired
                elif vertex.kind == SPIKE_SOURCE:
                    emitted[vertex.id] = flat[vertex.node][:, tick, vertex.neurons] != 0
            for vertex in extensions:
                buffer = held[vertex.id]
                length = buffer.shape[1]
                emitted[vertex.id] = np.concatenate([buffer[:, (tick - slots * s) % length] for s in vertex.stages],
                                                    axis=1)
                buffer[:, tick % length] = False
                reaching = self.delayed_keys.get(vertex.id, np.zeros(0, np.int64))
                buffer[:, tick % length, reaching] = emitted[vertex.source][:, reaching]
            for vertex_id, fired in emitted.items():
                if self.vertices[vertex_id].sends:
                    per_key = fired.sum(axis=0)
                    sent[vertex_id] += per_key
                    counts.packets_sent[tick, vertex_id] = per_key.sum()
            for receiver, sources in self.incoming.items():
                ring = rings[receiver]
                for incoming in sources:
                    arriving = emitted[incoming.sender][:, incoming.keys]
                    if not arriving.any():
                        continue
                    packets = arriving.astype(np.float64)
                    for (synapse_type, delay), matrix in incoming.matrices.items():
                        ring[:, (tick + delay) % slots, synapse_type] += np.rint(packets @ matrix).astype(np.int64)
                    per_key = arriving.sum(axis=0)
                    counts.packets_received[tick, receiver] += per_key.sum()
                    counts.synaptic_words[tick, receiver] += per_key @ incoming.row_words

        for vertex in machine.vertices:
            _, hops, lookups = self.journeys[vertex.id]
            counts.hops += int(sent[vertex.id] @ hops)
            counts.router_lookups += int(sent[vertex.id] @ lookups)
            if vertex.id in self.misses_per_key:
                counts.population_table_misses += int(sent[vertex.id] @ self.misses_per_key[vertex.id])
        self.counts = counts
        self.activity = self._activity(batch, steps, flat, spikes, active)
        self.spikes = {node: self._population(node, spikes).reshape(batch, steps, *machine.shapes[node])
                       for node in {v.node for v in machine.vertices if v.kind == POPULATION}}
        return {output: (flat[source] != 0).astype(np.int8).reshape(batch, steps, *machine.shapes[output])
                if source in flat else self.spikes[source] for output, source in machine.outputs.items()}

    def _population(self, node: str, per_vertex: dict[int, np.ndarray]) -> np.ndarray:
        """A population's values (..., neurons), gathered from its cores' slices."""
        cores = [v for v in self.machine.vertices if v.kind == POPULATION and v.node == node]
        first = per_vertex[cores[0].id]
        joined = np.zeros((*first.shape[:-1], int(np.prod(self.machine.shapes[node]))), first.dtype)
        for vertex in cores:
            joined[..., vertex.neurons] = per_vertex[vertex.id]
        return joined

    def _activity(self, batch, steps, flat, spikes, active) -> Activity:
        machine = self.machine
        populations = {name: PopulationActivity(spikes=(x != 0).sum(axis=0, dtype=np.int32).reshape(steps, *machine.shapes[name]))
                       for name, x in flat.items()}
        for node in {v.node for v in machine.vertices if v.kind == POPULATION}:
            shape = (steps, *machine.shapes[node])
            populations[node] = PopulationActivity(
                spikes=self._population(node, spikes).sum(axis=0, dtype=np.int32).reshape(shape),
                active=self._population(node, active).reshape(shape))
        return Activity(batch, steps, populations)


def load_machine(directory: Path, graph: Graph, target: Target) -> MachineSimulator:
    """The machine-level simulator on the machine data of the artifact in ``directory`` (its IR
    ``graph`` and its ``target``), checked by ``MachineData.load``. Where the routing tables drop a
    packet, loop it, send it off the board or to a core that runs nothing, which only following
    each key through them shows, the error names the artifact's tables too."""
    machine = MachineData.load(directory, graph, target)
    try:
        return MachineSimulator(machine)
    except SnncError as e:
        raise malformed(directory, MACHINE_ARRAYS, WHAT, f"its routing tables: {e}") from None


def machine_report(simulator: MachineSimulator, target: Target, batch: int) -> dict:
    """What the machine did, per sample, priced with the target's per-event costs.

    A core's busy time in a tick is its neuron updates (every neuron, every tick, as sPyNNaker's
    timer callback does), packets received, synaptic words processed and packets sent, each times
    its time in the target file; a tick lasts the target's step (1 ms in real time) unless the
    busiest core needs longer, which on a board is an overrun that loses packets (a warning here).
    Energy is every event times its energy, plus the static power of the chips in use."""
    machine, counts = simulator.machine, simulator.counts
    costs = target.costs
    neurons = np.array([v.atoms if v.kind == POPULATION else 0 for v in machine.vertices], np.float64)
    events = {"neuron_update_active": np.broadcast_to(neurons, counts.packets_sent.shape) * batch,
              "message_in": counts.packets_received, "synaptic_op": counts.synaptic_words,
              "spike_out": counts.packets_sent}
    busy = sum(events[kind] * costs[kind].time_s for kind in events) / batch  # (T, vertices) per sample
    tick = np.maximum(busy.max(axis=1, initial=0.0), target.step_time_min_s)
    chips = len({v.chip for v in machine.vertices})
    latency = float(tick.sum())
    energy = {kind: float(values.sum()) * costs[kind].energy_j / batch for kind, values in events.items()}
    energy["chip_hop"] = counts.hops * costs["chip_hop"].energy_j / batch
    energy["static"] = target.static_power_w * chips * latency
    overruns = np.flatnonzero(busy.max(axis=1, initial=0.0) > target.step_time_min_s)
    warnings = [f"{len(overruns)} ticks (first: {int(overruns[0])}) need longer than the {target.step_time_min_s:g} s "
                "tick on the busiest core: a board running in real time would drop packets"] if len(overruns) else []
    tables = [{"chip": list(chip), "entries": int(len(table)), "generated": int(machine.routing_entries_generated[chip])}
              for chip, table in sorted(machine.routing_tables.items())]
    return {
        "cores": {kind: sum(v.kind == kind for v in machine.vertices) for kind in (POPULATION, SPIKE_SOURCE, DELAY_EXTENSION)},
        "chips": chips,
        "packets_sent": float(counts.packets_sent.sum()) / batch,
        "packets_received": float(counts.packets_received.sum()) / batch,
        "router_lookups": counts.router_lookups / batch,
        "hops": counts.hops / batch,
        "synaptic_words": float(counts.synaptic_words.sum()) / batch,
        "population_table_misses": counts.population_table_misses / batch,
        "routing_tables": {"limit": machine.router_entries, "largest": max((t["entries"] for t in tables), default=0),
                           "per_chip": tables},
        "latency_s": latency,
        "energy_j": float(sum(energy.values())),
        "energy_breakdown_j": energy,
        "per_core": [{"vertex": v.id, "kind": v.kind, "node": v.node, "neurons": [list(r) for r in v.ranges], "chip": list(v.chip),
                      "core": v.core, "packets_sent": float(counts.packets_sent[:, v.id].sum()) / batch,
                      "packets_received": float(counts.packets_received[:, v.id].sum()) / batch,
                      "synaptic_words": float(counts.synaptic_words[:, v.id].sum()) / batch,
                      "busy_max_s": float(busy[:, v.id].max(initial=0.0))} for v in machine.vertices],
        "warnings": warnings,
    }
