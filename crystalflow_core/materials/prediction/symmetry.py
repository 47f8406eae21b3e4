"""The best polymorphs symmetrised (refined at their space group, re-relaxed with it kept) and written as
CIFs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crystalflow_core.io import atomic_path
from crystalflow_core.materials.prediction.candidates import spacegroup
from crystalflow_core.materials.relax import RelaxSettings, finished


def cif_name(row) -> str:
    """group, rank, formula and the symmetrised space group: SiO2_p0_r01_SiO2_P3_221.cif (slashes replaced)."""
    sg = row.get("spacegroup_symmetrised") or row["spacegroup_tight"] or "P1"
    return f"{row['group']}_r{int(row['rank']):02d}_{row['formula']}_{str(sg).replace('/', '_')}.cif"


def symmetrise(structure, symprec: float, settings, calc, keep_symprec: float) -> tuple:
    """(structure, columns): the structure refined at its space group at `symprec` (spglib's standard
    primitive cell), re-relaxed with that symmetry kept (FixSymmetry, same pressure and settings); the
    columns give the space group it keeps, its enthalpy per atom and the change against the unsymmetrised
    one (meV/atom), so a symmetrisation that raises H never passes unseen. Where the refinement or its
    relaxation fails the unsymmetrised structure stays, with the reason in `symmetry_note`. `keep_symprec`:
    the tolerance of the symmetry kept while relaxing and of the space group read after."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from crystalflow_core.crystals.crystal import structure_from
    from crystalflow_core.materials.relax import relax_structure

    try:
        refined = SpacegroupAnalyzer(structure, symprec=symprec).get_primitive_standard_structure()
    except Exception as exc:
        return structure, {"symmetry_note": f"not refined ({type(exc).__name__})"}
    rec = relax_structure(refined, settings, calc=calc, fix_symmetry=keep_symprec)
    if not finished(rec):
        return structure, {"symmetry_note": f"symmetrised relaxation failed: {rec.get('error', '')}"}
    final = structure_from(rec["final"])
    sg, _ = spacegroup(final, keep_symprec)
    note = "" if rec["converged"] else "symmetrised relaxation not converged"
    return final, {
        "spacegroup_symmetrised": sg,
        "enthalpy_symmetrised_per_atom": float(rec["enthalpy_per_atom"]),
        "symmetry_note": note,
    }


def write_symmetrised_cifs(job: dict, ranked: pd.DataFrame, finals: dict, folder: Path, calc) -> pd.DataFrame:
    """The `top_n` polymorphs of each group symmetrised (refined at the loose space group, re-relaxed with
    the symmetry kept) and written as CIFs with their symmetry operations; ranked.csv keeps both enthalpies."""
    from dataclasses import replace

    from pymatgen.io.cif import CifWriter

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.cif"):  # CIFs of an earlier ranking
        old.unlink()
    top = ranked[ranked["rank"] <= job["top_n"]]
    if not len(top):
        return ranked
    base = RelaxSettings.from_section(job["relax"], record_energies=False)
    if job["rank"]["refine_top"]:  # as tight as the refinement before
        base = replace(base, fmax=job["rank"]["refine_fmax"], steps=job["rank"]["refine_steps"])
    ranked = ranked.copy()
    for i, r in top.iterrows():
        settings = replace(base, pressure=float(r["pressure_gpa"]))
        s, cols = symmetrise(finals[r["best_id"]], job["symprec"][0], settings, calc, job["symmetrised_symprec"])
        for k, v in cols.items():
            ranked.at[i, k] = v
        if "enthalpy_symmetrised_per_atom" in cols:
            ranked.at[i, "symmetrised_delta_mev"] = 1000.0 * (
                cols["enthalpy_symmetrised_per_atom"] - r["enthalpy_per_atom"]
            )
        name = cif_name(ranked.loc[i])
        ranked.at[i, "cif"] = name
        with atomic_path(folder / name) as tmp:
            CifWriter(s, symprec=job["symprec"][1]).write_file(str(tmp))
    return ranked
