"""Stages of a prediction job after the ranking: VASP inputs for the best polymorphs and their DFT read-back
(DFT enthalpy and rank beside the potential's)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.io import (
    write_csv_atomic,
)
from crystalflow_core.stages.common import (
    ensure_writable,
    require,
)

log = logging.getLogger("crystalflow")


def predict_dft(job: dict, ranked_csv: str, cif_dir: str, outdir: str, manifest: str):
    """VASP folders (MPRelaxSet, PSTRESS at the target pressure) for the `top_n` polymorphs of each
    composition and pressure, from their symmetrised CIFs (primitive cells)."""
    from pymatgen.core import Structure

    from crystalflow_core.materials.dft_inputs import emit_vasp_inputs

    require(ranked_csv, cif_dir)
    ensure_writable(manifest)
    ranked = pd.read_csv(ranked_csv, dtype={"best_id": str, "cif": str}, keep_default_na=False)
    top = ranked[ranked["rank"].astype(int) <= job["top_n"]]
    tol = job["symprec"][1]
    read = lambda name: Structure.from_file(str(Path(cif_dir) / name)).get_primitive_structure(tolerance=tol)  # noqa: E731
    items = [(r["best_id"], read(r["cif"])) for _, r in top.iterrows()]
    pressures = {r["best_id"]: float(r["pressure_gpa"]) for _, r in top.iterrows()}
    emit_vasp_inputs(items, outdir, manifest, pressure=pressures)


def predict_dft_results(manifest: str, ranked_csv: str, out: str, running_minutes: float):
    """dft.csv: per VASP folder its status (converged, unconverged, crashed, running, not_run, foreign),
    the DFT energy and enthalpy per atom (PSTRESS from the job) and the rank by DFT enthalpy among the
    converged ones of its composition and pressure, beside the CHGNet rank."""
    from crystalflow_core.materials.dft_outputs import read_job
    from crystalflow_core.materials.relax import enthalpy_per_atom

    require(manifest, ranked_csv)
    ensure_writable(out)
    base = Path(manifest).parent
    ranked = pd.read_csv(ranked_csv, dtype={"best_id": str}).set_index("best_id")
    rows = []
    for _, m in pd.read_csv(manifest, dtype={"id": str, "folder": str, "composition": str}).iterrows():
        rec, entry = read_job(base / m["folder"], running_minutes, expect=m.to_dict())
        row = {
            "id": m["id"],
            "group": ranked.loc[m["id"], "group"] if m["id"] in ranked.index else "",
            "chgnet_rank": int(ranked.loc[m["id"], "rank"]) if m["id"] in ranked.index else -1,
            "status": rec["status"],
            "reason": rec.get("reason", ""),
            "ionic_steps": rec.get("ionic_steps", 0),
            "energy_per_atom": math.nan,
            "enthalpy_per_atom": math.nan,
        }
        if entry is not None and rec["status"] in ("converged", "unconverged"):
            s = entry.structure
            n = len(s)
            row["energy_per_atom"] = rec["energy"] / n
            p_gpa = rec.get("pstress_kbar", 0.0) / 10.0
            row["enthalpy_per_atom"] = enthalpy_per_atom(rec["energy"], s.volume, p_gpa, n)
        rows.append(row)
    df = pd.DataFrame(
        rows,
        columns=[
            "id",
            "group",
            "chgnet_rank",
            "status",
            "reason",
            "ionic_steps",
            "energy_per_atom",
            "enthalpy_per_atom",
        ],
    )
    df["dft_rank"] = np.nan
    conv = df[df["status"] == "converged"]
    if len(conv):
        df.loc[conv.index, "dft_rank"] = conv.groupby("group")["enthalpy_per_atom"].rank(method="first")
    write_csv_atomic(df, out)
    log.info("DFT read back: %s", ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items()) or "no jobs")
