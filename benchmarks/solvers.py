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
from crystalflow_core.generative.integrators import EVALS_PER_STEP
from crystalflow_core.generative.sampling import METHODS


def parse_args():
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
    return ap.parse_args()


def sweep(a, task: str):
    """(method, anneal, NFE, sampler settings) of every point of the sweep whose NFE the method reaches."""
    from crystalflow_core.generative.sampling import SampleSettings

    for anneal in a.anneal:
        for method in a.methods:
            for nfe in a.nfe:
                steps = nfe // EVALS_PER_STEP[method]
                if steps < 1 or steps * EVALS_PER_STEP[method] != nfe:
                    continue
                s = SampleSettings.from_section(defaults("sample", task), task, steps, batch_size=a.batch)
                yield method, anneal, nfe, replace(s, method=method, anneal=anneal, time_grid=a.grid)


def timed(sampler, items, s):
    """Records and milliseconds per sample."""
    t0 = time.perf_counter()
    recs = sampler.generate(items, s, progress=False)
    return recs, (time.perf_counter() - t0) / len(recs) * 1000


def csp_rows(a, test, msettings) -> list[dict]:
    """Match rate and RMSE (k = 1) of the CSP checkpoint at every point of the sweep."""
    from crystalflow_core.crystals.data import cache_structures
    from crystalflow_core.evaluation.sample_metrics import evaluate_csp, index_csp_records
    from crystalflow_core.generative.sampling import FlowSampler, csp_items

    ckpt = Path(a.csp_ckpt or Path(a.results) / "runs/mp20_csp/model.ckpt")
    if not (a.n_csp and ckpt.exists()):
        return []
    sampler = FlowSampler.from_checkpoint(ckpt)
    n = min(a.n_csp, len(test["ids"]))
    items = csp_items(test, 1, n)
    for it in items:
        it["id"] = f"{it['target_id']}#0"
    gts, rows = cache_structures(test, range(n)), []
    for method, anneal, nfe, s in sweep(a, "csp"):
        recs, sec = timed(sampler, items, s)
        r = evaluate_csp(gts, index_csp_records(recs, test["ids"][:n], 1), [1], msettings)[0]
        mr, rmse = r["match_rate_pct"], r["rmse_norm"]
        rows.append(dict(task="csp", method=method, anneal=anneal, nfe=nfe, steps=s.steps, metric=mr, rmse=rmse))
        rows[-1]["s_per_1000"] = sec
        print(
            f"csp  {method:8s} anneal {anneal:g} NFE {nfe:4d} (S={s.steps:3d}): "
            f"MR {mr:5.1f} % RMSE {rmse:.4f}  {sec:6.1f} s/1000",
            flush=True,
        )
    return rows


def dng_rows(a, test, msettings) -> list[dict]:
    """Structural and compositional validity (and, with --dng-full, coverage and density distance) of the
    DNG checkpoint at every point of the sweep."""
    import numpy as np

    from crystalflow_core.crystals.data import cache_structures
    from crystalflow_core.evaluation.metrics import composition_valid, structure_valid
    from crystalflow_core.evaluation.sample_metrics import evaluate_dng
    from crystalflow_core.generative.sampling import FlowSampler, dng_items, record_to_structure

    R = Path(a.results)
    ckpt = Path(a.dng_ckpt or R / "runs/mp20_dng/model.ckpt")
    if not (a.n_dng and ckpt.exists()):
        return []
    sampler = FlowSampler.from_checkpoint(ckpt)
    items = dng_items(sampler.atom_count_hist, a.n_dng, seed=0)
    for it in items:
        it["id"] = f"s{it['sample_index']}"
    ref = test_structs = None
    if a.dng_full:
        fp = a.fingerprints or sorted(R.glob("data/mp_20/test_fingerprints2_*.npz"))[0]
        with np.load(fp) as z:
            ref = {k: z[k] for k in ("struct", "comp", "ok")}
        test_structs = cache_structures(test)
    rows = []
    for method, anneal, nfe, s in sweep(a, "dng"):
        recs, sec = timed(sampler, items, s)
        structs = [record_to_structure(r, strict=False) for r in recs]
        sv = np.mean([structure_valid(x, protocol="diffcsp") for x in structs]) * 100
        cv = np.mean([composition_valid(x, "diffcsp") if x is not None else False for x in structs]) * 100
        extra = evaluate_dng(recs, ref, test_structs, msettings) if a.dng_full else {}
        keep = ("cov_recall_pct", "cov_precision_pct", "wdist_density_g_cm3")
        rows.append(
            dict(
                task="dng", method=method, anneal=anneal, nfe=nfe, steps=s.steps, metric=float(sv), comp_valid=float(cv)
            )
        )
        rows[-1].update(s_per_1000=sec, **{k: extra[k] for k in keep if k in extra})
        print(
            f"dng  {method:8s} anneal {anneal:g} NFE {nfe:4d} (S={s.steps:3d}): struct valid {sv:5.1f} % "
            f"comp valid {cv:5.1f} %  {sec:6.1f} s/1000",
            flush=True,
        )
    return rows


def summarise(df) -> None:
    """Per task and anneal: the cheapest setting within one point of Euler at the largest NFE."""
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


def plot(df, out: Path) -> None:
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
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot: {out}")


def main():
    a = parse_args()
    import pandas as pd

    from crystalflow_core.crystals.data import load_cache
    from crystalflow_core.evaluation.sample_metrics import MetricSettings
    from crystalflow_core.stages import use_threads

    use_threads(0)
    header(f"integrators vs NFE ({a.grid} time grid)")
    R = Path(a.results)
    test = load_cache(a.test or R / "data/mp_20/test.pt")
    msettings = MetricSettings.from_config(defaults("metrics"))
    rows = csp_rows(a, test, msettings) + dng_rows(a, test, msettings)
    if not rows:
        print("no checkpoint found: pass --csp-ckpt/--dng-ckpt or run the quick workflow first")
        return
    df = pd.DataFrame(rows)
    print()
    summarise(df)
    plot(df, Path(a.plot or R / "plots/solvers_nfe.png"))


if __name__ == "__main__":
    main()
