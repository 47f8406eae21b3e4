"""Stages of structure prediction for a user's compositions (computations in ``crystalflow_core.materials.prediction``):

predict_sample       model -> predict/{job}/samples/shard{i}.jsonl (candidates per composition and pressure)
predict_relax        samples -> predict/{job}/relax/shard{i}.jsonl (CHGNet at each search's pressure, resumable)
predict_rank         samples + relaxations -> candidates.csv, ranked.csv, cif/, relaxed.extxyz
predict_dft          (stages.predict_dft) ranked.csv -> vasp/ folders for the best polymorphs (PSTRESS at the pressure)
predict_dft_results  (stages.predict_dft) vasp/ outputs -> dft.csv (statuses, DFT enthalpies, DFT ranks)
predict_report       -> report.md and its pictures (Fig. 2a/2c/2d of the paper, delta-H ladder)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crystalflow_core import __version__
from crystalflow_core.compositions import check_model_conditions, job_searches
from crystalflow_core.errors import StageError
from crystalflow_core.evaluation.stability import one_potential
from crystalflow_core.generative.sampling import SampleSettings, item_seed, record_to_structure
from crystalflow_core.io import (
    append_jsonl,
    content_key,
    read_jsonl,
    sha256_file,
    write_csv_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from crystalflow_core.jobs import shard_of
from crystalflow_core.materials.calculators import PotentialWorker
from crystalflow_core.materials.potentials import record_energy_scale
from crystalflow_core.materials.prediction.assignments import template_library, with_assignments
from crystalflow_core.materials.prediction.candidates import (
    candidate_items,
    candidate_record,
    candidate_table,
    spacegroup,
    write_extxyz,
)
from crystalflow_core.materials.prediction.generators import (
    prototype_library,
    prototype_structures,
    random_structure,
    with_generators,
)
from crystalflow_core.materials.prediction.ranking import committee_rerank, rank_polymorphs, with_e_hull
from crystalflow_core.materials.prediction.refine import apply_refinement, refine_items
from crystalflow_core.materials.prediction.scan import phase_diagram
from crystalflow_core.materials.prediction.search import (
    Twins,
    item_key,
    model_size_cap,
    relax_group,
    sample_settings,
    stopped_groups,
)
from crystalflow_core.materials.prediction.symmetry import write_symmetrised_cifs
from crystalflow_core.materials.relax import RelaxSettings, keyed, relax_many, untagged
from crystalflow_core.stages.common import (
    ensure_writable,
    open_sampler,
    records_current,
    require,
    resumable,
)
from crystalflow_core.stages.relax import relax_key, relax_records

log = logging.getLogger("crystalflow")


def _job_sampler(cfg: dict, name: str, job: dict, ckpt: str, threads: int) -> tuple:
    """(sampler, searches, pressure condition?) of a job: the model read, `z: auto` resolved against its
    largest training crystal, its conditions checked."""
    sampler = open_sampler(ckpt, threads)
    if sampler.task != "csp":
        raise StageError(f"{ckpt}: a {sampler.task} model; structure prediction needs a CSP model")
    largest = model_size_cap(sampler)
    searches = job_searches(cfg, name, job, largest=largest)
    check_model_conditions(sampler.conditions, name, searches)
    aware = "pressure" in sampler.conditions
    if not aware and any(t.pressure_gpa for t in searches):
        log.info(
            "predict/%s: the model is not conditioned on pressure: candidates are sampled as at any pressure "
            "and relaxed at their own pressure",
            name,
        )
    for t in searches:
        if largest and t.n_atoms > largest:
            log.warning(
                "predict/%s: %s has %d atoms, more than the largest training crystal (%d): outside what the "
                "model has seen, expect fewer sensible candidates",
                name,
                t.key,
                t.n_atoms,
                largest,
            )
    return sampler, searches, aware


@dataclass
class Libraries:
    """What a job draws on from its run's training split: Wyckoff templates (`symmetry: auto`) and
    prototypes (a `prototype` generator share); None where the job does not."""

    templates: dict | None = None
    prototypes: dict | None = None

    @classmethod
    def of(cls, path: str | None, job: dict, name: str) -> Libraries:
        if job["generators"].get("prototype") and not path:
            raise StageError(f"predict/{name}: the prototype generator needs a run's training split (give run:)")
        if not path:
            return cls()
        from crystalflow_core.crystals.data import cache_structures, load_cache

        cache = load_cache(path)
        out = cls()
        if job["symmetry"] == "auto":
            if not cache.get("symmetry"):
                raise StageError(
                    f"{path}: no symmetric forms cached (symmetry: auto needs the dataset's symmetry: true)"
                )
            out.templates = template_library(cache["symmetry"]["wyckoff"], cache["ids"])
        if job["generators"].get("prototype"):
            out.prototypes = prototype_library(cache_structures(cache), cache["ids"])
            if not out.prototypes:
                raise StageError(f"predict/{name}: the prototype library of {path} is empty")
        return out


def _job_items(sampler, searches: list, job: dict, n: int, aware: bool, libs: Libraries, name: str) -> list:
    """The job's first `n` candidates per composition and pressure, each with its generator; for a
    symmetric model each of the model's with its Wyckoff assignment (materials.prediction.assignments)."""
    items = with_generators(candidate_items(searches, n, aware), job["generators"])
    symmetric = sampler.symmetric
    if not symmetric and (job["spacegroups"] or job["symmetry"] != "none"):
        raise StageError(f"predict/{name}: the model is the plain one (P1): it samples no space group")
    if not symmetric:
        return items
    if not job["spacegroups"] and job["symmetry"] == "none":
        raise StageError(f"predict/{name}: a symmetric model: give spacegroups or symmetry: auto")
    model = [it for it in items if it["generator"] == "model"]
    placed = {it["id"]: it for it in with_assignments(model, searches, job, libs.templates, name)}
    return [placed.get(it["id"], it) for it in items]


def _generated(sampler, items: list[dict], settings: SampleSettings, keys: dict, aware: bool, ctx: tuple, shard=0):
    """Records of `items` from their generators (`ctx`: searches, job, libraries, job name), each with its
    provenance key and whether its generator knew the pressure (only a pressure-conditioned model does)."""
    searches, job, libs, name = ctx
    model = [it for it in items if it["generator"] == "model"]
    made = sampler.generate(model, settings, shard=shard) if model else []
    recs = {r["id"]: {**r, "pressure_aware": aware} for r in made}
    protos = prototype_structures(items, searches, job["generators"], libs.prototypes or {}, name)
    for it in items:
        if it["generator"] == "model":
            continue
        s, pid, subst = protos.get(it["id"], (None, None, None))
        if s is not None:
            group = spacegroup(s, job["symprec"][1])[1] or 1  # the prototype's, at the tight tolerance
            extra = {"prototype": pid, "substitution": subst, "spacegroup_generated": group}
        else:  # random, or a prototype candidate whose cell has no prototype
            s, group = random_structure(it["atom_types"], item_seed(settings.seed, it["id"]))
            extra = {"generator": "random", "spacegroup_generated": group}
        recs[it["id"]] = candidate_record(it, s, pressure_aware=False, **extra)
    out = [recs[it["id"]] for it in items]
    for r in out:
        r["provenance"] = keys[r["id"]]
    return out


def predict_sample(  # noqa: PLR0913
    cfg: dict, name: str, job: dict, ckpt: str, shard: int, shards: int, out: str, threads: int = 0, training=None
):
    """One shard of the job's candidates, from its generators (the CSP model at `ckpt`, random structures,
    prototypes); candidates of an earlier run of the job with the same model and settings are kept, only new
    ones are made. `training`: the run's training split cache (templates and prototypes), where the job uses it."""
    ensure_writable(out)
    sampler, searches, aware = _job_sampler(cfg, name, job, ckpt, threads)
    libs = Libraries.of(training, job, name)
    items = shard_of(_job_items(sampler, searches, job, job["n_candidates"], aware, libs, name), shard, shards)
    settings = sample_settings(cfg, job)
    model_sha = sha256_file(ckpt)
    want = {it["id"]: item_key(model_sha, settings, it) for it in items}
    kept = records_current(out, want, "provenance")
    todo = [it for it in items if it["id"] not in kept]
    if not todo and len(kept) == len(items) and Path(out).exists() and len(read_jsonl(out)) == len(items):
        log.info("%s is current (same model, settings and candidates): kept", out)
        return
    new = _generated(sampler, todo, settings, want, aware, (searches, job, libs, name), shard)
    by_id = {**kept, **{r["id"]: r for r in new}}
    recs = [by_id[it["id"]] for it in items if it["id"] in by_id]
    log.info(
        "predict/%s shard %d/%d: %d candidates (%d sampled now, %d kept), %d flagged",
        name,
        shard,
        shards,
        len(recs),
        len(new),
        len(kept),
        sum(bool(r["flag"]) for r in recs),
    )
    write_jsonl_atomic(out, recs)


def relax_plan(job: dict, recs: list[dict], found: Twins | None = None) -> tuple[list[tuple], dict[str, str]]:
    """What of the candidates `recs` relaxes: (id, Structure, pressure, group) of each but the twins of an
    earlier one (job `twins`), and {twin: the candidate it copies}; `found`: the twins of a search's earlier
    rounds, which `recs` adds to."""
    twin_of = dict((found or Twins(job["twins"])).add(recs))
    items = [
        (r["id"], record_to_structure(r), r["pressure_gpa"], relax_group(r)) for r in recs if r["id"] not in twin_of
    ]
    return items, twin_of


def with_twins(done: list[dict], twin_of: dict[str, str], provenance: dict[str, str] | None = None) -> list[dict]:
    """`done` with each twin's record: its first's relaxation under its own id (`duplicate_of`, no time or
    force calls of its own; `provenance`: its sample's, where records carry it)."""
    by_id = {d["id"]: d for d in done}
    out = list(done)
    for twin, first in twin_of.items():
        if first in by_id and twin not in by_id:
            copy = {**by_id[first], "id": twin, "duplicate_of": first, "wall_s": 0.0, "force_calls": 0}
            if provenance is not None:
                copy["sample_provenance"] = provenance[twin]
            out.append(copy)
    return out


def predict_search(  # noqa: PLR0913
    cfg: dict,
    name: str,
    job: dict,
    ckpt: str,
    samples_out: str,
    relaxed_out: str,
    threads: int = 0,
    workers: int = 1,
    training=None,
):
    """Structure prediction as a search (AIRSS's stopping rule): rounds of `until.round` candidates per
    composition and pressure, each sampled, relaxed and ranked with those before, until the lowest-enthalpy
    polymorph of a composition has been found `until.found` times (it stops there) or `n_candidates` are
    used. Relaxations are kept as they finish (a killed search resumes); the records carry what ranking
    needs, so predict_rank reads them as it reads a batch's."""
    ensure_writable(samples_out, relaxed_out)
    sampler, searches, aware = _job_sampler(cfg, name, job, ckpt, threads)
    settings, until, budget = sample_settings(cfg, job), job["until"], job["n_candidates"]
    rsettings = RelaxSettings.from_section(job["relax"])
    model_sha = sha256_file(ckpt)
    group_of = {t.key: t.group for t in searches}
    key = content_key([model_sha, repr(settings), relax_key(rsettings, job["abandon"]), __version__])
    libs = Libraries.of(training, job, name)
    everything = _job_items(sampler, searches, job, budget, aware, libs, name)
    want = {it["id"]: item_key(model_sha, settings, it) for it in everything}
    samples = records_current(samples_out, want, "provenance")  # an earlier search of this model and settings
    earlier = records_current(
        relaxed_out,
        want,
        "sample_provenance",
        lambda d: d.get("relax_settings") == relax_key(rsettings, job["abandon"]),
    )
    stopped: dict[str, int] = {}  # group -> candidates used when its best had been found `found` times
    found = Twins(job["twins"])  # carried from round to round: each compares its new candidates only
    used: set[str] = set()  # the candidates of the rounds so far
    n = 0
    with resumable(relaxed_out, key) as partial:
        have = {d["id"] for d in read_jsonl(partial, tolerate_truncated_tail=True)} if partial.exists() else set()
        for i, d in earlier.items():
            if i in samples and i not in have:
                append_jsonl(partial, d)
        while n < budget and len(stopped) < len(set(group_of.values())):
            n = min(budget, n + until["round"])
            # the first n candidates of the budget's (their generators and assignments do not depend on n)
            this_round = [it for it in everything if it["candidate"] < n and group_of[it["search"]] not in stopped]
            items = [it for it in this_round if it["id"] not in samples]
            used |= {it["id"] for it in this_round}
            for r in _generated(sampler, items, settings, want, aware, (searches, job, libs, name)):
                samples[r["id"]] = r
            # every candidate of the round but twins: relax_many skips those already relaxed (this search or a kept one)
            todo, twin_of = relax_plan(job, [samples[it["id"]] for it in this_round], found)
            rel = relax_many(todo, partial, rsettings, workers=workers, progress=False, abandon=job["abandon"])
            rel = with_twins([d for d in rel if d["id"] not in twin_of], twin_of)
            current = [samples[i] for i in sorted(used)]  # kept samples of later rounds wait for their round
            cands, finals = candidate_table(searches, current, [d for d in rel if d["id"] in used], job["symprec"])
            _, ranked = rank_polymorphs(cands, finals, job["dedupe"], job["rank_unconverged"], job["rank"]["tie_mev"])
            stopped = stopped_groups(cands, ranked, stopped, until["found"])
            log.info(
                "predict/%s search: %d candidates per composition and pressure so far; stopping rule met for %d of %d",
                name,
                n,
                len(stopped),
                len(set(group_of.values())),
            )
        for group in sorted(set(group_of.values()) - set(stopped)):
            log.warning(
                "predict/%s %s: the budget of %d candidates ran out before the best was found %d times",
                name,
                group,
                budget,
                until["found"],
            )
        recs = [samples[i] for i in sorted(used)]
        twin_of = dict(found.of)  # the rounds' own: the first of a kind is the one relaxed, whatever ids sort first
        done = [
            d for d in read_jsonl(partial, tolerate_truncated_tail=True) if d["id"] in used and d["id"] not in twin_of
        ]
        done = with_twins(done, twin_of)
        for d in done:
            d["sample_provenance"] = samples[d["id"]]["provenance"]
            d["relax_settings"] = relax_key(rsettings, job["abandon"])
        write_jsonl_atomic(samples_out, recs)
        write_jsonl_atomic(relaxed_out, done)


def predict_relax(job: dict, samples: list[str], shard: int, shards: int, out: str, workers: int = 1):
    """CHGNet relaxation of this shard's candidates, each at its search's pressure, with the energy at
    every optimiser step; resumable, and relaxations of unchanged candidates are kept when a job grows."""
    require(*samples)
    ensure_writable(out)
    recs = shard_of([r for p in samples for r in read_jsonl(p)], shard, shards)
    settings = RelaxSettings.from_section(job["relax"])
    want = {r["id"]: r.get("provenance", "") for r in recs}
    kept = records_current(
        out, want, "sample_provenance", lambda d: d.get("relax_settings") == relax_key(settings, job["abandon"])
    )
    todo = [r for r in recs if r["id"] not in kept]
    if not todo:
        if len(read_jsonl(out)) != len(kept):
            write_jsonl_atomic(out, [kept[r["id"]] for r in recs])
        log.info("%s is current (these candidates, these settings): kept", out)
        return
    items, twin_of = relax_plan(job, todo)
    relax_records(todo, items, settings, out, workers, abandon=job["abandon"])
    new = {d["id"]: d for d in with_twins(read_jsonl(out), twin_of, want)}
    if kept:
        log.info("kept %d relaxations of unchanged candidates", len(kept))
    write_jsonl_atomic(out, [{**kept, **new}[r["id"]] for r in recs])


def _read_job_records(samples: list[str], relaxed: list[str]) -> tuple[list[dict], list[dict]]:
    smp = [r for p in samples for r in read_jsonl(p)]
    rel = [r for p in relaxed for r in read_jsonl(p)]
    known = {r["id"]: r.get("provenance", "") for r in smp}
    foreign = [r["id"] for r in rel if r["id"] not in known or r.get("sample_provenance", "") != known[r["id"]]]
    if foreign:
        raise StageError(f"{relaxed[0]}: relaxations of other samples ({', '.join(foreign[:3])}): delete it to rebuild")
    one_potential(rel, f"{relaxed[0]}: the relaxations of this ranking")
    return smp, rel


def _refined(job: dict, cands, ranked, finals: dict, cache: str, workers: int) -> tuple:
    """The ranking after the best polymorphs were re-relaxed to `rank.refine_fmax` (materials.prediction.refine).
    Each refinement is kept in `cache` under its polymorph's id and a key of its starting structure, pressure and
    settings: an interrupted stage resumes there, and a rerun that only reorders (rank.by, top_n, disagree_mev)
    or keeps a polymorph refines nothing again."""
    rank = job["rank"]
    settings = RelaxSettings.from_section(
        job["relax"], fmax=rank["refine_fmax"], steps=rank["refine_steps"], record_energies=False
    )
    items = keyed(refine_items(ranked, finals, rank["refine_top"]), relax_key(settings))
    want = {tagged for tagged, _, _ in items}
    recs = relax_many(items, cache, settings, workers=workers, progress=False)
    done = {untagged(r["id"]): {**r, "id": untagged(r["id"])} for r in recs if r["id"] in want}
    return apply_refinement(cands, ranked, finals, done, job)


def predict_rank(  # noqa: PLR0913  (the job, its inputs and outputs, its workers)
    cfg: dict,
    name: str,
    job: dict,
    samples: list[str],
    relaxed: list[str],
    out: dict,
    workers: int = 1,
    hull_inputs: dict | None = None,
):
    """Per candidate and per distinct polymorph; CIFs of the `top_n` ranks; every relaxed candidate in one
    extxyz. `out`: the stage's outputs by name (candidates, ranked, cif, extxyz, phase), `refined` and
    `second`, the refinements and the committee's opinions kept across reruns (Layout.predict_refined,
    Layout.predict_second_opinion); `hull_inputs`: the hull's files the stage declared."""
    candidates_out, ranked_out, cif_dir, extxyz_out, phase_out = (
        out[k] for k in ("candidates", "ranked", "cif", "extxyz", "phase")
    )
    require(*samples, *relaxed)
    ensure_writable(candidates_out, ranked_out, extxyz_out, Path(cif_dir) / "probe")
    searches = job_searches(cfg, name, job)
    smp, rel = _read_job_records(samples, relaxed)
    cands, finals = candidate_table(searches, smp, rel, job["symprec"])
    cands, ranked = rank_polymorphs(cands, finals, job["dedupe"], job["rank_unconverged"], job["rank"]["tie_mev"])
    if job["rank"]["refine_top"] and len(ranked):
        cands, ranked = _refined(job, cands, ranked, finals, out["refined"], workers)
    if len(ranked) and (ranked["pressure_gpa"] == 0).any():
        ranked = with_e_hull(cfg, ranked, finals, {r["id"]: record_energy_scale(r) for r in rel}, hull_inputs)
    calc = PotentialWorker(job["relax"]["model"]).calc if len(ranked) else None
    ranked = committee_rerank(job, ranked, finals, name, workers, out.get("second"))  # and the order by rank.by
    ranked = write_symmetrised_cifs(job, ranked, finals, Path(cif_dir), calc)
    write_extxyz(cands, finals, extxyz_out)
    write_csv_atomic(phase_diagram(job, ranked, finals, calc), phase_out)
    for df, out in ((cands, candidates_out), (ranked, ranked_out)):
        write_csv_atomic(df, out)
    for group, g in ranked.groupby("group"):
        best = g.iloc[0]
        log.info(
            "predict/%s %s: %d distinct polymorphs from %d relaxed candidates; best %s (%s at symprec %g, %s at %g), "
            "H = %.4f eV/atom",
            name,
            group,
            len(g),
            int(g["n_candidates"].sum()),
            best["best_id"],
            best["spacegroup_loose"],
            job["symprec"][0],
            best["spacegroup_tight"],
            job["symprec"][1],
            best["enthalpy_per_atom"],
        )


def predict_report(name: str, job: dict, inp: dict, out: dict):
    """The job's report section (`out["report"]`), its pictures in `out["plots"]` (a folder beside it), from the
    stage's inputs by name: candidates, ranked, relaxed (shards), phase, cifs (the symmetrised best polymorphs)."""
    from pymatgen.core import Structure

    from crystalflow_core.evaluation.prediction_report import predict_section

    require(inp["candidates"], inp["ranked"], inp["phase"], *inp["relaxed"])
    ensure_writable(out["report"])
    # enthalpy at every optimiser step (energy where older records have no enthalpy trace; equal at 0 GPa)
    recs = [r for p in inp["relaxed"] for r in read_jsonl(p)]
    traces = {r["id"]: r.get("enthalpy_trace") or r["energy_trace"] for r in recs if r.get("energy_trace")}
    ranked = pd.read_csv(inp["ranked"], dtype={"best_id": str, "cif": str}, keep_default_na=False)
    top = ranked[ranked["cif"] != ""] if len(ranked) else ranked
    drawn = {r["best_id"]: Structure.from_file(str(Path(inp["cifs"]) / r["cif"])) for _, r in top.iterrows()}
    frames = (pd.read_csv(inp["candidates"]), pd.read_csv(inp["ranked"]), pd.read_csv(inp["phase"]))
    text = predict_section(name, job, *frames, traces, Path(out["plots"]), drawn)
    write_text_atomic(out["report"], text)
