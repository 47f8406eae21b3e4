"""The numbers of the metric stage from the samples (CSP match rates and RMSE, DNG validity, coverage and
Wasserstein distances), as functions of in-memory records, structures and fingerprints: they open no file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from crystalflow_core import __version__
from crystalflow_core.errors import DamagedFileError
from crystalflow_core.evaluation import metrics as M
from crystalflow_core.evaluation import validity as V
from crystalflow_core.generative.sampling import record_problem, record_to_structure

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
    valid = [[V.valid(c, settings.protocol) for c in row] for row in cands]
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
            # what the sampler was given: the composition (the paper's protocol) or, for a symmetric model, the
            # test crystal's space group and Wyckoff letters too (DiffCSP++'s; never compared with the paper's)
            "given": "space group" if any(r.get("wyckoff") for r in mine) else "composition",
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
    sv = np.array([V.structure_valid(s, protocol=protocol) for s in structs], bool)
    cv = np.array([V.composition_valid(s, protocol=protocol) if s is not None else False for s in structs], bool)
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
