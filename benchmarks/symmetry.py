"""The symmetric model beside the plain one at the same CPU time (issue: symmetry-aware CrystalFlow).

Both models take config/quick.yaml's CSP run (model size, fast recipe) and the same training minutes on the
MP-20 val split; then k = 5 candidates for each of the first N test crystals, matched under the crystalflow
protocol (StructureMatcher stol 0.5, ltol 0.3, angle_tol 10):
  plain         the paper's model, given the composition (P1 samples)
  sym-given     the symmetric model given each test crystal's space group and Wyckoff letters (DiffCSP++'s
                "given space group" protocol: an upper bound, the answer's symmetry is an input)
  sym-auto      the symmetric model given the composition only: candidate c takes the c-th Wyckoff template of
                the val crystals with the same anonymous formula and primitive-cell size (P1 where none)
Also prints what preparing the symmetric forms costs against the plain prepare (the same split).

  python benchmarks/symmetry.py [--minutes 5.5] [--n-test 300] [--k 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import yaml
from _common import DATA, REPO, header

from crystalflow_core.config import defaults


def prepare(out: Path, symmetry: bool) -> dict:
    from crystalflow_core.crystals.data import PrepareSettings, prepare_split

    caches = {}
    for split in ("val", "test"):
        t0 = time.perf_counter()
        ds = {**defaults("dataset"), "splits": {}, "symmetry": symmetry}
        caches[split] = prepare_split(
            DATA / "mp_20" / f"{split}.csv.gz",
            out / f"{split}{'_sym' if symmetry else ''}.pt",
            out / f"{split}{'_sym' if symmetry else ''}_rejected.csv",
            PrepareSettings.from_dataset(ds, workers=os.cpu_count()),
        )
        print(
            f"prepare {split:4s} symmetry={symmetry!s:5s}: {len(caches[split]['ids'])} crystals, "
            f"{caches[split]['n_rejected']} rejected, {time.perf_counter() - t0:.0f} s"
        )
    return caches


def trained(out: Path, name: str, minutes: float, symmetry: str, train_cache: Path) -> Path:
    from crystalflow_core.config import run_defaults
    from crystalflow_core.generative.training import train

    quick = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())["runs"]["mp20_csp"]
    run = run_defaults(
        {
            "dataset": "mp_20",
            "task": "csp",
            "model": {**quick["model"], "symmetry": symmetry},
            "train": {**quick["train"], "max_epochs": 100000, "max_minutes": minutes},
        }
    )
    work = out / name
    shutil.rmtree(work, ignore_errors=True)  # from scratch: a last.ckpt would be resumed
    t0 = time.perf_counter()
    ckpt = train(run, train_cache, None, work / "model.ckpt", work / "lightning")
    print(f"{name}: trained {(time.perf_counter() - t0) / 60:.1f} min")
    return ckpt


def match_rates(name: str, ckpt: Path, items: list[dict], gts: list, ks: list[int]) -> None:
    from crystalflow_core.evaluation.metrics import csp_rms_table, csp_summary
    from crystalflow_core.generative.sampling import FlowSampler, SampleSettings, record_to_structure

    quick = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())["runs"]["mp20_csp"]["sample"]
    settings = SampleSettings.from_section({**defaults("sample"), **quick}, "csp", quick["steps"][0])
    t0 = time.perf_counter()
    recs = FlowSampler.from_checkpoint(ckpt).generate(items, settings, progress=False)
    t_sample = time.perf_counter() - t0
    kmax = max(ks)
    by_target: dict[int, list] = {}
    for r in recs:
        by_target.setdefault(r["target_index"], [None] * kmax)[r["candidate"]] = record_to_structure(r, strict=False)
    cands = [by_target[i] for i in range(len(gts))]
    m = defaults("metrics")
    table = csp_rms_table(gts, cands, m["stol"], m["ltol"], m["angle_tol"], 0, "crystalflow")
    parts = []
    for k in ks:
        s = csp_summary(table, k, m["stol"])
        parts.append(
            f"MR@{k} {s['match_rate_pct']:5.1f} % ({s['n_matched']}/{s['n_targets']}), RMSE {s['rmse_norm']:.4f}"
        )
    print(f"{name:10s} " + "; ".join(parts) + f"; sampled in {t_sample:.0f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.5)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--out", default="/tmp/crystalflow_symmetry")
    a = ap.parse_args()
    from crystalflow_core.compositions import Search
    from crystalflow_core.crystals.data import cache_structures
    from crystalflow_core.generative.sampling import csp_items
    from crystalflow_core.materials.prediction.assignments import template_library, with_assignments
    from crystalflow_core.stages import use_threads

    use_threads(0)
    header(f"symmetry: plain vs symmetric CSP, {a.minutes} min each on MP-20 val, first {a.n_test} test crystals")
    out = Path(a.out)
    plain_caches = prepare(out, False)
    sym_caches = prepare(out, True)
    ks = sorted({1, a.k})
    # the same test crystals for every protocol: those the symmetric prepare kept among the first n
    sym_ids = set(sym_caches["test"]["ids"])
    keep = [i for i, x in enumerate(plain_caches["test"]["ids"][: a.n_test]) if x in sym_ids]
    gts = cache_structures(plain_caches["test"], keep)
    wyckoff_of = dict(zip(sym_caches["test"]["ids"], sym_caches["test"]["symmetry"]["wyckoff"]))
    plain_items = []
    for j, i in enumerate(keep):
        for it in csp_items(plain_caches["test"], a.k, i + 1)[i * a.k :]:
            plain_items.append({**it, "id": f"{it['target_id']}#{it['candidate']}", "target_index": j})
    given = [{**it, "wyckoff": wyckoff_of[it["target_id"]]} for it in plain_items]
    library = template_library(sym_caches["val"]["symmetry"]["wyckoff"], sym_caches["val"]["ids"])
    auto, n_p1 = [], 0
    for j in range(len(keep)):
        s = gts[j]
        comp = s.composition
        z = int(round(comp.num_atoms / comp.reduced_composition.num_atoms))
        t = Search(f"t{j}", comp.reduced_formula, z, tuple(site.specie.Z for site in s), 0.0)
        mine = [it for it in plain_items if it["target_index"] == j]
        placed = with_assignments(
            [{**it, "search": t.key} for it in mine], [t], {"spacegroups": [], "symmetry": "auto"}, library, "bench"
        )
        n_p1 += placed[0]["spacegroup_generated"] == 1 and placed[0]["assignment"].startswith("P1")
        auto += placed
    print(f"sym-auto: {len(keep) - n_p1} of {len(keep)} test crystals have a template among the val crystals")
    plain_ckpt = trained(out, "plain", a.minutes, "none", out / "val.pt")
    sym_ckpt = trained(out, "symmetric", a.minutes, "anchor", out / "val_sym.pt")
    match_rates("plain", plain_ckpt, plain_items, gts, ks)
    match_rates("sym-given", sym_ckpt, given, gts, ks)
    match_rates("sym-auto", sym_ckpt, auto, gts, ks)


if __name__ == "__main__":
    main()
