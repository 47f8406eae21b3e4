"""Metrics as the field computes them (definitions: docs in the README, method in the paper).

Two protocols where the rules differ:
* ``crystalflow`` (default): as the authors' scripts (scripts/compute_metrics.py, eval_utils.py of
  ixsluo/CrystalFlow) compute them: structural validity with the odd-cell checks and the
  self-distance replaced by the shortest lattice length; compositional validity invalid from 8
  elements, at more than 1e7 oxidation-state combinations, with the oxidation states of SMACT 1.4
  (``oxidation_states_smact14``); coverage over all generated crystals with the fixed CDVAE Magpie
  scaler; CSP: every constructible candidate may match.
* ``diffcsp``: validity-gated CSP matching (candidate and ground truth structurally and
  compositionally valid), coverage over valid samples standardised with the test set, SMACT's
  default oxidation states, distances > 0.5 A.

CSP: match rate / RMSE with StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3), best of k.
DNG: structural and compositional (SMACT) validity, coverage recall/precision (CrystalNN 'ops'
site-mean and Magpie fingerprints), Wasserstein distances of density and number of elements.
Stability: energy above hull of CHGNet-relaxed samples, stable/metastable, unique, new, SUN.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from crystalflow_core.evaluation.matcher import reduce_structure, rms_dist
from crystalflow_core.evaluation.validity import _check_protocol, _quiet, valid
from crystalflow_core.parallel import fork_map

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- validity


# ----------------------------------------------------------------------------- CSP
class Matcher:
    """rms of every candidate against one ground truth (None: no match, or under diffcsp invalid).

    ``crystalflow_core.evaluation.matcher`` gives pymatgen's StructureMatcher.get_rms_dist, vectorised; the
    ground truth is reduced once for all its candidates."""

    def __init__(self, stol: float, ltol: float, angle_tol: float, protocol: str):
        _check_protocol(protocol)
        self.tol = (stol, ltol, angle_tol)
        self.gated = protocol == "diffcsp"  # only valid candidates (and targets) match

    @_quiet
    def __call__(self, job) -> list:
        gt, cands = job  # cands: list of Structure|None in candidate order
        comp = _reduced_counts(gt)
        gt_red = None
        out = []
        gt_ok = not self.gated or valid(gt, "diffcsp")
        for c in cands:
            rms = None
            ok = not self.gated or valid(c, "diffcsp")
            if c is not None and gt_ok and _reduced_counts(c) == comp and ok:
                try:
                    if gt_red is None:
                        gt_red = reduce_structure(gt)
                    rms = rms_dist(reduce_structure(c), gt_red, *self.tol)
                except Exception as exc:  # one odd candidate is recorded as unmatched, not fatal
                    log.warning("matcher failed on a candidate of %s: %s", gt.composition.reduced_formula, exc)
                    rms = None
            out.append(rms)
        return out


def _reduced_counts(structure) -> frozenset:
    """Reduced composition of an ordered structure as {(species, count / gcd)} (cheap pre-check)."""
    counts: dict = {}
    for site in structure:
        counts[site.species_string] = counts.get(site.species_string, 0) + 1
    g = math.gcd(*counts.values()) if counts else 1
    return frozenset((k, v // g) for k, v in counts.items())


def csp_rms_table(
    gts: list, candidates: list[list], stol: float, ltol: float, angle_tol: float, workers: int, protocol: str
) -> list[list]:
    """rms (or None) of every candidate of every ground truth; parallel over ground truths (forked
    workers inherit the structures; only indices and rms values cross processes).
    crystalflow: every candidate that could be built may match (the authors compute validity but
    overwrite it); diffcsp: only structurally and compositionally valid candidates and targets."""
    _check_protocol(protocol)
    jobs = list(zip(gts, candidates))
    workers = workers or os.cpu_count() or 1
    return fork_map(
        partial(Matcher, stol, ltol, angle_tol, protocol), jobs, workers if len(jobs) >= 50 else 1, desc="matching"
    )


def _best(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return min(vals) if vals else None


def _rates(best: list, stol: float, prefix: str) -> dict:
    """Match rate (%), RMSE over the matched and cRMSE (unmatched = stol) of best rms values (None: none)."""
    n, matched = len(best), [b for b in best if b is not None]
    return {
        f"{prefix}_pct": 100.0 * len(matched) / n if n else 0.0,
        f"{prefix}_rmse_norm": float(np.mean(matched)) if matched else float("nan"),
        f"{prefix}_crmse_norm": float(np.mean([b if b is not None else stol for b in best])) if n else float("nan"),
    }


def csp_summary(rms_table: list[list], n_candidates: int, stol: float) -> dict:
    """Match rate (%), RMSE over matched, RMSE-all = cRMSE (unmatched = stol) using the first n_candidates
    (the paper's k; the column keeps that name)."""
    best = [_best(row[:n_candidates]) for row in rms_table]
    rates = _rates(best, stol, "x")
    return {
        "k": n_candidates,
        "n_targets": len(best),
        "n_matched": sum(b is not None for b in best),
        "match_rate_pct": rates["x_pct"],
        "rmse_norm": rates["x_rmse_norm"],
        "rmse_all_norm": rates["x_crmse_norm"],
        "crmse_norm": rates["x_crmse_norm"],  # cRMSE, the name the field now uses for RMSE-all
    }


# ----------------------------------------------------------------------------- METRe, cRMSE
# StructureMatcher tolerances (stol, ltol, angle_tol) of METRe: the CSP protocol's, or OMatG's (pymatgen's
# defaults), so figures compare with either
METRE_TOLERANCES = {"csp": (0.5, 0.3, 10.0), "omatg": (0.3, 0.2, 5.0)}


def metre_rms_table(gts: list, pool: list, tol: tuple, workers: int, protocol: str) -> list[tuple]:
    """Per reference: (indices into `pool` of the generated structures with its reduced composition, their
    rms or None). Only structures of the same reduced composition are compared (a simple multiple of the
    formula is the same reduced composition; StructureMatcher's primitive reduction then decides), so the
    work grows with the references that share a composition, not with all pairs."""
    by_comp: dict = {}
    for j, s in enumerate(pool):
        if s is not None:
            by_comp.setdefault(_reduced_counts(s), []).append(j)
    idx = [by_comp.get(_reduced_counts(gt), []) for gt in gts]
    jobs = [(gt, [pool[j] for j in js]) for gt, js in zip(gts, idx)]
    workers = workers or os.cpu_count() or 1
    rms = fork_map(partial(Matcher, *tol, protocol), jobs, workers if len(jobs) >= 50 else 1, desc="matching")
    return list(zip(idx, rms))


def metre_summary(metre: list[tuple], pool_candidate: list[int], pool_valid: list[bool], k: int, stol: float) -> dict:
    """METRe (match everyone to reference) over the first k candidates of every target: a reference is
    matched when any generated structure of the run matches it; its RMSD is the best over its matches.
    Also for the valid candidates only (`metre_valid_*`)."""
    best, best_valid = [], []
    for js, rms in metre:
        keep = [(j, r) for j, r in zip(js, rms) if pool_candidate[j] < k]
        best.append(_best([r for _, r in keep]))
        best_valid.append(_best([r for j, r in keep if pool_valid[j]]))
    return {**_rates(best, stol, "metre"), **_rates(best_valid, stol, "metre_valid")}


def valid_only_summary(rms_table: list[list], valid_flags: list[list], k: int, stol: float) -> dict:
    """Index-wise match rate and cRMSE (unmatched = stol) over the valid candidates only."""
    best = [_best([r for r, ok in zip(row[:k], v[:k]) if ok]) for row, v in zip(rms_table, valid_flags)]
    rates = _rates(best, stol, "x")
    return {"mr_valid_pct": rates["x_pct"], "crmse_valid_norm": rates["x_crmse_norm"]}


# ----------------------------------------------------------------------------- DNG
STRUCT_FP_DIM, COMP_FP_DIM = 61, 132


class Fingerprinter:
    """(CrystalNN 'ops' site-mean or None when CrystalNN fails, Magpie features with NaN where
    undefined) of a structure; (None, None) for a structure that could not be built."""

    @_quiet
    def __init__(self):
        from matminer.featurizers.composition.composite import ElementProperty
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

        self.cnn = CrystalNNFingerprint.from_preset("ops")
        self.magpie = ElementProperty.from_preset("magpie")

    @_quiet
    def __call__(self, structure):
        if structure is None:
            return None, None
        try:
            comp_fp = np.array(self.magpie.featurize(structure.composition), dtype=float)
        except Exception:
            comp_fp = None
        try:
            site = np.array([self.cnn.featurize(structure, i) for i in range(len(structure))])
            struct_fp = site.mean(axis=0)
            if not np.all(np.isfinite(struct_fp)):
                struct_fp = None
        except Exception:
            struct_fp = None
        return struct_fp, comp_fp


def fingerprints_all(structures: list, workers: int = 0, progress: bool = False):
    """(struct (n, 61) NaN rows where CrystalNN failed, comp (n, 132) NaN where undefined, ok mask
    of the structure fingerprints) for a list of structures (None entries allowed)."""
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    with tqdm(total=len(structures), disable=not progress, desc="fingerprints", mininterval=5) as bar:
        res = fork_map(
            Fingerprinter, list(structures), workers if len(structures) >= 20 else 1, bar, desc="fingerprints"
        )
    sfp = np.full((len(res), STRUCT_FP_DIM), np.nan)
    cfp = np.full((len(res), COMP_FP_DIM), np.nan)
    for i, (a, b) in enumerate(res):
        if a is not None:
            sfp[i] = a
        if b is not None:
            cfp[i] = b
    ok = np.array([r[0] is not None for r in res], dtype=bool)
    return sfp, cfp, ok


def fingerprints(structures: list, workers: int = 0, progress: bool = False):
    """(struct_fps, comp_fps, ok mask), rows only where both fingerprints are finite (diffcsp)."""
    sfp, cfp, ok = fingerprints_all(structures, workers, progress)
    ok = ok & np.all(np.isfinite(cfp), axis=1)
    return sfp[ok], cfp[ok], ok


@lru_cache(maxsize=1)
def cdvae_comp_scaler() -> tuple[np.ndarray, np.ndarray]:
    """The fixed means/stds with which CDVAE, DiffCSP and CrystalFlow standardise the Magpie features."""
    d = json.loads((Path(__file__).resolve().parent.parent / "comp_scaler_magpie.json").read_text())
    return np.asarray(d["means"], float), np.asarray(d["stds"], float)


def scale_comp_fixed(comp: np.ndarray) -> np.ndarray:
    """(x - mean) / std with the fixed scaler; NaN after scaling -> 0 (the authors' replace_nan_token)."""
    mu, sd = cdvae_comp_scaler()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(comp, float) - mu) / sd
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


def coverage(
    gen_s,
    gen_c,
    ref_s,
    ref_c,
    struct_cutoff: float,
    comp_cutoff: float,
    protocol: str,
    n_generated: int | None = None,
) -> dict:
    """COV-R (share of reference structures with a generated one within both cut-offs, minimum
    distances taken separately for structure and composition), COV-P (the converse) and the mean
    minimum distances AMSD / AMCD (recall: over reference, precision: over generated).
    diffcsp: the generated set is the valid samples with finite fingerprints; compositions
    standardised with the reference set's mean and std.
    crystalflow: the generated set is every sample with a structure fingerprint (a failed CrystalNN
    drops it), compositions standardised with the fixed CDVAE scaler (NaN -> 0), and COV-P divided by
    `n_generated`, the number of ALL generated crystals."""
    from scipy.spatial.distance import cdist

    _check_protocol(protocol)
    empty = {
        "cov_recall_pct": 0.0,
        "cov_precision_pct": 0.0,
        "amsd_recall": float("nan"),
        "amsd_precision": float("nan"),
        "amcd_recall": float("nan"),
        "amcd_precision": float("nan"),
    }
    gen_s, gen_c, ref_s, ref_c = (np.asarray(x, float) for x in (gen_s, gen_c, ref_s, ref_c))
    if protocol == "crystalflow":
        keep = np.all(np.isfinite(gen_s), axis=1) if len(gen_s) else np.zeros(0, bool)
        gen_s, gen_c = gen_s[keep], gen_c[keep]
        rkeep = np.all(np.isfinite(ref_s), axis=1)
        ref_s, ref_c = ref_s[rkeep], ref_c[rkeep]
        gc, rc = scale_comp_fixed(gen_c), scale_comp_fixed(ref_c)
        denom = n_generated if n_generated is not None else len(gen_s)
    else:
        if len(gen_s) and len(ref_s):
            mu, sd = ref_c.mean(0), ref_c.std(0)
            sd[sd == 0] = 1.0
            gc, rc = (gen_c - mu) / sd, (ref_c - mu) / sd
        denom = len(gen_s)
    if len(gen_s) == 0 or len(ref_s) == 0 or not denom:
        return empty
    ds, dc = cdist(gen_s, ref_s), cdist(gc, rc)
    s_rec, s_prec, c_rec, c_prec = ds.min(0), ds.min(1), dc.min(0), dc.min(1)
    recall = np.mean((s_rec <= struct_cutoff) & (c_rec <= comp_cutoff))
    precision = np.sum((s_prec <= struct_cutoff) & (c_prec <= comp_cutoff)) / denom
    return {
        "cov_recall_pct": 100.0 * recall,
        "cov_precision_pct": 100.0 * precision,
        "amsd_recall": float(s_rec.mean()),
        "amsd_precision": float(s_prec.mean()),
        "amcd_recall": float(c_rec.mean()),
        "amcd_precision": float(c_prec.mean()),
    }


def draw(items: list, n: int, seed: int) -> list:
    """A seeded random draw of n items without replacement (all of them when there are fewer), in
    the order drawn (the authors draw the 1,000 valid crystals of the Wasserstein distances so)."""
    if len(items) <= n:
        return list(items)
    idx = np.random.default_rng(seed).choice(len(items), n, replace=False)
    return [items[i] for i in idx]


def property_wdist(gen: list, ref: list) -> dict:
    from scipy.stats import wasserstein_distance

    if not gen or not ref:
        return {"wdist_density_g_cm3": float("nan"), "wdist_num_elems": float("nan")}
    return {
        "wdist_density_g_cm3": float(wasserstein_distance([s.density for s in gen], [s.density for s in ref])),
        "wdist_num_elems": float(
            wasserstein_distance([len(s.composition.elements) for s in gen], [len(s.composition.elements) for s in ref])
        ),
    }


def unique_new_flags(structures: list, reference: list):
    """unique[i]: not matched to an earlier generated structure; new[i]: not matched to any
    reference structure (StructureMatcher defaults); compositions compared first."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher()
    by_comp: dict = {}
    for r in reference:
        by_comp.setdefault(r.composition.reduced_formula, []).append(r)
    unique, new = [], []
    seen: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in structures:
            f = s.composition.reduced_formula
            u = not any(sm.fit(s, o) for o in seen.get(f, []))
            seen.setdefault(f, []).append(s)
            n = not any(sm.fit(s, r) for r in by_comp.get(f, []))
            unique.append(u)
            new.append(n)
    return np.array(unique, bool), np.array(new, bool)


def sun_summary(
    e_hull: np.ndarray, unique: np.ndarray, new: np.ndarray, n_total: int, metastable_e_hull: float
) -> dict:
    """Rates over all generated structures (n_total); NaN e_hull (failed/unknown) counts as unstable; metastable:
    E_hull <= `metastable_e_hull` (eV/atom, the schema's metrics.metastable_e_hull)."""
    e = np.asarray(e_hull, float)
    stable = np.nan_to_num(e, nan=np.inf) <= 0.0
    meta = np.nan_to_num(e, nan=np.inf) <= metastable_e_hull
    pct = lambda m: 100.0 * float(np.sum(m)) / n_total if n_total else 0.0
    return {
        "stable_pct": pct(stable),
        "metastable_pct": pct(meta),
        "unique_pct": pct(unique),
        "new_pct": pct(new),
        "sun_pct": pct(stable & unique & new),
        "msun_pct": pct(meta & unique & new),
    }


def target_errors(targets: np.ndarray, values: np.ndarray) -> dict:
    m = np.isfinite(values)
    if not m.any():
        return {"mae": float("nan"), "rmse": float("nan"), "n": 0}
    d = values[m] - targets[m]
    return {"mae": float(np.mean(np.abs(d))), "rmse": float(np.sqrt(np.mean(d**2))), "n": int(m.sum())}
