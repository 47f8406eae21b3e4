"""DFT read back beside the potential: DFT E_hull, S.U.N. under DFT, the agreement with the potential."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from crystalflow_core.evaluation import metrics as M
from crystalflow_core.materials.hull import hull_columns, on_hull_scale
from crystalflow_core.materials.potentials import MP2020, RAW

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- DFT read back
DFT_COLUMNS = [
    "id",
    "formula",
    "source",
    "status",
    "reason",
    "electronic_converged",
    "ionic_converged",
    "ionic_steps",
    "energy_per_atom",
    "corrected_energy_per_atom",
    "enthalpy_per_atom",
    "e_form_dft",
    "e_hull_dft",
    "e_hull_chgnet",
    "hull_entries",
    "hull_suspect",
    "hull_missing",
    "rms_displacement",
    "unique_dft",
    "new_dft",
]


def _dft_corrected(job: dict, s, energy: float) -> tuple[float, str]:
    """MP2020-corrected total energy of a DFT job (VASP entries: raw, MP2020 with their own U; supplied
    energies: raw where `correct` is "mp2020", already corrected where it is "none") and the reason where
    there is none."""
    from crystalflow_core.materials.dft_outputs import mp2020_process

    if job.get("entry") is not None:
        return mp2020_process(job["entry"])
    return on_hull_scale(s, energy, RAW if job.get("correct") == "mp2020" else MP2020)


def _dft_row(job: dict, chg, s_chg, refs: dict, hull) -> tuple[dict, object]:
    """One DFT job's row and its final structure (None where it has no energy to use)."""
    from crystalflow_core.materials.dft_outputs import rms_displacement
    from crystalflow_core.materials.relax import enthalpy_per_atom

    sid, rec, s = job["id"], job["rec"], job.get("structure")
    s = s if s is not None else (job["entry"].structure if job.get("entry") is not None else None)
    row = {c: np.nan for c in DFT_COLUMNS}
    row.update(
        id=sid,
        source=rec.get("source", ""),
        status=rec.get("status", ""),
        reason=rec.get("reason", ""),
        ionic_steps=rec.get("ionic_steps", np.nan),
        electronic_converged=rec.get("electronic_converged", np.nan),
        ionic_converged=rec.get("ionic_converged", np.nan),
        hull_missing="",
        hull_suspect=False,
        hull_entries=0,
        e_hull_chgnet=float(chg.loc[sid, "e_hull"]) if sid in getattr(chg, "index", ()) else np.nan,
    )
    ref = s if s is not None else s_chg
    row["formula"] = ref.composition.reduced_formula if ref is not None else ""
    energy = rec.get("energy", np.nan)
    if s is not None and not np.isfinite(energy) and np.isfinite(rec.get("energy_per_atom", np.nan)):
        energy = rec["energy_per_atom"] * len(s)
    if s is None or not np.isfinite(energy) or rec.get("status") in ("crashed", "running", "not_run", "foreign"):
        return row, None
    n = len(s)
    row["energy_per_atom"] = energy / n
    if rec.get("pstress_kbar"):
        row["enthalpy_per_atom"] = enthalpy_per_atom(energy, s.volume, rec["pstress_kbar"] / 10, n)
    corrected, why = _dft_corrected(job, s, energy)
    if why:
        row["reason"] = "; ".join(filter(None, [row["reason"], why]))
    row["corrected_energy_per_atom"] = corrected / n
    if np.isfinite(corrected):
        try:
            h = hull_columns(s, corrected, refs, hull)
            row.update(e_form_dft=h["e_form"], e_hull_dft=h["e_hull"], hull_entries=h["hull_entries"])
            row["hull_suspect"] = h["hull_suspect"]
        except KeyError as exc:
            row["hull_missing"] = str(exc).strip("'\"")
    if s_chg is not None:
        row["rms_displacement"] = rms_displacement(s_chg, s)
    return row, s


def dft_stability_table(jobs: list[dict], chgnet: pd.DataFrame, relaxed: dict, refs: dict, hull, novelty: list):
    """Per DFT job: convergence, ionic steps, MP2020-corrected energy, E_hull on `hull` beside the CHGNet
    E_hull, RMS displacement from the CHGNet-relaxed structure, unique/new among the DFT structures.

    Each job: {"id", "rec" (read_job record or supplied energy), "entry" (VASP ComputedStructureEntry or
    None), "structure" (final DFT structure or None), "correct" ("mp2020" for supplied energies that
    need MP2020, "none" for corrected ones)}."""
    chg = chgnet.set_index("id") if len(chgnet) else chgnet
    rows, finals = zip(*[_dft_row(job, chg, relaxed.get(job["id"]), refs, hull) for job in jobs]) if jobs else ((), ())
    ok = [i for i, s in enumerate(finals) if s is not None]
    df = pd.DataFrame(list(rows), columns=DFT_COLUMNS)
    df["unique_dft"] = False
    df["new_dft"] = False
    if ok:
        uniq, new = M.unique_new_flags([finals[i] for i in ok], novelty)
        df.loc[ok, "unique_dft"] = uniq
        df.loc[ok, "new_dft"] = new
    return df


def dft_summary(df: pd.DataFrame, metastable_e_hull: float) -> dict:
    """The DFT columns of a DNG metrics row. Job counts by status (`foreign` outputs count in no rate);
    Table 2's convergence rate (converged of the jobs that ended: converged + unconverged + crashed) and
    mean ionic steps (jobs that ended with a readable output); DFT stable/metastable/SUN rates over the
    structures with a DFT E_hull (n_dft_evaluated); the CHGNet-vs-DFT E_hull MAE over the same."""
    status = df["status"].fillna("")
    count = lambda s: int((status == s).sum())  # noqa: E731
    ended = count("converged") + count("unconverged") + count("crashed")
    read = df[status.isin(["converged", "unconverged"])]
    ev = df[df["e_hull_dft"].notna()]
    row = {
        "dft_jobs": int(len(df)),
        **{
            f"dft_{s}": count(s)
            for s in ("converged", "unconverged", "crashed", "running", "not_run", "supplied", "foreign")
        },
        "dft_convergence_pct": 100.0 * count("converged") / ended if ended else np.nan,
        "dft_mean_ionic_steps": float(read["ionic_steps"].astype(float).mean()) if len(read) else np.nan,
        "n_dft_evaluated": int(len(ev)),
    }
    sun = M.sun_summary(
        ev["e_hull_dft"].to_numpy(float),
        ev["unique_dft"].to_numpy(bool),
        ev["new_dft"].to_numpy(bool),
        len(ev),
        metastable_e_hull,
    )
    row.update({f"dft_{k}": (sun[k] if len(ev) else np.nan) for k in ("stable_pct", "metastable_pct", "sun_pct")})
    both = ev[ev["e_hull_chgnet"].notna()]
    row["dft_vs_chgnet_e_hull_mae"] = (
        float(np.mean(np.abs(both["e_hull_dft"] - both["e_hull_chgnet"]))) if len(both) else np.nan
    )
    return row
