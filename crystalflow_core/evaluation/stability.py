"""The stability stage's numbers: formation energy, E_hull, unique and new of relaxed samples (stability_table),
the S.U.N. rates of a stability table, the per-condition-value rows of conditional runs; records of one potential."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from crystalflow_core.errors import StageError
from crystalflow_core.evaluation import metrics as M
from crystalflow_core.evaluation.committee import committee_summary
from crystalflow_core.evaluation.sample_metrics import generated_stress_error
from crystalflow_core.generative.sampling import record_to_structure
from crystalflow_core.materials.hull import formation_energy_per_atom, hull_columns, on_hull_scale
from crystalflow_core.materials.potentials import record_energy_scale, record_potential
from crystalflow_core.materials.relax import relaxed_structure

log = logging.getLogger(__name__)


def stability_summary(
    st: pd.DataFrame, pressure_run: bool, metastable_e_hull: float, second: str | None = None
) -> dict:
    """SUN rates of a stability table (denominator: every relaxed sample, stated as n_relaxed); metastable up to
    `metastable_e_hull` eV/atom above the hull."""
    row = {
        "n_relaxed": int(len(st)),
        "n_relax_failed": int((st["error"].fillna("") != "").sum()),
        "n_hull_missing_elements": int((st["hull_missing"].fillna("") != "").sum()),
        "n_mp2020_refused": int((st["mp2020_refused"].fillna("") != "").sum()) if "mp2020_refused" in st else 0,
    }
    e_hull, unique, new = st["e_hull"].to_numpy(float), st["unique"].to_numpy(bool), st["new"].to_numpy(bool)
    row.update(M.sun_summary(e_hull, unique, new, len(st), metastable_e_hull))
    suspect = st["hull_suspect"].fillna(False).to_numpy(bool) if "hull_suspect" in st else np.zeros(len(st), bool)
    row["n_hull_suspect"] = int(suspect.sum())
    row["hull"] = str(st["hull"].iloc[0]) if "hull" in st and len(st) else ""
    trusted = M.sun_summary(
        np.where(suspect, np.nan, e_hull), unique, new, len(st), metastable_e_hull
    )  # suspects counted unstable
    row.update({f"{k}_without_suspects": trusted[k] for k in ("stable_pct", "metastable_pct", "sun_pct", "msun_pct")})
    row["mean_e_hull_ev_atom"] = float(np.nanmean(st["e_hull"])) if st["e_hull"].notna().any() else float("nan")
    if "potential" in st and len(st):  # the potential of every energy in the row (one per table)
        row["potential"], row["potential_version"] = str(st["potential"].iloc[0]), str(st["potential_version"].iloc[0])
    row.update(committee_summary(st, second, metastable_e_hull))
    row["relax_convergence_pct"] = 100.0 * float(st["converged"].astype(bool).mean()) if len(st) else float("nan")
    if "steps" in st:  # Table 2's "ionic steps", for CHGNet: mean optimiser steps of the converged
        conv = st[st["converged"].astype(bool)]
        row["relax_mean_steps"] = float(conv["steps"].astype(float).mean()) if len(conv) else float("nan")
    if pressure_run:  # DFT-free proxy: CHGNet pressure of the generated (unrelaxed) cell vs the target
        recs = st.to_dict("records")
        row["stress_vs_target_mae_gpa"] = generated_stress_error(recs)
    return row


def condition_rows(st: pd.DataFrame, condition: str) -> list[dict]:
    """Per condition value: MAE/RMSE of the CHGNet formation energy before and after relaxation."""
    rows = []
    for tgt, grp in st.groupby("condition_value"):
        t = np.full(len(grp), tgt)
        before = M.target_errors(t, grp["e_form_initial"].to_numpy(float))
        after = M.target_errors(t, grp["e_form"].to_numpy(float))
        rows.append(
            {
                "condition": condition,
                "condition_value": tgt,
                "n_samples": int(len(grp)),
                "mae_before_ev_atom": before["mae"],
                "rmse_before_ev_atom": before["rmse"],
                "mae_after_ev_atom": after["mae"],
                "rmse_after_ev_atom": after["rmse"],
            }
        )
    return rows


CONDITION_COLUMNS = [
    "run",
    "dataset",
    "task",
    "steps",
    "condition",
    "condition_value",
    "n_samples",
    "mae_before_ev_atom",
    "rmse_before_ev_atom",
    "mae_after_ev_atom",
    "rmse_after_ev_atom",
]


# ----------------------------------------------------------------------------- stability
def check_relaxations_belong(samples_by_id: dict, relaxed: list[dict], source: str) -> None:
    """Relaxations of other samples (an older sampling of the run) are never mixed in."""
    for r in relaxed:
        smp = samples_by_id.get(r["id"])
        if smp is None or r.get("sample_provenance", smp.get("provenance")) != smp.get("provenance"):
            raise StageError(
                f"relaxation of {r['id']!r} does not belong to {source} (other samples, or none with "
                "that id): delete the relax shards to rebuild them"
            )


def stability_table(samples_by_id: dict, relaxed: list[dict], refs: dict, hull, novelty: list) -> pd.DataFrame:
    """Per relaxed structure: formation energies (before/after relaxation), E_hull, unique, new, and the
    potential that relaxed it. `hull` is any object with e_hull(structure, corrected_total, e_form_per_atom).
    Records of two potentials are refused: their energies never meet in one table."""
    one_potential(relaxed, "the relaxations of this table")
    rows, final_structs = [], []
    for r in relaxed:
        smp = samples_by_id.get(r["id"], {})
        row = {
            "id": r["id"],
            "converged": r.get("converged", False),
            "error": r.get("error", ""),
            "condition_value": smp.get("condition_value", np.nan),
            "e_form_initial": np.nan,
            "e_form": np.nan,
            "e_hull": np.nan,
            "hull_missing": "",
            "mp2020_refused": "",
            "hull": f"{hull.source} ({len(hull)} entries)",
            "potential": record_potential(r).name,
            "potential_version": r.get("potential_version", ""),
            "hull_entries": 0,
            "hull_suspect": False,
            "steps": r.get("steps", 0),
            "pressure_gpa": r.get("pressure_gpa", np.nan),
            "initial_stress_pressure_gpa": r.get("initial_stress_pressure_gpa", np.nan),
            "stress_pressure_gpa": r.get("stress_pressure_gpa", np.nan),
        }
        s0 = record_to_structure(smp) if smp else None
        s1 = relaxed_structure(r)  # unphysical: no energy
        try:
            scale = record_energy_scale(r)
            if s0 is not None and "initial_energy_per_atom" in r:
                e0, _ = on_hull_scale(s0, r["initial_energy_per_atom"] * len(s0), scale)
                if np.isfinite(e0):
                    row["e_form_initial"] = formation_energy_per_atom(s0, e0, refs)
            if s1 is not None:
                e1, row["mp2020_refused"] = on_hull_scale(s1, r["energy_per_atom"] * len(s1), scale)
                if np.isfinite(e1):
                    h = hull_columns(s1, e1, refs, hull)
                    row.update(
                        e_form=h["e_form"], e_hull=h["e_hull"], **{k: h[k] for k in ("hull_entries", "hull_suspect")}
                    )
        except KeyError as exc:
            row["hull_missing"] = str(exc).strip("'\"")
        rows.append(row)
        final_structs.append(s1 if s1 is not None else s0)
    ok = [i for i, s in enumerate(final_structs) if s is not None]
    uniq, new = M.unique_new_flags([final_structs[i] for i in ok], novelty)
    df = pd.DataFrame(rows)
    df["unique"] = False
    df["new"] = False
    df.loc[ok, "unique"] = uniq
    df.loc[ok, "new"] = new
    return df


def one_potential(records: list[dict], what: str) -> str:
    """The one potential of relaxation records (StageError naming both where two are mixed)."""
    names = sorted({record_potential(r).name for r in records})
    if len(names) > 1:
        counts = ", ".join(f"{n}: {sum(record_potential(r).name == n for r in records)}" for n in names)
        raise StageError(f"{what} mix potentials ({counts}): their energies never meet in one table; rerun with one")
    return names[0] if names else ""
