"""Small crystal helpers used across the stages: structures from arrays, the shortest interatomic
distance, and file-system-safe names for structure ids."""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 64


def atom_offsets(num_atoms) -> np.ndarray:
    """[0, n0, n0 + n1, ...]: crystal i's atoms are rows offsets[i]:offsets[i + 1] of the flat arrays."""
    return np.concatenate([[0], np.cumsum(np.asarray(num_atoms, dtype=np.int64))])


def structure_from(d: dict):
    """{"lattice", "species", "frac_coords"} -> pymatgen Structure."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(d["lattice"]), d["species"], d["frac_coords"])


def min_interatomic_distance(s) -> float:
    """Shortest distance between two atoms of a periodic structure (a pymatgen Structure), an atom and its
    own periodic images included (the one definition: every check of the project calls this or
    `closest_distance`)."""
    return closest_distance(s.lattice.matrix, s.frac_coords)


# lattice vectors among which the shortest is found: the axes and the face diagonals of a skewed cell
_SELF_IMAGES = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1], [0, 1, 1], [0, 1, -1]]
)


def closest_distance(matrix, frac_coords) -> float:
    """Shortest interatomic distance (A) of the cell `matrix` (rows: lattice vectors) with atoms at
    `frac_coords`: between two atoms under periodic boundaries, or between an atom and its own image;
    inf for no atoms."""
    from pymatgen.core import Lattice

    frac = np.asarray(frac_coords, dtype=float).reshape(-1, 3)
    if not len(frac):
        return math.inf
    lattice = Lattice(matrix)
    d = float(np.min(np.linalg.norm(lattice.get_cartesian_coords(_SELF_IMAGES), axis=1)))
    if len(frac) > 1:
        dm = lattice.get_all_distances(frac, frac)
        d = min(d, float(dm[~np.eye(len(frac), dtype=bool)].min()))
    return d


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_name(sid: str) -> str:
    """A file/folder name for one id: only [A-Za-z0-9._-], never '.', '..' or a leading dot, at most
    64 characters; ids that had to be changed get a short hash of the original, so two ids that
    differ only in removed characters ('a/b', 'a#b') stay apart."""
    sid = str(sid)
    base = _UNSAFE.sub("_", sid).lstrip(".") or "id"
    if base == sid and len(base) <= MAX_NAME:
        return base
    return f"{base[: MAX_NAME - 9]}_{_digest(sid)}"


def safe_names(ids) -> dict[str, str]:
    """id -> unique safe name for a collection of ids (an error if two different ids still collide,
    which needs a sha1 collision in 8 hex digits)."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for sid in ids:
        name = safe_name(sid)
        if name in seen and seen[name] != sid:
            name = f"{name[: MAX_NAME - 17]}_{_digest('x' + str(sid))}{_digest(str(sid))}"
            if name in seen:
                raise ValueError(f"ids {seen[name]!r} and {sid!r} map to the same folder name {name!r}")
        seen[name] = str(sid)
        out[str(sid)] = name
    return out


def vacuum_gap(s) -> tuple[float, int]:
    """(widest empty slab in A, lattice axis): for each axis, the largest gap between the atoms'
    fractional coordinates along it (periodically) times the spacing of the lattice planes. A slab,
    a molecule or two atoms in a big box show a wide gap; bulk crystals stay below ~4 A (layered
    van der Waals solids included)."""
    lat = np.asarray(s.lattice.matrix, float)
    vol = abs(np.linalg.det(lat))
    frac = np.mod(np.asarray(s.frac_coords, float), 1.0)
    best, axis = 0.0, 0
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        spacing = vol / np.linalg.norm(np.cross(lat[j], lat[k]))
        x = np.sort(frac[:, i])
        gaps = np.diff(np.concatenate([x, [x[0] + 1.0]]))
        g = float(gaps.max()) * spacing
        if g > best:
            best, axis = g, i
    return best, axis


def _radii():
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    return CovalentRadius.radius


def closest_pair_vs_bond(s) -> tuple[float, str]:
    """(smallest ratio distance / sum of covalent radii over all atom pairs and images, the pair): a
    collapsed structure (two atoms squeezed into one place) has a ratio far below 1; real bonds, even
    under hundreds of GPa, stay above ~0.7."""
    if len(s) < 1:
        return math.inf, ""
    radii = _radii()
    r = np.array([radii.get(site.specie.symbol, 1.5) for site in s])
    centers, points, idx, dist = s.get_neighbor_list(r=float(2 * r.max()))
    keep = dist > 1e-8
    if not keep.any():
        return math.inf, ""
    ratio = dist[keep] / (r[centers[keep]] + r[points[keep]])
    k = int(np.argmin(ratio))
    a, b = int(centers[keep][k]), int(points[keep][k])
    return float(ratio[k]), f"{s[a].specie.symbol}{a}-{s[b].specie.symbol}{b} {float(dist[keep][k]):.2f} A"


def volume_ratio(s) -> float:
    """Volume per atom over the mean van der Waals sphere volume of its atoms: bulk crystals lie between
    ~0.2 (metals under high pressure) and ~1.5 (open frameworks, molecular solids)."""
    vdw = []
    for site in s:
        el = site.specie
        r = getattr(el, "van_der_waals_radius", None) or 2.0
        vdw.append(4.0 / 3.0 * math.pi * float(r) ** 3)
    return float(s.volume / len(s) / np.mean(vdw))


def unphysical_reason(s, min_bond_fraction: float, volume_bounds, max_vacuum_gap: float) -> str:
    """ "" for a physical bulk crystal, else why not: atoms closer than `min_bond_fraction` of their
    covalent bond length, a volume per atom outside `volume_bounds` (in units of the atoms' mean van der
    Waals volume), or an empty slab wider than `max_vacuum_gap` (fragments in vacuum)."""
    ratio, pair = closest_pair_vs_bond(s)
    if ratio < min_bond_fraction:
        return f"unphysical: atoms {pair} apart, {ratio:.2f} of their covalent bond length (< {min_bond_fraction})"
    gap, axis = vacuum_gap(s)
    if gap > max_vacuum_gap:
        return (
            f"unphysical: {gap:.1f} A of vacuum along lattice vector {'abc'[axis]} "
            f"(> {max_vacuum_gap} A; isolated fragments, not a crystal)"
        )
    v = volume_ratio(s)
    lo, hi = volume_bounds
    if not lo <= v <= hi:
        return (
            f"unphysical: {s.volume / len(s):.1f} A^3 per atom is {v:.2f} of the atoms' van der Waals volume "
            f"(outside {lo}-{hi}; {'collapsed' if v < lo else 'expanded'} cell)"
        )
    return ""
