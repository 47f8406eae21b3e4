"""Network speed: training step (forward + backward + Adam) and one sampling evaluation
(inference mode) on a batch of MP-20 test crystals, fast path vs the plain reference layer
(concatenate [h_i, h_j, k, Fourier(df), reciprocal(df)] -> Linear -> SiLU -> Linear -> SiLU,
features recomputed per layer, fp32), same weights. Each variant runs in its own process so
peak memory is its own.

  python benchmarks/train_step.py                 # paper size: H=512, L=6, 256 freq, 8^3 terms, batch 256
  python benchmarks/train_step.py --size quick    # the quick configuration's network
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import REPO, header, mp20_test_tensors, peak_rss_mb

SIZES = {"paper": dict(hidden=512, layers=6, fourier=256, recip=8),
         "quick": dict(hidden=128, layers=3, fourier=64, recip=4)}


def one(size: str, fast: bool, batch: int, repeats: int) -> dict:
    import torch

    from crystalflow_core.model import CSPNet, ModelConfig

    torch.manual_seed(0)
    z, f, k, na = mp20_test_tensors(batch)
    net = CSPNet(ModelConfig(**SIZES[size], fast=fast))
    t = torch.rand(len(na), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def train_step():
        vk, vf, _ = net(t, z, f, k, na)
        loss = vk.square().mean() + 10 * vf.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    with torch.inference_mode():
        out = net(t, z, f, k, na)  # warm-up and outputs for the comparison
        te = []
        for _ in range(max(repeats, 4)):  # evaluations are cheap: take the best of more
            t0 = time.perf_counter()
            net(t, z, f, k, na)
            te.append(time.perf_counter() - t0)
    train_step()  # warm-up
    tt = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_step()
        tt.append(time.perf_counter() - t0)
    torch.save({"vk": out[0], "vf": out[1]}, f"/tmp/_bench_out_{size}_{int(fast)}.pt")
    return {"eval_s": min(te), "train_s": min(tt), "crystals": len(na), "atoms": int(na.sum()),
            "edges": int((na * na).sum()), "peak_rss_mb": peak_rss_mb()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="paper", choices=list(SIZES))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--_child", default=None)
    a = ap.parse_args()
    from crystalflow_core.stages import use_threads

    use_threads(0)  # all cores, as the train and sample rules do
    if a._child is not None:
        print(json.dumps(one(a.size, a._child == "fast", a.batch, a.repeats)))
        return
    header(f"train_step / eval: {a.size} network {SIZES[a.size]}, batch {a.batch} MP-20 test crystals")
    res = {}
    for name in ("fast", "plain"):
        p = subprocess.run([sys.executable, __file__, "--size", a.size, "--batch", str(a.batch), "--repeats",
                            str(a.repeats), "--_child", name], capture_output=True, text=True, cwd=REPO)
        if p.returncode:
            sys.exit(p.stderr)
        res[name] = json.loads(p.stdout.strip().splitlines()[-1])
    import torch

    fo, po = (torch.load(f"/tmp/_bench_out_{a.size}_{i}.pt") for i in (1, 0))
    rel = max(float((fo[key] - po[key]).abs().max() / po[key].abs().max()) for key in ("vk", "vf"))
    absd = max(float((fo[key] - po[key]).abs().max()) for key in ("vk", "vf"))
    r = res["fast"]
    print(f"crystals {r['crystals']}, atoms {r['atoms']}, ordered edges {r['edges']}")
    print(f"{'variant':8s} {'train step s':>13s} {'crystals/s':>11s} {'eval s':>8s} {'crystals/s':>11s} {'peak RSS MB':>12s}")
    for name, r in res.items():
        print(f"{name:8s} {r['train_s']:13.2f} {r['crystals'] / r['train_s']:11.1f} {r['eval_s']:8.2f} "
              f"{r['crystals'] / r['eval_s']:11.1f} {r['peak_rss_mb']:12.0f}")
    print(f"speed-up fast vs plain: training step {res['plain']['train_s'] / res['fast']['train_s']:.2f}x, "
          f"evaluation {res['plain']['eval_s'] / res['fast']['eval_s']:.2f}x")
    print(f"max |fast - plain| of outputs: {absd:.2e} (relative to max |output|: {rel:.2e})")


if __name__ == "__main__":
    main()
