"""Stages of the ion-transport screen (computations in ``crystalflow_core.materials.transport``):

transport_screen  relaxed samples + stability.csv -> transport/screen.csv (migration graph per ion)
transport_md      screen.csv -> transport/md_shard{i}.jsonl + trajectories/*.extxyz (CHGNet MD, resumable)
transport_table   screen.csv + MD shards -> transport.csv (D, sigma per T, Arrhenius E_a and sigma(300 K))
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from crystalflow_core.crystals.crystal import safe_names, structure_from
from crystalflow_core.evaluation.summaries import check_relaxations_belong
from crystalflow_core.io import append_jsonl, atomic_path, read_jsonl, resume_jsonl, write_jsonl_atomic
from crystalflow_core.materials.transport import (
    MDSettings,
    ScreenSettings,
    ScreenWorker,
    arrhenius,
    md_many,
    supercell_for,
)
from crystalflow_core.parallel import fork_map
from crystalflow_core.stages.common import ensure_writable, require, resumable

log = logging.getLogger("crystalflow")

SCREEN_COLUMNS = [
    "id",
    "formula",
    "ion",
    "e_hull",
    "unique",
    "new",
    "status",
    "reason",
    "n_ion_sites",
    "n_hops",
    "n_unique_hops",
    "shortest_hop",
    "longest_hop",
    "hop_1d",
    "hop_2d",
    "hop_3d",
    "percolation_dim",
    "hop_cutoff",
    "graph_s",
]


def _finished_structures(recs: list[dict]) -> dict:
    """id -> relaxed Structure of every relaxation record that finished without error."""
    return {r["id"]: structure_from(r["final"]) for r in recs if r.get("final") and not r.get("error")}


def _relaxed_structures(relaxed: list[str]) -> dict:
    """The same from the relaxation shard files."""
    return _finished_structures([r for p in relaxed for r in read_jsonl(p)])


def _settings_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def screen_key(settings: ScreenSettings, structures: dict, stab_csv: str, protocol: str) -> str:
    """What a screen's finished rows depend on: its settings, the relaxed ids, the stability table and the
    validity protocol."""
    stab_sha = hashlib.sha256(Path(stab_csv).read_bytes()).hexdigest()
    return _settings_key(asdict(settings), sorted(structures), stab_sha, protocol)


def invalid_reason(structure, protocol: str) -> str:
    """Why a relaxed structure is not worth screening: "" when it is structurally and compositionally
    valid under the run's metric protocol (the DNG validity), else which test it fails."""
    from crystalflow_core.evaluation.metrics import composition_valid, structure_valid

    why = [
        w
        for w, ok in (
            ("structurally", structure_valid(structure, protocol=protocol)),
            ("compositionally", composition_valid(structure, protocol=protocol)),
        )
        if not ok
    ]
    return f"{' and '.join(why)} invalid ({protocol} protocol)" if why else ""


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
        jobs, n_without = [], 0
        for sid, s in structures.items():
            ions = [ion for ion in settings.ions if ion in {el.symbol for el in s.composition}]
            if not ions:
                n_without += 1
                continue
            st = stab.loc[sid] if sid in stab.index else None
            head = {
                "id": sid,
                "formula": s.composition.reduced_formula,
                "e_hull": float(st["e_hull"]) if st is not None else math.nan,
                "unique": bool(st["unique"]) if st is not None else False,
                "new": bool(st["new"]) if st is not None else False,
            }
            todo = [ion for ion in ions if (sid, ion) not in done]
            if not todo:
                continue
            invalid = invalid_reason(s, protocol)
            if invalid:
                for ion in todo:
                    append_jsonl(partial, {**head, "ion": ion, "status": "invalid", "reason": invalid})
                continue
            if not np.isfinite(head["e_hull"]) or head["e_hull"] > settings.max_e_hull:
                why = (
                    "no E_hull (see stability.csv)"
                    if not np.isfinite(head["e_hull"])
                    else f"E_hull {head['e_hull']:.3f} > {settings.max_e_hull} eV/atom"
                )
                for ion in todo:
                    append_jsonl(partial, {**head, "ion": ion, "status": "above_hull_cut", "reason": why})
                continue
            jobs.append((head, s, todo))
        log.info(
            "%d relaxed structures: %d without %s, %d to screen (%d done before)",
            len(structures),
            n_without,
            "/".join(settings.ions),
            len(jobs),
            len(done),
        )
        chunk = max(1, 4 * max(1, workers))
        with tqdm(total=len(jobs), desc="migration graphs", mininterval=5) as bar:
            for i in range(0, len(jobs), chunk):
                part = jobs[i : i + chunk]
                rows = fork_map(lambda: ScreenWorker(settings), [(h["id"], s, ions) for h, s, ions in part], workers)
                for (head, _, _), per_ion in zip(part, rows):
                    for row in per_ion:
                        append_jsonl(partial, {**head, **row})
                bar.update(len(part))
        rows = read_jsonl(partial) if partial.exists() else []
        df = pd.DataFrame(rows, columns=SCREEN_COLUMNS)
        with atomic_path(out) as tmp:
            df.to_csv(tmp, index=False)
    n_invalid = int((df["status"] == "invalid").sum())
    if n_invalid:
        log.info("%d rows not screened: structurally or compositionally invalid (%s protocol)", n_invalid, protocol)
    n_fail = int((df["status"] == "graph_failed").sum())
    if n_fail:
        log.warning("%d migration graphs could not be built (reasons in %s)", n_fail, out)


def md_candidates(screen: pd.DataFrame, n: int) -> pd.DataFrame:
    """The best `n` screened rows: new and unique ones first, then the highest percolation
    dimensionality, the shortest hop needed to percolate in 1 D, the lowest E_hull."""
    ok = screen[screen["status"] == "screened"].copy()
    ok["_h1"] = ok["hop_1d"].fillna(np.inf)
    ok["_sun"] = ok["new"].astype(bool) & ok["unique"].astype(bool)
    ok = ok.sort_values(["_sun", "percolation_dim", "_h1", "e_hull", "id"], ascending=[False, False, True, True, True])
    return ok.drop(columns=["_h1", "_sun"]).head(n)


def _md_jobs(run: dict, screen_csv: str, relaxed: list[str], traj_dir: str) -> list[tuple]:
    md = MDSettings.from_section(run["transport"]["md"])
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
    md = MDSettings.from_section(run["transport"]["md"])
    jobs = _md_jobs(run, screen_csv, relaxed, traj_dir)[shard::shards]
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
    structures = _relaxed_structures(relaxed) if md else {}
    by = {}
    for r in md:
        sid, ion, _ = r["key"].rsplit("|", 2)
        by.setdefault((sid, ion), []).append(r)
    extra = []
    for _, row in df.iterrows():
        runs = sorted(by.get((row["id"], row["ion"]), []), key=lambda r: r["temperature"])
        e = {"md_runs": len(runs), "md_failed": sum(1 for r in runs if not r["ok"])}
        if runs:  # the simulated time behind D: sub-picosecond runs measure ballistic motion, not diffusion
            e["md_ps"] = t["md"]["picoseconds"]
        for r in runs:
            tk = f"{r['temperature']:g}K"
            for col in ("D", "D_err", "sigma", "sigma_err"):
                e[f"{col}_{tk}"] = r.get(col, math.nan) if r["ok"] else math.nan
            if not r["ok"]:
                e[f"md_error_{tk}"] = r["error"]
        good = [r for r in runs if r["ok"]]
        if good:
            e.update(
                arrhenius([r["temperature"] for r in good], [r["D"] for r in good], structures[row["id"]], row["ion"])
            )
        extra.append(e)
    out_df = pd.concat([df, pd.DataFrame(extra, index=df.index)], axis=1) if len(df) else df
    for col in ("E_a", "E_a_err", "sigma_300K"):
        if col not in out_df:
            out_df[col] = math.nan
    out_df["conductor_candidate"] = (
        (out_df["status"] == "screened")
        & out_df["new"].astype(bool)
        & out_df["unique"].astype(bool)
        & (out_df["percolation_dim"].fillna(0) >= 1)
    )
    with atomic_path(out) as tmp:
        out_df.to_csv(tmp, index=False)
    log.info(
        "%d screened, %d conductor candidates (E_hull <= %s, new, unique, percolating at %s A)",
        int((out_df["status"] == "screened").sum()),
        int(out_df["conductor_candidate"].sum()),
        t["max_e_hull"],
        t["hop_cutoff"],
    )


def transport_summary(transport_csv: str) -> dict:
    """The DNG metric columns of the transport stage."""
    df = pd.read_csv(transport_csv, dtype={"id": str})
    cand = df[df["conductor_candidate"].astype(bool)] if len(df) else df
    return {
        "n_transport_invalid": int(df[df["status"] == "invalid"]["id"].nunique()) if len(df) else 0,
        "n_transport_screened": int((df["status"] == "screened").sum()) if len(df) else 0,
        "n_conductor_candidates": int(cand["id"].nunique()) if len(df) else 0,
        "best_sigma_300K": float(df["sigma_300K"].max()) if len(df) and df["sigma_300K"].notna().any() else math.nan,
    }
