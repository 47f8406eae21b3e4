"""Relaxation throughput: 40 rattled MP-20 test structures, this stage's way (one worker per core,
OMP_NUM_THREADS=1, L-BFGS + FrechetCellFilter; CHGNet with a batched static evaluation; --optimizer FIRE
isolates the parallel layout), for each potential (--models chgnet sevennet: the same structures at the
same fmax, with the converged share and how far their final energies agree on the hull's scale), versus
one-at-a-time CHGNet StructOptimizer with default threads.

  python benchmarks/relax.py [--n 40] [--steps 200] [--models chgnet sevennet] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

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
    a = ap.parse_args()
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
