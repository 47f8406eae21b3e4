"""Relaxation throughput: 40 rattled MP-20 test structures, this stage's way (one worker per core,
OMP_NUM_THREADS=1, L-BFGS + FrechetCellFilter; CHGNet with a batched static evaluation; --optimizer FIRE
isolates the parallel layout), for each potential (--models chgnet sevennet: the same structures at the
same fmax, with the converged share and how far their final energies agree on the hull's scale), versus
one-at-a-time CHGNet StructOptimizer with default threads.

  python benchmarks/relax.py [--n 40] [--steps 200] [--models chgnet sevennet] [--skip-baseline]

With --prediction JOB (a predict job of --config, its run trained), the candidates of that job (or, with
--formula F --n N, N candidates of one composition from the job's generators) relaxed by the prediction stage
under each variant of its throughput settings, side by side in one run: `lbfgs` (every candidate to the end),
`precon` (PreconLBFGS), `abandon` (hopeless candidates stop: the job's abandon rule, or --abandon-rule),
`twins` (matching candidates relax once), `defaults` (abandon and twins: a predict job's defaults), `all` (the
three). Per variant: candidates per minute, mean force calls per candidate, converged share, abandoned and
twin counts; per composition: the best polymorph and the top-3 enthalpies against `lbfgs`'s (same best, top-3
within 1 meV/atom). From `lbfgs`'s enthalpy traces, for a grid of (step, margin): the share of candidates the
rule would stop and how many of those ended as their composition's best or top-3 polymorph (against the final
best: an upper bound of what the rule stops).

  python benchmarks/relax.py --prediction known --config config/quick.yaml [--results R] [--formula SiO2 --n 200]
      [--variants lbfgs precon abandon twins defaults all] [--abandon-rule AFTER MARGIN PROBE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, header, mp20_test_rows

from crystalflow_core.config import defaults

SAMPLES = None  # --samples: generated structures (a samples.jsonl) instead of rattled known crystals


def structures(n):
    from pymatgen.core import Structure

    if SAMPLES:
        from crystalflow_core.generative.sampling import record_to_structure
        from crystalflow_core.io import read_jsonl

        recs = [(r["id"], record_to_structure(r, strict=False)) for r in read_jsonl(SAMPLES)]
        return [(sid, s) for sid, s in recs if s is not None][:n]
    out = []
    for i, cif in enumerate(mp20_test_rows(n)["cif"]):
        s = Structure.from_str(cif, fmt="cif")
        s.perturb(0.1)  # rattle by 0.1 A
        out.append((f"s{i}", s))
    return out


def baseline(n, steps, fmax):
    import warnings

    warnings.filterwarnings("ignore")
    from chgnet.model import StructOptimizer

    opt = StructOptimizer()
    t0 = time.perf_counter()
    for _, s in structures(n):
        opt.relax(s, fmax=fmax, steps=steps, verbose=False)
    return time.perf_counter() - t0


def relax_with(model: str, a) -> dict:
    """Relax the structures with one potential; print throughput; {id: record}."""
    from crystalflow_core.materials.relax import RelaxSettings, relax_many

    settings = RelaxSettings.from_section(
        defaults("relax"), fmax=a.fmax, steps=a.steps, optimizer=a.optimizer, model=model
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        recs = relax_many(structures(a.n), f"{tmp}/r.jsonl", settings, workers=a.workers, progress=False)
        took = time.perf_counter() - t0
    conv = sum(r["converged"] for r in recs)
    steps = [r["steps"] for r in recs if r["converged"]]
    print(
        f"{model} ({a.workers} workers x 1 thread, load included): {took:.1f} s, {60 * a.n / took:.1f} "
        f"structures/min, {conv}/{a.n} converged ({100 * conv / a.n:.0f} %), mean "
        f"{sum(steps) / max(1, len(steps)):.0f} {a.optimizer} steps of the converged, "
        f"version {recs[0].get('potential_version', '?')}"
    )
    return {r["id"]: r for r in recs}


def agreement(first: dict, second: dict, names) -> None:
    """Final energies of structures both potentials relaxed to convergence, each on the hull's (MP2020)
    scale by its own declared scale: the median and largest difference per atom."""
    import numpy as np

    from crystalflow_core.crystals.crystal import structure_from
    from crystalflow_core.materials.hull import on_hull_scale
    from crystalflow_core.materials.potentials import record_energy_scale

    diffs = []
    for sid in sorted(set(first) & set(second)):
        r0, r1 = first[sid], second[sid]
        if not (r0["converged"] and r1["converged"]):
            continue
        e = []
        for r in (r0, r1):
            s = structure_from(r["final"])
            e.append(on_hull_scale(s, r["energy_per_atom"] * len(s), record_energy_scale(r))[0] / len(s))
        diffs.append(e[1] - e[0])
    d = np.array([x for x in diffs if np.isfinite(x)])
    if not len(d):
        print("no structure converged under both")
        return
    print(
        f"final energies, {names[1]} - {names[0]} on the MP2020 scale, {len(d)} structures converged under both: "
        f"median {np.median(d):+.3f}, median |diff| {np.median(np.abs(d)):.3f}, "
        f"max |diff| {np.abs(d).max():.3f} eV/atom"
    )


PREDICTION_VARIANTS = {
    "lbfgs": {"optimizer": "LBFGS", "abandon": False, "twins": False},
    "precon": {"optimizer": "PreconLBFGS", "abandon": False, "twins": False},
    "abandon": {"optimizer": "LBFGS", "abandon": True, "twins": False},
    "twins": {"optimizer": "LBFGS", "abandon": False, "twins": True},
    "defaults": {"optimizer": "LBFGS", "abandon": True, "twins": True},  # a predict job's defaults
    "all": {"optimizer": "PreconLBFGS", "abandon": True, "twins": True},
}


def prediction_candidates(a, work: Path):
    """(cfg, job, searches, samples path): the job's candidates (--formula/-n: one composition's) sampled once."""
    from crystalflow_core import config as cfgmod
    from crystalflow_core.compositions import job_searches
    from crystalflow_core.generative.sampling import FlowSampler
    from crystalflow_core.layout import Layout
    from crystalflow_core.materials.prediction.search import model_size_cap
    from crystalflow_core.stages import predict_sample

    raw = cfgmod.yaml.safe_load(Path(a.config).read_text())
    if a.results:
        raw["results"] = a.results
    job = raw["predict"][a.prediction]
    if a.formula:
        job = {**job, "formulas": [a.formula], "compositions": None, "n_candidates": a.n}
        job.pop("compositions")
    if a.abandon_rule:
        after, margin, probe = a.abandon_rule
        job = {**job, "abandon": {"after": int(after), "margin": margin, "probe": int(probe)}}
    raw["predict"] = {a.prediction: job}
    cfg = cfgmod.validate(raw)
    job = cfg["predict"][a.prediction]
    L = Layout(cfg["results"])
    model = L.model(job["run"])
    if not Path(model).exists():
        raise SystemExit(f"{model} not found: train the run first (snakemake --configfile {a.config} {model})")
    run = cfg["runs"][job["run"]]
    training = L.split(run["dataset"], run["train_split"])
    samples = str(work / "samples.jsonl")
    t0 = time.perf_counter()
    predict_sample(cfg, a.prediction, job, model, 0, 1, samples, training=training)
    print(f"# sampled the candidates in {time.perf_counter() - t0:.0f} s")
    searches = job_searches(cfg, a.prediction, job, largest=model_size_cap(FlowSampler.from_checkpoint(model)))
    return cfg, job, searches, samples


def ranked_polymorphs(job, searches, samples: str, relaxed: str):
    from crystalflow_core.io import read_jsonl
    from crystalflow_core.materials.prediction.candidates import candidate_table
    from crystalflow_core.materials.prediction.ranking import rank_polymorphs

    cands, finals = candidate_table(searches, read_jsonl(samples), read_jsonl(relaxed), job["symprec"])
    return rank_polymorphs(cands, finals, job["dedupe"], job["rank_unconverged"], job["rank"]["tie_mev"])


def prediction_variants(a) -> None:
    """Relax one job's candidates under each variant; print the side-by-side table (see the module doc)."""

    from crystalflow_core.io import read_jsonl
    from crystalflow_core.stages import predict_relax

    work = Path(tempfile.mkdtemp(prefix="relax_bench_"))
    cfg, job, searches, samples = prediction_candidates(a, work)
    n = len(read_jsonl(samples))
    print(
        f"# {n} candidates of predict job {a.prediction} ({', '.join(sorted({t.group for t in searches}))}), "
        f"generators {job['generators']}, fmax {job['relax']['fmax']}, <= {job['relax']['steps']} steps, "
        f"{a.workers} workers; abandon {job['abandon']}, twins {job['twins']}"
    )
    print(
        "| variant | wall s | candidates/min | mean force calls | converged | abandoned | twins | same best | "
        "top-3 within 1 meV |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    base, base_trace = None, None
    for name in a.variants:
        v = PREDICTION_VARIANTS[name]
        vjob = {
            **job,
            "relax": {**job["relax"], "optimizer": v["optimizer"], "record_energies": True},
            "abandon": job["abandon"] if v["abandon"] else None,
            "twins": job["twins"] if v["twins"] else None,
        }
        out = str(work / f"{name}.jsonl")
        t0 = time.perf_counter()
        predict_relax(vjob, [samples], 0, 1, out, a.workers)
        took = time.perf_counter() - t0
        recs = read_jsonl(out)
        cands, ranked = ranked_polymorphs(vjob, searches, samples, out)
        calls = sum(r.get("force_calls", 0) for r in recs) / max(1, len(recs))
        conv = sum(bool(r.get("converged")) for r in recs)
        aband = sum(bool(r.get("abandoned")) for r in recs)
        twins = sum(bool(r.get("duplicate_of")) for r in recs)
        top = {g: list(r["enthalpy_per_atom"].head(3)) for g, r in ranked.groupby("group")}
        best = {g: r.iloc[0]["spacegroup_tight"] for g, r in ranked.groupby("group")}
        if base is None:
            base, base_trace = (top, best), recs
            same, close = "-", "-"
        else:
            groups = sorted(set(base[0]) | set(top))
            same_n = sum(
                best.get(g) == base[1].get(g) and abs(top.get(g, [0])[0] - base[0][g][0]) < 1e-3
                for g in groups
                if g in base[0] and g in top
            )
            close_n = sum(
                len(top.get(g, [])) == len(base[0][g]) and all(abs(x - y) < 1e-3 for x, y in zip(top[g], base[0][g]))
                for g in groups
                if g in base[0] and g in top
            )
            same, close = f"{same_n}/{len(groups)}", f"{close_n}/{len(groups)}"
        print(
            f"| {name} | {took:.0f} | {60 * len(recs) / took:.1f} | {calls:.0f} | {conv}/{len(recs)} | {aband} "
            f"| {twins} | {same} | {close} |"
        )
        for g, r in ranked.groupby("group"):
            rows = ", ".join(f"{x['spacegroup_tight']} {x['enthalpy_per_atom']:.4f}" for _, x in r.head(3).iterrows())
            print(f"#   {name} {g}: {rows}")
    if base_trace is not None and "lbfgs" in a.variants:
        abandon_grid(base_trace, samples)


def abandon_grid(recs: list[dict], samples: str) -> None:
    """From full relaxations' enthalpy traces: for each (step, margin), how many candidates lay more than
    margin above their composition's final best at a multiple of that step (the rule checks every `after`
    steps), and how many of those ended best or top-3."""
    from crystalflow_core.io import read_jsonl
    from crystalflow_core.materials.prediction.search import relax_group
    from crystalflow_core.materials.relax import finished

    group = {r["id"]: relax_group(r) for r in read_jsonl(samples)}
    traced = [r for r in recs if r.get("enthalpy_trace") and not r.get("duplicate_of")]
    ok = [r for r in traced if finished(r) and r.get("converged")]  # only these rank
    finals: dict = {}
    for r in ok:
        finals.setdefault(group[r["id"]], []).append(r["enthalpy_per_atom"])
    top3 = {g: sorted(set(round(h, 3) for h in hs))[:3] for g, hs in finals.items()}
    print(
        "# abandon rule against the final best (from lbfgs's traces, every candidate relaxed): stopped, and of "
        "those how many converged to the best or a top-3 enthalpy (distinct to 1 meV/atom), and the optimiser "
        "steps the rule saves"
    )
    print("| every (steps) | margin eV/atom | stopped | of them best | of them top-3 | steps saved |")
    print("|---|---|---|---|---|---|")
    total = sum(len(r["enthalpy_trace"]) for r in traced)
    for after in (10, 20, 30, 50):
        for margin in (0.1, 0.2, 0.3, 0.5):
            stop = best = top = saved = 0
            for r in traced:
                tr, g = r["enthalpy_trace"], group[r["id"]]
                if g not in top3:
                    continue
                hit = next((k for k in range(after, len(tr), after) if tr[k] > top3[g][0] + margin), None)
                if hit is None:
                    continue
                stop += 1
                saved += len(tr) - 1 - hit
                if r in ok:
                    best += abs(r["enthalpy_per_atom"] - top3[g][0]) < 1e-3
                    top += r["enthalpy_per_atom"] <= top3[g][-1] + 1e-3
            print(
                f"| {after} | {margin} | {stop}/{len(traced)} | {best} | {top} | {100 * saved / max(1, total):.0f} % |"
            )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--fmax", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--optimizer", default="LBFGS")
    ap.add_argument("--models", nargs="+", default=["chgnet"], choices=["chgnet", "sevennet"])
    ap.add_argument("--samples", default=None, help="relax generated structures of this samples.jsonl instead")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--_baseline", action="store_true")
    ap.add_argument("--prediction", default=None, help="a predict job of --config: its candidates, each variant")
    ap.add_argument("--config", default="config/quick.yaml")
    ap.add_argument("--results", default=None, help="results folder holding the job's run (default: the config's)")
    ap.add_argument("--formula", default=None, help="--prediction: -n candidates of this composition instead")
    ap.add_argument("--variants", nargs="+", default=list(PREDICTION_VARIANTS), choices=list(PREDICTION_VARIANTS))
    ap.add_argument(
        "--abandon-rule",
        nargs=3,
        type=float,
        default=None,
        metavar=("AFTER", "MARGIN", "PROBE"),
        help="--prediction: this abandon rule instead of the job's",
    )
    a = ap.parse_args()
    if a.prediction:
        header(f"prediction relaxation variants: predict job {a.prediction} of {a.config}")
        prediction_variants(a)
        return
    global SAMPLES
    SAMPLES = a.samples
    if a._baseline:
        print(baseline(a.n, a.steps, a.fmax))
        return
    what = f"generated structures of {a.samples}" if a.samples else "rattled MP-20 test structures"
    header(f"relaxation: {a.n} {what}, fmax {a.fmax}, <= {a.steps} steps")
    finals, timings = {}, {}
    for m in a.models:
        t0 = time.perf_counter()
        finals[m] = relax_with(m, a)
        timings[m] = time.perf_counter() - t0
    if len(a.models) == 2:
        agreement(*(finals[m] for m in a.models), a.models)
    if a.skip_baseline:
        return
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    p = subprocess.run(
        [sys.executable, __file__, "--_baseline", "--n", str(a.n), "--steps", str(a.steps), "--fmax", str(a.fmax)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    base = float(p.stdout.strip().splitlines()[-1])
    print(f"one-at-a-time StructOptimizer, default threads: {base:.1f} s, {60 * a.n / base:.1f} structures/min")
    ours = timings.get("chgnet")
    if ours:
        print(f"speed-up of this stage's CHGNet: {base / ours:.2f}x")


if __name__ == "__main__":
    main()
