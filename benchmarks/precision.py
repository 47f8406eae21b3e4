"""Quality of bf16 sampling: the same trained models sampled in fp32 and in bf16 (sample.precision), the
same prior draws (per-item seeds), scored the same way.

CSP: the first --targets MP-20 test crystals x --k candidates (match rate at k = 1 and k, crystalflow
protocol, StructureMatcher stol 0.5 / ltol 0.3 / angle 10); DNG: --dng samples, structural and
compositional validity. Each rate is printed with its binomial standard error sqrt(p (1 - p) / n): the
noise of the sample size, against which the fp32 - bf16 difference is read. Also the mean per-sample
difference of the lattices and the coordinates between the two precisions, and the sampling times.

  python benchmarks/precision.py --results RESULTS [--steps 10] [--targets 300] [--k 5] [--dng 1000]

RESULTS: a quick run's results folder (runs/mp20_csp/model.ckpt, runs/mp20_dng/model.ckpt).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from _common import DATA, header

from crystalflow_core.config import defaults


def stderr_pct(p_pct: float, n: int) -> float:
    p = p_pct / 100.0
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def sample_both(sampler, items, settings):
    from dataclasses import replace

    out = {}
    for p in ("fp32", "bf16"):
        t0 = time.perf_counter()
        out[p] = sampler.generate(items, replace(settings, precision=p), progress=False)
        print(f"  sampled {len(items)} in {p}: {time.perf_counter() - t0:.1f} s ({out[p][0]['precision']})")
    return out


def drift(a: list[dict], b: list[dict]) -> str:
    import numpy as np

    dl = [np.abs(np.subtract(x["lattice"], y["lattice"])).max() for x, y in zip(a, b)]
    df = []
    for x, y in zip(a, b):
        d = np.subtract(x["frac_coords"], y["frac_coords"])
        df.append(np.abs(d - np.round(d)).max())
    return (
        f"fp32 vs bf16 per sample: lattice max |diff| median {np.median(dl):.3f} A, "
        f"fractional coordinates max |diff| median {np.median(df):.3f} (torus)"
    )


def output_error(sampler, cache, n: int = 256) -> str:
    """Relative error of the trained network's bf16 outputs against fp32 on the first n test crystals,
    at points of their training paths (t ~ U(0, 1), priors drawn as in training): |b - f| / |f| per
    output (vk lattice, vf coordinates, va types)."""
    import torch

    from crystalflow_core.crystals.crystal import atom_offsets
    from crystalflow_core.crystals.elements import encode_types
    from crystalflow_core.generative import precision as prec
    from crystalflow_core.generative.flow import interpolate
    from crystalflow_core.generative.network import Graph

    na = cache["num_atoms"][:n]
    end = int(atom_offsets(na.numpy())[-1])
    z, f1, k1 = cache["atom_types"][:end], cache["frac_coords"][:end], cache["k"][:n]
    g = Graph.build(na)
    net = sampler.net.eval()
    dng = net.cfg.task == "dng"
    tgt = interpolate(
        k1,
        f1,
        g.node_crystal,
        encode_types(z).to(k1) if dng else None,
        k_sigma=sampler.k_sigma,
        generator=torch.Generator().manual_seed(0),
    )
    types = tgt.a_t if dng else z
    cond = {c: torch.zeros(n) for c in net.cfg.conditions} or None
    with torch.inference_mode():
        ref = net(tgt.t, types, tgt.f_t, tgt.k_t, na, cond, None, g)
        with prec.autocast("bf16", "cpu"):
            low = net(tgt.t, types, tgt.f_t, tgt.k_t, na, cond, None, g)
    parts = [
        f"{name} {float((b - r).norm() / r.norm()):.2e}"
        for name, r, b in zip(("vk", "vf", "va"), ref, low)
        if r is not None
    ]
    return f"bf16 vs fp32 network outputs on {n} test crystals (relative error |b - f| / |f|): " + ", ".join(parts)


def compare(run_dir: Path, task: str, items_of, what: str, cache, steps: int) -> dict:
    """Sample the run's checkpoint in fp32 and in bf16 (the same items and prior draws); prints the
    output error of the trained network and how far the samples part; returns {precision: records}."""
    from crystalflow_core.generative.sampling import FlowSampler, SampleSettings

    sampler = FlowSampler.from_checkpoint(run_dir / "model.ckpt")
    settings = SampleSettings.from_section(defaults("sample", task), task, steps=steps, batch_size=256)
    print(f"{what}, model trained in {sampler.train_precision}")
    print("  " + output_error(sampler, cache))
    recs = sample_both(sampler, items_of(sampler), settings)
    print("  " + drift(recs["fp32"], recs["bf16"]))
    return recs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--targets", type=int, default=300)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--dng", type=int, default=1000)
    a = ap.parse_args()
    import numpy as np

    from crystalflow_core.crystals.data import PrepareSettings, cache_structures, load_cache, prepare_split
    from crystalflow_core.evaluation import metrics as M
    from crystalflow_core.evaluation import validity as V
    from crystalflow_core.generative.sampling import csp_items, dng_items, record_to_structure
    from crystalflow_core.stages import use_threads

    use_threads(0)
    header(f"precision quality: fp32 vs bf16 sampling of {a.results} at S={a.steps}")
    runs = Path(a.results) / "runs"
    m = defaults("metrics")
    work = Path("/tmp/crystalflow_precision")
    test_pt = work / "test.pt"
    prepare_split(
        DATA / "mp_20" / "test.csv.gz",
        test_pt,
        work / "test_rejected.csv",
        PrepareSettings.from_dataset(defaults("dataset"), workers=os.cpu_count()),
    )
    cache = load_cache(test_pt)

    def csp_ids(sampler):
        items = csp_items(cache, a.k, a.targets)
        for it in items:
            it["id"] = f"{it['target_id']}#{it['candidate']}"
        return items

    recs = compare(runs / "mp20_csp", "csp", csp_ids, f"CSP: {a.targets} targets x {a.k} candidates", cache, a.steps)
    gts = cache_structures(cache, range(a.targets))
    for p, rr in recs.items():
        cands = [[record_to_structure(r, strict=False) for r in rr[i * a.k : (i + 1) * a.k]] for i in range(a.targets)]
        table = M.csp_rms_table(gts, cands, m["stol"], m["ltol"], m["angle_tol"], 0, "crystalflow")
        for k in (1, a.k):
            mr = M.csp_summary(table, k, m["stol"])["match_rate_pct"]
            print(f"  {p}: MR k={k} {mr:.2f} % +- {stderr_pct(mr, a.targets):.2f} (n = {a.targets})")

    def dng_ids(sampler):
        items = dng_items(sampler.atom_count_hist, a.dng, seed=0)
        for it in items:
            it["id"] = f"s{it['sample_index']}"
        return items

    recs = compare(runs / "mp20_dng", "dng", dng_ids, f"DNG: {a.dng} samples", cache, a.steps)
    for p, rr in recs.items():
        structs = [record_to_structure(r, strict=False) for r in rr]
        sv = np.array([V.structure_valid(x, protocol="crystalflow") for x in structs])
        cv = np.array([V.composition_valid(x, protocol="crystalflow") if x is not None else False for x in structs])
        line = []
        for name, v in (("structural", sv), ("compositional", cv), ("both", sv & cv)):
            pct = 100.0 * v.mean()
            line.append(f"{name} {pct:.1f} % +- {stderr_pct(pct, len(v)):.1f}")
        same = sum(x["species"] == y["species"] for x, y in zip(recs["fp32"], rr))
        print(f"  {p}: validity " + ", ".join(line) + f" (n = {len(rr)}; same species as fp32: {same})")


if __name__ == "__main__":
    main()
