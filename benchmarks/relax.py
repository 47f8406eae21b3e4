"""CHGNet relaxation throughput: 40 rattled MP-20 test structures, this stage's way (one worker
per core, OMP_NUM_THREADS=1, batched static evaluation, L-BFGS + FrechetCellFilter; --optimizer FIRE
isolates the parallel layout) versus one-at-a-time CHGNet
StructOptimizer with default threads.

  python benchmarks/relax.py [--n 40] [--steps 200]
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


def structures(n):
    from pymatgen.core import Structure

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--fmax", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--optimizer", default="LBFGS")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--_baseline", action="store_true")
    a = ap.parse_args()
    if a._baseline:
        print(baseline(a.n, a.steps, a.fmax))
        return
    header(f"relaxation: {a.n} rattled MP-20 test structures, fmax {a.fmax}, <= {a.steps} steps")
    from crystalflow_core.materials.relax import RelaxSettings, relax_many

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        recs = relax_many(
            structures(a.n),
            f"{tmp}/r.jsonl",
            RelaxSettings.from_section(defaults("relax"), fmax=a.fmax, steps=a.steps, optimizer=a.optimizer),
            workers=a.workers,
            progress=False,
        )
        ours = time.perf_counter() - t0
    conv = sum(r["converged"] for r in recs)
    calls = sum(r["steps"] + 1 for r in recs)
    print(
        f"this stage ({a.workers} workers x 1 thread): {ours:.1f} s, {60 * a.n / ours:.1f} structures/min, "
        f"{conv}/{a.n} converged, "
        f"{a.optimizer}, {calls} force calls"
    )
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
    print(f"speed-up: {base / ours:.2f}x")


if __name__ == "__main__":
    main()
