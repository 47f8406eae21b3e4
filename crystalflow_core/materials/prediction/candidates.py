"""The candidates of a prediction: the sampler's items, sample records of structures from elsewhere, and
the per-candidate table (relaxation, density, space groups) that ranking reads."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from crystalflow_core.compositions import Search
from crystalflow_core.io import atomic_path
from crystalflow_core.materials.relax import finished

log = logging.getLogger(__name__)


def candidate_items(searches: list[Search], n_candidates: int, pressure_condition: bool) -> list[dict]:
    """The sampler's items: n_candidates per composition and pressure, spread over its cell sizes in turn
    (candidate c takes the (c mod n_sizes)-th z), ids `{search}#{c}`; each with its search's pressure
    (`pressure_gpa`, the relaxation's) and, for a pressure-conditioned model, that pressure as the condition."""
    groups: dict[str, list[Search]] = {}
    for t in searches:
        groups.setdefault(t.group, []).append(t)
    items = []
    for sizes in groups.values():
        sizes = sorted(sizes, key=lambda t: t.z)
        for c in range(n_candidates):
            t = sizes[c % len(sizes)]
            it = {
                "id": f"{t.key}#{c}",
                "search": t.key,
                "candidate": c,
                "num_atoms": t.n_atoms,
                "atom_types": list(t.species),
                "pressure_gpa": t.pressure_gpa,
            }
            if pressure_condition:
                it["condition"] = {"pressure": t.pressure_gpa}
            items.append(it)
    return items


def candidate_record(item: dict, structure, **extra) -> dict:
    """A sample record, as the sampler writes it, of a candidate whose structure came from elsewhere (random
    search, a test's stand-in)."""
    rec = {k: v for k, v in item.items() if k != "atom_types"}
    rec.update(
        lattice=structure.lattice.matrix.tolist(),
        species=[site.specie.Z for site in structure],
        frac_coords=structure.frac_coords.tolist(),
        flag="",
        **extra,
    )
    return rec


# ----------------------------------------------------------------------------- per candidate
def spacegroup(structure, symprec: float) -> tuple[str, int]:
    """International symbol and number (spglib through pymatgen); ("", 0) where spglib finds none."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        return sga.get_space_group_symbol(), int(sga.get_space_group_number())
    except Exception:
        return "", 0


# what a candidate's relaxation record gives its row
RELAXATION_COLUMNS = (
    "initial_energy_per_atom",
    "initial_enthalpy_per_atom",
    "energy_per_atom",
    "enthalpy_per_atom",
    "initial_stress_pressure_gpa",
    "stress_pressure_gpa",
)
CANDIDATE_COLUMNS = [
    "id",
    "search",
    "group",
    "formula",
    "z",
    "cell",
    "n_atoms",
    "pressure_gpa",
    "pressure_aware",
    "generator",
    "prototype",
    "substitution",
    "spacegroup_generated",
    "assignment",
    "flag",
    "error",
    "converged",
    "steps",
    "force_calls",
    "duplicate_of",
    "abandoned_enthalpy_per_atom",
    *RELAXATION_COLUMNS,
    "density",
    "volume_per_atom",
    "spacegroup_loose",
    "spacegroup_number_loose",
    "spacegroup_tight",
    "spacegroup_number_tight",
    "cluster",
    "status",
]


def candidate_table(searches: list[Search], samples: list[dict], relaxed: list[dict], symprec) -> tuple:
    """(candidates DataFrame without clusters, {id: relaxed Structure}) from the sample and relaxation
    records of a job."""
    from crystalflow_core.crystals.crystal import structure_from

    by_key = {t.key: t for t in searches}
    rel = {r["id"]: r for r in relaxed}
    rows, finals = [], {}
    for smp in samples:
        t = by_key[smp["search"]]
        r = rel.get(smp["id"], {})
        row = {c: np.nan for c in CANDIDATE_COLUMNS}
        row.update(
            id=smp["id"],
            search=t.key,
            group=t.group,
            formula=t.formula,
            z=t.z,
            cell=t.cell,
            n_atoms=t.n_atoms,
            pressure_gpa=t.pressure_gpa,
            pressure_aware=smp.get("pressure_aware", np.nan),
            generator=smp.get("generator", "model"),
            prototype=smp.get("prototype") or "",
            substitution=smp.get("substitution") or "",
            spacegroup_generated=smp.get("spacegroup_generated", 1),  # the plain model samples in P1
            assignment=smp.get("assignment", ""),
            flag=smp.get("flag", ""),
            error=r.get("error", "" if r else "not relaxed"),
            converged=bool(r.get("converged", False)),
            steps=int(r.get("steps", 0)),
            force_calls=r.get("force_calls", np.nan),
            duplicate_of=r.get("duplicate_of", ""),
            abandoned_enthalpy_per_atom=r.get("abandoned_enthalpy_per_atom", np.nan),
            spacegroup_loose="",
            spacegroup_tight="",
            cluster=-1,
        )
        for k in RELAXATION_COLUMNS:
            row[k] = r.get(k, np.nan)
        if finished(r):
            s = structure_from(r["final"])
            finals[smp["id"]] = s
            row["density"] = float(s.density)
            row["volume_per_atom"] = float(s.volume / len(s))
            for tag, prec in zip(("loose", "tight"), symprec):
                row[f"spacegroup_{tag}"], row[f"spacegroup_number_{tag}"] = spacegroup(s, prec)
        rows.append(row)
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS), finals


def write_extxyz(cands: pd.DataFrame, finals: dict, out: str) -> None:
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for _, c in cands[cands["id"].isin(finals)].iterrows():
        atoms = AseAtomsAdaptor.get_atoms(finals[c["id"]])
        atoms.info.update(
            id=c["id"],
            search=c["search"],
            cluster=int(c["cluster"]),
            enthalpy_per_atom=float(c["enthalpy_per_atom"]),
            energy_per_atom=float(c["energy_per_atom"]),
            pressure_gpa=float(c["pressure_gpa"]),
            converged=bool(c["converged"]),
        )
        frames.append(atoms)
    with atomic_path(out) as tmp:
        write(str(tmp), frames, format="extxyz")
