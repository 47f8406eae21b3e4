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

from .io import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

SLURM_TEMPLATE = """#!/bin/bash
#SBATCH --job-name=crystalflow-vasp
#SBATCH --array=0-{last}
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=32
#SBATCH --time=24:00:00
# Edit the partition/account and the VASP module for your cluster.
#module load vasp
dir=$(sed -n "$((SLURM_ARRAY_TASK_ID + 2))p" {manifest} | cut -d, -f2)
cd "$dir" && srun vasp_std > vasp.out 2>&1
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
    for sid, s in items:
        folder = outdir / sid.replace("/", "_").replace("#", "_")
        vs = vasp_set(s, pressure)
        vs.write_input(str(folder), potcar_spec=not psp)
        if pressure:
            (folder / "KPOINTS").unlink(missing_ok=True)  # KSPACING in INCAR replaces KPOINTS
        rows.append({"id": sid, "folder": str(folder.resolve()), "formula": s.composition.reduced_formula,
                     "nsites": len(s), "pressure_gpa": pressure, "potcar": "POTCAR" if psp else "POTCAR.spec",
                     **(extra or {}).get(sid, {})})
    df = pd.DataFrame(rows, columns=["id", "folder", "formula", "nsites", "pressure_gpa", "potcar", "e_hull"])
    with atomic_path(manifest) as tmp:
        df.to_csv(tmp, index=False)
    write_text_atomic(outdir / "submit_slurm.sh",
                      SLURM_TEMPLATE.format(last=max(len(rows) - 1, 0), manifest=Path(manifest).resolve()))
    log.info("wrote %d VASP folders under %s (%s)", len(rows), outdir, "POTCAR" if psp else "POTCAR.spec")
    return len(rows)
