"""Stages of the ion-transport screen (computations in ``crystalflow_core.materials.transport``):

transport_screen  relaxed samples + stability.csv -> transport/screen.csv (migration graph per ion)
transport_md      screen.csv -> transport/md_shard{i}.jsonl + trajectories/*.extxyz (CHGNet MD, resumable)
transport_table   screen.csv + MD shards -> transport.csv (D, sigma per T, Arrhenius E_a and sigma(300 K))
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from functools import partial as partial_fn
from pathlib import Path

import pandas as pd

from crystalflow_core.crystals.crystal import safe_names
from crystalflow_core.evaluation.stability import check_relaxations_belong
from crystalflow_core.evaluation.validity import invalid_reason
from crystalflow_core.io import (
    append_jsonl,
    content_key,
    read_jsonl,
    resume_jsonl,
    write_csv_atomic,
    write_jsonl_atomic,
)
from crystalflow_core.jobs import shard_of
from crystalflow_core.materials.md import MDSettings, md_many, supercell_for
from crystalflow_core.materials.relax import finished, relaxed_structure
from crystalflow_core.materials.transport import (
    SCREEN_COLUMNS,
    ScreenSettings,
    md_candidates,
    screen_many,
    screen_plan,
    transport_rows,
)
from crystalflow_core.stages.common import ensure_writable, require, resumable

log = logging.getLogger("crystalflow")


def _finished_structures(recs: list[dict]) -> dict:
    """id -> relaxed Structure of every relaxation record that finished without error."""
    return {r["id"]: relaxed_structure(r) for r in recs if finished(r)}


def _relaxed_structures(relaxed: list[str]) -> dict:
    """The same from the relaxation shard files."""
    return _finished_structures([r for p in relaxed for r in read_jsonl(p)])


def _settings_key(*parts) -> str:
    return content_key(parts)


def screen_key(settings: ScreenSettings, structures: dict, stab_csv: str, protocol: str) -> str:
    """What a screen's finished rows depend on: its settings, the relaxed ids, the stability table and the
    validity protocol."""
    stab_sha = hashlib.sha256(Path(stab_csv).read_bytes()).hexdigest()
    return _settings_key(asdict(settings), sorted(structures), stab_sha, protocol)


def transport_screen(
    run: dict, samples: str, relaxed: list[str], stab_csv: str, out: str, protocol: str, workers: int = 1
):
    """Migration graph and percolation dimensionality of every relaxed sample that holds a mobile ion,
    is structurally and compositionally valid (`protocol`, as the DNG metrics) and passes the E_hull
    cut; the others with the ion get a row saying why they were not screened (status `invalid` or
    `above_hull_cut`). Resumable: rows are appended to `out`.partial as chunks finish."""
    require(samples, *relaxed, stab_csv)
    ensure_writable(out)
    settings = ScreenSettings.from_section(run["transport"])
    samples_by_id = {r["id"]: r for r in read_jsonl(samples)}
    rel_recs = [r for p in relaxed for r in read_jsonl(p)]
    check_relaxations_belong(samples_by_id, rel_recs, samples)
    structures = _finished_structures(rel_recs)
    stab = pd.read_csv(stab_csv, dtype={"id": str}).set_index("id")
    with resumable(out, screen_key(settings, structures, stab_csv, protocol)) as partial:
        done = {(r["id"], r["ion"]) for r in resume_jsonl(partial)}
        why_invalid = partial_fn(invalid_reason, protocol=protocol)
        jobs, skipped, n_without = screen_plan(structures, stab, settings, why_invalid, done)
        for row in skipped:
            append_jsonl(partial, row)
        log.info(
            "%d relaxed structures: %d without %s, %d to screen (%d done before)",
            len(structures),
            n_without,
            "/".join(settings.ions),
            len(jobs),
            len(done),
        )
        screen_many(jobs, settings, partial, workers)
        rows = read_jsonl(partial) if partial.exists() else []
        df = pd.DataFrame(rows, columns=SCREEN_COLUMNS)
        write_csv_atomic(df, out)
    n_invalid = int((df["status"] == "invalid").sum())
    if n_invalid:
        log.info("%d rows not screened: structurally or compositionally invalid (%s protocol)", n_invalid, protocol)
    n_fail = int((df["status"] == "graph_failed").sum())
    if n_fail:
        log.warning("%d migration graphs could not be built (reasons in %s)", n_fail, out)


def _md_jobs(run: dict, screen_csv: str, relaxed: list[str], traj_dir: str) -> list[tuple]:
    md = MDSettings.from_section(run["transport"]["md"], run["relax"]["model"])
    cands = md_candidates(pd.read_csv(screen_csv, dtype={"id": str}), md.max_structures)
    structures = _relaxed_structures(relaxed)
    names = safe_names(list(cands["id"]))
    jobs = []
    for _, c in cands.iterrows():
        sc, _ = supercell_for(structures[c["id"]], md.min_atoms)
        for t in md.temperatures:
            key = f"{c['id']}|{c['ion']}|{t:g}"
            jobs.append(
                (key, sc, c["ion"], float(t), str(Path(traj_dir) / f"{names[c['id']]}_{c['ion']}_{t:g}K.extxyz"))
            )
    return jobs


def transport_md(
    run: dict, screen_csv: str, relaxed: list[str], shard: int, shards: int, out: str, traj_dir: str, workers: int = 1
):
    """CHGNet NVT MD of this shard's share of (candidate, temperature) jobs; each finished trajectory is
    recorded in `out`.partial at once, so a killed job resumes without running it again."""
    require(screen_csv, *relaxed)
    ensure_writable(out, Path(traj_dir) / "probe")
    md = MDSettings.from_section(run["transport"]["md"], run["relax"]["model"])
    jobs = shard_of(_md_jobs(run, screen_csv, relaxed, traj_dir), shard, shards, key=lambda job: job[0])
    Path(traj_dir).mkdir(parents=True, exist_ok=True)
    key = _settings_key(asdict(md), [j[0] for j in jobs], [j[1].as_dict() for j in jobs])
    with resumable(out, key) as partial:
        recs = md_many(jobs, partial, md, workers=workers)
        failed = [r for r in recs if not r["ok"]]
        for r in failed:
            log.warning("MD %s failed: %s", r["key"], r["error"])
        log.info("%d MD runs, %d failed", len(recs), len(failed))
        write_jsonl_atomic(out, recs)


def transport_table(run: dict, screen_csv: str, md_shards: list[str], relaxed: list[str], out: str):
    """transport.csv: the screen rows with D and sigma (and their errors) per temperature, the
    Arrhenius activation energy and sigma(300 K) for >= 3 temperatures, and `conductor_candidate`."""
    require(screen_csv, *md_shards, *relaxed)
    ensure_writable(out)
    t = run["transport"]
    df = pd.read_csv(screen_csv, dtype={"id": str})
    md = [r for p in md_shards for r in read_jsonl(p)]
    out_df = transport_rows(df, md, _relaxed_structures(relaxed) if md else {}, t["md"]["picoseconds"])
    write_csv_atomic(out_df, out)
    log.info(
        "%d screened, %d conductor candidates (E_hull <= %s, new, unique, percolating at %s A)",
        int((out_df["status"] == "screened").sum()),
        int(out_df["conductor_candidate"].sum()),
        t["max_e_hull"],
        t["hop_cutoff"],
    )
