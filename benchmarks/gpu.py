"""The model stages of the pipeline on this machine's GPU, in a few minutes (the check a lent GPU machine runs).

Through the stage functions the workflow's rules call, with the quick configuration's CSP run:
1. prepare: an MP-20 split with its symmetric forms (dataset `symmetry: true`, all cores);
2. train: the plain network and the symmetric one (`model.symmetry: anchor`) for --epochs epochs each
   (`accelerator: auto`, `precision: auto` as configured): seconds per epoch, the device and the precision
   Lightning ran, the training loss of the first and the last epoch;
3. sample: each model's CSP candidates of the first --compositions crystals of the split through the sample
   stage (the GPU where there is one), then the same items from the same checkpoint on the CPU: seconds each,
   flagged share, and how far the two devices' samples of the same seeds lie apart (lattice lengths, fractional
   coordinates: the same prior noise, arithmetic in another order and precision).

  CRYSTALFLOW_DATA=<folder with mp_20/val.csv.gz> python benchmarks/gpu.py --out DIR [--epochs 3]
      [--compositions 256] [--split val] [--max-rows N] [--config config/quick.yaml]
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import os
import time
from pathlib import Path

import yaml
from _common import DATA, header

from crystalflow_core import config as config_mod
from crystalflow_core.io import read_jsonl


def train_losses(workdir: Path) -> tuple[float | None, float | None]:
    """The training loss of the first and the last epoch, from Lightning's CSV log of a run."""
    vals = []
    for f in sorted(workdir.glob("metrics/*/metrics.csv")):
        with open(f) as fh:
            vals += [float(r["train_loss"]) for r in csv.DictReader(fh) if r.get("train_loss")]
    return (vals[0], vals[-1]) if vals else (None, None)


def apart(a: list[dict], b: list[dict]) -> str:
    """Median and largest difference of the same items' samples: lattice lengths (relative), fractional
    coordinates (periodic)."""
    import numpy as np

    by_id = {r["id"]: r for r in b}
    dl, df = [], []
    for r in a:
        q = by_id.get(r["id"])
        if q is None:
            continue
        la, lb = np.linalg.norm(r["lattice"], axis=1), np.linalg.norm(q["lattice"], axis=1)
        dl.append(float(np.max(np.abs(la - lb) / lb)))
        d = np.asarray(r["frac_coords"]) - np.asarray(q["frac_coords"])
        df.append(float(np.max(np.abs(d - np.round(d)))))
    if not dl:
        return "no common items"
    return (
        f"lattice lengths median {np.median(dl):.2e} max {max(dl):.2e} (relative); frac median {np.median(df):.2e} "
        f"max {max(df):.2e}; same within 1e-3: {sum(x < 1e-3 and y < 1e-3 for x, y in zip(dl, df))}/{len(dl)}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--compositions", type=int, default=256)
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-rows", type=int, default=None, help="the split's first rows only (a dry run)")
    ap.add_argument("--config", default="config/quick.yaml")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from crystalflow_core.crystals.data import PrepareSettings, load_cache, prepare_split
    from crystalflow_core.generative.precision import resolve
    from crystalflow_core.generative.sampling import FlowSampler, items_for_run, settings_for_run
    from crystalflow_core.generative.training import TrainSettings, train_device
    from crystalflow_core.stages.sample import sample
    from crystalflow_core.stages.train import train

    header("the model stages on this machine's GPU")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"# gpu: {gpu}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config_mod.validate(yaml.safe_load(Path(a.config).read_text()), mirror_check=False)
    base = cfg["runs"]["mp20_csp"]
    ds = dict(cfg["datasets"][base["dataset"]], symmetry=True)
    csv_path = DATA / "mp_20" / f"{a.split}.csv.gz"
    cache = out / f"{a.split}.pt"
    t = time.perf_counter()
    settings = PrepareSettings.from_dataset(ds, 0, max_rows=a.max_rows)
    prepare_split(csv_path, cache, out / f"{a.split}_rejected.csv", settings)
    print(f"prepare {csv_path.name} with symmetric forms on {os.cpu_count()} cores: {time.perf_counter() - t:.1f} s")

    print("| model | device | precision | epochs | s per epoch | train loss first / last epoch |")
    print("|---|---|---|---|---|---|")
    runs = {}
    for kind in ("none", "anchor"):
        run = copy.deepcopy(base)
        run["model"]["symmetry"] = kind
        run["train"].update(max_epochs=a.epochs, max_minutes=None)
        run["sample"].update(test_limit=a.compositions, k=[1])
        ckpt, work = out / f"{kind}.ckpt", out / f"train_{kind}"
        t = time.perf_counter()
        train(run, str(cache), None, str(ckpt), str(work))
        dt = time.perf_counter() - t
        tcfg = TrainSettings.from_section(run["train"])
        device = train_device(tcfg)
        first, last = train_losses(work)
        print(
            f"| {kind} | {device} | {resolve(tcfg.precision, device, 'training')} | {a.epochs} | {dt / a.epochs:.1f} | "
            f"{first if first is None else f'{first:.3f}'} / {last if last is None else f'{last:.3f}'} |",
            flush=True,
        )
        runs[kind] = (run, ckpt)

    print("| model | stage device | items | stage s | flagged | CPU s (precision), same items | apart |")
    print("|---|---|---|---|---|---|---|")
    for kind, (run, ckpt) in runs.items():
        shard = out / f"samples_{kind}.jsonl"
        steps = run["sample"]["steps"][0]
        t = time.perf_counter()
        sample(run, str(ckpt), str(cache), steps, 0, 1, str(shard))
        dt = time.perf_counter() - t
        recs = read_jsonl(shard)
        cpu = FlowSampler.from_checkpoint(str(ckpt), map_location="cpu")
        items = items_for_run(run, load_cache(cache), cpu.atom_count_hist)
        t = time.perf_counter()
        on_cpu = cpu.generate(items, settings_for_run(run, steps))
        dt_cpu = time.perf_counter() - t
        flagged = sum(bool(r["flag"]) for r in recs)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(
            f"| {kind} | {device} ({recs[0].get('precision', '?')}) | {len(recs)} | {dt:.1f} | {flagged} | "
            f"{dt_cpu:.1f} ({on_cpu[0].get('precision', '?')}) | {apart(recs, on_cpu)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
