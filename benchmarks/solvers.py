"""Integrators against network evaluations (NFE) on trained models (prints a table, draws a PNG).

For a CSP checkpoint: match rate and RMSE (k = 1) on the first --n-csp test crystals; for a DNG
checkpoint: structural / compositional validity of --n-dng samples (--dng-full adds coverage and the
Wasserstein distances, which cost CrystalNN fingerprints per setting). Every integrator at every NFE of
--nfe that it reaches with whole steps (Euler 1 evaluation per step, midpoint and Heun 2, RK4 4), each
anti-annealing slope of --anneal; seconds per 1,000 crystals for the sampling. The same crystals (per-item
prior draws) for every setting. Defaults: the quick run's models and files under --results.

  python benchmarks/solvers.py [--results results] [--n-csp 500] [--n-dng 1000] \\
      [--nfe 10 20 50 100 200] [--methods NAME ...] (default: every integrator) [--anneal 0 5] [--grid uniform]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from _common import header

from crystalflow_core.config import defaults
from crystalflow_core.generative.sampling import EVALS_PER_STEP, METHODS


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results")
    ap.add_argument("--csp-ckpt", default=None, help="default: {results}/runs/mp20_csp/model.ckpt")
    ap.add_argument("--dng-ckpt", default=None, help="default: {results}/runs/mp20_dng/model.ckpt")
    ap.add_argument("--test", default=None, help="default: {results}/data/mp_20/test.pt")
    ap.add_argument("--fingerprints", default=None, help="test fingerprints (.npz) for --dng-full")
    ap.add_argument("--n-csp", type=int, default=500)
    ap.add_argument("--n-dng", type=int, default=1000)
    ap.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50, 100, 200])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--anneal", type=float, nargs="+", default=[0.0, 5.0])
    ap.add_argument("--grid", default="uniform", choices=["uniform", "dense_end"])
    ap.add_argument("--dng-full", action="store_true")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--plot", default=None, help="PNG (default: {results}/plots/solvers_nfe.png)")
    a = ap.parse_args()

    import numpy as np

    from crystalflow_core.crystals.data import cache_structures, load_cache
    from crystalflow_core.evaluation.metrics import composition_valid, structure_valid
    from crystalflow_core.evaluation.summaries import MetricSettings, evaluate_csp, evaluate_dng, index_csp_records
    from crystalflow_core.generative.sampling import (
        FlowSampler,
        SampleSettings,
        csp_items,
        dng_items,
        record_to_structure,
    )
    from crystalflow_core.stages import use_threads

    use_threads(0)
    header(f"integrators vs NFE ({a.grid} time grid)")
    R = Path(a.results)
    test = load_cache(a.test or R / "data/mp_20/test.pt")
    msettings = MetricSettings.from_config(defaults("metrics"))
    rows = []

    def settings(task, method, nfe, anneal):
        steps = nfe // EVALS_PER_STEP[method]
        if steps < 1 or steps * EVALS_PER_STEP[method] != nfe:
            return None
        s = SampleSettings.from_section(defaults("sample", task), task, steps, batch_size=a.batch)
        return replace(s, method=method, anneal=anneal, time_grid=a.grid)

    def grid(task):
        for anneal in a.anneal:
            for method in a.methods:
                for nfe in a.nfe:
                    s = settings(task, method, nfe, anneal)
                    if s is not None:
                        yield method, anneal, nfe, s

    def run(sampler, items, s):
        t0 = time.perf_counter()
        recs = sampler.generate(items, s, progress=False)
        return recs, (time.perf_counter() - t0) / len(recs) * 1000

    csp_ckpt = Path(a.csp_ckpt or R / "runs/mp20_csp/model.ckpt")
    if a.n_csp and csp_ckpt.exists():
        sampler = FlowSampler.from_checkpoint(csp_ckpt)
        n = min(a.n_csp, len(test["ids"]))
        items = csp_items(test, 1, n)
        for it in items:
            it["id"] = f"{it['target_id']}#0"
        gts = cache_structures(test, range(n))
        for method, anneal, nfe, s in grid("csp"):
            recs, sec = run(sampler, items, s)
            by = index_csp_records(recs, test["ids"][:n], 1)
            r = evaluate_csp(gts, by, [1], msettings)[0]
            rows.append(
                dict(
                    task="csp",
                    method=method,
                    anneal=anneal,
                    nfe=nfe,
                    steps=s.steps,
                    metric=r["match_rate_pct"],
                    rmse=r["rmse_norm"],
                    s_per_1000=sec,
                )
            )
            print(
                f"csp  {method:8s} anneal {anneal:g} NFE {nfe:4d} (S={s.steps:3d}): "
                f"MR {r['match_rate_pct']:5.1f} % RMSE {r['rmse_norm']:.4f}  {sec:6.1f} s/1000",
                flush=True,
            )
    dng_ckpt = Path(a.dng_ckpt or R / "runs/mp20_dng/model.ckpt")
    if a.n_dng and dng_ckpt.exists():
        sampler = FlowSampler.from_checkpoint(dng_ckpt)
        items = dng_items(sampler.atom_count_hist, a.n_dng, seed=0)
        for it in items:
            it["id"] = f"s{it['sample_index']}"
        ref = test_structs = None
        if a.dng_full:
            fp = a.fingerprints or sorted(R.glob("data/mp_20/test_fingerprints2_*.npz"))[0]
            with np.load(fp) as z:
                ref = {k: z[k] for k in ("struct", "comp", "ok")}
            test_structs = cache_structures(test)
        for method, anneal, nfe, s in grid("dng"):
            recs, sec = run(sampler, items, s)
            structs = [record_to_structure(r, strict=False) for r in recs]
            sv = np.mean([structure_valid(x, protocol="diffcsp") for x in structs]) * 100
            cv = np.mean([composition_valid(x, "diffcsp") if x is not None else False for x in structs]) * 100
            extra = {}
            if a.dng_full:
                extra = evaluate_dng(recs, ref, test_structs, msettings)
            rows.append(
                dict(
                    task="dng",
                    method=method,
                    anneal=anneal,
                    nfe=nfe,
                    steps=s.steps,
                    metric=float(sv),
                    comp_valid=float(cv),
                    s_per_1000=sec,
                    **{
                        k: extra[k]
                        for k in ("cov_recall_pct", "cov_precision_pct", "wdist_density_g_cm3")
                        if k in extra
                    },
                )
            )
            print(
                f"dng  {method:8s} anneal {anneal:g} NFE {nfe:4d} (S={s.steps:3d}): struct valid {sv:5.1f} % "
                f"comp valid {cv:5.1f} %  {sec:6.1f} s/1000",
                flush=True,
            )
    if not rows:
        print("no checkpoint found: pass --csp-ckpt/--dng-ckpt or run the quick workflow first")
        return
    import pandas as pd

    df = pd.DataFrame(rows)
    print()
    for task, g in df.groupby("task"):
        base = g[(g["method"] == "euler") & (g["nfe"] == g["nfe"].max())]
        label = "MR" if task == "csp" else "structural validity"
        for anneal, gb in base.groupby("anneal"):
            ref_v = float(gb["metric"].iloc[0])
            near = g[(g["anneal"] == anneal) & (g["metric"] >= ref_v - 1.0)].sort_values("nfe")
            best = near.iloc[0] if len(near) else None
            where = f"{best['method']} at NFE {int(best['nfe'])}" if best is not None else "none"
            print(
                f"{task}, anneal {anneal:g}: Euler NFE {int(gb['nfe'].iloc[0])} {label} {ref_v:.1f} %; "
                f"cheapest within 1 point: {where}"
            )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(df["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for (method, anneal), g in df[df["task"] == task].groupby(["method", "anneal"]):
            g = g.sort_values("nfe")
            ax.plot(g["nfe"], g["metric"], "o-" if anneal else "s--", label=f"{method}, anneal {anneal:g}")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per sample (NFE)")
        ax.set_ylabel("match rate k=1 (%)" if task == "csp" else "structural validity (%)")
        ax.set_title(task.upper())
        ax.legend(fontsize=6)
    fig.tight_layout()
    out = Path(a.plot or R / "plots/solvers_nfe.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
