"""Learning check: a CSP model (H=256, L=4) trained for a fixed wall-clock budget on the MP-20 val
split, then k=1, S=100 samples for the first 500 MP-20 test crystals, matched with
StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) under the crystalflow metrics protocol.

  python benchmarks/learning.py [--recipe paper|norm-clip|fast] [--minutes 25] [--n-test 500] [--out DIR]
                                [--ema DECAY] [--warmup STEPS] [--ot|--no-ot] [--schedule plateau|cosine] [--lr LR]
                                [--precision fp32 bf16 ...]

Recipes: paper = the authors' (clip by value 0.5, ReduceLROnPlateau stepped every 5 epochs, best
loss kept); norm-clip = this project's earlier recipe (clip by norm 0.5, scheduler every epoch);
fast = config/quick.yaml's recipe: norm-clip with an EMA of the weights (decay 0.999) for sampling.
The lever flags add one lever at a time on top of the chosen recipe (e.g. `--recipe norm-clip --ot`).
Prints the loss curve (mean training loss per epoch) and the match rate; a run with an EMA is
sampled twice, with the EMA and with the raw weights (the same training, so the pair isolates the EMA).
`--precision fp32 bf16` trains and samples once per precision, one after the other on this machine with
the same recipe (each model sampled at its own precision; EMA weights only), and prints a comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from _common import DATA, header

from crystalflow_core.config import defaults


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--recipe", choices=["paper", "norm-clip", "fast"], default="paper")
    ap.add_argument("--ema", type=float, default=None, help="one lever on top of --recipe: EMA decay")
    ap.add_argument("--warmup", type=int, default=None, help="one lever on top of --recipe: warm-up steps")
    ap.add_argument("--ot", action=argparse.BooleanOptionalAction, default=None, help="OT pairing on/off")
    ap.add_argument("--schedule", choices=["plateau", "cosine"], default=None, help="learning-rate schedule")
    ap.add_argument("--out", default=None, help="work folder (default /tmp/crystalflow_learning_{recipe})")
    ap.add_argument(
        "--precision",
        nargs="+",
        choices=["fp32", "bf16", "auto"],
        default=None,
        help="train and sample at each of these in turn (default: the recipe's, fp32 for paper)",
    )
    a = ap.parse_args()
    from crystalflow_core.crystals.data import PrepareSettings, prepare_split
    from crystalflow_core.stages import use_threads

    use_threads(0)  # all cores, as the train and sample rules do
    header(
        f"learning: CSP H=256 L=4, recipe {a.recipe}, {a.minutes} min on MP-20 val, "
        f"MR on the first {a.n_test} test crystals"
    )
    out = Path(a.out or f"/tmp/crystalflow_learning_{a.recipe}")
    for split in ("val", "test"):
        prepare_split(
            DATA / "mp_20" / f"{split}.csv.gz",
            out / f"{split}.pt",
            out / f"{split}_rejected.csv",
            PrepareSettings.from_dataset(defaults("dataset"), workers=os.cpu_count()),
        )
    recipe = {
        "paper": dict(grad_clip_algorithm="value", lr_frequency=5),
        "norm-clip": dict(grad_clip_algorithm="norm", lr_frequency=1),
        "fast": quick_recipe(),
    }[a.recipe]
    levers = {
        "ema_decay": a.ema,
        "warmup_steps": a.warmup,
        "ot_pairing": a.ot,
        "lr_schedule": a.schedule,
    }
    levers = {k: v for k, v in levers.items() if v is not None}
    if levers:  # single levers are this project's, so they run under the fast recipe's name
        recipe = {**recipe, "recipe": "fast", **levers}
    precisions = a.precision or [recipe.get("precision", "fp32")]
    if precisions != ["fp32"]:  # bf16 is this project's lever: the fast recipe's name
        recipe = {**recipe, "recipe": "fast"}
    results = {}
    for precision in precisions:
        recipe = {**recipe, "precision": precision}
        work = out if len(precisions) == 1 else out / precision
        results[precision] = learn(a, recipe, out, work, only_ema=len(precisions) > 1)
    if len(precisions) > 1:
        print("precision  epochs  steps  train min  MR %    RMSE    sample s")
        for p, r in results.items():
            print(
                f"{p:9s} {r['epochs']:7d} {r['steps']:6d} {r['train_min']:10.1f} {r['mr']:5.2f} "
                f"{r['rmse']:7.4f} {r['sample_s']:9.0f}"
            )


def learn(a, recipe: dict, data: Path, out: Path, only_ema: bool) -> dict:
    """Train one model with `recipe` for a.minutes, sample the first a.n_test test crystals, print and
    return what it learned (epochs, steps, match rate of the EMA weights where kept)."""
    from crystalflow_core.config import run_defaults
    from crystalflow_core.crystals.data import cache_structures, load_cache
    from crystalflow_core.evaluation.metrics import csp_rms_table, csp_summary
    from crystalflow_core.generative.sampling import SampleSettings, csp_items, generate, record_to_structure
    from crystalflow_core.generative.training import load_module, train

    print("train settings: " + ", ".join(f"{k}={v}" for k, v in sorted(recipe.items())) + f", lr={a.lr}")
    run = run_defaults(
        {
            "dataset": "mp_20",
            "task": "csp",
            "model": dict(hidden=256, layers=4, fourier=256, recip=8),
            "train": dict(
                batch_size=a.batch,
                max_epochs=100000,
                max_minutes=a.minutes,
                lr=a.lr,
                grad_clip=0.5,
                progress_bar=False,
                seed=0,
                **recipe,
            ),
        }
    )
    # from scratch: a previous run's last.ckpt would be resumed (with its elapsed time)
    shutil.rmtree(out / "lightning", ignore_errors=True)
    t0 = time.perf_counter()
    ckpt = train(run, data / "val.pt", None, out / "model.ckpt", out / "lightning")
    t_train = time.perf_counter() - t0
    module = load_module(ckpt)
    cache = load_cache(data / "test.pt")
    items = csp_items(cache, 1, a.n_test)
    gts = cache_structures(cache, range(len(items)))
    settings = SampleSettings.from_section(
        defaults("sample"), "csp", steps=100, anneal=5.0, batch_size=256, precision=recipe["precision"]
    )
    epochs, steps = print_loss_curve(out / "lightning" / "metrics")
    print(f"recipe {a.recipe}, precision {recipe['precision']}: trained {t_train / 60:.1f} min")
    # with an EMA the raw weights are scored too: the same training run, sampled both ways
    weights = ["ema", "raw"] if module.ema_net is not None else ["raw"]
    result = {}
    for w in weights[:1] if only_ema else weights:
        if w == "raw":
            module.ema_net = None
        t0 = time.perf_counter()
        recs = generate(module, items, settings, progress=False)
        t_sample = time.perf_counter() - t0
        m = defaults("metrics")
        cands = [[record_to_structure(r, strict=False)] for r in recs]
        table = csp_rms_table(gts, cands, m["stol"], m["ltol"], m["angle_tol"], 0, "crystalflow")
        s = csp_summary(table, 1, m["stol"])
        print(
            f"{w} weights: match rate {s['match_rate_pct']:.2f} % ({s['n_matched']}/{s['n_targets']}), "
            f"RMSE {s['rmse_norm']:.4f}, RMSE-all {s['rmse_all_norm']:.4f} (sampled in {t_sample:.0f} s, "
            f"{recs[0]['precision']})"
        )
        result = result or dict(
            epochs=epochs,
            steps=steps,
            train_min=t_train / 60,
            mr=s["match_rate_pct"],
            rmse=s["rmse_norm"],
            sample_s=t_sample,
        )
    return result


def quick_recipe() -> dict:
    """The fast recipe as config/quick.yaml trains its CSP run (its recipe keys only; model, batch and
    minutes are this benchmark's)."""
    import yaml

    keys = (
        "recipe",
        "grad_clip_algorithm",
        "lr_frequency",
        "ema_decay",
        "warmup_steps",
        "ot_pairing",
        "lr_schedule",
        "precision",
    )
    t = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "quick.yaml").read_text())
    return {k: v for k, v in t["runs"]["mp20_csp"]["train"].items() if k in keys}


def print_loss_curve(folder: Path) -> tuple[int, int]:
    """Mean training loss per epoch from Lightning's CSV log (one line, and a CSV beside it); returns
    (epochs, optimiser steps)."""
    import pandas as pd

    files = sorted(folder.glob("version_*/metrics.csv"))
    if not files:
        return 0, 0
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    ep = df.dropna(subset=["train_loss"]).groupby("epoch")["train_loss"].last()
    ep.to_csv(folder.parent.parent / "loss_curve.csv")
    print(
        f"epochs {len(ep)}, steps {int(df['step'].max()) + 1}; train loss per epoch: "
        + " ".join(f"{e + 1}:{v:.3f}" for e, v in ep.items())
    )
    return len(ep), int(df["step"].max()) + 1


if __name__ == "__main__":
    main()
