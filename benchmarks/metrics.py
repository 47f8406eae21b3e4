"""Metric speed: CSP metrics on the 9,046 MP-20 test structures (k = 1, predictions = rattled
ground truth), and DNG coverage fingerprints for 1,000 structures.

  python benchmarks/metrics.py [--n 9046] [--coverage 1000]
"""
from __future__ import annotations

import argparse
import os
import time

from _common import header, mp20_test_rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=9046)
    ap.add_argument("--coverage", type=int, default=1000)
    a = ap.parse_args()
    from pymatgen.core import Structure

    from crystalflow_core.metrics import coverage, csp_rms_table, csp_summary, fingerprints

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
    table = csp_rms_table(gts, preds, workers=os.cpu_count())
    t_csp = time.perf_counter() - t0
    s = csp_summary(table, 1)
    print(f"CSP metrics, {a.n} structures, k=1: {t_csp:.1f} s on {os.cpu_count()} cores "
          f"(MR {s['match_rate_pct']:.2f} %, RMSE {s['rmse_norm']:.4f}; parsing the CIFs took {t_parse:.1f} s more)")
    sub = gts[: a.coverage]
    t0 = time.perf_counter()
    sfp, cfp, ok = fingerprints(sub, workers=os.cpu_count())
    t_fp = time.perf_counter() - t0
    t0 = time.perf_counter()
    cov = coverage(sfp, cfp, sfp, cfp)
    t_cov = time.perf_counter() - t0
    print(f"DNG coverage, {len(sub)} structures: fingerprints {t_fp:.1f} s, distances {t_cov:.2f} s "
          f"(self-coverage {cov['cov_recall_pct']:.1f} %)")


if __name__ == "__main__":
    main()
