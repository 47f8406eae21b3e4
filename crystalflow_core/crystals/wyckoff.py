"""Space groups and Wyckoff positions for the symmetry-aware model (shared/docs/method.md, "The authors'
symmetry-aware variant"): the Wyckoff string of a crystal (`225_Na1x4a_Cl1x4b`), its parser, the atoms it
stands for (species, the 4x4 operation of each atom, the anchor of its orbit) and the crystal family's
projection of the lattice vector k.

A Wyckoff string is `SPG_` followed by one `El{count}x{multiplicity}{letter}` per element and Wyckoff
letter: `39_Li1x4a_Li1x4b_Li6x4c_Li7x8d` is space group 39 with one Li orbit on 4a, one on 4b, six on 4c and
seven on 8d (the conventional cell holds 4 + 4 + 24 + 56 atoms). Operations are pyxtal's, in the
conventional setting it reads and writes; every atom of an orbit is its operation applied to the orbit's
representative, and the first atom of an orbit is its anchor.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import cache

import numpy as np

from crystalflow_core.errors import ConfigError

# the crystal family of a space-group number (the lattice's free parameters follow from it)
FAMILIES = (
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (194, "hexagonal"),  # trigonal groups included: their conventional cell is hexagonal
    (230, "cubic"),
)
# which k components (0-based, k = [S01, S02, S12, (S00-S11)/2, (S00+S11-2S22)/6, tr/3]) a family keeps
FAMILY_FREE_K = {
    "triclinic": (0, 1, 2, 3, 4, 5),
    "monoclinic": (1, 3, 4, 5),  # b unique: a.c is free
    "orthorhombic": (3, 4, 5),
    "tetragonal": (4, 5),
    "hexagonal": (4, 5),
    "cubic": (5,),
}
HEXAGONAL_K0 = -math.log(3.0) / 4.0  # S01 of a = b, gamma = 120 degrees (method.md)
SYMPREC = 0.01  # spglib's tolerance for the refined structure, as the authors' data code
SYMPREC_RETRY = 1e-4  # pyxtal's second try when it cannot read the refined structure at SYMPREC

_SITE = re.compile(r"^([A-Z][a-z]?)(\d+)x(\d+)([a-zA-Z])$")


class WyckoffError(ConfigError):
    """A Wyckoff string that cannot be a crystal: malformed, a letter the group lacks, counts that contradict
    the formula."""


def crystal_family(spacegroup: int) -> str:
    if not 1 <= int(spacegroup) <= 230:
        raise WyckoffError(f"space group {spacegroup}: not in 1..230")
    return next(name for last, name in FAMILIES if spacegroup <= last)


def k_mask_bias(spacegroup: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask, bias), each (6,): the projection k -> mask * k + bias onto the lattices of the group's family."""
    fam = crystal_family(spacegroup)
    mask = np.zeros(6)
    mask[list(FAMILY_FREE_K[fam])] = 1.0
    bias = np.zeros(6)
    if fam == "hexagonal":
        bias[0] = HEXAGONAL_K0
    return mask, bias


@cache
def space_group(spacegroup: int):
    from pyxtal.symmetry import Group

    return Group(int(spacegroup))


@cache
def wyckoff_position(spacegroup: int, letter: str):
    """pyxtal's Wyckoff position of a group by its letter (cached: building one reads pyxtal's tables)."""
    letters = {wp.letter: wp for wp in space_group(spacegroup).Wyckoff_positions}
    if letter not in letters:
        have = ", ".join(f"{wp.multiplicity}{wp.letter}" for wp in reversed(space_group(spacegroup).Wyckoff_positions))
        raise WyckoffError(f"space group {spacegroup} has no Wyckoff letter '{letter}' (it has {have})")
    return letters[letter]


@dataclass(frozen=True)
class WyckoffSite:
    element: str
    count: int  # orbits of this element on this letter
    multiplicity: int
    letter: str

    def __str__(self) -> str:
        return f"{self.element}{self.count}x{self.multiplicity}{self.letter}"


@dataclass(frozen=True)
class WyckoffString:
    spacegroup: int
    sites: tuple[WyckoffSite, ...]

    def __str__(self) -> str:
        return "_".join([str(self.spacegroup), *map(str, self.sites)])

    @property
    def composition(self) -> Counter:
        """Atoms of each element in the conventional cell."""
        out: Counter = Counter()
        for s in self.sites:
            out[s.element] += s.count * s.multiplicity
        return out

    @property
    def num_atoms(self) -> int:
        return sum(self.composition.values())

    def atoms(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(atomic numbers, ops (n, 4, 4), anchors (n,)) of the conventional cell: orbit after orbit, the
        atoms of an orbit in the order of its position's operations, each anchored at its orbit's first."""
        from pymatgen.core import Element

        zs, ops, anchors = [], [], []
        for site in self.sites:
            wp = wyckoff_position(self.spacegroup, site.letter)
            for _ in range(site.count):
                first = len(zs)
                for op in wp.ops:
                    zs.append(Element(site.element).Z)
                    ops.append(np.asarray(op.affine_matrix, dtype=np.float64))
                    anchors.append(first)
        return zs, np.stack(ops), np.asarray(anchors, dtype=np.int64)


def parse_wyckoff(text: str, formula: str | None = None) -> WyckoffString:
    """A Wyckoff string checked against the group's table (letters, multiplicities, positions without a
    free parameter holding one atom) and, with `formula`, against the composition (same reduced formula).
    Raises WyckoffError with one line naming what is wrong."""
    from pymatgen.core import Composition, Element

    where = f"Wyckoff string '{text}'"
    parts = str(text).strip().split("_")
    if len(parts) < 2 or not parts[0].isdigit():
        raise WyckoffError(f"{where}: expected SPG_El{{count}}x{{multiplicity}}{{letter}}_..., e.g. 225_Na1x4a_Cl1x4b")
    spg = int(parts[0])
    if not 1 <= spg <= 230:
        raise WyckoffError(f"{where}: space group {spg} not in 1..230")
    sites, fixed_used = [], Counter()
    for p in parts[1:]:
        m = _SITE.match(p)
        if not m:
            raise WyckoffError(f"{where}: '{p}' is not El{{count}}x{{multiplicity}}{{letter}} (e.g. Na1x4a)")
        el, count, mult, letter = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        try:
            Element(el)
        except ValueError:
            raise WyckoffError(f"{where}: '{el}' is not an element") from None
        if count < 1:
            raise WyckoffError(f"{where}: '{p}' has no orbit (count 0)")
        try:
            wp = wyckoff_position(spg, letter)
        except WyckoffError as exc:
            raise WyckoffError(f"{where}: {exc}") from None
        if wp.multiplicity != mult:
            raise WyckoffError(f"{where}: '{p}': position {letter} of group {spg} has multiplicity {wp.multiplicity}")
        if wp.get_dof() == 0:
            fixed_used[letter] += count
            if fixed_used[letter] > 1:
                raise WyckoffError(f"{where}: position {mult}{letter} has no free parameter and holds one orbit only")
        sites.append(WyckoffSite(el, count, mult, letter))
    ws = WyckoffString(spg, tuple(sites))
    if formula is not None:
        want = Composition(formula).reduced_composition
        have = Composition(dict(ws.composition)).reduced_composition
        if want != have:
            raise WyckoffError(f"{where}: its atoms make {have.formula.replace(' ', '')}, not {formula}")
    return ws


def wyckoff_of_sites(spacegroup: int, orbits: list[tuple[str, str, int]]) -> WyckoffString:
    """The Wyckoff string of orbits (element, letter, multiplicity), grouped by element and letter in the
    order first seen."""
    counts: dict[tuple[str, str, int], int] = {}
    for key in orbits:
        counts[key] = counts.get(key, 0) + 1
    return WyckoffString(spacegroup, tuple(WyckoffSite(el, n, m, let) for (el, let, m), n in counts.items()))


def symmetric_coords(free: np.ndarray, ops: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Fractional coordinates of every atom from its anchor's: f_i = R_i R_a^+ (f_a - t_a) + t_i, wrapped
    (the authors' anchor construction, with the anchor's translation taken off first so that a symmetric
    crystal maps onto itself; for a uniform draw the two are the same distribution)."""
    rot, rot_inv = ops[:, :3, :3], np.linalg.pinv(ops[:, :3, :3])
    d = free[anchors] - ops[anchors, :3, 3]
    # the periodic image of f_a - t_a that lies on the position's own subspace (x, -x, z: (0.3, 0.7) is
    # (0.3, -0.3) unwrapped): of the 27 neighbouring images, the one R_a R_a^+ leaves most nearly unchanged
    shifts = np.array(np.meshgrid([0, -1, 1], [0, -1, 1], [0, -1, 1], indexing="ij")).reshape(3, -1).T
    cand = d[:, None, :] + shifts[None]  # (n, 27, 3)
    proj = np.einsum("nij,nsj->nsi", rot[anchors] @ rot_inv[anchors], cand)
    best = np.argmin(np.abs(proj - cand).sum(-1), axis=1)
    d = cand[np.arange(len(d)), best]
    fa = np.einsum("nij,nj->ni", rot_inv[anchors], d)
    return np.mod(np.einsum("nij,nj->ni", ops[:, :3, :3], fa) + ops[:, :3, 3], 1.0)


def symmetry_info(structure) -> dict:
    """The symmetric form of a crystal: refined by spglib at SYMPREC (0.01, the authors' data code), read into
    pyxtal (`from_seed` at the same tolerance, retried at 1e-4); its conventional cell (lattice from its
    parameters), atoms orbit after orbit with each one's operation and anchor, and its Wyckoff string.
    Raises ValueError with the reason."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from pyxtal import pyxtal

    try:
        refined = SpacegroupAnalyzer(structure, symprec=SYMPREC).get_refined_structure()
    except Exception as exc:
        raise ValueError(f"symmetry: spglib found no space group ({type(exc).__name__})") from None
    crystal = None
    for tol in (SYMPREC, SYMPREC_RETRY):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c = pyxtal()
                c.from_seed(refined, tol=tol)
            crystal = c
            break
        except Exception as exc:  # pyxtal raises many kinds
            reason = f"{type(exc).__name__}: {str(exc)[:80]}"
    if crystal is None:
        raise ValueError(f"symmetry: pyxtal cannot read the refined structure ({reason})")
    spg = int(crystal.group.number)
    orbits = []  # (key, atoms): the atoms of each orbit, grouped as its Wyckoff string lists them
    for site in crystal.atom_sites:
        wp = site.wp
        key = (str(site.specie), wp.letter, int(wp.multiplicity))
        atoms = [(_z(site.specie), np.mod(op.operate(site.position), 1.0), op.affine_matrix) for op in wp.ops]
        orbits.append((key, atoms))
    first_seen = {key: i for i, (key, _) in reversed(list(enumerate(orbits)))}
    orbits.sort(key=lambda o: first_seen[o[0]])
    zs, frac, ops, anchors = [], [], [], []
    for _, atoms in orbits:
        first = len(zs)
        for z, f, op in atoms:
            zs.append(int(z))
            frac.append(f)
            ops.append(np.asarray(op, dtype=np.float64))
            anchors.append(first)
    if len(zs) != len(refined):
        raise ValueError(f"symmetry: pyxtal's orbits hold {len(zs)} atoms, the refined cell {len(refined)}")
    lattice = np.asarray(crystal.lattice.matrix, dtype=np.float64)
    return {
        "spacegroup": spg,
        "wyckoff": str(wyckoff_of_sites(spg, [key for key, _ in orbits])),
        "atom_types": np.asarray(zs, dtype=np.int64),
        "frac_coords": np.asarray(frac, dtype=np.float64),
        "lattice": lattice,
        "ops": np.stack(ops),
        "anchors": np.asarray(anchors, dtype=np.int64),
    }


def _z(specie) -> int:
    from pymatgen.core import Element

    return Element(str(specie)).Z
