"""Sampling throughput: minutes per 10,000 MP-20-like crystals at S = 100 on this machine.

Atom counts follow the MP-20 test histogram (DNG-style, untrained weights: the cost does not
depend on the weights). The quick network runs >= 500 crystals at the full S; the paper network
runs >= 500 crystals at fewer steps and is extrapolated linearly in S (every step costs the same).

Each network runs on the same crystals with batches of a fixed crystal count (--batch) and batches
packed by a pair budget (sum of N^2, --pair-budget; default: --batch times the mean N^2, the same mean
batch), at each --precision (fp32, bf16: sample.precision). Crystals per second of all, same machine,
same run.

  python benchmarks/sample.py [--n 512] [--paper-steps 4] [--batch 256] [--pair-budget N] [--precision fp32 bf16]
                              [--device cpu|cuda]

On a GPU (`--device cuda`, the default where one is present) fp32 runs with TF32 matrix products, as the
authors trained and sampled; e.g. `--n 10000 --steps 100 --paper-steps 100 --batch 1024` there.
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
    ap.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda where present)")
    a = ap.parse_args()
    import numpy as np
    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.set_float32_matmul_precision("medium")  # TF32, as the authors' runs

    from crystalflow_core.generative.network import CSPNet, ModelConfig
    from crystalflow_core.generative.sampling import FlowSampler, SampleSettings, dng_items, generate
    from crystalflow_core.stages import use_threads

    use_threads(0)  # all cores, as the train and sample rules do
    header(f"sampling: {a.n} crystals, batch {a.batch}, device {device}")
    hist = np.bincount(mp20_test_rows()["num_atoms"]).tolist()
    for size, steps in (("quick", a.steps), ("paper", a.paper_steps)):
        torch.manual_seed(0)
        net = CSPNet(ModelConfig(**{**defaults("model"), **SIZES[size], "task": "dng", "conditions": []}))
        m = FlowSampler(net, defaults("train")["k_sigma"], {}, hist, "untrained").to(device)
        items = dng_items(hist, a.n, seed=0)
        budget = a.pair_budget or int(a.batch * np.mean([it["num_atoms"] ** 2 for it in items]))
        base = SampleSettings.from_section(defaults("sample"), "csp", steps=steps, anneal=0.0, batch_size=a.batch)
        variants = [
            (f"{p}, {label}", replace(settings, precision=p))
            for label, settings in (
                (f"fixed batch {a.batch}", base),
                (f"pair budget {budget}", replace(base, pair_budget=budget)),
            )
            for p in a.precision
        ]
        for label, settings in variants:
            t0 = time.perf_counter()
            recs = generate(m, items, settings, progress=False)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            per10k = dt / len(recs) * 1e4 / 60 * (100 / steps)
            note = "" if steps == 100 else f" (measured at S={steps}, scaled to S=100)"
            print(
                f"{size:6s} {SIZES[size]}, {label}: {len(recs)} crystals x {steps} steps in {dt:.1f} s = "
                f"{len(recs) * steps / 100 / dt:.2f} crystals/s at S=100 -> {per10k:.1f} min per 10,000{note}"
            )


if __name__ == "__main__":
    main()
