"""Stages: VASP input folders for the stable relaxed samples, and their results read back."""

from __future__ import annotations

import logging

import pandas as pd

from crystalflow_core.io import read_jsonl, write_csv_atomic
from crystalflow_core.materials.dft_inputs import emit_vasp_inputs, select_for_dft
from crystalflow_core.materials.relax import finished, relaxed_structure
from crystalflow_core.stages.common import ensure_writable, require

log = logging.getLogger("crystalflow")


def dft(run: dict, relaxed: list[str], stab_csv: str, outdir: str, manifest: str):
    require(stab_csv, *relaxed)
    ensure_writable(manifest)
    rel = {r["id"]: r for p in relaxed for r in read_jsonl(p)}
    sel = select_for_dft(pd.read_csv(stab_csv), run["dft"]["max_e_hull"], run["dft"]["max_structures"])
    items = [(sid, relaxed_structure(rel[sid])) for sid in sel["id"] if finished(rel.get(sid, {}))]
    emit_vasp_inputs(
        items,
        outdir,
        manifest,
        pressure=run["relax"]["pressure"],
        extra={sid: {"e_hull": float(e)} for sid, e in zip(sel["id"], sel["e_hull"])},
    )


def dft_results(
    cfg: dict,
    run: dict,
    manifest: str,
    relaxed: list[str],
    stab_csv: str,
    novelty_pts: list[str],
    out: str,
    energies: str | None = None,
    hull_inputs: dict | None = None,
):
    """dft_stability.csv from the VASP folders listed in `manifest` or, with `energies` (extxyz/CSV),
    from energies computed elsewhere (ids of the relaxed samples; without a structure the CHGNet-relaxed
    one is used)."""
    from pathlib import Path

    from crystalflow_core.crystals.data import cache_structures, load_cache
    from crystalflow_core.errors import StageError
    from crystalflow_core.evaluation.dft_summary import dft_stability_table
    from crystalflow_core.materials.dft_outputs import read_energies, read_job, supplied_jobs
    from crystalflow_core.materials.hull import open_hull

    require(manifest, stab_csv, *relaxed, *novelty_pts, *([energies] if energies else []))
    ensure_writable(out)
    d = run["dft"]
    rel = {r["id"]: relaxed_structure(r) for p in relaxed for r in read_jsonl(p) if finished(r)}
    jobs = []
    if energies:
        try:
            supplied = read_energies(energies)
        except ValueError as exc:
            raise StageError(str(exc)) from exc
        unknown = sorted(set(supplied) - set(rel))
        if unknown:
            raise StageError(f"{energies}: ids not among the relaxed samples of this run: {', '.join(unknown[:5])}")
        jobs = supplied_jobs(supplied, rel, Path(energies).name, d["energies_correction"])
    else:
        base = Path(manifest).parent
        rows = pd.read_csv(manifest, dtype={"id": str, "folder": str, "composition": str, "structure_sha256": str})
        for _, m in rows.iterrows():  # outputs are checked against what the manifest says the folder holds
            rec, entry = read_job(base / m["folder"], d["running_minutes"], expect=m.to_dict())
            if rec["status"] == "foreign":
                log.warning("%s: %s", base / m["folder"], rec["reason"])
            jobs.append({"id": m["id"], "rec": rec, "entry": entry, "structure": None})
    refs, hull = open_hull(cfg, hull_inputs)  # the files the stage declared (hull_files)
    novelty = [s for p in novelty_pts for s in cache_structures(load_cache(p))]
    df = dft_stability_table(jobs, pd.read_csv(stab_csv, dtype={"id": str}), rel, refs, hull, novelty)
    write_csv_atomic(df, out)
    log.info("DFT results: %s", ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items()) or "no jobs")
