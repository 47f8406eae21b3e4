"""Stage: VASP input folders for the stable relaxed samples."""

from __future__ import annotations

import pandas as pd

from ..crystal import structure_from
from ..dft import emit_vasp_inputs, select_for_dft
from ..io import read_jsonl
from .common import ensure_writable, require


def dft(run: dict, relaxed: list[str], stab_csv: str, outdir: str, manifest: str):
    require(stab_csv, *relaxed)
    ensure_writable(manifest)
    rel = {r["id"]: r for p in relaxed for r in read_jsonl(p)}
    sel = select_for_dft(pd.read_csv(stab_csv), run["dft"]["max_e_hull"], run["dft"]["max_structures"])
    items = [(sid, structure_from(rel[sid]["final"])) for sid in sel["id"] if rel.get(sid, {}).get("final")]
    emit_vasp_inputs(
        items,
        outdir,
        manifest,
        pressure=run["relax"]["pressure"],
        extra={sid: {"e_hull": float(e)} for sid, e in zip(sel["id"], sel["e_hull"])},
    )
