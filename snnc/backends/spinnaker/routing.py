"""Multicast routing on SpiNNaker: a tree over the chip mesh for every packet source, the routers'
tables along the trees, their minimisation to fit a router, and the delivery of packets through them.

The machine is a mesh of chips without wrap-around. Each chip has six links, numbered as on
SpiNNaker (``LINK_STEPS``), and one router whose table holds ``(key, mask, route)`` entries: a packet
with key ``k`` takes the route of the first entry with ``k & mask == key``. A route is a bit set,
bits 0..5 the links and bit ``6 + c`` core ``c`` of the chip (cores are numbered 0..15 here; on a
board core ``c`` is application processor ``c + 1``, processor 0 being the monitor). A packet that
arrived on a link and matches nothing leaves by the opposite link (the default route); a packet
from a core of the chip that matches nothing is dropped. docs/spinnaker.md, "Routing tables", says
how the trees are built and how the tables are made to fit.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from snnc.errors import SnncError
from snnc.targets import Target

Chip = tuple[int, int]
#: The step (dx, dy) to the neighbour behind each link: east, north-east, north, west, south-west, south.
LINK_STEPS = ((1, 0), (1, 1), (0, 1), (-1, 0), (-1, -1), (0, -1))
LINK_NAMES = ("east", "north-east", "north", "west", "south-west", "south")
#: Route bit of core c: 1 << (FIRST_CORE_BIT + c).
FIRST_CORE_BIT = len(LINK_STEPS)
KEY_BITS = 32
_ALL_KEY_BITS = (1 << KEY_BITS) - 1
#: Bit numbers from the most significant down: ties between bits go to the higher one.
_BITS_DOWN = np.arange(KEY_BITS - 1, -1, -1, dtype=np.int64)
#: First-match look-ups compare at most this many key/entry pairs at once.
_MATCH_BLOCK = 1 << 22


class RoutingError(SnncError):
    """Packets that the machine cannot route as asked: a bad source, or a table that does not fit."""


@dataclass(frozen=True)
class Machine:
    """The chip mesh: its size, the application cores of a chip and the entries a router holds."""

    width: int
    height: int
    cores_per_chip: int
    router_entries: int

    @classmethod
    def from_target(cls, target: Target) -> Machine:
        return cls(target.chip["board_width"], target.chip["board_height"], target.cores_per_chip,
                   target.chip["router_entries"])

    def contains(self, chip: Chip) -> bool:
        return 0 <= chip[0] < self.width and 0 <= chip[1] < self.height

    def neighbour(self, chip: Chip, link: int) -> Chip | None:
        """The chip behind ``link`` of ``chip``; None at the edge of the mesh."""
        dx, dy = LINK_STEPS[link]
        other = (chip[0] + dx, chip[1] + dy)
        return other if self.contains(other) else None


def opposite(link: int) -> int:
    return (link + 3) % len(LINK_STEPS)


def link_towards(chip: Chip, neighbour: Chip) -> int:
    return LINK_STEPS.index((neighbour[0] - chip[0], neighbour[1] - chip[1]))


def _legs(a: Chip, b: Chip) -> list[tuple[int, int]]:
    """A shortest way from ``a`` to ``b`` as (link, steps) legs, the longest leg first.

    North-east and south-west steps move along both axes, so a move whose x and y have the same sign
    goes diagonally for the shorter of the two; x and y of opposite signs cannot share steps."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    diagonal = min(abs(dx), abs(dy)) if dx * dy > 0 else 0
    legs = [(1 if dx > 0 else 4, diagonal), (0 if dx > 0 else 3, abs(dx) - diagonal),
            (2 if dy > 0 else 5, abs(dy) - diagonal)]
    return sorted((leg for leg in legs if leg[1]), key=lambda leg: -leg[1])


def hex_distance(a: Chip, b: Chip) -> int:
    """The fewest chip-to-chip hops from ``a`` to ``b``."""
    return sum(steps for _, steps in _legs(a, b))


def shortest_path(a: Chip, b: Chip) -> list[Chip]:
    """The chips from ``a`` to ``b`` (both included) along the longest dimension first."""
    path = [a]
    for link, steps in _legs(a, b):
        dx, dy = LINK_STEPS[link]
        for _ in range(steps):
            path.append((path[-1][0] + dx, path[-1][1] + dy))
    return path


@dataclass(frozen=True)
class MulticastTree:
    """The chips a packet visits from its source chip: each with the chip it comes from (None at the
    source), and the cores that take the packet at each chip."""

    source: Chip
    parent: dict[Chip, Chip | None]
    cores: dict[Chip, frozenset[int]]

    def arrival(self, chip: Chip) -> int | None:
        """The link of ``chip`` the packet arrives on; None at the source chip, where a core sends it."""
        parent = self.parent[chip]
        return None if parent is None else link_towards(chip, parent)

    def routes(self) -> dict[Chip, int]:
        """The route of every chip of the tree: the links to its children and its destination cores."""
        routes = dict.fromkeys(self.parent, 0)
        for chip, parent in self.parent.items():
            if parent is not None:
                routes[parent] |= 1 << link_towards(parent, chip)
        for chip, cores in self.cores.items():
            for core in cores:
                routes[chip] |= 1 << (FIRST_CORE_BIT + core)
        return routes


def _check_chip(machine: Machine, chip: Chip, what: str) -> None:
    if not machine.contains(chip):
        raise RoutingError(f"{what} chip {chip} is outside the {machine.width} x {machine.height} mesh "
                           "(target chip.board_width/board_height)")


def multicast_tree(machine: Machine, source: Chip, destinations: Iterable[tuple[Chip, int]]) -> MulticastTree:
    """A tree from ``source`` that reaches every destination (chip, core) once, each by a shortest path.

    Destination chips are joined nearest first. Each joins at the tree chip closest to it among
    those that lie on a shortest path to it from the source, and follows the longest dimension first
    from there, taking over the tree's branch wherever that way crosses it. Every chip of the tree is
    so reached from the source by a shortest path, and has one parent."""
    _check_chip(machine, source, "source")
    cores_at: dict[Chip, set[int]] = defaultdict(set)
    for chip, core in destinations:
        _check_chip(machine, chip, "destination")
        if not 0 <= core < machine.cores_per_chip:
            raise RoutingError(f"destination core {core} of chip {chip} does not exist: a chip has cores "
                               f"0..{machine.cores_per_chip - 1}")
        cores_at[chip].add(core)
    parent: dict[Chip, Chip | None] = {source: None}
    for chip in sorted(cores_at, key=lambda c: (hex_distance(source, c), c)):
        if chip in parent:
            continue
        distance = hex_distance(source, chip)
        start = min((t for t in parent if hex_distance(source, t) + hex_distance(t, chip) == distance),
                    key=lambda t: hex_distance(t, chip))
        path = shortest_path(start, chip)
        joint = max(i for i, step in enumerate(path) if step in parent)
        for before, step in zip(path[joint:], path[joint + 1:]):
            parent[step] = before
    return MulticastTree(source, parent, {chip: frozenset(cores) for chip, cores in cores_at.items()})


@dataclass(frozen=True)
class MulticastSource:
    """The packets of one source: keys ``key | i`` for the bits ``i`` outside ``mask``, all sent by a
    core of ``chip`` and all going to the same destination (chip, core) pairs."""

    key: int
    mask: int
    chip: Chip
    destinations: frozenset[tuple[Chip, int]]


@dataclass(frozen=True)
class RoutingEntry:
    """One router table entry. ``arrival`` is bookkeeping that the router never sees: the link of
    this chip that the entry's packets arrive on, None for packets sent by a core of this chip and
    for entries that compression merged."""

    key: int
    mask: int
    route: int
    arrival: int | None = None


def _key_arrays(entries: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """The keys and masks of entries (or sources) as int64 arrays."""
    return (np.fromiter((e.key for e in entries), np.int64, len(entries)),
            np.fromiter((e.mask for e in entries), np.int64, len(entries)))


def _overlapping(keys: np.ndarray, masks: np.ndarray, key: int, mask: int) -> np.ndarray:
    """Which of the key/mask pairs share at least one key with ``key/mask``."""
    return ((keys ^ key) & masks & mask) == 0


def _check_sources(sources: Sequence[MulticastSource]) -> None:
    """Every key/mask fits 32 bits with the key inside its mask, and no two sources share a key."""
    for index, source in enumerate(sources):
        if not (0 <= source.key <= _ALL_KEY_BITS and 0 <= source.mask <= _ALL_KEY_BITS) or source.key & ~source.mask:
            raise RoutingError(f"source {index} (key 0x{source.key:08x}, mask 0x{source.mask:08x}): the key and "
                               "mask must be 32-bit with no key bit outside the mask")
    keys, masks = _key_arrays(sources)
    block = max(1, _MATCH_BLOCK // max(1, len(sources)))
    for start in range(0, len(sources), block):
        rows = slice(start, start + block)
        shared = ((keys[rows, None] ^ keys[None, :]) & masks[rows, None] & masks[None, :]) == 0
        shared &= np.arange(start, start + shared.shape[0])[:, None] < np.arange(len(sources))[None, :]
        if shared.any():
            i, j = np.argwhere(shared)[0]
            a, b = sources[start + i], sources[j]
            raise RoutingError(f"sources {start + i} (key 0x{a.key:08x}, mask 0x{a.mask:08x}) and {j} (key "
                               f"0x{b.key:08x}, mask 0x{b.mask:08x}) share keys, so no router can tell their "
                               "packets apart: give every source its own key range")


def routing_tables(machine: Machine, sources: Sequence[MulticastSource]) -> dict[Chip, list[RoutingEntry]]:
    """Every chip's full table: one entry per source whose tree visits the chip, in source order.

    Sources without destinations send nothing and get no entry. Sources with the same chip and
    destinations share one tree."""
    _check_sources(sources)
    trees: dict[tuple[Chip, frozenset], tuple[MulticastTree, dict[Chip, int]]] = {}
    tables: dict[Chip, list[RoutingEntry]] = defaultdict(list)
    for source in sources:
        if not source.destinations:
            continue
        way = (source.chip, frozenset(source.destinations))
        if way not in trees:
            tree = multicast_tree(machine, *way)
            trees[way] = tree, tree.routes()
        tree, routes = trees[way]
        for chip, route in routes.items():
            tables[chip].append(RoutingEntry(source.key, source.mask, route, tree.arrival(chip)))
    return dict(tables)


def remove_default_routes(table: Sequence[RoutingEntry]) -> tuple[list[RoutingEntry], list[RoutingEntry]]:
    """Split ``table`` into the entries the router needs and those its default route replaces.

    An entry goes when its packets arrive on one link and leave only by the opposite link, and no
    entry after it that stays shares a key with it (it would catch the packets instead)."""
    keys, masks = _key_arrays(table)
    staying = np.ones(len(table), dtype=bool)
    for index in range(len(table) - 1, -1, -1):
        entry = table[index]
        if entry.arrival is not None and entry.route == 1 << opposite(entry.arrival):
            later = slice(index + 1, None)
            staying[index] = (staying[later] & _overlapping(keys[later], masks[later], entry.key, entry.mask)).any()
    return ([e for e, stays in zip(table, staying) if stays], [e for e, stays in zip(table, staying) if not stays])


def _generality(masks: np.ndarray) -> np.ndarray:
    """The don't-care bits of each mask."""
    return KEY_BITS - np.bitwise_count(masks)


class _OrderedCovering:
    """An ordered covering in progress: the table, kept in increasing generality, and the original
    key/masks ("aliases") that each of its entries stands for, plus the keys nothing may cover.

    Entries are found by position (their index in the current table) or by id (fixed for an entry's
    life). A must-not-cover key is an alias owned by no entry: it sits below every entry
    (``_NOWHERE``) with route -1, unlike every route."""

    _NOWHERE = np.iinfo(np.int64).max

    def __init__(self, table: Sequence[RoutingEntry], must_not_cover: Sequence[RoutingEntry]):
        keys, masks = _key_arrays(table)
        order = np.argsort(_generality(masks), kind="stable")
        self.entries = [table[i] for i in order]
        self.keys, self.masks = keys[order], masks[order]
        self.routes = np.fromiter((e.route for e in self.entries), np.int64, len(self.entries))
        self.generality = _generality(self.masks)
        self.ids = np.arange(len(table))
        # Every merge retires at least two ids and makes one, so ids stay below twice the table.
        self.positions = np.zeros(2 * len(table) + 1, dtype=np.int64)
        self.positions[self.ids] = self.ids
        self.next_id = len(table)
        # The ids of the entries that share keys with an entry, by id: only merged entries overlap
        # others (the table starts orthogonal), so this stays sparse.
        self.overlaps: dict[int, set[int]] = {}
        blocked_keys, blocked_masks = _key_arrays(must_not_cover)
        self.alias_keys = np.concatenate([self.keys, blocked_keys])
        self.alias_masks = np.concatenate([self.masks, blocked_masks])
        self.alias_owners = np.concatenate([self.ids, np.full(len(must_not_cover), -1)])
        self._sort_aliases()
        # What merging each route's entries saved when last refined, or at most could save; a heap
        # of (-saving, route) pairs, whose pairs are stale where ``promised`` says otherwise.
        self.promised: dict[int, int] = {}
        self.promises: list[tuple[int, int]] = []
        self.changes = self.reseeded_at = 0
        self._promise_all()

    def _promise(self, route: int, saving: int) -> None:
        if saving > 0:
            self.promised[route] = saving
            heapq.heappush(self.promises, (-saving, route))
        else:
            self.promised.pop(route, None)

    def _promise_all(self) -> None:
        routes, counts = np.unique(self.routes, return_counts=True)
        for route, count in zip(routes.tolist(), counts.tolist()):
            self._promise(route, count - 1)
        self.reseeded_at = self.changes

    def _best_promise(self) -> tuple[int, int] | None:
        """The (saving, route) that promises most, dropping stale pairs; None when nothing is promised."""
        while self.promises:
            saving, route = -self.promises[0][0], self.promises[0][1]
            if self.promised.get(route) == saving:
                return saving, route
            heapq.heappop(self.promises)
        return None

    def best_merge(self) -> np.ndarray:
        """The members of the merge that saves the most entries; none when no merge is left.

        Refining every route's merge after every merge is what makes ordered covering slow, so a
        route is refined again only when it promises the most (first its entries less one, then
        what its refined merge saved): the first whose merge still saves at least what every other
        route promises wins. When nothing is promised, every route is refined afresh once before
        giving up. Promises are a heuristic, which only ever chooses among correct merges."""
        while True:
            best = self._best_promise()
            if best is None:
                if self.reseeded_at == self.changes:
                    return np.zeros(0, dtype=np.int64)
                self._promise_all()
                continue
            route = best[1]
            heapq.heappop(self.promises)
            runner_up = self._best_promise()
            least = max(runner_up[0] - 1, 0) if runner_up else 0
            members = self.refine(route, least)
            if len(members):
                return members
            # refine found no merge saving more than ``least``
            self._promise(route, least)

    def _sort_aliases(self) -> None:
        """The aliases in table order of their owners, with the owners' routes, for the down-check."""
        owned = self.alias_owners >= 0
        positions = np.full(len(self.alias_owners), self._NOWHERE)
        positions[owned] = self.positions[self.alias_owners[owned]]
        routes = np.full(len(self.alias_owners), -1)
        routes[owned] = self.routes[positions[owned]]
        order = np.argsort(positions, kind="stable")
        self.alias_order = positions[order], self.alias_keys[order], self.alias_masks[order], routes[order]

    def merged(self, members: np.ndarray) -> tuple[int, int, int]:
        """The key and mask that cover all ``members``, and the position the merged entry goes to:
        below every entry of its generality or less."""
        ones = int(np.bitwise_and.reduce(self.keys[members]))
        zeros = int(np.bitwise_and.reduce(~self.keys[members] & self.masks[members])) & _ALL_KEY_BITS
        mask = ones | zeros
        position = int(np.searchsorted(self.generality, KEY_BITS - mask.bit_count(), side="right"))
        return ones, mask, position

    def down_check(self, members: np.ndarray, route: int, least: int) -> np.ndarray:
        """Drop members until the merged entry covers no key of an entry below it with another route
        (nor a must-not-cover key); return no members once ``least`` + 1 or fewer are left.

        Of the covered aliases with the fewest bits that the merge could still fix, one bit is fixed
        to the opposite of the alias's value, choosing the bit that drops the fewest members."""
        alias_positions, alias_keys, alias_masks, alias_routes = self.alias_order
        while len(members) - 1 > least:
            key, mask, position = self.merged(members)
            below = slice(int(np.searchsorted(alias_positions, position)), None)
            covered = (alias_routes[below] != route) & _overlapping(alias_keys[below], alias_masks[below], key, mask)
            if not covered.any():
                return members
            covered_keys = alias_keys[below][covered]
            settable = alias_masks[below][covered] & ~mask & _ALL_KEY_BITS
            counts = np.bitwise_count(settable)
            if counts.min() == 0:
                break
            tightest = counts == counts.min()
            # bits where some tightest alias holds a 1 (so the merge must hold 0 there), and a 0
            want_zero = int(np.bitwise_or.reduce(settable[tightest] & covered_keys[tightest]))
            want_one = int(np.bitwise_or.reduce(settable[tightest] & ~covered_keys[tightest]))
            # members kept when a bit is fixed, by [bit from the most significant down, value 0 or 1]
            fixed = (self.masks[members, None] >> _BITS_DOWN) & 1
            ones = (self.keys[members, None] >> _BITS_DOWN) & 1
            kept = np.stack([(fixed & (1 - ones)).sum(axis=0), (fixed & ones).sum(axis=0)], axis=1)
            allowed = np.stack([(want_zero >> _BITS_DOWN) & 1, (want_one >> _BITS_DOWN) & 1], axis=1) == 1
            bit, value = divmod(int(np.argmax(np.where(allowed, kept, -1))), 2)
            members = members[(fixed[:, bit] == 1) & (ones[:, bit] == value)]
        return members[:0]

    def up_check(self, members: np.ndarray, route: int, least: int) -> tuple[np.ndarray, bool]:
        """Drop each member that an entry with another route between it and the merged entry's position
        would catch keys of, lowest member first; return no members once ``least`` + 1 or fewer are left."""
        _, _, position = self.merged(members)
        changed = False
        for member in sorted((m for m in members.tolist() if int(self.ids[m]) in self.overlaps), reverse=True):
            others = self.positions[list(self.overlaps[int(self.ids[member])])]
            if ((others > member) & (others < position) & (self.routes[others] != route)).any():
                members = members[members != member]
                changed = True
                if len(members) - 1 <= least:
                    return members[:0], changed
                _, _, position = self.merged(members)
        return members, changed

    def refine(self, route: int, least: int) -> np.ndarray:
        """The largest merge of the entries with ``route`` that the down- and up-checks allow, if it
        saves more than ``least`` entries; else no members."""
        members = self.down_check(np.flatnonzero(self.routes == route), route, least)
        if len(members):
            members, changed = self.up_check(members, route, least)
            # Only the down-check needs repeating: dropping members moves the merged entry up.
            if changed and len(members):
                members = self.down_check(members, route, least)
        return members

    def apply(self, members: np.ndarray) -> None:
        """Replace ``members`` by their merged entry."""
        key, mask, position = self.merged(members)
        route = int(self.routes[members[0]])
        member_ids = self.ids[members].tolist()
        merged_id, self.next_id = self.next_id, self.next_id + 1
        for member_id in member_ids:
            for other in self.overlaps.pop(member_id, ()):
                if other in self.overlaps:
                    self.overlaps[other].discard(member_id)
                    if not self.overlaps[other]:
                        del self.overlaps[other]
        staying = np.ones(len(self.entries), dtype=bool)
        staying[members] = False
        at = position - len(members)
        self.entries = [e for e, stays in zip(self.entries, staying) if stays]
        self.entries.insert(at, RoutingEntry(key, mask, route))
        self.ids = np.insert(self.ids[staying], at, merged_id)
        self.keys = np.insert(self.keys[staying], at, key)
        self.masks = np.insert(self.masks[staying], at, mask)
        self.routes = np.insert(self.routes[staying], at, route)
        self.generality = np.insert(self.generality[staying], at, KEY_BITS - mask.bit_count())
        self.positions[self.ids] = np.arange(len(self.ids))
        self.alias_owners[np.isin(self.alias_owners, member_ids)] = merged_id
        sharing = self.ids[_overlapping(self.keys, self.masks, key, mask)].tolist()
        for other in sharing:
            if other != merged_id:
                self.overlaps.setdefault(other, set()).add(merged_id)
                self.overlaps.setdefault(merged_id, set()).add(other)
        self._sort_aliases()
        self.changes += 1
        self._promise(route, int((self.routes == route).sum()) - 1)


def ordered_covering(table: Sequence[RoutingEntry], target_length: int,
                     must_not_cover: Sequence[RoutingEntry] = ()) -> list[RoutingEntry]:
    """Mundy, Heathcote and Garside's ordered covering (2016): merge entries of the same route into
    entries with more don't-care bits until the table has ``target_length`` entries or no merge is left.

    ``table`` must be orthogonal (no two entries share a key), as ``routing_tables`` makes it. The
    result routes every key of every entry of ``table`` as ``table`` does, and matches no key of
    ``must_not_cover`` (the entries that default routing took over: their packets still pass). Merged
    entries have no ``arrival``."""
    covering = _OrderedCovering(table, must_not_cover)
    while len(covering.entries) > target_length:
        members = covering.best_merge()
        if not len(members):
            break
        covering.apply(members)
    return covering.entries


def minimise_tables(machine: Machine, tables: dict[Chip, list[RoutingEntry]]) -> dict[Chip, list[RoutingEntry]]:
    """Tables that fit the routers: default routes removed from each, then ordered covering on the
    tables still above ``machine.router_entries`` (only those: a table that fits stays exact, one
    entry per source, and compression time goes where it is needed)."""
    minimised = {}
    for chip, table in tables.items():
        kept, removed = remove_default_routes(table)
        fitted = ordered_covering(kept, machine.router_entries, removed) if len(kept) > machine.router_entries else kept
        if len(fitted) > machine.router_entries:
            raise RoutingError(f"chip {chip}: its routing table has {len(table)} entries, {len(kept)} after default "
                               f"route removal and {len(fitted)} after ordered covering, more than the "
                               f"{machine.router_entries} a router holds (target chip.router_entries): spread the "
                               "cores over more chips, or place fewer populations on the chips around it")
        minimised[chip] = fitted
    return minimised


def _table_arrays(table: Sequence[RoutingEntry]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys, masks = _key_arrays(table)
    return keys, masks, np.fromiter((e.route for e in table), np.int64, len(table))


def _first_matches(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], packet_keys: np.ndarray) -> np.ndarray:
    """The route of the first entry that each packet key matches; -1 where none does."""
    keys, masks, routes = arrays
    found = np.full(len(packet_keys), -1, dtype=np.int64)
    if not len(keys):
        return found
    block = max(1, _MATCH_BLOCK // max(1, len(keys)))
    for start in range(0, len(packet_keys), block):
        matches = (packet_keys[start:start + block, None] & masks[None, :]) == keys[None, :]
        hit = matches.any(axis=1)
        found[start:start + block][hit] = routes[matches.argmax(axis=1)[hit]]
    return found


def lookup(table: Sequence[RoutingEntry], key: int) -> int | None:
    """The route of the first entry of ``table`` that ``key`` matches, None if none does."""
    route = int(_first_matches(_table_arrays(table), np.array([key], dtype=np.int64))[0])
    return None if route < 0 else route


@dataclass(frozen=True)
class Delivery:
    """Where one packet went: the (chip, core) pairs that took it, the chip-to-chip hops of all its
    copies and the router look-ups (one per chip visited)."""

    destinations: frozenset[tuple[Chip, int]]
    hops: int
    lookups: int


class Routers:
    """The routers of a machine loaded with tables; chips without a table default-route everything."""

    def __init__(self, machine: Machine, tables: dict[Chip, list[RoutingEntry]]):
        self.machine = machine
        self.tables = {chip: _table_arrays(table) for chip, table in tables.items()}

    def deliver(self, chip: Chip, key: int) -> Delivery:
        """Send one packet with ``key`` from a core of ``chip`` and follow it through the routers."""
        return self.deliver_keys(chip, [key])[0]

    def deliver_keys(self, chip: Chip, keys: Iterable[int]) -> list[Delivery]:
        """``deliver`` for many packets from ``chip`` at once.

        Raises RoutingError for a packet that its own chip drops, that reaches a chip twice (a
        routing loop, or copies that meet) or that a route sends off the mesh."""
        _check_chip(self.machine, chip, "source")
        keys = np.fromiter(keys, np.int64)
        destinations: list[set[tuple[Chip, int]]] = [set() for _ in keys]
        hops = np.zeros(len(keys), dtype=np.int64)
        lookups = np.zeros(len(keys), dtype=np.int64)
        visited: dict[Chip, np.ndarray] = {}
        empty = _table_arrays([])
        waiting = deque([(chip, None, np.arange(len(keys)))])
        while waiting:
            here, arrival, packets = waiting.popleft()
            seen = visited.setdefault(here, np.zeros(len(keys), dtype=bool))
            if seen[packets].any():
                raise RoutingError(f"the packet with key 0x{keys[packets[seen[packets]][0]]:08x} from chip {chip} "
                                   f"reaches chip {here} twice: the tables route it in a loop")
            seen[packets] = True
            lookups[packets] += 1
            routes = _first_matches(self.tables.get(here, empty), keys[packets])
            unmatched = routes < 0
            if unmatched.any():
                if arrival is None:
                    raise RoutingError(f"the packet with key 0x{keys[packets[unmatched][0]]:08x} matches no entry "
                                       f"of its source chip {here}, whose router drops it")
                routes[unmatched] = 1 << opposite(arrival)
            for route in np.unique(routes).tolist():
                group = packets[routes == route]
                for core in range(self.machine.cores_per_chip):
                    if route >> (FIRST_CORE_BIT + core) & 1:
                        for packet in group.tolist():
                            destinations[packet].add((here, core))
                for link in range(len(LINK_STEPS)):
                    if route >> link & 1:
                        neighbour = self.machine.neighbour(here, link)
                        if neighbour is None:
                            raise RoutingError(f"the packet with key 0x{keys[group[0]]:08x} from chip {chip} leaves "
                                               f"the mesh by the {LINK_NAMES[link]} link of chip {here}")
                        hops[group] += 1
                        waiting.append((neighbour, opposite(link), group))
        return [Delivery(frozenset(d), int(h), int(n)) for d, h, n in zip(destinations, hops, lookups)]
