"""Convex-hull references and energies above hull.

Two references:
* ``matbench``: the Matbench Discovery MP 2023-02-07 patched phase diagram (downloaded with a
  checksum where a network exists, or read from a given path);
* ``local`` (offline): a hull of the DFT formation energies in the data mirror (MP-20
  train+val+test, MPTS-52), with the MP elemental references at zero formation energy.
Both are on the MP2020-corrected scale. An energy reaches them through `on_hull_scale` with the scale its
source declares (``materials.potentials``): corrected energies (CHGNet's, by training) as they are, raw
GGA/GGA+U energies after MP2020; formation energies use the MP elemental reference entries (corrected).
Elements missing from the reference are reported, not fatal.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.safe_load import load_pickle
from crystalflow_core.sources import hull_files, hull_paths, hull_source, resolve_source

log = logging.getLogger(__name__)


def load_elemental_refs(path) -> dict:
    """{element symbol: corrected energy per atom (eV)} from MP's elemental reference entries."""
    from pymatgen.entries.computed_entries import ComputedEntry

    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    items = data.values() if isinstance(data, dict) else data
    refs = {}
    for d in items:
        e = ComputedEntry.from_dict(d)
        el = e.composition.elements[0].symbol
        refs[el] = e.energy_per_atom
    return refs


_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")


def _formula_from_row(row) -> str | None:
    for key in ("formula", "pretty_formula"):
        if key in row and isinstance(row[key], str):
            return row[key]
    cif = row.get("cif")
    if isinstance(cif, str):
        m = _FORMULA_SUM.search(cif)
        if m:
            return m.group(1)
    return None


# eV/atom: this far below the hull, a relaxed structure is suspect, not a discovery. With energies on the
# hull's scale, known near-stable crystals land within a few 10 meV/atom of it (tests/unit/test_energy_scale.py),
# so what remains below is a hole of the potential (a collapsed or unphysical structure it ranks far too
# low) or, on the local hull, competing phases the hull lacks.
SUSPECT_BELOW = -0.1


class LocalHull:
    """Hull of formation energies per chemical system, built lazily per queried system."""

    source = "local"

    def __init__(self, entries: list[tuple[str, float]]):
        from pymatgen.core import Composition

        self.by_system: dict[frozenset, list[tuple[dict, float]]] = {}
        for formula, ef in entries:
            comp = Composition(formula).fractional_composition
            key = frozenset(el.symbol for el in comp.elements)
            self.by_system.setdefault(key, []).append(({el.symbol: amt for el, amt in comp.items()}, float(ef)))
        self.elements = set().union(*self.by_system) if self.by_system else set()

    @classmethod
    def from_csvs(cls, paths: list[str | Path]) -> LocalHull:
        entries = []
        for p in paths:
            df = pd.read_csv(p)
            for _, row in df.iterrows():
                f = _formula_from_row(row)
                if f is not None and np.isfinite(row.get("formation_energy_per_atom", np.nan)):
                    entries.append((f, row["formation_energy_per_atom"]))
        log.info("local hull: %d formation energies from %d files", len(entries), len(paths))
        return cls(entries)

    def _candidates(self, system: frozenset):
        """Entries whose elements are a subset of `system` (all sub-systems), elements at zero."""
        out = [({el: 1.0}, 0.0) for el in system]
        for r in range(1, len(system) + 1):
            for sub in itertools.combinations(sorted(system), r):
                out += self.by_system.get(frozenset(sub), [])
        return out

    def hull_energy(self, composition) -> float:
        """Formation energy of the convex hull at `composition` (eV/atom).

        The lower hull at a composition is the cheapest mixture of reference phases with that
        composition: min sum_j x_j e_j subject to sum_j x_j c_j = c, x >= 0 (a linear program,
        exact, and fast in any number of elements, where a full phase diagram is not).
        """
        from scipy.optimize import linprog

        comp = composition.fractional_composition
        els = sorted(el.symbol for el in comp.elements)
        missing = set(els) - self.elements
        if missing:
            raise KeyError(f"elements not in the hull reference: {', '.join(sorted(missing))}")
        cands = self._candidates(frozenset(els))
        a_eq = np.array([[c.get(el, 0.0) for c in (cd for cd, _ in cands)] for el in els])
        b_eq = np.array([comp[el] for el in els])
        cost = np.array([e for _, e in cands])
        res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        if not res.success:
            raise RuntimeError(f"hull LP failed for {composition.reduced_formula}: {res.message}")
        return float(res.fun)

    def e_above_hull(self, composition, e_form_per_atom: float) -> float:
        """Energy above hull (eV/atom, negative below the hull) of a formation energy."""
        return float(e_form_per_atom - self.hull_energy(composition))

    def e_hull(self, structure, corrected_total: float, e_form_per_atom: float) -> float:
        """The one method every hull has: E_hull of a relaxed structure (formation energies here)."""
        return self.e_above_hull(structure.composition, e_form_per_atom)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_system.values())

    def entries_in_system(self, composition) -> int:
        """Compounds of the hull in the chemical system of `composition` (its sub-systems included,
        the elemental references not counted): how well the hull knows the competing phases."""
        system = sorted(el.symbol for el in composition.elements)
        return sum(
            len(self.by_system.get(frozenset(sub), []))
            for r in range(1, len(system) + 1)
            for sub in itertools.combinations(system, r)
        )


# what Matbench Discovery's pickled PatchedPhaseDiagram may name: pymatgen's entry, structure and phase-diagram
# classes (classes only), numpy's array rebuilders, plain containers; nothing that acts
PPD_CLASS_MODULES = {
    "pymatgen.analysis.phase_diagram",
    "pymatgen.core.composition",
    "pymatgen.core.entries",
    "pymatgen.core.lattice",
    "pymatgen.core.periodic_table",
    "pymatgen.core.sites",
    "pymatgen.core.structure",
    "pymatgen.entries.computed_entries",
    "pymatgen.util.coord",
}
PPD_GLOBALS = {
    *(f"builtins.{t}" for t in ("set", "frozenset", "dict", "list", "tuple", "int", "float", "str", "bytes", "bool")),
    "builtins.complex",
    "collections.defaultdict",
    "collections.OrderedDict",
    "copyreg._reconstructor",
    "_codecs.encode",
    *(f"numpy.{m}.multiarray.{f}" for m in ("core", "_core") for f in ("_reconstruct", "scalar")),
    *(f"numpy.{m}.numeric._frombuffer" for m in ("core", "_core")),
    "numpy.ndarray",
    "numpy.dtype",
}


class MatbenchHull:
    """Matbench Discovery's MP patched phase diagram (absolute MP2020-corrected energies)."""

    source = "matbench"

    def __init__(self, path):
        with gzip.open(path, "rb") as fh:
            self.ppd = load_pickle(fh, str(path), "phase diagram", PPD_GLOBALS, PPD_CLASS_MODULES)
        self.elements = {el.symbol for el in self.ppd.elements}
        self._systems: dict[frozenset, int] = {}
        for e in self.ppd.all_entries:
            key = frozenset(el.symbol for el in e.composition.elements)
            if len(key) > 1:
                self._systems[key] = self._systems.get(key, 0) + 1

    def __len__(self) -> int:
        return len(self.ppd.all_entries)

    def entries_in_system(self, composition) -> int:
        system = sorted(el.symbol for el in composition.elements)
        return sum(
            self._systems.get(frozenset(sub), 0)
            for r in range(2, len(system) + 1)
            for sub in itertools.combinations(system, r)
        )

    def e_above_hull_total(self, entry) -> float:
        return float(self.ppd.get_e_above_hull(entry, allow_negative=True))

    def e_hull(self, structure, corrected_total: float, e_form_per_atom: float) -> float:
        """The one method every hull has: E_hull of a relaxed structure (absolute corrected energies here)."""
        from pymatgen.entries.computed_entries import ComputedStructureEntry

        return self.e_above_hull_total(ComputedStructureEntry(structure, corrected_total))


# Hubbard U (eV) of MP's GGA+U calculations, used in oxides and fluorides of these metals (MPRelaxSet)
MP_HUBBARD_U = {"Co": 3.32, "Cr": 3.7, "Fe": 5.3, "Mn": 3.9, "Mo": 4.38, "Ni": 6.2, "V": 3.25, "W": 6.2}


def on_hull_scale(structure, energy_total: float, scale: str) -> tuple[float, str]:
    """A total energy on the hull's (MP2020-corrected) scale, and "" or NaN and the reason there is none.
    `scale` is what the energy's source declares: ``mp2020`` is taken as it is (never corrected twice),
    ``raw`` gets MP2020 (`mp2020_corrected_energy`)."""
    from crystalflow_core.materials.potentials import MP2020, check_scale

    if check_scale(scale, "on_hull_scale") == MP2020:
        return float(energy_total), ""
    return mp2020_corrected_energy(structure, energy_total)


def mp2020_corrected_energy(structure, energy_total: float) -> tuple[float, str]:
    """MP2020-corrected total energy of a *raw* GGA/GGA+U total energy (GGA+U parameters where MP uses
    them), and "" or, where MP2020 refuses the entry, NaN and the reason: an uncorrected energy on a
    corrected hull would be a wrong E_hull, so there is none. Never for energies already corrected
    (CHGNet's): call `on_hull_scale` with the source's scale."""
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    syms = {el.symbol for el in structure.composition.elements}
    plus_u = bool(syms & {"O", "F"}) and bool(syms & set(MP_HUBBARD_U))
    params = {
        "run_type": "GGA+U" if plus_u else "GGA",
        "is_hubbard": plus_u,
        "hubbards": {el: MP_HUBBARD_U[el] for el in syms & set(MP_HUBBARD_U)} if plus_u else {},
    }
    entry = ComputedStructureEntry(structure, energy_total, parameters=params)
    compat = MaterialsProject2020Compatibility(check_potcar=False)
    processed = compat.process_entry(entry, clean=True)
    if processed is None:
        return math.nan, f"MP2020 refused the entry ({params['run_type']}, U {params['hubbards'] or 'none'})"
    return float(processed.energy), ""


def formation_energy_per_atom(structure, corrected_total: float, refs: dict) -> float:
    comp = structure.composition
    missing = [el.symbol for el in comp.elements if el.symbol not in refs]
    if missing:
        raise KeyError(f"no elemental reference for {', '.join(missing)}")
    e_ref = sum(amt * refs[el.symbol] for el, amt in comp.items())
    return (corrected_total - e_ref) / comp.num_atoms


def hull_columns(structure, corrected_total: float, refs: dict, hull) -> dict:
    """Formation energy, E_hull, the hull entries of the chemical system and `hull_suspect` of one total
    energy on the hull's scale (`on_hull_scale`; KeyError: an element without a reference)."""
    e_form = formation_energy_per_atom(structure, corrected_total, refs)
    e_hull = hull.e_hull(structure, corrected_total, e_form)
    return {
        "e_form": e_form,
        "e_hull": e_hull,
        "hull_entries": hull.entries_in_system(structure.composition),
        # far below the hull: a hole of the potential or (local hull) missing competing phases, see SUSPECT_BELOW
        "hull_suspect": e_hull < SUSPECT_BELOW,
    }


# ----------------------------------------------------------------------------- the run's hull
def build_hull(cfg: dict, files: list[str] | None = None):
    """The hull of a validated config: the Matbench Discovery PPD or the local one from `local_sources`;
    `files`: those the stage declared (`hull_paths(cfg)`, the default)."""
    h = cfg["hull"]
    files = hull_paths(cfg) if files is None else files
    if h["source"] == "matbench":
        src = hull_source(cfg)  # the mirror's copy is checked against its checksum here (a download: at download)
        path = resolve_source(src, cfg["data_mirror"], cfg["download_dir"]) if src else h["matbench_path"]
        if Path(path).resolve() not in {Path(f).resolve() for f in files}:
            raise ValueError(f"hull: {path} is not among the stage's inputs {files}")
        return MatbenchHull(path)
    return LocalHull.from_csvs(files)


def open_hull(cfg: dict, files: dict | None = None) -> tuple[dict, object]:
    """(elemental references, hull) of the run from the files a stage declared (`hull_files`; the default)."""
    files = files or hull_files(cfg)
    return load_elemental_refs(files["refs"]), build_hull(cfg, files["hull"])
