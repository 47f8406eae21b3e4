"""Ranking the relaxed candidates of a prediction: polymorphs clustered (StructureMatcher), ranked by
enthalpy per atom, put on the hull at 0 GPa and re-ranked by a committee's second potential."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from crystalflow_core.config import committee_second
from crystalflow_core.materials.prediction.refine import REFINE_COLUMNS
from crystalflow_core.materials.second_opinion import second_opinion

log = logging.getLogger("crystalflow")


# ----------------------------------------------------------------------------- polymorphs
def cluster_polymorphs(
    structures: list, enthalpies: list[float], ltol: float, stol: float, angle_tol: float, energy_window: float = 0.1
) -> list[int]:
    """Cluster index per structure: lowest enthalpy first, each structure joins the first earlier cluster
    whose representative (its lowest-enthalpy member) StructureMatcher matches, else opens a new one.
    Only representatives within `energy_window` eV/atom are compared (the same polymorph relaxed twice
    lands within a few meV/atom; the window only saves comparisons)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True, attempt_supercell=True)
    order = sorted(range(len(structures)), key=lambda i: (enthalpies[i], i))
    reps: list[int] = []  # structure index of each cluster's representative
    labels = [-1] * len(structures)
    for i in order:
        for c, j in enumerate(reps):
            if abs(enthalpies[i] - enthalpies[j]) > energy_window:
                continue
            if sm.fit(structures[j], structures[i]):
                labels[i] = c
                break
        else:
            labels[i] = len(reps)
            reps.append(i)
    return labels


SYMMETRY_COLUMNS = ["spacegroup_symmetrised", "enthalpy_symmetrised_per_atom", "symmetrised_delta_mev", "symmetry_note"]


RANKED_COLUMNS = [
    "group",
    "rank",
    "lead",
    "formula",
    "pressure_gpa",
    "best_id",
    "cell",
    "enthalpy_per_atom",
    "energy_per_atom",
    "delta_h_mev",
    "generator",
    "found_by",
    "spacegroup_generated",
    "spacegroup_loose",
    "spacegroup_tight",
    "spacegroup_number_tight",
    "n_candidates",
    "n_converged",
    "z_found",
    "density",
    "converged",
    "e_hull",
    "e_hull_reason",
    "hull",
    "hull_suspect",
    *SYMMETRY_COLUMNS,
    *REFINE_COLUMNS,
    "cif",
]


def rank_polymorphs(
    cands: pd.DataFrame, finals: dict, dedupe: dict, rank_unconverged: bool, tie_mev: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster the relaxed candidates of each group (composition and pressure) and rank the clusters by
    the enthalpy per atom of their best member. Only physical structures (no relaxation error) rank, and
    only converged ones unless `rank_unconverged`; `status` says of every candidate whether it ranked and
    why not. Polymorphs within `tie_mev` meV/atom of the best form the lead group: each has rank 1 and `lead`
    (a tie at the potential's accuracy), the next polymorph ranks after all of them (1, 1, 3: competition
    ranking). Candidates' `cluster` numbers stay distinct (the enthalpy order). Returns (candidates with
    `cluster` and `status`, ranked polymorphs)."""
    cands = cands.copy()
    ranks = cands["id"].isin(finals) & cands["enthalpy_per_atom"].notna()
    if not rank_unconverged:
        ranks &= cands["converged"].astype(bool)
    cands["status"] = np.where(
        ranks,
        "ranked",
        np.where(
            cands["abandoned_enthalpy_per_atom"].notna(),
            "abandoned",
            np.where(
                cands["error"].fillna("") != "",
                cands["error"].fillna(""),
                np.where(cands["converged"].astype(bool), "no enthalpy", "not converged"),
            ),
        ),
    )
    ranked = []
    for group, g in cands[ranks].groupby("group", sort=True):
        ok = g
        if not len(ok):
            continue
        ids = list(ok["id"])
        h = [float(x) for x in ok["enthalpy_per_atom"]]
        labels = cluster_polymorphs([finals[i] for i in ids], h, dedupe["ltol"], dedupe["stol"], dedupe["angle_tol"])
        cands.loc[ok.index, "cluster"] = labels
        members = ok.assign(cluster=labels)
        best_h = min(h)
        for c, m in members.groupby("cluster"):
            best = m.loc[m["enthalpy_per_atom"].idxmin()]
            ranked.append(
                {
                    "group": group,
                    "cluster": int(c),
                    "formula": best["formula"],
                    "pressure_gpa": best["pressure_gpa"],
                    "best_id": best["id"],
                    "cell": best["cell"],
                    "enthalpy_per_atom": float(best["enthalpy_per_atom"]),
                    "energy_per_atom": float(best["energy_per_atom"]),
                    "delta_h_mev": 1000.0 * (float(best["enthalpy_per_atom"]) - best_h),
                    "generator": best["generator"],
                    "found_by": ",".join(sorted(set(m["generator"]))),
                    "spacegroup_generated": int(best["spacegroup_generated"]),
                    "spacegroup_loose": best["spacegroup_loose"],
                    "spacegroup_tight": best["spacegroup_tight"],
                    "spacegroup_number_tight": best["spacegroup_number_tight"],
                    "n_candidates": int(len(m)),
                    "n_converged": int(m["converged"].astype(bool).sum()),
                    "z_found": ",".join(str(int(z)) for z in sorted(set(m["z"]))),
                    "density": float(best["density"]),
                    "converged": bool(best["converged"]),
                }
            )
    df = pd.DataFrame(ranked)
    if not len(df):
        return cands, pd.DataFrame(columns=RANKED_COLUMNS)
    df = df.sort_values(["group", "enthalpy_per_atom", "best_id"]).reset_index(drop=True)
    df["rank"] = df.groupby("group").cumcount() + 1
    # the candidates' cluster numbers follow the ranks (1 = lowest enthalpy)
    rank_of = {(r["group"], r["cluster"]): int(r["rank"]) for _, r in df.iterrows()}
    has = cands["cluster"].astype(float) >= 0
    cands.loc[has, "cluster"] = [
        rank_of[(g, int(c))] for g, c in zip(cands.loc[has, "group"], cands.loc[has, "cluster"])
    ]
    df["lead"] = df["delta_h_mev"] <= tie_mev  # the best itself (0) always
    df.loc[df["lead"], "rank"] = 1
    df["refined"], df["rank_before_refinement"] = False, df["rank"]  # refine.apply_refinement changes them
    df["enthalpy_unrefined_per_atom"] = df["enthalpy_per_atom"]
    for col in ("e_hull", "e_hull_reason", "hull", "hull_suspect", *SYMMETRY_COLUMNS, "cif"):
        df[col] = {"e_hull": np.nan, "hull_suspect": False}.get(col, "")
    for col in ("enthalpy_symmetrised_per_atom", "symmetrised_delta_mev"):
        df[col] = np.nan
    return cands, df[RANKED_COLUMNS]


def e_hull_at_zero_pressure(ranked: pd.DataFrame, finals: dict, refs: dict, hull, scales: dict) -> pd.DataFrame:
    """E_hull (eV/atom) of every polymorph at 0 GPa on the run's hull, with the hull's name and the suspect
    flag; `scales`: the energy scale of each candidate's record (its potential's: CHGNet's energies are
    MP2020-corrected already). NaN with the reason where there is none (another pressure, MP2020 refused,
    element without a reference)."""
    from crystalflow_core.materials.hull import hull_columns, on_hull_scale

    ranked = ranked.copy()
    ranked["hull"] = f"{hull.source} ({len(hull)} entries)"
    for i, r in ranked.iterrows():
        if r["pressure_gpa"] != 0:
            ranked.at[i, "e_hull_reason"] = "E_hull only at 0 GPa"
            continue
        s = finals[r["best_id"]]
        corrected, why = on_hull_scale(s, float(r["energy_per_atom"]) * len(s), scales[r["best_id"]])
        if not math.isfinite(corrected):
            ranked.at[i, "e_hull_reason"] = why
            continue
        try:
            h = hull_columns(s, corrected, refs, hull)
        except KeyError as exc:
            ranked.at[i, "e_hull_reason"] = str(exc).strip("'\"")
            continue
        ranked.at[i, "e_hull"], ranked.at[i, "hull_suspect"] = h["e_hull"], bool(h["hull_suspect"])
    return ranked


def committee_ranks(ranked: pd.DataFrame, name: str, second: dict, top_n: int, threshold_ev: float) -> pd.DataFrame:
    """The `top_n` polymorphs of each composition and pressure re-ranked under a second potential `name`
    (`second`: {best_id: its record with enthalpy_per_atom}). Delta-H within a composition needs no energy scale (the
    MP2020 corrections of one composition cancel). Per polymorph: the second's enthalpy, delta-H and rank,
    `committee_rank_changed` and `committee_disagrees` (the two delta-H differ by more than `threshold_ev`
    eV/atom, or the second has no energy for it)."""
    ranked = ranked.copy()
    h_col, d_col, r_col = f"enthalpy_{name}_per_atom", f"delta_h_{name}_mev", f"rank_{name}"
    for col in (h_col, d_col, r_col):
        ranked[col] = np.nan
    ranked["committee_rank_changed"] = False
    ranked["committee_disagrees"] = False
    for _, g in ranked.groupby("group"):
        top = g[g["rank"] <= top_n]
        h = {i: second.get(r["best_id"], {}).get("enthalpy_per_atom", np.nan) for i, r in top.iterrows()}
        h = {i: v if (v is not None and np.isfinite(v)) else np.nan for i, v in h.items()}
        ok = {i: v for i, v in h.items() if np.isfinite(v)}
        order = sorted(ok, key=ok.get)
        best = ok[order[0]] if order else np.nan
        for i in top.index:
            ranked.at[i, h_col] = h[i]
            if i in ok:
                ranked.at[i, d_col] = 1000.0 * (ok[i] - best)
                ranked.at[i, r_col] = order.index(i) + 1
                ranked.at[i, "committee_rank_changed"] = int(ranked.at[i, "rank"]) != order.index(i) + 1
                gap = abs(ranked.at[i, d_col] - ranked.at[i, "delta_h_mev"]) / 1000.0
                ranked.at[i, "committee_disagrees"] = bool(gap > threshold_ev)
            else:
                ranked.at[i, "committee_disagrees"] = True
    return ranked


def ranking_basis(job: dict) -> str:
    """What orders a job's polymorphs (`rank.by` resolved): "first" (the relaxing potential), "committee_mean"
    or the committee's second potential by name; `auto` is the committee mean where a committee is set."""
    by, relax = job["rank"]["by"], job["relax"]
    second = committee_second(relax)
    if by == "auto":
        return "committee_mean" if second else "first"
    return "first" if by in ("first", relax["model"]) else by


def order_by(ranked: pd.DataFrame, basis: str, second: str | None, tie_mev: float) -> pd.DataFrame:
    """The polymorphs of each group ordered by `basis` (ranking_basis): the first potential's delta-H, the
    second's (`delta_h_{second}_mev`, from committee_ranks) or their mean (delta-H within one composition:
    no energy scale needed). Polymorphs without the second's energy (below top_n, or failed) follow in the
    first's order. `rank` and `lead` (within `tie_mev` of the best on that basis) are recomputed; `rank_first`
    keeps the first potential's rank and `delta_h_ranked_mev` the quantity ranked."""
    ranked = ranked.copy()
    ranked["rank_by"], ranked["rank_first"] = basis, ranked["rank"]
    if basis == "first" or not len(ranked):
        ranked["delta_h_ranked_mev"] = ranked["delta_h_mev"]
        return ranked
    out = []
    for _, g in ranked.groupby("group", sort=True):
        d2 = g[f"delta_h_{second}_mev"].astype(float)
        key = d2 if basis == second else (g["delta_h_mev"].astype(float) + d2) / 2.0
        scored = key.notna()
        g = g.assign(delta_h_ranked_mev=key - key[scored].min() if scored.any() else key, _scored=scored)
        g = g.sort_values(["_scored", "delta_h_ranked_mev", "delta_h_mev"], ascending=[False, True, True])
        g["rank"] = range(1, len(g) + 1)
        g["lead"] = g["_scored"] & (g["delta_h_ranked_mev"] <= tie_mev)
        g.loc[g["lead"], "rank"] = 1
        out.append(g.drop(columns="_scored"))
    return pd.concat(out, ignore_index=True)


def committee_rerank(  # noqa: PLR0913  (the job, its polymorphs, its cache and workers)
    job: dict, ranked: pd.DataFrame, finals: dict, name: str, workers: int, cache=None
) -> pd.DataFrame:
    """With `relax.committee`: the top polymorphs re-ranked under the second potential, flags where the two
    disagree by more than `rank.disagree_mev` (committee_ranks); then ordered by `rank.by` (order_by).
    `cache`: where the second potential's opinions are kept across reruns (second_opinion)."""
    potential = committee_second(job["relax"])
    if potential is None or not len(ranked):
        return order_by(ranked, "first", None, job["rank"]["tie_mev"])
    top = ranked[ranked["rank"] <= job["top_n"]]
    items = [(r["best_id"], finals[r["best_id"]], float(r["pressure_gpa"])) for _, r in top.iterrows()]
    second = second_opinion(items, job["relax"], potential, workers, cache)
    ranked = committee_ranks(ranked, potential, second, job["top_n"], job["rank"]["disagree_mev"] / 1000.0)
    n_changed, n_dis = int(ranked["committee_rank_changed"].sum()), int(ranked["committee_disagrees"].sum())
    committee = "+".join(job["relax"]["committee"])
    log.info("predict/%s committee %s: %d ranks change, %d disagree", name, committee, n_changed, n_dis)
    return order_by(ranked, ranking_basis(job), potential, job["rank"]["tie_mev"])


def with_e_hull(
    cfg: dict, ranked: pd.DataFrame, finals: dict, scales: dict, hull_inputs: dict | None = None
) -> pd.DataFrame:
    """E_hull at 0 GPa on the run's hull (`hull_inputs`: its files as the stage declared them, `hull_files`)."""
    from crystalflow_core.materials.hull import open_hull

    try:
        refs, hull = open_hull(cfg, hull_inputs)
    except Exception as exc:  # no hull here: the ranking stands without E_hull
        log.warning("no hull for E_hull (%s: %s)", type(exc).__name__, exc)
        return ranked.assign(e_hull_reason=f"no hull ({type(exc).__name__})")
    return e_hull_at_zero_pressure(ranked, finals, refs, hull, scales)
