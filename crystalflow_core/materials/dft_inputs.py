"""VASP hand-off: MPRelaxSet folders (INCAR, KPOINTS, POSCAR, POTCAR or POTCAR.spec), a manifest
and a SLURM job-array script.

POTCAR files are written only where a pseudopotential library is configured (PMG_VASP_PSP_DIR);
otherwise POTCAR.spec lists the symbols. High-pressure runs set PSTRESS = 10 x P (kbar) and a
k-point spacing of 0.25 1/A (KSPACING), as in the paper.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.crystals.crystal import safe_names
from crystalflow_core.io import write_csv_atomic, write_text_atomic

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


def vasp_set(structure, pressure_gpa: float):
    from pymatgen.io.vasp.sets import MPRelaxSet

    incar = {"NSW": 150}
    kwargs = {}
    if pressure_gpa:
        incar.update({"PSTRESS": 10.0 * pressure_gpa, "KSPACING": 0.25})
        kwargs["user_kpoints_settings"] = None
    return MPRelaxSet(structure, user_incar_settings=incar, **kwargs)


# files a VASP run writes into its folder: what is moved aside when the folder gets another structure
OUTPUT_FILES = ("vasprun.xml", "OUTCAR", "CONTCAR", "OSZICAR", "XDATCAR", "vasp.out", "WAVECAR", "CHGCAR", "CHG")
MANIFEST_COLUMNS = [
    "id",
    "folder",
    "formula",
    "composition",
    "nsites",
    "structure_sha256",
    "pressure_gpa",
    "potcar",
    "e_hull",
]


def structure_sha256(structure) -> str:
    """Fingerprint of a structure as a POSCAR holds it: species in order, lattice (A) and fractional
    coordinates (wrapped into [0, 1)), rounded to 1e-6, so the same POSCAR always hashes the same."""
    frac = np.round(np.mod(structure.frac_coords, 1.0), 6) % 1.0
    text = json.dumps(
        [
            [site.specie.symbol for site in structure],
            np.round(structure.lattice.matrix, 6).tolist(),
            frac.tolist(),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def poscar_structure(folder: Path):
    from pymatgen.io.vasp.inputs import Poscar

    return Poscar.from_file(folder / "POSCAR", check_for_potcar=False).structure


def _move_aside_foreign_outputs(folder: Path, structure) -> str | None:
    """A folder about to get `structure` that holds VASP outputs of another structure (or of a POSCAR
    that cannot be read): its outputs move to `{folder}/replaced-{n}/`; returns that folder's name."""
    outputs = [p for p in folder.iterdir() if p.is_file() and p.name.removesuffix(".gz") in OUTPUT_FILES]
    if not outputs:
        return None
    try:
        same = structure_sha256(poscar_structure(folder)) == structure_sha256(structure)
    except Exception:
        same = False
    if same:
        return None
    n = 1 + sum(1 for p in folder.glob("replaced-*") if p.is_dir())
    aside = folder / f"replaced-{n}"
    aside.mkdir()
    for p in outputs + [folder / "POSCAR"] * (folder / "POSCAR").exists():
        p.rename(aside / p.name)
    return aside.name


def emit_vasp_inputs(items, outdir, manifest, pressure: float | dict, extra: dict | None = None) -> int:
    """Write one folder per (id, Structure); returns the number written. The manifest records what each
    folder holds (composition, atoms, structure hash), so that outputs can be checked against it; a
    folder holding outputs of another structure has them moved aside first (logged), never reused.
    `pressure` (GPa): one for every structure, or {id: pressure}."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    psp = _has_psp()
    rows = []
    names = safe_names(sid for sid, _ in items)  # id -> folder: safe characters, unique, length-capped
    for sid, s in items:
        folder = outdir / names[sid]
        p_gpa = float(pressure.get(sid, 0.0)) if isinstance(pressure, dict) else float(pressure)
        vs = vasp_set(s, p_gpa)
        if folder.is_dir():
            aside = _move_aside_foreign_outputs(folder, vs.poscar.structure)  # as the POSCAR will hold it
            if aside:
                log.warning(
                    "%s held VASP outputs of another structure than sample %s has now; moved them to %s/%s",
                    folder,
                    sid,
                    folder,
                    aside,
                )
        vs.write_input(str(folder), potcar_spec=not psp)
        if p_gpa:
            (folder / "KPOINTS").unlink(missing_ok=True)  # KSPACING in INCAR replaces KPOINTS
        written = poscar_structure(folder)  # the structure as the POSCAR file holds it
        rows.append(
            {
                "id": sid,
                "folder": names[sid],
                "formula": s.composition.reduced_formula,
                "composition": written.composition.formula,
                "nsites": len(written),
                "structure_sha256": structure_sha256(written),
                "pressure_gpa": p_gpa,
                "potcar": "POTCAR" if psp else "POTCAR.spec",
                **(extra or {}).get(sid, {}),
            }
        )
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    write_csv_atomic(df, manifest)  # folders relative to the manifest's folder
    write_text_atomic(outdir / "folders.txt", "".join(f"{r['folder']}\n" for r in rows))
    write_text_atomic(outdir / "submit_slurm.sh", SLURM_TEMPLATE.format(last=max(len(rows) - 1, 0)))
    log.info("wrote %d VASP folders under %s (%s)", len(rows), outdir, "POTCAR" if psp else "POTCAR.spec")
    return len(rows)


def select_for_dft(st: pd.DataFrame, max_e_hull: float, max_structures: int) -> pd.DataFrame:
    """The converged relaxed samples below `max_e_hull`, most stable first, at most `max_structures`."""
    ok = st[st["converged"].astype(bool) & (st["e_hull"] < max_e_hull)]
    return ok.sort_values("e_hull").head(max_structures)
