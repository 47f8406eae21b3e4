"""Sampling throughput: minutes per 10,000 MP-20-like crystals at S = 100 on this machine.

Atom counts follow the MP-20 test histogram (DNG-style, untrained weights: the cost does not
depend on the weights). The quick network runs >= 500 crystals at the full S; the paper network
runs >= 500 crystals at fewer steps and is extrapolated linearly in S (every step costs the same).

Each network runs twice on the same crystals: batches of a fixed crystal count (--batch) and batches
packed by a pair budget (sum of N^2, --pair-budget; default: --batch times the mean N^2, the same mean
batch). Crystals per second of both, same machine, same run.

  python benchmarks/sample.py [--n 512] [--paper-steps 4] [--batch 256] [--pair-budget N]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from _common import header, mp20_test_rows

from crystalflow_core.config import defaults

SIZES = {
    "quick": dict(hidden=128, layers=3, fourier=64, recip=4),
    "paper": dict(hidden=512, layers=6, fourier=256, recip=8),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--paper-steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pair-budget", type=int, default=0)
    a = ap.parse_args()
    import numpy as np
    import torch

    from crystalflow_core.generative.sampling import SampleSettings, dng_items, generate
    from crystalflow_core.generative.training import CrystalFlowModule
    from crystalflow_core.stages import use_threads

    use_threads(0)  # all cores, as the train and sample rules do
    header(f"sampling: {a.n} crystals, batch {a.batch}")
    hist = np.bincount(mp20_test_rows()["num_atoms"]).tolist()
    for size, steps in (("quick", a.steps), ("paper", a.paper_steps)):
        torch.manual_seed(0)
        m = CrystalFlowModule(
            model={**defaults("model"), **SIZES[size], "task": "dng", "conditions": []}, atom_count_hist=hist
        )
        items = dng_items(hist, a.n, seed=0)
        budget = a.pair_budget or int(a.batch * np.mean([it["num_atoms"] ** 2 for it in items]))
        base = SampleSettings.from_section(defaults("sample"), "csp", steps=steps, anneal=0.0, batch_size=a.batch)
        for label, settings in (
            (f"fixed batch {a.batch}", base),
            (f"pair budget {budget}", replace(base, pair_budget=budget)),
        ):
            t0 = time.perf_counter()
            recs = generate(m, items, settings, progress=False)
            dt = time.perf_counter() - t0
            per10k = dt / len(recs) * 1e4 / 60 * (100 / steps)
            note = "" if steps == 100 else f" (measured at S={steps}, scaled to S=100)"
            print(
                f"{size:6s} {SIZES[size]}, {label}: {len(recs)} crystals x {steps} steps in {dt:.1f} s = "
                f"{len(recs) * steps / 100 / dt:.2f} crystals/s at S=100 -> {per10k:.1f} min per 10,000{note}"
            )


if __name__ == "__main__":
    main()
