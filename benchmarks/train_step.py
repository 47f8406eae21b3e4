"""Network speed: training step (forward + backward + Adam) and one sampling evaluation
(inference mode) on a batch of MP-20 test crystals, fast path vs the plain reference layer
(concatenate [h_i, h_j, k, Fourier(df), reciprocal(df)] -> Linear -> SiLU -> Linear -> SiLU,
features recomputed per layer, fp32), same weights, and the fast path under bf16 autocast
(precision bf16: what train.precision / sample.precision bf16 run). Each variant runs in its own
process so peak memory is its own. Prints the relative error of the bf16 outputs against fp32.

  python benchmarks/train_step.py                 # paper size: H=512, L=6, 256 freq, 8^3 terms, batch 256
  python benchmarks/train_step.py --size quick    # the quick configuration's network
  python benchmarks/train_step.py --compile       # also the fast path under torch.compile
  python benchmarks/train_step.py --profile       # top operators of one fast training step
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import REPO, header, mp20_test_tensors, peak_rss_mb

from crystalflow_core.config import defaults

SIZES = {
    "paper": dict(hidden=512, layers=6, fourier=256, recip=8),
    "quick": dict(hidden=128, layers=3, fourier=64, recip=4),
}


VARIANTS = ("fast", "fast-bf16", "plain")


def one(size: str, name: str, batch: int, repeats: int, profile: bool = False) -> dict:
    """Timings of one variant: 'fast', 'fast-bf16' (the fast path under bf16 autocast), 'plain' or
    'compiled' (the fast path under torch.compile)."""
    import torch

    from crystalflow_core.generative import precision as prec
    from crystalflow_core.generative.network import CSPNet, ModelConfig

    torch.manual_seed(0)
    z, f, k, na = mp20_test_tensors(batch)
    model = CSPNet(
        ModelConfig(**{**defaults("model"), **SIZES[size], "task": "csp", "conditions": [], "fast": name != "plain"})
    )
    net = torch.compile(model, dynamic=True) if name == "compiled" else model
    t = torch.rand(len(na), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    precision = "bf16" if name.endswith("-bf16") else "fp32"

    def train_step():
        with prec.autocast(precision, "cpu"):
            vk, vf, _ = net(t, z, f, k, na)
            loss = vk.square().mean() + 10 * vf.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    with torch.inference_mode(), prec.autocast(precision, "cpu"):
        t0 = time.perf_counter()
        out = net(t, z, f, k, na)  # warm-up (and compilation) and outputs for the comparison
        warmup = time.perf_counter() - t0
        te = []
        for _ in range(max(repeats, 4)):  # evaluations are cheap: take the best of more
            t0 = time.perf_counter()
            net(t, z, f, k, na)
            te.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    train_step()  # warm-up (and compilation)
    warmup += time.perf_counter() - t0
    tt = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_step()
        tt.append(time.perf_counter() - t0)
    torch.save({"vk": out[0], "vf": out[1]}, f"/tmp/_bench_out_{size}_{name}.pt")
    if profile:  # after the timings, which it would disturb
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), file=sys.stderr)
    return {
        "eval_s": min(te),
        "train_s": min(tt),
        "crystals": len(na),
        "atoms": int(na.sum()),
        "edges": int((na * na).sum()),
        "peak_rss_mb": peak_rss_mb(),
        "warmup_s": warmup,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="paper", choices=list(SIZES))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--_child", default=None)
    a = ap.parse_args()
    from crystalflow_core.stages import use_threads

    use_threads(0)  # all cores, as the train and sample rules do
    if a._child is not None:
        print(json.dumps(one(a.size, a._child, a.batch, a.repeats, a.profile and a._child == "fast")))
        return
    header(f"train_step / eval: {a.size} network {SIZES[a.size]}, batch {a.batch} MP-20 test crystals")
    res = {}
    for name in VARIANTS + (("compiled",) if a.compile else ()):
        p = subprocess.run(
            [
                sys.executable,
                __file__,
                "--size",
                a.size,
                "--batch",
                str(a.batch),
                "--repeats",
                str(a.repeats),
                "--_child",
                name,
            ]
            + (["--profile"] if a.profile else []),
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if p.returncode:
            sys.exit(p.stderr)
        if a.profile and name == "fast":
            print(p.stderr[p.stderr.find("-----") :])
        res[name] = json.loads(p.stdout.strip().splitlines()[-1])
    import torch

    fo, bo, po = (torch.load(f"/tmp/_bench_out_{a.size}_{name}.pt") for name in VARIANTS)  # fast, bf16, plain
    rel = max(float((fo[key] - po[key]).abs().max() / po[key].abs().max()) for key in ("vk", "vf"))
    absd = max(float((fo[key] - po[key]).abs().max()) for key in ("vk", "vf"))
    bf16_err = {key: float((bo[key] - fo[key]).norm() / fo[key].norm()) for key in ("vk", "vf")}
    bf16_max = {key: float((bo[key] - fo[key]).abs().max() / fo[key].abs().max()) for key in ("vk", "vf")}
    r = res["fast"]
    print(f"crystals {r['crystals']}, atoms {r['atoms']}, ordered edges {r['edges']}")
    print(
        f"{'variant':10s} {'train step s':>13s} {'crystals/s':>11s} {'eval s':>8s} {'crystals/s':>11s} "
        f"{'peak RSS MB':>12s}"
    )
    for name, r in res.items():
        print(
            f"{name:10s} {r['train_s']:13.2f} {r['crystals'] / r['train_s']:11.1f} {r['eval_s']:8.2f} "
            f"{r['crystals'] / r['eval_s']:11.1f} {r['peak_rss_mb']:12.0f}"
        )
    print(
        f"speed-up fast vs plain: training step {res['plain']['train_s'] / res['fast']['train_s']:.2f}x, "
        f"evaluation {res['plain']['eval_s'] / res['fast']['eval_s']:.2f}x"
    )
    fp, bf = res["fast"], res["fast-bf16"]
    print(
        f"speed-up bf16 vs fp32 (fast path): training step {fp['train_s'] / bf['train_s']:.2f}x, "
        f"evaluation {fp['eval_s'] / bf['eval_s']:.2f}x"
    )
    print(f"max |fast - plain| of outputs: {absd:.2e} (relative to max |output|: {rel:.2e})")
    print(
        "bf16 vs fp32 outputs, relative error |b - f| / |f| (max |b - f| / max |f|): "
        + ", ".join(f"{key} {bf16_err[key]:.2e} ({bf16_max[key]:.2e})" for key in ("vk", "vf"))
    )
    if "compiled" in res:
        print(
            f"torch.compile warm-up (first evaluation + first training step, with their compilation): "
            f"{res['compiled']['warmup_s']:.0f} s"
        )


if __name__ == "__main__":
    main()
