"""SpiNNaker multicast routing: trees, tables, default-route removal, ordered covering, delivery.

Every table is checked the way a board would use it: each key of each source is sent from its chip
through the routers (``Routers.deliver_keys``) and must reach exactly the source's destinations.
"""

import numpy as np
import pytest

from snnc.backends.spinnaker.routing import (
    LINK_STEPS,
    Delivery,
    Machine,
    MulticastSource,
    Routers,
    RoutingEntry,
    RoutingError,
    hex_distance,
    lookup,
    minimise_tables,
    multicast_tree,
    opposite,
    ordered_covering,
    remove_default_routes,
    routing_tables,
)
from snnc.targets import TargetError, load_target

SPINN5 = Machine.from_target(load_target("spinnaker"))
FULL = 0xFFFFFFFF
EAST, NORTH_EAST, NORTH, WEST, SOUTH_WEST, SOUTH = range(6)


def core_bit(core):
    return 1 << (6 + core)


def keys_of(source):
    """Every key of a source: its key with each value of the low bits its mask leaves free."""
    free = ~source.mask & FULL
    assert free & (free + 1) == 0, "test sources leave only low bits free"
    return range(source.key, source.key + free + 1)


def random_destinations(rng, machine, chips=3, cores=3):
    return frozenset(((int(rng.integers(machine.width)), int(rng.integers(machine.height))), int(core))
                     for _ in range(rng.integers(1, chips + 1))
                     for core in rng.choice(machine.cores_per_chip, rng.integers(1, cores + 1), replace=False))


def network(rng, machine, populations, neurons=16):
    """sPyNNaker-like sources: populations of 1..8 slices of ``neurons`` neurons, one per core of the
    population's chip, with consecutive keys and the population's destinations."""
    sources = []
    for _ in range(populations):
        chip = (int(rng.integers(machine.width)), int(rng.integers(machine.height)))
        destinations = random_destinations(rng, machine)
        for _ in range(rng.integers(1, 9)):
            sources.append(MulticastSource(len(sources) * neurons, FULL ^ (neurons - 1), chip, destinations))
    return sources


def assert_every_key_delivered(machine, tables, sources):
    """Each key of each source reaches exactly its destinations, over its tree's links."""
    routers = Routers(machine, tables)
    for source in sources:
        tree_hops = len(multicast_tree(machine, source.chip, source.destinations).parent) - 1
        for delivery in routers.deliver_keys(source.chip, keys_of(source)):
            assert delivery.destinations == source.destinations
            assert delivery.hops == tree_hops and delivery.lookups == tree_hops + 1


def assert_routes_as_before(original, result, must_not_cover=()):
    """Every key of every original entry takes its route; no must-not-cover key matches anything."""
    for entry in original:
        for key in keys_of(entry):
            assert lookup(result, key) == entry.route, hex(key)
    for entry in must_not_cover:
        assert all(lookup(result, key) is None for key in keys_of(entry))


# -- the machine


def test_machine_comes_from_the_target_file(tmp_path):
    assert SPINN5 == Machine(width=8, height=6, cores_per_chip=16, router_entries=1024)
    text = load_target("spinnaker").path.read_text()
    path = tmp_path / "spinnaker_without_routers.toml"
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("router_entries")))
    with pytest.raises(TargetError, match="\\[chip\\] router_entries: is missing"):
        load_target(str(path))
    assert "router_entries" not in load_target("loihi").chip


def test_links_are_numbered_as_on_spinnaker():
    assert [SPINN5.neighbour((3, 3), link) for link in range(6)] == [(4, 3), (4, 4), (3, 4), (2, 3), (2, 2), (3, 2)]
    assert SPINN5.neighbour((0, 0), WEST) is None and SPINN5.neighbour((7, 5), NORTH_EAST) is None
    assert [opposite(link) for link in range(6)] == [WEST, SOUTH_WEST, SOUTH, EAST, NORTH_EAST, NORTH]
    # a diagonal step moves along x and y together, but only north-east and south-west
    assert hex_distance((0, 0), (3, 2)) == 3 and hex_distance((3, 2), (0, 0)) == 3
    assert hex_distance((0, 2), (3, 0)) == 5 and hex_distance((2, 2), (2, 5)) == 3


# -- trees


@pytest.mark.parametrize("seed", range(40))
def test_trees_reach_every_destination_once_by_shortest_paths(seed):
    rng = np.random.default_rng(seed)
    source = (int(rng.integers(SPINN5.width)), int(rng.integers(SPINN5.height)))
    destinations = random_destinations(rng, SPINN5, chips=int(rng.integers(1, 20)), cores=4)
    tree = multicast_tree(SPINN5, source, destinations)
    assert tree.parent[source] is None
    for chip in tree.parent:
        # walking up reaches the source in as many steps as the shortest path (so no loop)
        steps, up = 0, chip
        while up != source:
            assert tree.parent[up] is not None and (up[0] - tree.parent[up][0], up[1] - tree.parent[up][1]) in LINK_STEPS
            up, steps = tree.parent[up], steps + 1
            assert steps <= len(tree.parent)
        assert steps == hex_distance(source, chip)
    assert {(chip, core) for chip, cores in tree.cores.items() for core in cores} == destinations
    children = {parent for parent in tree.parent.values() if parent is not None}
    assert all(chip in tree.cores for chip in tree.parent if chip not in children), "every leaf is a destination"
    # one packet from each core of the source chip reaches each destination once
    tables = routing_tables(SPINN5, [MulticastSource(0x100, 0xFFFFFF00, source, destinations)])
    delivery = Routers(SPINN5, tables).deliver(source, 0x1A5)
    assert delivery.destinations == destinations and delivery.hops == len(tree.parent) - 1


def test_trees_share_the_way_to_destinations_in_the_same_direction():
    tree = multicast_tree(SPINN5, (0, 0), [((4, 0), 1), ((5, 0), 2), ((4, 1), 3), ((0, 0), 0)])
    # east to (5, 0), with (4, 1) one diagonal step off that line
    assert len(tree.parent) == 7 and tree.parent[(4, 1)] == (3, 0)
    routes = tree.routes()
    assert routes[(0, 0)] == 1 << EAST | core_bit(0)
    assert routes[(3, 0)] == 1 << EAST | 1 << NORTH_EAST
    assert routes[(4, 0)] == 1 << EAST | core_bit(1)
    assert tree.arrival((4, 1)) == SOUTH_WEST and tree.arrival((0, 0)) is None


def test_bad_chips_and_cores_are_refused():
    with pytest.raises(RoutingError, match=r"destination chip \(8, 0\) is outside the 8 x 6 mesh"):
        multicast_tree(SPINN5, (0, 0), [((8, 0), 1)])
    with pytest.raises(RoutingError, match="destination core 16 of chip .* cores 0..15"):
        multicast_tree(SPINN5, (0, 0), [((1, 0), 16)])


def test_sources_must_have_their_own_keys():
    here = frozenset({((1, 1), 0)})
    with pytest.raises(RoutingError, match="sources 0 .* and 2 .* share keys"):
        routing_tables(SPINN5, [MulticastSource(0x100, 0xFFFFFF00, (0, 0), here),
                                MulticastSource(0x200, 0xFFFFFF00, (0, 0), here),
                                MulticastSource(0x180, 0xFFFFFF80, (0, 0), here)])
    with pytest.raises(RoutingError, match="source 0 .* no key bit outside the mask"):
        routing_tables(SPINN5, [MulticastSource(0x101, 0xFFFFFF00, (0, 0), here)])


# -- tables, default routes, compression


def test_tables_deliver_every_key_before_and_after_default_route_removal():
    rng = np.random.default_rng(1)
    sources = network(rng, SPINN5, populations=150)
    tables = routing_tables(SPINN5, sources)
    assert_every_key_delivered(SPINN5, tables, sources)
    kept = {chip: remove_default_routes(table)[0] for chip, table in tables.items()}
    removed = sum(len(table) for table in tables.values()) - sum(len(table) for table in kept.values())
    assert removed > 0.1 * sum(len(table) for table in tables.values())
    assert_every_key_delivered(SPINN5, kept, sources)


def test_default_routes_replace_only_straight_unaliased_entries():
    straight = RoutingEntry(0x100, 0xFFFFFF00, 1 << EAST, arrival=WEST)
    table = [straight,
             RoutingEntry(0x200, 0xFFFFFF00, 1 << NORTH, arrival=WEST),  # turns
             RoutingEntry(0x300, 0xFFFFFF00, 1 << EAST | core_bit(2), arrival=WEST),  # also to a core
             RoutingEntry(0x400, 0xFFFFFF00, 1 << EAST, arrival=None)]  # from a core of this chip
    kept, removed = remove_default_routes(table)
    assert removed == [straight] and kept == table[1:]
    # a later entry that shares keys with it would catch its packets once it is gone
    aliased = [straight, RoutingEntry(0x000, 0xFFFFFE00, core_bit(0), arrival=SOUTH)]
    assert remove_default_routes(aliased) == (aliased, [])


#: Tables (key, mask, route) where merging all entries of a route would catch another's keys.
#: A: the merge of two routes' entries goes above an earlier merge and would hide 0b1100 (down-check).
#: B: a member would move below a more general entry of another route that holds its key (up-check).
#: C: the merge would catch a key that default routing carries through (must not cover).
ADVERSARIAL = {
    "hides an alias below": ([(0b0011, 1), (0b1100, 1), (0b1101, 2), (0b1110, 2)], [], 3),
    "member caught above": ([(0b00000, 4), (0b00010, 4), (0b00110, 4), (0b00100, 8), (0b01001, 8)], [], 3),
    "default-routed key": ([(0b0001, 1), (0b0010, 1), (0b0101, 1), (0b0110, 1)], [0b0000], 3),
}


@pytest.mark.parametrize("case", ADVERSARIAL)
def test_compression_keeps_every_key_on_its_route_where_a_naive_merge_would_not(case):
    entries, default_routed, length = ADVERSARIAL[case]
    table = [RoutingEntry(key, FULL, route) for key, route in entries]
    blocked = [RoutingEntry(key, FULL, 1 << EAST, arrival=WEST) for key in default_routed]
    compressed = ordered_covering(table, 0, blocked)
    assert_routes_as_before(table, compressed, blocked)
    assert len(compressed) == length


def prefix_blocks(rng, bits=10):
    """The key space of ``bits`` bits cut at random into disjoint blocks (key, mask) of every size."""
    blocks, waiting = [], [(0, bits)]
    while waiting:
        key, free = waiting.pop()
        if free > bits - 4 or (free and rng.random() < 0.8):
            waiting += [(key, free - 1), (key | 1 << (free - 1), free - 1)]
        else:
            blocks.append((key, FULL ^ ((1 << free) - 1)))
    return blocks


@pytest.mark.parametrize("seed", range(20))
def test_compression_of_random_tables_with_every_generality(seed):
    """Blocks of a random cut of the key space: most in the table with one of three routes, some
    default-routed through the chip, the rest unused."""
    rng = np.random.default_rng(seed)
    table, blocked = [], []
    for key, mask in prefix_blocks(rng):
        kind = rng.random()
        if kind < 0.6:
            table.append(RoutingEntry(key, mask, [1 << EAST, 1 << NORTH, core_bit(0)][rng.integers(3)]))
        elif kind < 0.8:
            blocked.append(RoutingEntry(key, mask, 1 << EAST, arrival=WEST))
    compressed = ordered_covering(table, 0, blocked)
    assert_routes_as_before(table, compressed, blocked)
    assert len(compressed) < len(table)


def test_minimised_tables_fit_a_small_router_and_deliver_every_key():
    rng = np.random.default_rng(2)
    machine = Machine(width=4, height=3, cores_per_chip=16, router_entries=60)
    sources = network(rng, machine, populations=60)
    tables = routing_tables(machine, sources)
    minimised = minimise_tables(machine, tables)
    assert all(len(table) <= 60 for table in minimised.values())
    assert any(len(remove_default_routes(table)[0]) > 60 for table in tables.values()), "compression was needed"
    # a table that fits after default-route removal is left exact
    for chip, table in tables.items():
        kept = remove_default_routes(table)[0]
        assert len(kept) > 60 or minimised[chip] == kept
    assert_every_key_delivered(machine, minimised, sources)


def test_thousands_of_sources_fit_1024_entries_after_compression():
    rng = np.random.default_rng(3)
    machine = Machine(width=3, height=3, cores_per_chip=16, router_entries=1024)
    sources = network(rng, machine, populations=600, neurons=8)
    tables = routing_tables(machine, sources)
    assert len(sources) > 2000 and max(len(remove_default_routes(table)[0]) for table in tables.values()) > 1024
    minimised = minimise_tables(machine, tables)
    assert max(len(table) for table in minimised.values()) <= 1024
    assert_every_key_delivered(machine, minimised, sources)


def test_a_table_that_cannot_fit_names_its_chip():
    machine = Machine(width=2, height=2, cores_per_chip=16, router_entries=4)
    # six sources of chip (1, 1) each to another core: six routes, nothing to merge
    sources = [MulticastSource(i << 8, 0xFFFFFF00, (1, 1), frozenset({((1, 1), i)})) for i in range(6)]
    with pytest.raises(RoutingError, match=r"chip \(1, 1\): its routing table has 6 entries, 6 after default route "
                                           r"removal and 6 after ordered covering, more than the 4 .* more chips"):
        minimise_tables(machine, routing_tables(machine, sources))


# -- look-up and delivery


def test_lookup_takes_the_first_matching_entry():
    table = [RoutingEntry(0x10, 0xF0, core_bit(1)), RoutingEntry(0x00, 0x00, 1 << NORTH)]
    assert lookup(table, 0x1F) == core_bit(1) and lookup(table, 0x2F) == 1 << NORTH
    assert lookup(table[:1], 0x2F) is None and lookup([], 0) is None


def test_delivery_follows_default_routes_and_refuses_lost_packets():
    machine = Machine(width=4, height=1, cores_per_chip=16, router_entries=1024)
    # east from (0, 0), straight through (1, 0) and (2, 0) without entries, to a core of (3, 0)
    routers = Routers(machine, {(0, 0): [RoutingEntry(0x7, FULL, 1 << EAST)], (3, 0): [RoutingEntry(0x7, FULL, core_bit(5))]})
    assert routers.deliver((0, 0), 0x7) == Delivery(frozenset({((3, 0), 5)}), hops=3, lookups=4)
    with pytest.raises(RoutingError, match="key 0x00000008 matches no entry of its source chip"):
        routers.deliver((0, 0), 0x8)
    # without the entry at (3, 0) the default route carries the packet off the mesh
    with pytest.raises(RoutingError, match=r"leaves the mesh by the east link of chip \(3, 0\)"):
        Routers(machine, {(0, 0): [RoutingEntry(0x7, FULL, 1 << EAST)]}).deliver((0, 0), 0x7)
    loop = {(0, 0): [RoutingEntry(0x7, FULL, 1 << EAST)], (1, 0): [RoutingEntry(0x7, FULL, 1 << WEST)]}
    with pytest.raises(RoutingError, match=r"reaches chip \(0, 0\) twice"):
        Routers(machine, loop).deliver((0, 0), 0x7)
