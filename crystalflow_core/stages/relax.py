"""Stages: CHGNet relaxation shards (resumable) and the stability table (formation energy, E_hull,
unique, new) computed by ``crystalflow_core.evaluation.stability.stability_table``."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from crystalflow_core.crystals.data import cache_structures, load_cache
from crystalflow_core.evaluation.committee import committee_columns
from crystalflow_core.evaluation.stability import check_relaxations_belong, stability_table
from crystalflow_core.generative.sampling import record_to_structure
from crystalflow_core.io import content_key, read_jsonl, write_csv_atomic, write_jsonl_atomic
from crystalflow_core.jobs import shard_of
from crystalflow_core.materials.hull import open_hull
from crystalflow_core.materials.relax import RelaxSettings, finished, relax_many, relaxed_structure
from crystalflow_core.materials.second_opinion import second_opinion
from crystalflow_core.stages.common import ensure_writable, require, resumable

log = logging.getLogger("crystalflow")


def relax(run: dict, samples: str, shard: int, shards: int, out: str, workers: int = 1):
    r = run["relax"]
    require(samples)
    ensure_writable(out)
    recs = read_jsonl(samples)
    if r["limit"]:
        recs = recs[: r["limit"]]
    recs = shard_of(recs, shard, shards)
    per_item = "pressure" in run["conditions"]  # pressure-conditioned run: relax at each sample's target
    items = [(rec["id"], record_to_structure(rec), rec["condition"]["pressure"] if per_item else None) for rec in recs]
    relax_records(recs, items, RelaxSettings.from_section(r), out, workers)


def relax_key(settings: RelaxSettings, abandon: dict | None = None) -> str:
    """Short key of the relaxation settings a record was made with (and a prediction's `abandon` rule)."""
    return content_key([asdict(settings), abandon] if abandon else asdict(settings), 12)


def relax_records(  # noqa: PLR0913
    recs: list[dict], items: list[tuple], settings: RelaxSettings, out: str, workers: int, abandon: dict | None = None
) -> None:
    """Relax (id, Structure, pressure[, group]) `items` made from the sample records `recs` into `out`, resumably:
    finished structures live in `out`.partial under the key of these samples and settings (a partial of
    other samples or settings is started again); each record names the provenance of its sample. `abandon`:
    a prediction's hopeless candidates stop early (relax_many)."""
    prov_of = {rec["id"]: rec.get("provenance", "") for rec in recs}
    key = content_key([sorted(prov_of.items()), relax_key(settings, abandon)])
    with resumable(out, key) as partial:
        t0 = time.time()
        done = relax_many(items, partial, settings, workers=workers, abandon=abandon)
        n_fail = sum(1 for d in done if d.get("error"))
        log.info("relaxed %d structures in %.1f s (%d failed)", len(done), time.time() - t0, n_fail)
        if done and n_fail == len(done):
            log.warning("every structure of this shard failed to relax")
        for d in done:
            d["sample_provenance"] = prov_of.get(d["id"], "")
            d["relax_settings"] = relax_key(settings, abandon)
        write_jsonl_atomic(out, done)


def stability(  # noqa: PLR0913  (the run's inputs, its output and its workers)
    cfg: dict,
    run: dict,
    samples: str,
    relaxed: list[str],
    novelty_pts: list[str],
    out: str,
    workers: int,
    hull_inputs: dict | None = None,
    second_cache: str | None = None,
):
    """Per-structure table: formation energies (before/after relaxation), E_hull, unique, new; with a
    committee (`relax.committee`), the second potential's E_hull beside it, the spread and the flags (its
    opinions kept in `second_cache` across reruns, second_opinion)."""
    require(samples, *relaxed, *novelty_pts)
    ensure_writable(out)
    samples_by_id = {r["id"]: r for r in read_jsonl(samples)}
    rel = [r for p in relaxed for r in read_jsonl(p)]
    check_relaxations_belong(samples_by_id, rel, samples)
    refs, hull = open_hull(cfg, hull_inputs)  # the files the stage declared (hull_files)
    novelty = [s for p in novelty_pts for s in cache_structures(load_cache(p))]
    df = stability_table(samples_by_id, rel, refs, hull, novelty)
    committee = run["relax"]["committee"]
    if committee:
        items = [(d["id"], relaxed_structure(d), d.get("pressure_gpa") or 0.0) for d in rel if finished(d)]
        second = second_opinion(items, run["relax"], committee[1], workers, second_cache)
        df = committee_columns(df, committee[1], second, refs, hull, run["relax"]["committee_threshold"])
        log.info(
            "committee %s: %d of %d structures with both E_hull, %d disagree by more than %g eV/atom",
            "+".join(committee),
            int(df[f"e_hull_{committee[1]}"].notna().sum()),
            len(df),
            int(df["committee_disagrees"].sum()),
            run["relax"]["committee_threshold"],
        )
    write_csv_atomic(df, out)
