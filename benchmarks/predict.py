"""CSP as a search with each generator and their mixture: how often structure prediction finds a known
structure from its formula alone, at the same budget, with the model, random symmetric structures (pyxtal),
prototype substitution into the run's training crystals (never a composition's own) and the mixture of
config/quick.yaml's predict job (model 0.5, random 0.25, prototype 0.25); with `--sym-run` (a run with
model.symmetry: anchor) also the symmetric model with its training templates (`symmetry: auto`).

N compositions are drawn at random (seeded) from the MP-20 test split; their structures stay hidden. Each
is searched in two modes: `given` (the known cell size z) and `blind` (z: auto, every z up to the model's
largest training crystal, the candidates spread over them). Each search has `n` candidates per composition,
relaxed with CHGNet (same settings for every generator) and ranked by the pipeline's own stages; only
converged, physical candidates count. The known structure is looked for among the relaxed candidates
(StructureMatcher with the CSP metric's tolerances stol 0.5, ltol 0.3, angle_tol 10). The same relaxations
are ranked three ways (--rankings): `strict` (0.8.0's: no refinement, no ties, the first potential),
`refined` (the defaults: the best 5 re-relaxed to fmax 0.02, lead groups within 5 meV/atom) and `committee`
(the same, ordered by the mean delta-H of CHGNet and SevenNet-0). Prints, per generator, mode and ranking,
with 95 % Wilson intervals (asserts nothing):

  top-1            share of compositions whose first polymorph matches the known structure
  lead holds it    compositions whose lead group (rank 1) holds it
  any-of-n         compositions where any ranked polymorph matches it
  ground-state     the same two on the compositions whose test crystal is the lowest known polymorph of its
                   composition (MP-20's formation energies over train, val and test)
  misses           not generated; generated but not ranked (unconverged, unphysical, abandoned); ranked below
                   another structure, with the median gap under CHGNet and SevenNet-0

  python benchmarks/predict.py --config config/quick.yaml --run mp20_csp [--compositions 40] [-n 20]
      [--seed 0] [--modes given blind] [--generators model random prototype mixture] [--steps 10]
      [--results results] [--rankings strict refined committee] [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

from _common import DATA, header, mp20_test_rows

from crystalflow_core import config as cfgmod
from crystalflow_core.compositions import formula_unit
from crystalflow_core.layout import Layout
from crystalflow_core.stages import predict_rank, predict_relax, predict_sample


def mp20_split(name: str):
    import pandas as pd

    return pd.read_csv(DATA / "mp_20" / f"{name}.csv.gz")


def is_lowest_known(known_row, lowest: dict) -> bool:
    from crystalflow_core.evaluation.csp_search import is_lowest

    return is_lowest(known_row[1], known_row[4], lowest)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n trials (percent)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def known_compositions(n: int, seed: int):
    """(id, formula, z, Structure, formation energy per atom) of n MP-20 test crystals drawn at random, one per
    composition."""
    from pymatgen.core import Structure

    out, seen = [], set()
    for _, row in mp20_test_rows().sample(frac=1.0, random_state=seed).iterrows():
        s = Structure.from_str(row["cif"], fmt="cif")
        _, formula, z = formula_unit(s.composition)
        if formula not in seen:
            seen.add(formula)
            out.append((row["material_id"], formula, int(z), s, float(row["formation_energy_per_atom"])))
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
    """One search's candidates, sampled and relaxed; `model` and `training`: {"plain": path, "symmetric": path}
    (the latter with --sym-run). Returns (job, samples, relaxed, times)."""
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
    return job, samples, relaxed, (t1 - t0, time.time() - t1)


# the rankings compared on the same relaxations: 0.8.0's strict order, refinement with lead groups (the
# defaults), and the committee mean (CHGNet and SevenNet-0) on top
RANKINGS = {
    "strict": {"rank": {"refine_top": 0, "tie_mev": 0.0, "by": "first"}},
    "refined": {"rank": {"refine_top": 5, "tie_mev": 5.0, "by": "first"}},
    "committee": {"rank": {"refine_top": 5, "tie_mev": 5.0, "by": "committee_mean"}, "committee": True, "top_n": 5},
}


def rank_with(cfg, job, samples, relaxed, work: Path, ranking: str, workers: int) -> dict:
    """predict_rank of the same relaxations under one of RANKINGS; its outputs by name."""
    v = RANKINGS[ranking]
    job = {**job, "rank": {**job["rank"], **v["rank"]}, "top_n": v.get("top_n", job["top_n"])}
    if v.get("committee"):
        job["relax"] = {**job["relax"], "committee": [job["relax"]["model"], "sevennet"]}
    folder = work / f"rank_{ranking}"
    out = {
        "candidates": str(folder / "candidates.csv"),
        "ranked": str(folder / "ranked.csv"),
        "cif": str(folder / "cif"),
        "extxyz": str(folder / "relaxed.extxyz"),
        "phase": str(folder / "phase_diagram.csv"),
        "refined": str(work / "refined.jsonl"),  # shared: the committee ranking reuses the refined one's
        "second": str(work / "second_opinion.jsonl"),  # the committee's opinions, kept across reruns
    }
    t0 = time.time()
    predict_rank(cfg, "bench", job, samples, relaxed, out, workers)
    out["seconds"] = time.time() - t0
    return out


def score(known, lowest: dict, outs: dict, relaxed: list[str], label: str, times) -> dict[str, str]:
    """One row: strict top-1, the lead group holding the known structure, any-of-n, the same two on the
    ground-state subset, and every miss classified (evaluation.csp_search.classify). Returns {formula:
    outcome}."""
    import statistics

    import pandas as pd
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystalflow_core.crystals.crystal import structure_from
    from crystalflow_core.evaluation.csp_search import classify, is_lowest
    from crystalflow_core.io import read_jsonl

    cands = pd.read_csv(outs["candidates"])
    ranked = pd.read_csv(outs["ranked"], dtype={"best_id": str})
    structures = {r["id"]: structure_from(r["final"]) for p in relaxed for r in read_jsonl(p) if r.get("final")}
    sm = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    res = [
        (classify(s, f"{formula}_p0", cands, ranked, structures, sm), is_lowest(formula, e, lowest))
        for _, formula, _, s, e in known
    ]
    n, gs = len(res), [c for c, low in res if low]
    top1 = sum(c["outcome"] == "first" for c, _ in res)
    lead = sum(c["outcome"] in ("first", "lead") for c, _ in res)
    anyn = sum(c["outcome"] in ("first", "lead", "below") for c, _ in res)
    gs1 = sum(c["outcome"] == "first" for c in gs)
    gsl = sum(c["outcome"] in ("first", "lead") for c in gs)
    missing = sum(c["outcome"] == "not generated" for c, _ in res)
    unranked = sum(c["outcome"].startswith("not ranked") for c, _ in res)
    below = [c for c, _ in res if c["outcome"] == "below"]
    gaps = [
        f"{statistics.median(x):.0f}"
        for key in ("gap_first_mev", "gap_sevennet_mev")
        if (x := [c[key] for c in below if key in c and c[key] == c[key]])
    ]
    lo1, hi1 = wilson(top1, n)
    print(
        f"| {label} | {100 * top1 / n:.1f} % ({top1}/{n}) [{lo1:.1f}, {hi1:.1f}] | {lead}/{n} | {anyn}/{n} | "
        f"{gs1}/{len(gs)} | {gsl}/{len(gs)} | {missing} | {unranked} | {len(below)} ({' / '.join(gaps) or '-'}) | "
        f"{times[0]:.0f} / {times[1]:.0f} / {outs['seconds']:.0f} s |"
    )
    return {k[1]: c["outcome"] for k, (c, _) in zip(known, res, strict=True)}


FOUND = ("first", "lead", "below")


def what_each_adds(outcomes: dict[str, dict[str, str]]) -> list[str]:
    """Lines on the generators of one mode and ranking ({generator: {formula: outcome}}): how many known
    structures any of them generated or ranked first, and how many each generated that no other did (what a
    mixture could gain from it over the others at most)."""
    gens = list(outcomes)
    formulas = list(outcomes[gens[0]])
    found = {g: {f for f in formulas if outcomes[g][f] in FOUND} for g in gens}
    first = {f for f in formulas if any(outcomes[g][f] == "first" for g in gens)}
    union = set().union(*found.values())
    only = ", ".join(f"{g} {len(found[g] - set().union(*(found[h] for h in gens if h != g)))}" for g in gens)
    return [
        f"# generated by any of {', '.join(gens)}: {len(union)}/{len(formulas)}; first under one of them: "
        f"{len(first)}/{len(formulas)}",
        f"# generated by one generator alone: {only}",
    ]


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
    ap.add_argument("--rankings", nargs="+", default=list(RANKINGS), choices=list(RANKINGS))
    ap.add_argument(
        "--work",
        default=None,
        help="folder for the searches ({mode}/{generator}/...); a rerun with the same folder and settings resumes "
        "(finished samples and relaxations are kept by the stages). Default: a new temporary folder",
    )
    ap.add_argument(
        "--score-only",
        action="store_true",
        help="score the searches already in --work as they are (no sampling, relaxing or ranking): the rows of "
        "searches made by another version, whose stages would start them again",
    )
    a = ap.parse_args()
    if a.score_only and not a.work:
        ap.error("--score-only needs --work (the folder of the searches)")
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
    from crystalflow_core.evaluation.csp_search import lowest_polymorphs

    lowest = lowest_polymorphs([mp20_split(name) for name in ("train_metadata_no_coords", "val", "test")])
    gs = sum(is_lowest_known(k, lowest) for k in known)
    print(f"# ground-state subset: {gs} of {len(known)} test crystals are their composition's lowest in MP-20")
    print(
        "| generator, mode, ranking | top-1 [95 % CI] | lead holds it | any-of-n | ground-state top-1 | "
        "ground-state lead | not generated | not ranked | below (median gap meV: first / SevenNet) | "
        "sample / relax / rank |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in a.modes:
        work = Path(a.work) / mode if a.work else Path(tempfile.mkdtemp(prefix=f"predict_bench_{mode}_"))
        work.mkdir(parents=True, exist_ok=True)
        print(f"# {mode}: searches in {work}", flush=True)
        table = work / "compositions.csv"
        rows = [["formula", "z"], *([formula, z if mode == "given" else "auto"] for _, formula, z, *_ in known)]
        if not a.score_only:  # (a search may be reading it)
            with open(table, "w", newline="") as fh:
                csv.writer(fh).writerows(rows)
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
        outcomes: dict[str, dict[str, str]] = {}  # the first ranking's, per generator
        for gen in a.generators:
            if a.score_only:
                relaxed, times = [Layout(str(work / gen)).predict_relaxed("bench", 0)], (math.nan, math.nan)
            else:
                gjob, samples, relaxed, times = search(cfg, job, model, gen, work / gen, training, a.workers)
            for ranking in a.rankings:
                if a.score_only:
                    folder = work / gen / f"rank_{ranking}"
                    outs = {"candidates": folder / "candidates.csv", "ranked": folder / "ranked.csv"}
                    outs["seconds"] = math.nan
                    missing = [str(f) for f in (*relaxed, outs["candidates"], outs["ranked"]) if not Path(f).exists()]
                    if missing:
                        raise SystemExit(f"--score-only: {missing[0]} not found: run this search first")
                else:
                    outs = rank_with(cfg, gjob, samples, relaxed, work / gen, ranking, a.workers)
                got = score(known, lowest, outs, relaxed, f"{gen}, {mode}, {ranking}", times)
                outcomes.setdefault(gen, got)
        if len(outcomes) > 1:
            print(f"# {mode}, {a.rankings[0]} ranking:", flush=True)
            print("\n".join(what_each_adds(outcomes)), flush=True)


if __name__ == "__main__":
    main()
