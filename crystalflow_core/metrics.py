"""Metrics as the field computes them (definitions: docs in the README, method in the paper).

CSP: match rate / RMSE with StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3), best of k.
DNG: structural and compositional (SMACT) validity, coverage recall/precision (CrystalNN 'ops'
site-mean and Magpie fingerprints), Wasserstein distances of density and number of elements.
Stability: energy above hull of CHGNet-relaxed samples, stable/metastable, unique, new, SUN.
"""
from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import warnings

import numpy as np

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- validity
def structure_valid(structure, cutoff: float = 0.5) -> bool:
    """All interatomic distances > cutoff (A) and volume > 0.1 A^3."""
    if structure is None:
        return False
    try:
        if structure.volume < 0.1 or not math.isfinite(structure.volume):
            return False
        if len(structure) == 1:
            return min(structure.lattice.abc) > cutoff
        dm = structure.distance_matrix + np.eye(len(structure)) * (cutoff + 10.0)
        return bool(dm.min() >= cutoff)
    except Exception:
        return False


def smact_valid(symbols: list[str], counts: list[int], pauling: bool = True, alloys: bool = True) -> bool:
    """SMACT charge neutrality + Pauling electronegativity test (single elements and all-metal
    alloys count as valid), on the gcd-reduced stoichiometry.

    Same answer as enumerating every combination of oxidation states (the CDVAE/DiffCSP code) but
    without the exponential product: the Pauling test (every cation less electronegative than
    every anion, smact's eneg_states_test) means some cut t separates them, so for each candidate
    cut the reachable charge sums are built element by element and neutrality is a set lookup.
    """
    import smact

    if len(set(symbols)) == 1:
        return True
    if alloys and all(s in smact.metals for s in symbols):
        return True
    g = math.gcd(*counts)
    counts = [c // g for c in counts]
    try:
        space = smact.element_dictionary(symbols)
        els = [space[s] for s in symbols]
    except Exception:  # element unknown to SMACT
        return False
    ox = [sorted(set(e.oxidation_states or [0])) for e in els]  # noble gases carry no states
    eneg = [e.pauling_eneg for e in els]
    if not pauling:
        return _neutral_reachable(ox, counts, lambda s, e: True, eneg)
    if any(e is None or (isinstance(e, float) and math.isnan(e)) for e in eneg):
        return False  # smact's Pauling test fails whenever an electronegativity is missing
    for cut in sorted(set(eneg)) + [math.inf]:
        allowed = lambda s, e, cut=cut: s == 0 or (s > 0 and e < cut) or (s < 0 and e >= cut)  # noqa: E731
        if _neutral_reachable(ox, counts, allowed, eneg):
            return True
    return False


def _neutral_reachable(ox, counts, allowed, eneg) -> bool:
    sums = {0}
    for states, c, e in zip(ox, counts, eneg):
        opts = [s for s in states if allowed(s, e)]
        if not opts:
            return False
        sums = {x + c * s for x in sums for s in opts}
    return 0 in sums


def composition_valid(structure) -> bool:
    if structure is None:
        return False
    comp = structure.composition
    syms = [el.symbol for el in comp.elements]
    counts = [int(round(comp[el])) for el in comp.elements]
    return smact_valid(syms, counts)


# ----------------------------------------------------------------------------- CSP
_M: dict = {}


def _init_matcher(stol, ltol, angle_tol):
    warnings.filterwarnings("ignore")
    _M["tol"] = (stol, ltol, angle_tol)


def _best_rms(args):
    """rms of every candidate against one ground truth (None: invalid or no match).

    ``crystalflow_core.matcher`` gives pymatgen's StructureMatcher.get_rms_dist, vectorised; the
    ground truth is reduced once for all its candidates."""
    from .matcher import reduce_structure, rms_dist

    gt, cands = args  # cands: list of Structure|None in candidate order
    stol, ltol, angle_tol = _M["tol"]
    comp = _reduced_counts(gt)
    gt_red = None
    out = []
    for c in cands:
        rms = None
        if c is not None and _reduced_counts(c) == comp and structure_valid(c):
            try:
                if gt_red is None:
                    gt_red = reduce_structure(gt)
                rms = rms_dist(reduce_structure(c), gt_red, stol, ltol, angle_tol)
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


def csp_rms_table(gts: list, candidates: list[list], stol=0.5, ltol=0.3, angle_tol=10.0, workers=0) -> list[list]:
    """rms (or None) of every candidate of every ground truth; parallel over ground truths."""
    workers = workers or os.cpu_count() or 1
    jobs = list(zip(gts, candidates))
    if workers == 1 or len(jobs) < 50:
        _init_matcher(stol, ltol, angle_tol)
        return [_best_rms(j) for j in jobs]
    # the forked workers inherit the structures; only indices and rms values cross processes
    _M["jobs"] = jobs
    try:
        with mp.get_context("fork").Pool(workers, initializer=_init_matcher, initargs=(stol, ltol, angle_tol)) as pool:
            return pool.map(_best_rms_of, range(len(jobs)), chunksize=max(1, len(jobs) // (workers * 32)))
    finally:
        _M.pop("jobs", None)


def _best_rms_of(i: int):
    return _best_rms(_M["jobs"][i])


def csp_summary(rms_table: list[list], k: int, stol: float = 0.5) -> dict:
    """Match rate (%), RMSE over matched, RMSE-all (unmatched = stol) using the first k candidates."""
    best = []
    for row in rms_table:
        vals = [r for r in row[:k] if r is not None]
        best.append(min(vals) if vals else None)
    n = len(best)
    matched = [b for b in best if b is not None]
    return {
        "k": k,
        "n_targets": n,
        "n_matched": len(matched),
        "match_rate_pct": 100.0 * len(matched) / n if n else 0.0,
        "rmse_norm": float(np.mean(matched)) if matched else float("nan"),
        "rmse_all_norm": float(np.mean([b if b is not None else stol for b in best])) if n else float("nan"),
    }


# ----------------------------------------------------------------------------- DNG
def _fp_one(structure):
    warnings.filterwarnings("ignore")
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
    from matminer.featurizers.composition.composite import ElementProperty

    if "cnn" not in _M:
        _M["cnn"] = CrystalNNFingerprint.from_preset("ops")
        _M["magpie"] = ElementProperty.from_preset("magpie")
    try:
        site = np.array([_M["cnn"].featurize(structure, i) for i in range(len(structure))])
        struct_fp = site.mean(axis=0)
        comp_fp = np.array(_M["magpie"].featurize(structure.composition), dtype=float)
        if not (np.all(np.isfinite(struct_fp)) and np.all(np.isfinite(comp_fp))):
            return None
        return struct_fp, comp_fp
    except Exception:
        return None


def fingerprints(structures: list, workers: int = 0, progress: bool = False):
    """(struct_fps (n, 61), comp_fps (n, 132), ok mask) for a list of structures."""
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(structures) < 20:
        res = [_fp_one(s) for s in tqdm(structures, disable=not progress, desc="fingerprints")]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            res = list(tqdm(pool.imap(_fp_one, structures, chunksize=8), total=len(structures),
                            disable=not progress, desc="fingerprints", mininterval=5))
    ok = np.array([r is not None for r in res], dtype=bool)
    if not ok.any():
        return np.zeros((0, 61)), np.zeros((0, 132)), ok
    sfp = np.array([r[0] for r in res if r is not None])
    cfp = np.array([r[1] for r in res if r is not None])
    return sfp, cfp, ok


def coverage(gen_s, gen_c, ref_s, ref_c, struct_cutoff=0.4, comp_cutoff=10.0) -> dict:
    """COV-R (share of reference structures with a generated one within both cut-offs, minimum
    distances taken separately for structure and composition) and COV-P (the converse).
    Composition fingerprints are standardised with the reference set's mean and std."""
    from scipy.spatial.distance import cdist

    if len(gen_s) == 0 or len(ref_s) == 0:
        return {"cov_recall_pct": 0.0, "cov_precision_pct": 0.0}
    mu, sd = ref_c.mean(0), ref_c.std(0)
    sd[sd == 0] = 1.0
    gc, rc = (gen_c - mu) / sd, (ref_c - mu) / sd
    ds, dc = cdist(gen_s, ref_s), cdist(gc, rc)
    recall = np.mean((ds.min(0) <= struct_cutoff) & (dc.min(0) <= comp_cutoff))
    precision = np.mean((ds.min(1) <= struct_cutoff) & (dc.min(1) <= comp_cutoff))
    return {"cov_recall_pct": 100.0 * recall, "cov_precision_pct": 100.0 * precision}


def property_wdist(gen: list, ref: list) -> dict:
    from scipy.stats import wasserstein_distance

    if not gen or not ref:
        return {"wdist_density_g_cm3": float("nan"), "wdist_num_elems": float("nan")}
    return {
        "wdist_density_g_cm3": float(wasserstein_distance([s.density for s in gen], [s.density for s in ref])),
        "wdist_num_elems": float(wasserstein_distance([len(s.composition.elements) for s in gen],
                                                      [len(s.composition.elements) for s in ref])),
    }


def unique_new_flags(structures: list, reference: list, workers: int = 0):
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


def sun_summary(e_hull: np.ndarray, unique: np.ndarray, new: np.ndarray, n_total: int) -> dict:
    """Rates over all generated structures (n_total); NaN e_hull (failed/unknown) counts as unstable."""
    e = np.asarray(e_hull, float)
    stable = np.nan_to_num(e, nan=np.inf) <= 0.0
    meta = np.nan_to_num(e, nan=np.inf) <= 0.1
    pct = (lambda m: 100.0 * float(np.sum(m)) / n_total if n_total else 0.0)
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
