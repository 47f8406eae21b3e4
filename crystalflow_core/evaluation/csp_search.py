"""Judging a structure prediction against a known structure (`benchmarks/predict.py`): whether the known
structure is the lowest known polymorph of its composition (MP-20's formation energies over all splits), and
why a search missed it (not generated; generated but not ranked: unconverged, unphysical or abandoned;
ranked below another structure, with the gap under each potential)."""

from __future__ import annotations

import math

import pandas as pd

GROUND_STATE_TOL = 1e-4  # eV/atom: formation energies this close count as the same (the lowest) level


def lowest_polymorphs(tables: list[pd.DataFrame]) -> dict[str, float]:
    """reduced formula -> the lowest formation energy per atom (eV/atom) among all rows of `tables` (columns
    formation_energy_per_atom and pretty_formula or formula): the hull of each composition on its own."""
    from pymatgen.core import Composition

    best: dict[str, float] = {}
    for df in tables:
        col = "pretty_formula" if "pretty_formula" in df else "formula"
        for formula, e in zip(df[col], df["formation_energy_per_atom"]):
            if not isinstance(e, (int, float)) or not math.isfinite(e):
                continue
            f = Composition(str(formula)).reduced_formula
            best[f] = min(best.get(f, math.inf), float(e))
    return best


def is_lowest(formula: str, e_form: float, lowest: dict[str, float]) -> bool:
    """Whether a crystal of `formula` with formation energy `e_form` is its composition's lowest known polymorph."""
    from pymatgen.core import Composition

    f = Composition(formula).reduced_formula
    return f in lowest and e_form <= lowest[f] + GROUND_STATE_TOL


def classify(known, group: str, cands: pd.DataFrame, ranked: pd.DataFrame, structures: dict, matcher) -> dict:
    """What a search of one composition and pressure (`group`) did with the `known` Structure: `outcome` first
    (the first polymorph of ranked.csv's order matches), lead (in the lead group, not first), below (ranked lower), not
    ranked (a matching candidate that was unconverged, unphysical or abandoned) or not generated; with the
    rank, the lead mark and the gap (meV/atom) to the best under each potential where ranked. `structures`:
    {candidate id: its relaxed Structure} of every relaxation that produced one, ranked or not."""
    mine = cands[cands["group"] == group]
    matched = [cid for cid in mine["id"] if cid in structures and matcher.fit(known, structures[cid])]
    out = {"outcome": "not generated", "rank": math.nan, "lead": False, "gap_first_mev": math.nan}
    ranked_ids = set(mine[mine["status"] == "ranked"]["id"])
    hits = [c for c in matched if c in ranked_ids]
    if not hits:
        if matched:
            out["outcome"] = "not ranked (" + ", ".join(sorted(set(mine.set_index("id").loc[matched, "status"]))) + ")"
        return out
    in_order = ranked[ranked["group"] == group].reset_index(drop=True)  # the order ranked.csv gives (rank.by)
    by_enthalpy = in_order.sort_values("enthalpy_per_atom", kind="stable").reset_index(drop=True)
    cluster = int(mine.set_index("id").loc[hits, "cluster"].min())  # numbered in the first potential's order
    row = by_enthalpy.iloc[cluster - 1]
    out.update(rank=int(row["rank"]), lead=str(row["lead"]) == "True", gap_first_mev=float(row["delta_h_mev"]))
    for col in in_order.columns:
        if col.startswith("delta_h_") and col.endswith("_mev") and col not in ("delta_h_mev", "delta_h_ranked_mev"):
            out[f"gap_{col[len('delta_h_') : -len('_mev')]}_mev"] = float(row[col])
    if "delta_h_ranked_mev" in in_order:
        out["gap_ranked_mev"] = float(row["delta_h_ranked_mev"])
    first = in_order.iloc[0]["best_id"] == row["best_id"]
    out["outcome"] = "first" if first else ("lead" if out["lead"] else "below")
    return out
