"""VASP hand-off: MPRelaxSet folders (INCAR, KPOINTS, POSCAR, POTCAR or POTCAR.spec), a manifest
and a SLURM job-array script.

POTCAR files are written only where a pseudopotential library is configured (PMG_VASP_PSP_DIR);
otherwise POTCAR.spec lists the symbols. High-pressure runs set PSTRESS = 10 x P (kbar) and a
k-point spacing of 0.25 1/A (KSPACING), as in the paper.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from .crystal import safe_names
from .io import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

SLURM_TEMPLATE = """#!/bin/bash
#SBATCH --job-name=crystalflow-vasp
#SBATCH --array=0-{last}
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=32
#SBATCH --time=24:00:00
# Submit from this folder (cd into it, then sbatch submit_slurm.sh): folders.txt lists one job folder
# per line, relative to it, so the results can be moved. Edit the partition/account and the VASP
# module for your cluster.
#module load vasp
base="${{SLURM_SUBMIT_DIR:-$(pwd)}}"
dir=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$base/folders.txt")
[ -n "$dir" ] || {{ echo "no folder for array task $SLURM_ARRAY_TASK_ID in $base/folders.txt" >&2; exit 1; }}
cd "$base/$dir" && srun vasp_std > vasp.out 2>&1
"""


def _has_psp() -> bool:
    from pymatgen.core import SETTINGS

    return bool(os.environ.get("PMG_VASP_PSP_DIR") or SETTINGS.get("PMG_VASP_PSP_DIR"))


def vasp_set(structure, pressure_gpa: float = 0.0):
    from pymatgen.io.vasp.sets import MPRelaxSet

    incar = {"NSW": 150}
    kwargs = {}
    if pressure_gpa:
        incar.update({"PSTRESS": 10.0 * pressure_gpa, "KSPACING": 0.25})
        kwargs["user_kpoints_settings"] = None
    return MPRelaxSet(structure, user_incar_settings=incar, **kwargs)


def emit_vasp_inputs(items, outdir, manifest, pressure: float = 0.0, extra: dict | None = None) -> int:
    """Write one folder per (id, Structure); returns the number written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    psp = _has_psp()
    rows = []
    names = safe_names(sid for sid, _ in items)  # id -> folder: safe characters, unique, length-capped
    for sid, s in items:
        folder = outdir / names[sid]
        vs = vasp_set(s, pressure)
        vs.write_input(str(folder), potcar_spec=not psp)
        if pressure:
            (folder / "KPOINTS").unlink(missing_ok=True)  # KSPACING in INCAR replaces KPOINTS
        rows.append(
            {
                "id": sid,
                "folder": names[sid],
                "formula": s.composition.reduced_formula,
                "nsites": len(s),
                "pressure_gpa": pressure,
                "potcar": "POTCAR" if psp else "POTCAR.spec",
                **(extra or {}).get(sid, {}),
            }
        )
    df = pd.DataFrame(rows, columns=["id", "folder", "formula", "nsites", "pressure_gpa", "potcar", "e_hull"])
    with atomic_path(manifest) as tmp:  # folders relative to the manifest's folder
        df.to_csv(tmp, index=False)
    write_text_atomic(outdir / "folders.txt", "".join(f"{r['folder']}\n" for r in rows))
    write_text_atomic(outdir / "submit_slurm.sh", SLURM_TEMPLATE.format(last=max(len(rows) - 1, 0)))
    log.info("wrote %d VASP folders under %s (%s)", len(rows), outdir, "POTCAR" if psp else "POTCAR.spec")
    return len(rows)


def select_for_dft(st: pd.DataFrame, max_e_hull: float, max_structures: int) -> pd.DataFrame:
    """The converged relaxed samples below `max_e_hull`, most stable first, at most `max_structures`."""
    ok = st[st["converged"].astype(bool) & (st["e_hull"] < max_e_hull)]
    return ok.sort_values("e_hull").head(max_structures)
