"""CSP as a search with each generator and their mixture: how often structure prediction finds a known
structure from its formula alone, at the same budget, with the model, random symmetric structures (pyxtal),
prototype substitution into the run's training crystals (never a composition's own) and the mixture of
config/quick.yaml's predict job (model 0.5, random 0.25, prototype 0.25); with `--sym-run` (a run with
model.symmetry: anchor) also the symmetric model with its training templates (`symmetry: auto`).

N compositions are drawn at random (seeded) from the MP-20 test split; their structures stay hidden. Each
is searched in two modes: `given` (the known cell size z) and `blind` (z: auto, every z up to the model's
largest training crystal, the candidates spread over them). Each search has `n` candidates per composition,
relaxed with CHGNet (same settings for every generator) and ranked by the pipeline's own stages; only
converged, physical candidates count. The known structure is looked for among the ranked candidates
(StructureMatcher with the CSP metric's tolerances stol 0.5, ltol 0.3, angle_tol 10). Prints, per
generator and mode, with 95 % Wilson intervals (asserts nothing):

  top-1      share of compositions whose lowest-enthalpy polymorph matches the known structure
  any-of-n   share where any ranked candidate matches it
  mean rank  mean rank of the first polymorph that matches, over the compositions where one does

  python benchmarks/predict.py --config config/quick.yaml --run mp20_csp [--compositions 40] [-n 20]
      [--seed 0] [--modes given blind] [--generators model random prototype mixture] [--steps 10]
      [--results results]
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

from _common import header, mp20_test_rows

from crystalflow_core import config as cfgmod
from crystalflow_core.compositions import formula_unit
from crystalflow_core.layout import Layout
from crystalflow_core.stages import predict_rank, predict_relax, predict_sample


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n trials (percent)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def known_compositions(n: int, seed: int):
    """(id, formula, z, Structure) of n MP-20 test crystals drawn at random, one per composition."""
    from pymatgen.core import Structure

    out, seen = [], set()
    for _, row in mp20_test_rows().sample(frac=1.0, random_state=seed).iterrows():
        s = Structure.from_str(row["cif"], fmt="cif")
        _, formula, z = formula_unit(s.composition)
        if formula not in seen:
            seen.add(formula)
            out.append((row["material_id"], formula, int(z), s))
        if len(out) == n:
            break
    return out


# the generator settings compared, at the same budget (the mixture as config/quick.yaml's predict job)
GENERATOR_SHARES = {
    "model": {"model": 1.0},
    "random": {"random": 1.0},
    "prototype": {"prototype": 1.0},
    "mixture": {"model": 0.5, "random": 0.25, "prototype": 0.25},
    "symmetric": {"model": 1.0},  # the --sym-run's symmetric model, its Wyckoff templates (symmetry: auto)
}


def search(cfg, job, model, generator: str, work: Path, training: str, workers: int):
    """One search; `model` and `training`: {"plain": path, "symmetric": path} (the latter with --sym-run)."""
    L = Layout(str(work))
    samples, relaxed = [L.predict_samples("bench", 0)], [L.predict_relaxed("bench", 0)]
    job = {**job, "generators": GENERATOR_SHARES[generator]}
    kind = "plain"
    if generator == "symmetric":
        kind, job = "symmetric", {**job, "run": model["sym_run"], "symmetry": "auto"}
    model, training = model[kind], training[kind]
    t0 = time.time()
    predict_sample(cfg, "bench", job, model, 0, 1, samples[0], training=training)
    t1 = time.time()
    predict_relax(job, samples, 0, 1, relaxed[0], workers)
    t2 = time.time()
    out = {
        "candidates": L.predict_candidates("bench"),
        "ranked": L.predict_ranked("bench"),
        "cif": L.predict_cifs("bench"),
        "extxyz": L.predict_extxyz("bench"),
        "phase": L.predict_phase_diagram("bench"),
    }
    predict_rank(cfg, "bench", job, samples, relaxed, out, workers)
    return list(out.values()), (t1 - t0, t2 - t1, time.time() - t2)


def score(known, outs, candidates: int, label: str, times) -> None:
    import pandas as pd
    from ase.io import read
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    cands = pd.read_csv(outs[0])
    ranked_ok = cands[cands["status"] == "ranked"]  # converged and physical only
    structs = {f.info["id"]: AseAtomsAdaptor.get_structure(f) for f in read(outs[3], index=":")}
    sm = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    top1 = anyn = 0
    ranks = []
    for _, formula, _, s in known:
        mine = ranked_ok[(ranked_ok["group"] == f"{formula}_p0") & ranked_ok["id"].isin(structs)]
        matched = [cid for cid in mine["id"] if sm.fit(s, structs[cid])]
        anyn += bool(matched)
        clusters = sorted({int(c) for c in mine[mine["id"].isin(matched)]["cluster"]})
        if clusters:
            ranks.append(clusters[0])
            top1 += clusters[0] == 1
    n = len(known)
    conv = 100 * len(ranked_ok) / max(1, len(cands))
    mean = f"{sum(ranks) / len(ranks):.2f} over {len(ranks)}" if ranks else "-"
    lo1, hi1 = wilson(top1, n)
    lon, hin = wilson(anyn, n)
    print(
        f"| {label} | {100 * top1 / n:.1f} % ({top1}/{n}) [{lo1:.1f}, {hi1:.1f}] | {100 * anyn / n:.1f} % ({anyn}/{n}) "
        f"[{lon:.1f}, {hin:.1f}] | {mean} | {conv:.1f} % | {times[0]:.0f} / {times[1]:.0f} / {times[2]:.0f} s |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/quick.yaml")
    ap.add_argument("--run", default="mp20_csp")
    ap.add_argument("--results", default=None, help="results folder holding the run's model (default: the config's)")
    ap.add_argument("--compositions", type=int, default=40)
    ap.add_argument("-n", "--candidates", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="draw of the compositions (and of the random structures)")
    ap.add_argument("--modes", nargs="+", default=["given", "blind"], choices=["given", "blind"])
    ap.add_argument("--generators", nargs="+", default=list(GENERATOR_SHARES), choices=list(GENERATOR_SHARES))
    ap.add_argument("--sym-run", default=None, help="a symmetric CSP run of the config: the `symmetric` generator")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fmax", type=float, default=0.1)
    ap.add_argument("--relax-steps", type=int, default=300)
    a = ap.parse_args()
    header(
        f"structure prediction as a search: {a.compositions} MP-20 test compositions drawn with seed {a.seed}, "
        f"{a.candidates} candidates each: model, random search (pyxtal), prototypes and their mixture"
    )
    from crystalflow_core.generative.sampling import FlowSampler

    known = known_compositions(a.compositions, a.seed)
    raw = cfgmod.yaml.safe_load(Path(a.config).read_text())
    plain = Layout(a.results or raw.get("results", "results")).model(a.run)
    if not Path(plain).exists():
        raise SystemExit(f"{plain} not found: train the run first (snakemake --configfile {a.config} {plain})")
    largest = len(FlowSampler.from_checkpoint(plain).atom_count_hist) - 1
    L = Layout(a.results or raw.get("results", "results"))
    runs = cfgmod.validate(raw, mirror_check=False)["runs"]
    names = {"plain": a.run, **({"symmetric": a.sym_run} if a.sym_run else {})}
    if "symmetric" in a.generators and not a.sym_run:
        raise SystemExit("--generators symmetric needs --sym-run (a run with model.symmetry: anchor)")
    training = {k: L.split(runs[r]["dataset"], runs[r]["train_split"]) for k, r in names.items()}
    model = {**{k: L.model(r) for k, r in names.items()}, "sym_run": a.sym_run}
    for path in [*training.values(), *(m for k, m in model.items() if k != "sym_run")]:
        if not Path(path).exists():
            raise SystemExit(f"{path} not found: prepare and train the runs first")
    print(f"# model {plain}: largest training crystal {largest} atoms; CHGNet fmax {a.fmax}, {a.relax_steps} steps")
    print(
        "| generator, mode | top-1 [95 % CI] | any-of-n [95 % CI] | mean rank | ranked of candidates | "
        "sample / relax / rank |"
    )
    print("|---|---|---|---|---|---|")
    for mode in a.modes:
        work = Path(tempfile.mkdtemp(prefix=f"predict_bench_{mode}_"))
        table = work / "compositions.csv"
        with open(table, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["formula", "z"])
            for _, formula, z, _ in known:
                w.writerow([formula, z if mode == "given" else "auto"])
        job = {
            "run": a.run,
            "compositions": str(table),
            "n_candidates": a.candidates,
            "steps": a.steps,
            "seed": a.seed,
            "relax": {"fmax": a.fmax, "steps": a.relax_steps, "timeout": 120},
            "top_n": 0,
        }
        raw["predict"] = {"bench": job}
        cfg = cfgmod.validate(raw)
        job = cfg["predict"]["bench"]
        for gen in a.generators:
            outs, times = search(cfg, job, model, gen, work / gen, training, a.workers)
            score(known, outs, a.candidates, f"{gen}, {mode}", times)


if __name__ == "__main__":
    main()
