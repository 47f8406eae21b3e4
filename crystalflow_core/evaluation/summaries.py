"""The numbers of the metric and stability stages, as functions of in-memory objects (records,
structures, fingerprint arrays, tables): they open no file. The stages (``crystalflow_core.stages``)
read the inputs, call these and write the results."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crystalflow_core import __version__
from crystalflow_core.errors import DamagedFileError, StageError
from crystalflow_core.evaluation import metrics as M
from crystalflow_core.generative.sampling import record_problem, record_to_structure
from crystalflow_core.materials.hull import formation_energy_per_atom, hull_columns, on_hull_scale
from crystalflow_core.materials.potentials import MP2020, RAW, record_energy_scale, record_potential
from crystalflow_core.materials.relax import relaxed_structure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSettings:
    """The `metrics` section of a validated config (defaults live in the schema only)."""

    protocol: str
    stol: float
    ltol: float
    angle_tol: float
    coverage_cutoffs: tuple
    n_property_samples: int
    fingerprint_limit: int | None
    seed: int
    metre_tolerances: str

    @classmethod
    def from_config(cls, m: dict) -> MetricSettings:
        return cls(
            m["protocol"],
            m["stol"],
            m["ltol"],
            m["angle_tol"],
            tuple(m["coverage_cutoffs"]),
            m["n_property_samples"],
            m["fingerprint_limit"],
            m["seed"],
            m["metre_tolerances"],
        )


def made_from(recs: list[dict]) -> dict:
    """Provenance columns of a metrics row: the checkpoint(s) the samples came from, the code version,
    how they were integrated (method, velocity evaluations per sample, the network's precision) and
    the precision the model was trained at."""
    joined = lambda key: ";".join(sorted({str(r.get(key, "unrecorded")) for r in recs})) or "none"  # noqa: E731
    return {
        "model_sha256": joined("model_sha256"),
        "code_version": __version__,
        "method": joined("method"),
        "nfe": joined("nfe"),
        "precision": joined("precision"),
        "train_precision": joined("train_precision"),
    }


def record_counts(recs: list[dict]) -> dict:
    kinds = [record_problem(r)[0] for r in recs]
    return {"n_unreadable": kinds.count("unreadable"), "n_flagged": kinds.count("flagged")}


# ----------------------------------------------------------------------------- CSP
def index_csp_records(recs: list[dict], target_ids: list[str], n_candidates: int, label: str = "samples") -> dict:
    """{target index: {candidate: record}} for every target asked for (present in the records or not);
    a record for another target or test split is an error naming it."""
    n_targets = len(target_ids)
    by_target: dict = {i: {} for i in range(n_targets)}
    for n, r in enumerate(recs):
        ti, c = r.get("target_index"), r.get("candidate")
        if not isinstance(ti, int) or not isinstance(c, int) or not 0 <= ti < n_targets or not 0 <= c < n_candidates:
            raise DamagedFileError(
                f"{label}: record {n + 1} (id {r.get('id')!r}) is for target {ti}, candidate {c}, "
                f"outside the {n_targets} targets x {n_candidates} candidates: samples of another "
                "run or test split"
            )
        if target_ids[ti] != r.get("target_id", target_ids[ti]):
            raise DamagedFileError(
                f"{label}: record {n + 1} targets {r.get('target_id')!r}, but test crystal {ti} "
                f"is {target_ids[ti]!r}: samples made for another test split"
            )
        by_target[ti][c] = r
    return by_target


def evaluate_csp(
    gts: list,
    by_target: dict,
    candidate_counts: list[int],
    settings: MetricSettings,
    workers: int = 0,
    relaxed: list[dict] | None = None,
) -> list[dict]:
    """One row per candidate count k: match rate, RMSE, RMSE-all, and the counts behind them."""
    kmax = max(candidate_counts)
    strict = settings.protocol != "crystalflow"  # the authors' script matches every candidate it can build
    idx = sorted(by_target)
    cands = [
        [record_to_structure(by_target[i][c], strict=strict) if c in by_target[i] else None for c in range(kmax)]
        for i in idx
    ]
    t0 = time.time()
    table = M.csp_rms_table(gts, cands, settings.stol, settings.ltol, settings.angle_tol, workers, settings.protocol)
    log.info("matched %d targets x %d candidates in %.1f s", len(gts), kmax, time.time() - t0)
    valid = [[M.valid(c, settings.protocol) for c in row] for row in cands]
    pool = [c for row in cands for c in row]
    pool_candidate = [c for row in cands for c in range(len(row))]
    pool_valid = [v for row in valid for v in row]
    tol = M.METRE_TOLERANCES[settings.metre_tolerances]
    t0 = time.time()
    metre = M.metre_rms_table(gts, pool, tol, workers, settings.protocol)
    log.info(
        "METRe: %d references against the run's %d structures of their composition in %.1f s",
        len(gts),
        sum(len(js) for js, _ in metre),
        time.time() - t0,
    )
    recs = [r for i in idx for r in by_target[i].values()]
    cand_of = {r["id"]: r["candidate"] for r in recs}
    rows = []
    for n_cand in sorted(candidate_counts):
        mine = [r for r in recs if r["candidate"] < n_cand]
        row = {
            "protocol": settings.protocol,
            **M.csp_summary(table, n_cand, settings.stol),
            **M.valid_only_summary(table, valid, n_cand, settings.stol),
            **M.metre_summary(metre, pool_candidate, pool_valid, n_cand, tol[0]),
            "metre_tolerances": f"{settings.metre_tolerances} (stol {tol[0]}, ltol {tol[1]}, angle_tol {tol[2]})",
            **made_from(recs),
            "n_candidates": len(mine),
            "n_missing_candidates": len(idx) * n_cand - len(mine),
            **record_counts(mine),
        }
        if relaxed is not None:
            row.update(pressure_proxy(relaxed, cand_of, n_cand))
        rows.append(row)
    return rows


def pressure_proxy(relaxed: list[dict], cand_of: dict, n_candidates: int) -> dict:
    """DFT-free check of a pressure-conditioned run over the first candidates: the CHGNet pressure of
    the generated, unrelaxed cells against their target pressures (the paper's Fig. 2a measure; the
    relaxed cells sit at their target by construction), CHGNet convergence and the mean enthalpy."""
    sel = [r for r in relaxed if cand_of.get(r["id"], n_candidates) < n_candidates]
    conv = [r for r in sel if r.get("converged")]
    return {
        "n_relaxed": len(sel),
        "n_relax_failed": sum(1 for r in sel if r.get("error")),
        "n_relax_converged": len(conv),
        "stress_vs_target_mae_gpa": generated_stress_error(sel),
        "mean_enthalpy_ev_atom": float(np.mean([r["enthalpy_per_atom"] for r in conv])) if conv else float("nan"),
    }


def generated_stress_error(relaxed: list[dict]) -> float:
    """MAE (GPa) between the CHGNet pressure of each generated cell before relaxation and the pressure
    it was generated for, over the records that have both (NaN when none has)."""
    pairs = [
        (r["pressure_gpa"], r["initial_stress_pressure_gpa"])
        for r in relaxed
        if np.isfinite(r.get("initial_stress_pressure_gpa", np.nan)) and np.isfinite(r.get("pressure_gpa", np.nan))
    ]
    if not pairs:
        return float("nan")
    target, got = map(np.array, zip(*pairs))
    return M.target_errors(target, got)["mae"]


# ----------------------------------------------------------------------------- DNG
def evaluate_dng(
    recs: list[dict], test_fp: dict, test_structs: list, settings: MetricSettings, workers: int = 0
) -> dict:
    """Validity, coverage (+ AMSD/AMCD) and Wasserstein distances of a set of generated records.
    test_fp: {"struct", "comp", "ok"} arrays of the reference set; test_structs: its structures."""
    protocol = settings.protocol
    cf = protocol == "crystalflow"
    n = len(recs)
    structs = [record_to_structure(r, strict=not cf) for r in recs]
    sv = np.array([M.structure_valid(s, protocol=protocol) for s in structs], bool)
    cv = np.array([M.composition_valid(s, protocol=protocol) if s is not None else False for s in structs], bool)
    cut_s, cut_c = settings.coverage_cutoffs
    if cf:  # fingerprints of every generated crystal; a failed CrystalNN also makes a crystal invalid
        gs, gc, fp_ok = M.fingerprints_all(structs, workers, progress=True)
        valid_mask = sv & cv & fp_ok
        cov = M.coverage(gs, gc, test_fp["struct"], test_fp["comp"], cut_s, cut_c, protocol=protocol, n_generated=n)
    else:
        valid_mask = sv & cv
        valid = [s for s, ok in zip(structs, valid_mask) if ok]
        lim = settings.fingerprint_limit
        gs, gc, _ = M.fingerprints(valid[:lim] if lim else valid, workers, progress=True)
        ok_ref = test_fp["ok"] & np.all(np.isfinite(test_fp["comp"]), axis=1)
        cov = M.coverage(gs, gc, test_fp["struct"][ok_ref], test_fp["comp"][ok_ref], cut_s, cut_c, protocol=protocol)
    valid = [s for s, ok in zip(structs, valid_mask) if ok]
    pct = lambda m: 100.0 * m.mean() if n else 0.0
    row = {
        "protocol": protocol,
        **made_from(recs),
        "n_samples": n,
        **record_counts(recs),
        "n_coverage_reference": int(np.all(np.isfinite(test_fp["struct"]), axis=1).sum()),
        "struct_valid_pct": pct(sv),
        "comp_valid_pct": pct(cv),
        "valid_pct": pct(valid_mask),
        "n_valid": len(valid),
        **cov,
    }
    if cf:  # a seeded random draw of the valid samples against the whole test split
        gen = M.draw(valid, settings.n_property_samples, settings.seed)
    else:
        gen = valid[: settings.n_property_samples]
    row["n_property_samples"] = len(gen)
    row.update(M.property_wdist(gen, test_structs))
    return row


def wdist_reference_count(n_test: int, settings: MetricSettings) -> int:
    """How many test crystals the Wasserstein distances compare with (crystalflow: all of them)."""
    if settings.protocol == "crystalflow":
        return n_test
    return min(n_test, max(settings.n_property_samples * 5, 5000))


def stability_summary(st: pd.DataFrame, pressure_run: bool, second: str | None = None) -> dict:
    """SUN rates of a stability table (denominator: every relaxed sample, stated as n_relaxed)."""
    row = {
        "n_relaxed": int(len(st)),
        "n_relax_failed": int((st["error"].fillna("") != "").sum()),
        "n_hull_missing_elements": int((st["hull_missing"].fillna("") != "").sum()),
        "n_mp2020_refused": int((st["mp2020_refused"].fillna("") != "").sum()) if "mp2020_refused" in st else 0,
    }
    e_hull, unique, new = st["e_hull"].to_numpy(float), st["unique"].to_numpy(bool), st["new"].to_numpy(bool)
    row.update(M.sun_summary(e_hull, unique, new, len(st)))
    suspect = st["hull_suspect"].fillna(False).to_numpy(bool) if "hull_suspect" in st else np.zeros(len(st), bool)
    row["n_hull_suspect"] = int(suspect.sum())
    row["hull"] = str(st["hull"].iloc[0]) if "hull" in st and len(st) else ""
    trusted = M.sun_summary(np.where(suspect, np.nan, e_hull), unique, new, len(st))  # suspects counted unstable
    row.update({f"{k}_without_suspects": trusted[k] for k in ("stable_pct", "metastable_pct", "sun_pct", "msun_pct")})
    row["mean_e_hull_ev_atom"] = float(np.nanmean(st["e_hull"])) if st["e_hull"].notna().any() else float("nan")
    if "potential" in st and len(st):  # the potential of every energy in the row (one per table)
        row["potential"], row["potential_version"] = str(st["potential"].iloc[0]), str(st["potential_version"].iloc[0])
    row.update(committee_summary(st, second))
    row["relax_convergence_pct"] = 100.0 * float(st["converged"].astype(bool).mean()) if len(st) else float("nan")
    if "steps" in st:  # Table 2's "ionic steps", for CHGNet: mean optimiser steps of the converged
        conv = st[st["converged"].astype(bool)]
        row["relax_mean_steps"] = float(conv["steps"].astype(float).mean()) if len(conv) else float("nan")
    if pressure_run:  # DFT-free proxy: CHGNet pressure of the generated (unrelaxed) cell vs the target
        recs = st.to_dict("records")
        row["stress_vs_target_mae_gpa"] = generated_stress_error(recs)
    return row


def target_rows(st: pd.DataFrame, condition: str) -> list[dict]:
    """Per condition target: MAE/RMSE of the CHGNet formation energy before and after relaxation."""
    rows = []
    for tgt, grp in st.groupby("target"):
        t = np.full(len(grp), tgt)
        before = M.target_errors(t, grp["e_form_initial"].to_numpy(float))
        after = M.target_errors(t, grp["e_form"].to_numpy(float))
        rows.append(
            {
                "condition": condition,
                "target": tgt,
                "n_samples": int(len(grp)),
                "mae_before_ev_atom": before["mae"],
                "rmse_before_ev_atom": before["rmse"],
                "mae_after_ev_atom": after["mae"],
                "rmse_after_ev_atom": after["rmse"],
            }
        )
    return rows


TARGET_COLUMNS = [
    "run",
    "dataset",
    "task",
    "steps",
    "condition",
    "target",
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
            "target": smp.get("target", np.nan),
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


def committee_columns(st: pd.DataFrame, name: str, second: dict, refs: dict, hull, threshold: float) -> pd.DataFrame:
    """The second potential's opinion beside the first's: per structure its E_hull (`second`: {id: record
    of potential `name`'s energy per atom on the relaxed structure}, put on the hull's scale by its own
    declared scale), the spread |E_hull first - E_hull second|, `committee_disagrees` (spread above
    `threshold` eV/atom, or only one of the two has an E_hull) and `stable_agreed` / `metastable_agreed`."""
    st = st.copy()
    col = f"e_hull_{name}"
    st[col] = np.nan
    for i, row in st.iterrows():
        rec = second.get(row["id"])
        if not rec or rec.get("error") or "energy_per_atom" not in rec or not np.isfinite(row["e_hull"]):
            continue
        s = rec["structure"]
        e, _ = on_hull_scale(s, rec["energy_per_atom"] * len(s), record_energy_scale(rec))
        if np.isfinite(e):
            with contextlib.suppress(KeyError):  # an element without a reference: the row says so already
                st.at[i, col] = hull_columns(s, e, refs, hull)["e_hull"]
    first, other = st["e_hull"].to_numpy(float), st[col].to_numpy(float)
    st["e_hull_spread"] = np.abs(first - other)
    has_first = np.isfinite(first)
    st["committee_disagrees"] = has_first & ~(st["e_hull_spread"].to_numpy(float) <= threshold)
    both = np.fmax(first, other)  # the less stable of the two opinions (NaN where either has none)
    both[~(np.isfinite(first) & np.isfinite(other))] = np.nan
    st["e_hull_agreed"] = both
    return st


def committee_summary(st: pd.DataFrame, second: str | None) -> dict:
    """Stable / metastable / S.U.N. rates under the second potential (`second`, the config's
    relax.committee[1]) and under both (agreed), the spread."""
    if second is None:
        return {}
    unique, new, n = st["unique"].to_numpy(bool), st["new"].to_numpy(bool), len(st)
    row = {"committee": f"{st['potential'].iloc[0] if len(st) else ''}+{second}"}
    for label, column in ((second, f"e_hull_{second}"), ("agreed", "e_hull_agreed")):
        s = M.sun_summary(st[column].to_numpy(float), unique, new, n)
        row.update({f"{k.removesuffix('_pct')}_{label}_pct": s[k] for k in ("stable_pct", "metastable_pct", "sun_pct")})
    spread = st["e_hull_spread"].to_numpy(float)
    row["e_hull_spread_median"] = float(np.nanmedian(spread)) if np.isfinite(spread).any() else float("nan")
    row["n_committee_disagree"] = int(st["committee_disagrees"].astype(bool).sum())
    return row


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


def dft_summary(df: pd.DataFrame) -> dict:
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
        ev["e_hull_dft"].to_numpy(float), ev["unique_dft"].to_numpy(bool), ev["new_dft"].to_numpy(bool), len(ev)
    )
    row.update({f"dft_{k}": (sun[k] if len(ev) else np.nan) for k in ("stable_pct", "metastable_pct", "sun_pct")})
    both = ev[ev["e_hull_chgnet"].notna()]
    row["dft_vs_chgnet_e_hull_mae"] = (
        float(np.mean(np.abs(both["e_hull_dft"] - both["e_hull_chgnet"]))) if len(both) else np.nan
    )
    return row
