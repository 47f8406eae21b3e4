"""Metric speed: CSP metrics on the 9,046 MP-20 test structures (k = 1, predictions = rattled
ground truth), and DNG coverage fingerprints for 1,000 structures.

  python benchmarks/metrics.py [--n 9046] [--coverage 1000] [--compare]

--compare also runs pymatgen's StructureMatcher.get_rms_dist on the same pairs plus a second
candidate per crystal (another test crystal of the same formula, else a 0.3 A rattle) and counts
the differences from the project's vectorised matcher.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import header, mp20_test_rows

from crystalflow_core.config import defaults


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=9046)
    ap.add_argument("--coverage", type=int, default=1000)
    ap.add_argument("--compare", action="store_true")
    a = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore")  # pymatgen's CIF notes on 9,046 files
    from pymatgen.core import Structure

    from crystalflow_core.evaluation.metrics import coverage, csp_rms_table, csp_summary, fingerprints

    header(f"metrics: CSP on {a.n} MP-20 test structures, coverage on {a.coverage}")
    t0 = time.perf_counter()
    gts = [Structure.from_str(c, fmt="cif") for c in mp20_test_rows(a.n)["cif"]]
    t_parse = time.perf_counter() - t0
    preds = []
    for s in gts:
        p = s.copy()
        p.perturb(0.05, seed=len(preds))
        preds.append([p])
    t0 = time.perf_counter()
    m = defaults("metrics")
    table = csp_rms_table(gts, preds, m["stol"], m["ltol"], m["angle_tol"], os.cpu_count(), m["protocol"])
    t_csp = time.perf_counter() - t0
    s = csp_summary(table, 1, m["stol"])
    print(
        f"CSP metrics, {a.n} structures, k=1: {t_csp:.1f} s on {os.cpu_count()} cores "
        f"(MR {s['match_rate_pct']:.2f} %, RMSE {s['rmse_norm']:.4f}; parsing the CIFs took {t_parse:.1f} s more)"
    )
    if a.compare:
        compare_with_pymatgen(gts, preds)
    if not a.coverage:
        return
    sub = gts[: a.coverage]
    t0 = time.perf_counter()
    sfp, cfp, ok = fingerprints(sub, workers=os.cpu_count())
    t_fp = time.perf_counter() - t0
    t0 = time.perf_counter()
    cov = coverage(sfp, cfp, sfp, cfp, *m["coverage_cutoffs"], protocol=m["protocol"])
    t_cov = time.perf_counter() - t0
    print(
        f"DNG coverage, {len(sub)} structures: fingerprints {t_fp:.1f} s, distances {t_cov:.2f} s "
        f"(self-coverage {cov['cov_recall_pct']:.1f} %)"
    )


def _pymatgen_rms(args):
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher

    warnings.filterwarnings("ignore")
    gt, cands = args
    sm = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    out = []
    for c in cands:
        try:
            r = sm.get_rms_dist(c, gt)
        except Exception:
            r = None
        out.append(None if r is None else float(r[0]))
    return out


def compare_with_pymatgen(gts, preds):
    import multiprocessing as mp

    from crystalflow_core.evaluation.metrics import csp_rms_table

    by_formula: dict = {}
    for i, s in enumerate(gts):
        by_formula.setdefault(s.composition.reduced_formula, []).append(i)
    cands = []
    for i, s in enumerate(gts):
        other = [j for j in by_formula[s.composition.reduced_formula] if j != i]
        if other:
            second = gts[other[0]].copy()
        else:
            second = s.copy()
            second.perturb(0.3, seed=i)
        cands.append([preds[i][0], second])
    t0 = time.perf_counter()
    m = defaults("metrics")
    ours = csp_rms_table(gts, cands, m["stol"], m["ltol"], m["angle_tol"], os.cpu_count(), m["protocol"])
    t1 = time.perf_counter()
    with mp.get_context("fork").Pool(os.cpu_count()) as pool:
        ref = pool.map(_pymatgen_rms, list(zip(gts, cands)), chunksize=50)
    t2 = time.perf_counter()
    n = diff = near_exact = 0
    for a_row, b_row in zip(ours, ref):
        for x, y in zip(a_row, b_row):
            n += 1
            if x is not None and y is not None and x < 1e-5 and y < 1e-5:
                near_exact += abs(x - y) > 1e-8
            elif (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-8):
                diff += 1
    print(
        f"vs pymatgen get_rms_dist: {n} pairs ({t1 - t0:.1f} s here, {t2 - t1:.1f} s pymatgen), "
        f"{sum(y is not None for r in ref for y in r)} matched by pymatgen, {diff} differ (match or rms > 1e-8), "
        f"{near_exact} near-exact pairs (< 1e-5) with a different rms below 1e-5"
    )


if __name__ == "__main__":
    main()
