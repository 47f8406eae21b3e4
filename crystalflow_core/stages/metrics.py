"""Stages: test-set fingerprints, the CSP and DNG metric rows, and the collected tables. The numbers
come from ``crystalflow_core.evaluation`` (sample_metrics, stability, committee, dft_summary); this module
reads and writes."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from crystalflow_core.config import committee_second
from crystalflow_core.crystals.data import cache_structures, load_cache
from crystalflow_core.evaluation.dft_summary import dft_summary
from crystalflow_core.evaluation.metrics import fingerprints_all
from crystalflow_core.evaluation.sample_metrics import (
    MetricSettings,
    evaluate_csp,
    evaluate_dng,
    index_csp_records,
    wdist_reference_count,
)
from crystalflow_core.evaluation.stability import CONDITION_COLUMNS, condition_rows, stability_summary
from crystalflow_core.io import atomic_path, read_jsonl, write_csv_atomic
from crystalflow_core.materials.transport import transport_summary
from crystalflow_core.points import parse_point
from crystalflow_core.stages.common import ensure_writable, require
from crystalflow_core.stages.sample import check_samples_current

log = logging.getLogger("crystalflow")


def _write_csv(rows: list[dict], out: str, columns: list[str] | None = None) -> None:
    write_csv_atomic(pd.DataFrame(rows, columns=columns), out)


def test_fingerprints(test_pt: str, out: str, limit: int | None, workers: int, protocol: str):
    """Coverage fingerprints of the reference (test) structures, on the cells the protocol's authors use:
    crystalflow (the authors' scripts) the cells of the CIFs, diffcsp the Niggli-reduced cells (its
    reference structures are built from its own preprocessed, reduced tensors)."""
    require(test_pt)
    ensure_writable(out)
    cache = load_cache(test_pt)
    n = len(cache["ids"]) if not limit else min(limit, len(cache["ids"]))
    cell = "cif" if protocol == "crystalflow" else "niggli"
    sfp, cfp, ok = fingerprints_all(cache_structures(cache, range(n), cell=cell), workers, progress=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, struct=sfp, comp=cfp, ok=ok)


def csp_metrics(
    cfg: dict,
    run_name: str,
    run: dict,
    samples: str,
    test_pt: str,
    steps: int | str,
    out: str,
    workers: int = 0,
    relaxed: list[str] = (),
    ckpt: str | None = None,
):
    """Match rate / RMSE for every candidate count k; with `relaxed` (pressure-conditioned runs) also the
    CHGNet stress of the relaxed candidates against their target pressure."""
    require(samples, test_pt, *relaxed)
    ensure_writable(out)
    cache = load_cache(test_pt)
    recs = read_jsonl(samples)
    check_samples_current(recs, samples, ckpt, run, run_name)
    limit = run["sample"]["test_limit"]
    n_targets = min(limit, len(cache["ids"])) if limit else len(cache["ids"])  # every target asked for
    by_target = index_csp_records(recs, cache["ids"][:n_targets], max(run["sample"]["k"]), samples)
    gts = cache_structures(cache, range(n_targets))
    rel = [r for p in relaxed for r in read_jsonl(p)] if relaxed else None
    rows = evaluate_csp(gts, by_target, run["sample"]["k"], MetricSettings.from_config(cfg["metrics"]), workers, rel)
    head = {"run": run_name, "dataset": run["dataset"], "task": "csp", "steps": parse_point(steps)[1]}
    _write_csv([{**head, **r} for r in rows], out)


def dng_metrics(  # noqa: PLR0913  (every input of the DNG metric stage, each optional by run)
    cfg: dict,
    run_name: str,
    run: dict,
    samples: str,
    test_pt: str,
    test_fp: str,
    stab_csv: str | None,
    steps: int | str,
    out: str,
    workers: int = 0,
    ckpt: str | None = None,
    conditions_out: str | None = None,
    transport_csv: str | None = None,
    dft_csv: str | None = None,
):
    """The summary row (validity, coverage, Wasserstein, stability; with `transport_csv` the conductor
    candidates, with `dft_csv` the DFT rows) to `out`; for conditional runs the per-condition-value rows
    (MAE/RMSE before and after relaxation) to `conditions_out`."""
    require(samples, test_pt, test_fp, stab_csv, transport_csv, dft_csv)
    ensure_writable(out, *([conditions_out] if conditions_out else []))
    settings = MetricSettings.from_config(cfg["metrics"])
    recs = read_jsonl(samples)
    check_samples_current(recs, samples, ckpt, run, run_name)
    cache = load_cache(test_pt)
    test_structs = cache_structures(cache, range(wdist_reference_count(len(cache["ids"]), settings)))
    with np.load(test_fp) as fp:
        ref = {k: fp[k] for k in ("struct", "comp", "ok")}
    head = {"run": run_name, "dataset": run["dataset"], "task": "dng", "steps": parse_point(steps)[1]}
    row = {**head, **evaluate_dng(recs, ref, test_structs, settings, workers)}
    conditions = []
    if stab_csv:
        st = pd.read_csv(stab_csv)
        pressure_run = bool(run["relax"]["pressure"] or "pressure" in run["conditions"])
        row.update(
            stability_summary(st, pressure_run, cfg["metrics"]["metastable_e_hull"], committee_second(run["relax"]))
        )
        if run["conditions"]:
            conditions = [{**head, **t} for t in condition_rows(st, run["conditions"][0])]
    if transport_csv:
        row.update(transport_summary(pd.read_csv(transport_csv, dtype={"id": str})))
    if dft_csv:
        row.update(dft_summary(pd.read_csv(dft_csv, dtype={"id": str}), cfg["metrics"]["metastable_e_hull"]))
    _write_csv([row], out)
    if conditions_out:
        _write_csv(conditions, conditions_out, CONDITION_COLUMNS)


def collect(inputs: list[str], out: str):
    frames = [pd.read_csv(p) for p in inputs]
    frames = [f for f in frames if len(f)] or frames[:1]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_csv_atomic(df, out)
