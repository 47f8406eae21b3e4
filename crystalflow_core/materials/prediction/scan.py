"""Pressure scans: the polymorphs found at any pressure of a composition relaxed at every pressure, H(P),
and the pressures where the lowest polymorph changes."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from crystalflow_core.materials.prediction.candidates import spacegroup
from crystalflow_core.materials.relax import RelaxSettings, finished

log = logging.getLogger("crystalflow")


# ----------------------------------------------------------------------------- pressure scan
PHASE_COLUMNS = [
    "formula",
    "polymorph",
    "spacegroup",
    "pressure_gpa",
    "enthalpy_per_atom",
    "volume_per_atom",
    "converged",
    "error",
]


def distinct_across_pressures(entries: list[tuple], dedupe: dict) -> list[tuple]:
    """(label, structure) of every distinct polymorph among `entries` (label, structure), first seen first:
    one found at 0 and at 20 GPa is one."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher(
        ltol=dedupe["ltol"], stol=dedupe["stol"], angle_tol=dedupe["angle_tol"], primitive_cell=True, scale=True
    )
    kept: list[tuple] = []
    for label, s in entries:
        if not any(sm.fit(s, k) for _, k in kept):
            kept.append((label, s))
    return kept


def enthalpy_scan(  # noqa: PLR0913
    polymorphs: list[tuple], pressures: list[float], settings, calc, formula: str, symprec: float
) -> pd.DataFrame:
    """H(P): every polymorph (label, structure) relaxed at every pressure, each pressure starting from the
    structure relaxed at the one before (in increasing order), space group kept free."""
    from dataclasses import replace

    from crystalflow_core.crystals.crystal import structure_from
    from crystalflow_core.materials.relax import relax_structure

    rows = []
    for label, s0 in polymorphs:
        s = s0
        for p in sorted(pressures):
            rec = relax_structure(s, replace(settings, pressure=float(p), record_energies=False), calc=calc)
            ok = finished(rec)
            if ok:
                s = structure_from(rec["final"])
            rows.append(
                {
                    "formula": formula,
                    "polymorph": label,
                    "spacegroup": spacegroup(s, symprec)[0] if ok else "",
                    "pressure_gpa": float(p),
                    "enthalpy_per_atom": rec.get("enthalpy_per_atom", np.nan) if ok else np.nan,
                    "volume_per_atom": rec["volume"] / len(s) if ok else np.nan,
                    "converged": bool(rec.get("converged")),
                    "error": rec.get("error", ""),
                }
            )
    return pd.DataFrame(rows, columns=PHASE_COLUMNS)


def transitions(scan: pd.DataFrame) -> list[dict]:
    """Where the lowest-enthalpy polymorph changes along the pressures of a scan: between two adjacent
    pressures, the pressure where H of the old and the new lowest cross (linear in P between them)."""
    h = scan.pivot_table(index="pressure_gpa", columns="polymorph", values="enthalpy_per_atom").sort_index()
    out = []
    best = h.idxmin(axis=1)
    for (p0, a), (p1, b) in zip(list(best.items())[:-1], list(best.items())[1:]):
        if a == b or not isinstance(a, str) or not isinstance(b, str):
            continue
        d0, d1 = h.loc[p0, b] - h.loc[p0, a], h.loc[p1, b] - h.loc[p1, a]  # H(new) - H(old): > 0, then < 0
        pt = p0 + (p1 - p0) * d0 / (d0 - d1) if d0 != d1 else (p0 + p1) / 2
        out.append({"from": a, "to": b, "between_gpa": (float(p0), float(p1)), "transition_gpa": float(pt)})
    return out


def phase_diagram(job: dict, ranked: pd.DataFrame, finals: dict, calc) -> pd.DataFrame:
    """A pressure scan where a composition was searched at several pressures: the `top_n` polymorphs found at
    any of them (each distinct one once) relaxed at every pressure; empty otherwise."""
    scans = [pd.DataFrame(columns=PHASE_COLUMNS)]
    base = RelaxSettings.from_section(job["relax"], record_energies=False)
    for formula, f in ranked.groupby("formula", sort=True):
        pressures = sorted(f["pressure_gpa"].unique())
        if len(pressures) < 2:
            continue
        top = f[f["rank"] <= max(1, job["top_n"])].sort_values(["pressure_gpa", "rank", "enthalpy_per_atom"])
        found = [(f"{r['spacegroup_tight'] or 'P1'} ({r['best_id']})", finals[r["best_id"]]) for _, r in top.iterrows()]
        polymorphs = distinct_across_pressures(found, job["dedupe"])
        log.info("pressure scan of %s: %d polymorphs x %d pressures", formula, len(polymorphs), len(pressures))
        scans.append(enthalpy_scan(polymorphs, pressures, base, calc, formula, job["symprec"][0]))
    return pd.concat(scans, ignore_index=True) if len(scans) > 1 else scans[0]
