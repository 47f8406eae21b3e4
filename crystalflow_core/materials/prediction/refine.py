"""Refinement before the final order: the best polymorphs of each composition and pressure re-relaxed to a
tighter force criterion, re-clustered (two that now match are one polymorph) and ranked again. CHGNet orders
near-degenerate polymorphs by fractions of a meV/atom, and a relaxation stopped at fmax 0.1 leaves errors
of that size: the order of the best few is only read after they are relaxed tightly."""

from __future__ import annotations

import logging

import pandas as pd

from crystalflow_core.materials.prediction.candidates import spacegroup
from crystalflow_core.materials.relax import finished

log = logging.getLogger("crystalflow")

REFINE_COLUMNS = ["refined", "rank_before_refinement", "enthalpy_unrefined_per_atom"]


def refine_items(ranked: pd.DataFrame, finals: dict, top: int) -> list[tuple]:
    """(id, structure, pressure) of the polymorphs to refine: rank <= `top` in each group (every member of a
    lead group has rank 1, so all of them)."""
    rows = ranked[ranked["rank"].astype(int) <= top]
    return [(r["best_id"], finals[r["best_id"]], float(r["pressure_gpa"])) for _, r in rows.iterrows()]


def _merge(keep: pd.Series, gone: pd.Series) -> pd.Series:
    """Polymorph `keep` after `gone` was found to be the same structure: its candidates and finders too."""
    keep = keep.copy()
    keep["n_candidates"] = int(keep["n_candidates"]) + int(gone["n_candidates"])
    keep["n_converged"] = int(keep["n_converged"]) + int(gone["n_converged"])
    keep["found_by"] = ",".join(sorted(set(str(keep["found_by"]).split(",")) | set(str(gone["found_by"]).split(","))))
    zs = {int(z) for z in f"{keep['z_found']},{gone['z_found']}".split(",") if z}
    keep["z_found"] = ",".join(str(z) for z in sorted(zs))
    return keep


def apply_refinement(  # noqa: PLR0913
    cands: pd.DataFrame, ranked: pd.DataFrame, finals: dict, refined: dict, job: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ranking after refinement (`refined`: {best id: its tight relaxation record}). A refined polymorph
    takes its new structure (in `finals`), energies and space groups; refined polymorphs of one group that now
    match (StructureMatcher at the job's `dedupe`) become one; every group is ordered again by enthalpy, with
    delta-H, ranks and the lead group (`rank.tie_mev`) recomputed, and the candidates' cluster numbers follow.
    A refinement that failed or did not converge leaves its polymorph as it was."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystalflow_core.crystals.crystal import structure_from

    dd = job["dedupe"]
    sm = StructureMatcher(ltol=dd["ltol"], stol=dd["stol"], angle_tol=dd["angle_tol"], primitive_cell=True)
    ranked = ranked.sort_values(["group", "enthalpy_per_atom", "best_id"]).reset_index(drop=True)
    ranked["_before"] = ranked.groupby("group").cumcount() + 1  # the candidates' cluster numbers so far
    ranked["rank_before_refinement"] = ranked["rank"]
    for i, r in ranked.iterrows():
        rec = refined.get(r["best_id"])
        if rec is None or not finished(rec) or not rec.get("converged"):
            continue
        s = structure_from(rec["final"])
        finals[r["best_id"]] = s
        ranked.at[i, "refined"] = True
        ranked.at[i, "enthalpy_per_atom"] = float(rec["enthalpy_per_atom"])
        ranked.at[i, "energy_per_atom"] = float(rec["energy_per_atom"])
        ranked.at[i, "density"] = float(s.density)
        ranked.at[i, "spacegroup_loose"] = spacegroup(s, job["symprec"][0])[0]
        ranked.at[i, "spacegroup_tight"], ranked.at[i, "spacegroup_number_tight"] = spacegroup(s, job["symprec"][1])
    merged_into: dict[tuple, int] = {}  # (group, old cluster number) -> the old number of the one it joined
    rows = []
    for group, g in ranked.groupby("group", sort=True):
        g = g.sort_values(["enthalpy_per_atom", "best_id"])
        kept: list[pd.Series] = []
        for _, r in g.iterrows():
            match = None
            if r["refined"]:
                match = next(
                    (
                        k
                        for k, x in enumerate(kept)
                        if x["refined"] and sm.fit(finals[x["best_id"]], finals[r["best_id"]])
                    ),
                    None,
                )
            if match is None:
                kept.append(r)
            else:
                kept[match] = _merge(kept[match], r)
                merged_into[(group, int(r["_before"]))] = int(kept[match]["_before"])
        rows += kept
    out = pd.DataFrame(rows).reset_index(drop=True)
    out["delta_h_mev"] = 1000.0 * (
        out["enthalpy_per_atom"] - out.groupby("group")["enthalpy_per_atom"].transform("min")
    )
    out["rank"] = out.groupby("group").cumcount() + 1
    new_number = {(g, int(b)): int(n) for g, b, n in zip(out["group"], out["_before"], out["rank"])}
    out["lead"] = out["delta_h_mev"] <= job["rank"]["tie_mev"]
    out.loc[out["lead"], "rank"] = 1
    cands = cands.copy()
    has = cands["cluster"].astype(float) >= 0
    cands.loc[has, "cluster"] = [
        new_number[(g, merged_into.get((g, int(c)), int(c)))]
        for g, c in zip(cands.loc[has, "group"], cands.loc[has, "cluster"])
    ]
    changed = sum(int(g.iloc[0]["_before"]) != 1 for _, g in out.groupby("group"))  # another polymorph first
    log.info(
        "refinement: %d polymorphs re-relaxed, %d merged, first place changed in %d of %d groups",
        int(out["refined"].sum()) + len(merged_into),
        len(merged_into),
        changed,
        out["group"].nunique(),
    )
    return cands, out.drop(columns="_before")
