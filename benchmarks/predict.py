"""CSP as a search: how often the pipeline's structure prediction finds a known structure from its
formula alone. The first N compositions of the MP-20 test split are given as formula and Z (their
structures hidden from the job), `n` candidates each are sampled, relaxed with CHGNet and ranked; each
known structure is then looked for among the relaxed candidates (StructureMatcher, the CSP metric's
tolerances stol 0.5, ltol 0.3, angle_tol 10). Prints (prints, asserts nothing):

  top-1      share of compositions whose lowest-enthalpy polymorph matches the known structure
  any-of-n   share where any relaxed candidate matches it
  mean rank  mean rank of the first polymorph that matches, over the compositions where one does

  python benchmarks/predict.py --config config/quick.yaml --run mp20_csp [--compositions 20] [-n 20]
      [--steps 10] [--results results]      (the run's model.ckpt must exist: snakemake first)
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from _common import header, mp20_test_rows

from crystalflow_core import config as cfgmod
from crystalflow_core.layout import Layout
from crystalflow_core.stages import predict_rank, predict_relax, predict_sample


def known_compositions(n: int):
    """(id, formula, z, Structure) of the first n MP-20 test crystals."""
    from pymatgen.core import Structure

    out = []
    for _, row in mp20_test_rows(n).iterrows():
        s = Structure.from_str(row["cif"], fmt="cif")
        reduced, z = s.composition.get_reduced_composition_and_factor()
        out.append((row["material_id"], reduced.reduced_formula, int(z), s))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/quick.yaml")
    ap.add_argument("--run", default="mp20_csp")
    ap.add_argument("--results", default=None, help="results folder holding the run's model (default: the config's)")
    ap.add_argument("--compositions", type=int, default=20)
    ap.add_argument("-n", "--candidates", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fmax", type=float, default=0.1)
    ap.add_argument("--relax-steps", type=int, default=300)
    a = ap.parse_args()
    header(f"structure prediction as a search: {a.compositions} MP-20 test compositions, {a.candidates} candidates")
    from pymatgen.analysis.structure_matcher import StructureMatcher

    known = known_compositions(a.compositions)
    work = Path(tempfile.mkdtemp(prefix="predict_bench_"))
    table = work / "compositions.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["formula", "z"])
        seen = set()
        for _, formula, z, _ in known:
            if (formula, z) not in seen:  # two test crystals of one composition: one search
                seen.add((formula, z))
                w.writerow([formula, z])
    raw = cfgmod.yaml.safe_load(Path(a.config).read_text())
    job = {
        "run": a.run,
        "compositions": str(table),
        "n_candidates": a.candidates,
        "steps": a.steps,
        "relax": {"fmax": a.fmax, "steps": a.relax_steps, "timeout": 120},
        "top_n": 0,
    }
    raw["predict"] = {"bench": job}
    cfg = cfgmod.validate(raw)
    job = cfg["predict"]["bench"]
    model = Layout(a.results or cfg["results"]).model(a.run)
    if not Path(model).exists():
        raise SystemExit(f"{model} not found: train the run first (snakemake --configfile {a.config} {model})")
    L = Layout(str(work))
    samples, relaxed = [L.predict_samples("bench", 0)], [L.predict_relaxed("bench", 0)]
    t0 = time.time()
    predict_sample(cfg, "bench", job, model, 0, 1, samples[0])
    t1 = time.time()
    predict_relax(job, samples, 0, 1, relaxed[0], a.workers)
    t2 = time.time()
    outs = (
        L.predict_candidates("bench"),
        L.predict_ranked("bench"),
        L.predict_cifs("bench"),
        L.predict_extxyz("bench"),
    )
    predict_rank(cfg, "bench", job, samples, relaxed, *outs)
    t3 = time.time()
    import pandas as pd
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    cands = pd.read_csv(outs[0])
    ranked = pd.read_csv(outs[1])
    relaxed_structs = {f.info["id"]: AseAtomsAdaptor.get_structure(f) for f in read(outs[3], index=":")}
    sm = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    top1 = anyn = 0
    ranks = []
    for mid, formula, z, s in known:
        group = f"{formula}_p0"
        mine = cands[(cands["group"] == group) & cands["id"].isin(relaxed_structs)]
        matched = [cid for cid in mine["id"] if sm.fit(s, relaxed_structs[cid])]
        anyn += bool(matched)
        clusters = sorted({int(c) for c in mine[mine["id"].isin(matched)]["cluster"]})
        if clusters:
            ranks.append(clusters[0])
            top1 += clusters[0] == 1
        n_poly = int((ranked["group"] == group).sum())
        print(
            f"{mid:>12} {formula:>14} z={z}: {len(mine):3d} relaxed, {n_poly:3d} polymorphs, "
            f"{len(matched):3d} match the known structure, its rank {clusters[0] if clusters else '-'}"
        )
    n = len(known)
    print(f"# sampling {t1 - t0:.0f} s, relaxation {t2 - t1:.0f} s ({a.workers} workers), ranking {t3 - t2:.0f} s")
    print(f"top-1: {100 * top1 / n:.1f} % ({top1}/{n})")
    print(f"any-of-{a.candidates}: {100 * anyn / n:.1f} % ({anyn}/{n})")
    mean = f"{sum(ranks) / len(ranks):.2f} over {len(ranks)}" if ranks else "- (no composition found)"
    print(f"mean rank of the known structure: {mean}")


if __name__ == "__main__":
    main()
