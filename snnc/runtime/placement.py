"""Where each neuron lives: populations cut into pieces, pieces on cores, cores on tiles and chips.

The cost model needs a placement to know which spikes cross between cores and how far they travel.
The ``map-cores`` pass (snnc/passes/mapping.py, docs/mapping.md) writes one into the IR as
annotations, which ``Placement.from_graph`` reads back; without it, ``default_placement`` gives a
documented, predictable one (see docs/cost-model.md): populations in schedule order, cut at the
core's neuron limit, one population per core. Input nodes are not placed: their spikes come from
the host and enter the mesh at tile (0, 0) of chip 0.

Cores are numbered so that the index alone gives the position: cores within a tile first, then
tiles row-major (x fastest) within a chip, then chips row-major on the board. The chips' tile
meshes join into one board-wide mesh of tiles, on which messages are routed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from snnc.errors import SnncError
from snnc.ir import Graph, verify
from snnc.ir.contracts import check_pieces, check_placement, population_sizes
from snnc.targets import Target


@dataclass(frozen=True)
class CoreLocation:
    """A core's place: chip, tile coordinates within the chip's mesh, and index within the tile."""

    chip: int
    tile_x: int
    tile_y: int
    core_in_tile: int


@dataclass(frozen=True)
class Layout:
    """The target's arrangement of cores into tiles, tiles into a chip mesh and chips into a board."""

    cores_per_tile: int
    mesh_width: int
    mesh_height: int
    board_width: int
    board_height: int

    @classmethod
    def of(cls, target: Target) -> Layout:
        if not target.has_hardware:
            raise SnncError(f"target {target.name!r} models no hardware: it has no cores to place neurons on")
        return cls(**{f.name: target.chip[f.name] for f in fields(cls)})

    @property
    def cores(self) -> int:
        return self.cores_per_tile * self.mesh_width * self.mesh_height * self.board_width * self.board_height

    def locate(self, core: int) -> CoreLocation:
        tile, core_in_tile = divmod(core, self.cores_per_tile)
        chip, tile = divmod(tile, self.mesh_width * self.mesh_height)
        tile_y, tile_x = divmod(tile, self.mesh_width)
        return CoreLocation(chip, tile_x, tile_y, core_in_tile)

    def position(self, core: int) -> tuple[int, int]:
        """The core's tile on the board-wide mesh of tiles: (x, y)."""
        where = self.locate(core)
        chip_y, chip_x = divmod(where.chip, self.board_width)
        return chip_x * self.mesh_width + where.tile_x, chip_y * self.mesh_height + where.tile_y

    def core_at(self, x: int, y: int, core_in_tile: int = 0) -> int:
        """The index of core ``core_in_tile`` of the tile at (x, y) on the board-wide mesh."""
        chip, tile_x, tile_y = self.tile_at(x, y)
        return ((chip * self.mesh_height + tile_y) * self.mesh_width + tile_x) * self.cores_per_tile + core_in_tile

    def tile_at(self, x: int, y: int) -> tuple[int, int, int]:
        """(chip, tile_x, tile_y) of a position on the board-wide mesh."""
        chip_x, tile_x = divmod(x, self.mesh_width)
        chip_y, tile_y = divmod(y, self.mesh_height)
        return chip_y * self.board_width + chip_x, tile_x, tile_y


@dataclass(frozen=True)
class Piece:
    """Neurons ``start`` to ``stop - 1`` of a population (flattened, C order) on one core."""

    population: str
    core: int
    start: int
    stop: int

    @property
    def neurons(self) -> int:
        return self.stop - self.start


@dataclass
class Placement:
    """For every neuron population, its pieces in neuron order; ``layout`` places the cores."""

    layout: Layout
    pieces: dict[str, list[Piece]]

    @classmethod
    def from_graph(cls, graph: Graph, target: Target) -> Placement | None:
        """The placement that map-cores wrote into ``graph`` (``annotations["placement"]`` on every
        neuron population), or None when the graph carries none; checked against the target's board
        (``check_placement``), so a placement made by hand or for another target is refused."""
        layout = Layout.of(target)
        placed = check_placement(verify(graph), target.name, layout.cores, target.core["neurons"])
        if placed is None:
            return None
        return cls(layout, {name: [Piece(name, core, start, stop) for core, start, stop in pieces]
                            for name, pieces in placed.items()})

    def all_pieces(self) -> list[Piece]:
        return [piece for pieces in self.pieces.values() for piece in pieces]

    @property
    def cores(self) -> list[int]:
        """The cores in use, ascending."""
        return sorted({piece.core for piece in self.all_pieces()})

    def check(self, sizes: dict[str, int], neurons_per_core: int) -> None:
        """Require every population of ``sizes`` to be covered by consecutive pieces, in order, on
        existing cores that hold at most ``neurons_per_core`` neurons each; a placement made by hand
        or by a future pass can break any of these."""
        check_pieces({name: [(p.core, p.start, p.stop) for p in pieces] for name, pieces in self.pieces.items()},
                     sizes, "placement", self.layout.cores, neurons_per_core)


def neuron_populations(graph: Graph) -> dict[str, int]:
    """The neuron nodes in schedule order, with their number of neurons."""
    return population_sizes(verify(graph))


def default_placement(graph: Graph, target: Target) -> Placement:
    """Populations in schedule order, each cut into consecutive pieces of at most the core's neuron
    limit; pieces take cores in index order and every population starts on a fresh core.

    Simple and predictable, not good: it ignores synapse memory and fan-in limits and never packs
    small populations together (docs/cost-model.md says what that costs)."""
    layout = Layout.of(target)
    limit = target.core["neurons"]
    sizes = neuron_populations(graph)
    needed = sum(-(-n // limit) for n in sizes.values())
    if needed > layout.cores:
        raise SnncError(f"the network needs {needed} cores of {limit} neurons but target {target.name!r} has "
                        f"{layout.cores} ({layout.board_width * layout.board_height} chips of "
                        f"{layout.cores // (layout.board_width * layout.board_height)} cores)")
    pieces: dict[str, list[Piece]] = {}
    core = 0
    for name, size in sizes.items():
        pieces[name] = []
        for start in range(0, size, limit):
            pieces[name].append(Piece(name, core, start, min(size, start + limit)))
            core += 1
    return Placement(layout, pieces)
