"""DFT results read back: the finished VASP folders written by the `dft` stage (or energies supplied as
extxyz/CSV by any DFT code or stronger MLIP), MP2020-corrected, on the same hull as the CHGNet
stability stage.

A job folder is one of
  converged    vasprun.xml (or .gz) complete, electronic and ionic convergence reached
  unconverged  complete, but the last SCF hit NELM or the relaxation hit NSW
  crashed      vasprun.xml truncated/unreadable and OUTCAR unfinished, last written long ago
  running      the same, but written within `running_minutes`
  not_run      no output at all
  foreign      outputs of another structure than the manifest records for the folder (copied in, or
               left from an earlier sampling): no energy, counted in no rate
Where vasprun.xml is missing or truncated but OUTCAR finished ("General timing and accounting"), the
energy, ionic steps and convergence come from OUTCAR/OSZICAR and the structure from CONTCAR. Nothing
is guessed: a job without a final energy has none.
"""

from __future__ import annotations

import gzip
import math
import re
import time
import warnings
from pathlib import Path

import numpy as np

from crystalflow_core.errors import ConfigError
from crystalflow_core.io import check_columns, table_number


def _first(folder: Path, name: str) -> Path | None:
    for p in (folder / name, folder / f"{name}.gz"):
        if p.exists():
            return p
    return None


def _text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", errors="replace") as fh:
        return fh.read()


def _incar(folder: Path) -> dict:
    from pymatgen.io.vasp.inputs import Incar

    p = folder / "INCAR"
    return dict(Incar.from_file(p)) if p.exists() else {}


def _potcar_symbols(folder: Path) -> list[str]:
    """POTCAR titles ('PAW_PBE Fe_pv 06Sep2000') or, from POTCAR.spec, the symbols ('Fe_pv')."""
    if (folder / "POTCAR").exists():
        return [m.strip() for m in re.findall(r"TITEL\s*=\s*(.+)", _text(folder / "POTCAR"))]
    if (folder / "POTCAR.spec").exists():
        return [f"PAW_PBE {s.strip()}" for s in _text(folder / "POTCAR.spec").split() if s.strip()]
    return []


def _parameters(incar: dict, structure, potcar: list[str]) -> dict:
    """ComputedEntry parameters (run type, Hubbard U per element, POTCARs) from the job's own inputs."""
    from pymatgen.core import Element

    ldau = bool(incar.get("LDAU", False))
    hubbards = {}
    if ldau:
        species = [str(Element(s)) for s in _poscar_order(structure)]
        hubbards = {el: float(u) for el, u in zip(species, incar.get("LDAUU", [])) if float(u)}
    return {
        "run_type": "GGA+U" if ldau else "GGA",
        "is_hubbard": ldau and any(hubbards.values()),
        "hubbards": hubbards,
        "potcar_symbols": potcar,
        "potcar_spec": [{"titel": t, "hash": None} for t in potcar],
    }


def _poscar_order(structure) -> list[str]:
    seen: list[str] = []
    for s in structure:
        if s.specie.symbol not in seen:
            seen.append(s.specie.symbol)
    return seen


def _last_write(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.iterdir() if p.is_file()), default=0.0)


def _from_vasprun(path: Path) -> tuple[dict, object]:
    from pymatgen.io.vasp.outputs import Vasprun

    with warnings.catch_warnings():  # "unconverged VASP run": recorded in the row instead
        warnings.simplefilter("ignore")
        vr = Vasprun(str(path), parse_dos=False, parse_eigen=False, parse_potcar_file=False)
    entry = vr.get_computed_entry(inc_structure=True)
    econv, iconv = bool(vr.converged_electronic), bool(vr.converged_ionic)
    rec = {
        "source": path.name,
        "electronic_converged": econv,
        "ionic_converged": iconv,
        "ionic_steps": len(vr.ionic_steps),
        "energy": float(vr.final_energy),
        "pstress_kbar": float(vr.incar.get("PSTRESS", 0.0) or 0.0),
    }
    return rec, entry, vr.initial_structure


def _from_outcar(folder: Path, outcar: Path) -> tuple[dict, object]:
    """A finished OUTCAR with CONTCAR/OSZICAR (vasprun.xml missing or truncated)."""
    from pymatgen.entries.computed_entries import ComputedStructureEntry
    from pymatgen.io.vasp.inputs import Poscar

    text = _text(outcar)
    energies = re.findall(r"energy\(sigma->0\)\s*=\s*(-?\d+\.\d+)", text)
    if not energies:
        raise ValueError(f"{outcar}: finished but without a final energy")
    contcar = folder / "CONTCAR"
    if not contcar.exists() or not contcar.stat().st_size:
        raise ValueError(f"{folder}: OUTCAR finished but CONTCAR is missing or empty")
    structure = Poscar.from_file(contcar).structure
    incar = _incar(folder)
    nelm = int(incar.get("NELM", 60))
    n_ionic = len(re.findall(r"FREE ENERGIE OF THE ION-ELECTRON SYSTEM", text)) or len(energies)
    econv = math.nan
    osz = _first(folder, "OSZICAR")
    if osz is not None:
        from pymatgen.io.vasp.outputs import Oszicar

        o = Oszicar(str(osz))
        if o.electronic_steps:
            econv = len(o.electronic_steps[-1]) < nelm
        n_ionic = len(o.ionic_steps) or n_ionic
    nsw = int(incar.get("NSW", 0))
    iconv = "reached required accuracy" in text or nsw <= 1
    energy = float(energies[-1])
    rec = {
        "source": outcar.name,
        "electronic_converged": econv,
        "ionic_converged": bool(iconv),
        "ionic_steps": n_ionic,
        "energy": energy,
        "pstress_kbar": float(incar.get("PSTRESS", 0.0) or 0.0),
    }
    entry = ComputedStructureEntry(structure, energy, parameters=_parameters(incar, structure, _potcar_symbols(folder)))
    nions = re.search(r"NIONS\s*=\s*(\d+)", text)
    initial = (
        Poscar.from_file(folder / "POSCAR", check_for_potcar=False).structure if (folder / "POSCAR").exists() else None
    )
    return {**rec, "nions": int(nions.group(1)) if nions else None}, entry, initial


def foreign_reason(folder: Path, structures: list, nions: int | None, expect: dict) -> str:
    """Why the outputs in `folder` are not of the structure the manifest row `expect` records ("" when
    they are). `structures`: the job's initial structure (vasprun.xml) or None, then its final one.
    Checked: the POSCAR is the emitted one (hash), the job started from it (species, cell, positions),
    and the atoms and composition of the job's structures are the sample's."""
    from pymatgen.core import Composition

    from crystalflow_core.materials.dft_inputs import poscar_structure, structure_sha256

    why = []
    try:
        poscar = poscar_structure(folder)
    except Exception as exc:
        poscar = None
        why.append(f"POSCAR missing or unreadable ({type(exc).__name__})")
    want_sha = expect.get("structure_sha256")
    if poscar is not None and isinstance(want_sha, str) and structure_sha256(poscar) != want_sha:
        why.append("POSCAR is not the one emitted for this sample")
    initial = structures[0]
    if initial is not None and poscar is not None and not _same_structure(initial, poscar):
        why.append("the run did not start from the POSCAR")
    n_want, comp, formula = expect.get("nsites"), expect.get("composition"), expect.get("formula")
    got = next((st for st in structures if st is not None), poscar)
    if got is not None:
        n = nions if nions is not None else len(got)
        if isinstance(n_want, (int, float)) and not math.isnan(n_want) and n != int(n_want):
            why.append(f"{n} atoms, the sample has {int(n_want)}")
        for st in [x for x in structures if x is not None] or [got]:
            if isinstance(comp, str) and comp:
                wrong = st.composition != Composition(comp)
            else:
                wrong = (
                    isinstance(formula, str) and st.composition.reduced_formula != Composition(formula).reduced_formula
                )
            if wrong:
                want = comp if isinstance(comp, str) and comp else formula
                why.append(f"composition {st.composition.formula}, the sample's is {Composition(want).formula}")
                break
    return "; ".join(why)


def _same_structure(a, b, tol: float = 1e-4) -> bool:
    """The same atoms in the same order at the same positions (fractional, wrapped) in the same cell."""
    if len(a) != len(b) or [s.specie.symbol for s in a] != [s.specie.symbol for s in b]:
        return False
    if not np.allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-3):
        return False
    d = a.frac_coords - b.frac_coords
    return bool(np.all(np.abs(d - np.round(d)) < tol))


def read_job(
    folder, running_minutes: float, now: float | None = None, expect: dict | None = None
) -> tuple[dict, object]:
    """(record, ComputedStructureEntry or None) of one VASP job folder; never raises for the job's state.
    With `expect` (the folder's manifest row), outputs of another structure are `foreign`."""
    folder = Path(folder)
    rec = {"status": "not_run", "reason": "", "ionic_steps": 0}
    if not folder.is_dir():
        return {**rec, "reason": f"folder {folder} missing"}, None
    vasprun, outcar = _first(folder, "vasprun.xml"), _first(folder, "OUTCAR")
    if vasprun is None and outcar is None:
        return {**rec, "reason": "no vasprun.xml or OUTCAR"}, None
    problem = ""
    if vasprun is not None:
        try:
            r, entry, initial = _from_vasprun(vasprun)
            r["status"] = "converged" if r["electronic_converged"] and r["ionic_converged"] else "unconverged"
            return _checked({**rec, **r}, entry, folder, initial, None, expect)
        except Exception as exc:  # truncated or damaged XML
            problem = f"{vasprun.name} unreadable ({type(exc).__name__}: {str(exc)[:120]})"
    finished = outcar is not None and "General timing and accounting" in _text(outcar)
    if finished:
        try:
            r, entry, initial = _from_outcar(folder, outcar)
            ok = r["ionic_converged"] and r["electronic_converged"] is not False
            r["status"] = "converged" if ok else "unconverged"
            return _checked({**rec, **r, "reason": problem}, entry, folder, initial, r.pop("nions"), expect)
        except Exception as exc:
            problem = "; ".join(filter(None, [problem, f"{type(exc).__name__}: {str(exc)[:160]}"]))
    if outcar is not None:
        problem = "; ".join(filter(None, [problem, f"{outcar.name} unfinished (no 'General timing and accounting')"]))
    age_min = ((now or time.time()) - _last_write(folder)) / 60
    status = "running" if age_min < running_minutes else "crashed"
    return {**rec, "status": status, "reason": f"{problem}; last written {age_min:.0f} min ago"}, None


def _checked(rec: dict, entry, folder: Path, initial, nions, expect: dict | None) -> tuple[dict, object]:
    """A parsed job, or `foreign` (no energy, no entry) when its outputs are of another structure."""
    if expect is None:
        return rec, entry
    why = foreign_reason(folder, [initial, entry.structure if entry is not None else None], nions, expect)
    if not why:
        return rec, entry
    keep = {k: rec[k] for k in ("source", "ionic_steps") if k in rec}
    return {"status": "foreign", "reason": f"outputs of another structure: {why}", **keep}, None


def mp2020_process(entry) -> tuple[float, str]:
    """MP2020-corrected total energy of a VASP entry with its own run type and U values (NaN and the
    reason where MP2020 refuses it, e.g. a U value MP does not use)."""
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    processed = MaterialsProject2020Compatibility(check_potcar=False).process_entry(entry, clean=True)
    if processed is None:
        p = entry.parameters
        return math.nan, f"MP2020 incompatible ({p.get('run_type')}, U {p.get('hubbards') or 'none'})"
    return float(processed.energy), ""


def rms_displacement(a, b) -> float:
    """Root-mean-square displacement (A) between two versions of one structure (same atoms, same
    order, e.g. CHGNet- and DFT-relaxed): fractional differences wrapped to the nearest image, mean
    translation removed, in the second structure's cell; NaN when the atoms differ."""
    if len(a) != len(b) or [s.specie for s in a] != [s.specie for s in b]:
        return math.nan
    d = b.frac_coords - a.frac_coords
    d -= np.round(d)
    d -= d.mean(axis=0)
    cart = d @ b.lattice.matrix
    return float(np.sqrt((cart**2).sum(axis=1).mean()))


# the columns of a DFT energy table (one name per quantity, as in every table of the project)
ENERGY_COLUMNS = {
    "id": "the structure's id",
    "energy": "total energy, eV",
    "energy_per_atom": "energy per atom, eV/atom",
    "cif": "the DFT-relaxed structure",
    "converged": "true/false",
    "ionic_steps": "ionic steps of the relaxation",
}


def _cell(path, row: int, r, col: str) -> float:
    """A number of the row, NaN where the column is absent or the cell empty."""
    text = r.get(col, "")
    return table_number(path, row, col, text) if text.strip() else math.nan


def _flag(path, row, text) -> bool:
    t = str(text).strip().lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    raise ConfigError(f"{path}, row {row}, column 'converged': '{text}' is not true or false")


def read_energies(path) -> dict[str, dict]:
    """Energies supplied from elsewhere: id -> {energy (total eV), structure (Structure or None), extras}.

    CSV: columns id and energy (total, eV) or energy_per_atom; optional cif, converged, ionic_steps.
    extxyz: one frame per structure with info['id'] and the energy in the frame's calculator or
    info['energy']; the frame is the structure."""
    path = Path(path)
    out: dict[str, dict] = {}
    if path.suffix in (".csv", ".gz") and ".csv" in path.name:
        import pandas as pd
        from pymatgen.core import Structure

        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "id" not in df or not ({"energy", "energy_per_atom"} & set(df.columns)):
            raise ConfigError(f"{path}: needs columns id and energy (or energy_per_atom); has {', '.join(df.columns)}")
        check_columns(path, list(df.columns), ENERGY_COLUMNS)
        for i, r in df.iterrows():
            row = i + 2  # the file's line: the header is line 1
            s = None
            if "cif" in df and r["cif"].strip():
                try:
                    s = Structure.from_str(r["cif"], fmt="cif")
                except Exception as exc:
                    raise ConfigError(f"{path}, row {row} (id {r['id']}): unreadable CIF ({exc})") from exc
            rec = {"energy": _cell(path, row, r, "energy"), "structure": s}
            if not np.isfinite(rec["energy"]):
                rec["energy_per_atom"] = _cell(path, row, r, "energy_per_atom")
            if "converged" in df and r["converged"].strip():
                rec["converged"] = _flag(path, row, r["converged"])
            if "ionic_steps" in df and r["ionic_steps"].strip():
                rec["ionic_steps"] = table_number(path, row, "ionic_steps", r["ionic_steps"], int)
            if r["id"] in out:
                raise ConfigError(f"{path}, row {row}: id {r['id']} appears twice")
            out[r["id"]] = rec
        return out
    if path.suffix == ".extxyz" or path.name.endswith(".xyz"):
        from ase.io import read
        from pymatgen.io.ase import AseAtomsAdaptor

        for k, atoms in enumerate(read(path, index=":", format="extxyz")):
            sid = atoms.info.get("id")
            if sid is None:
                raise ConfigError(f"{path}, frame {k}: no 'id' in the frame's info line")
            try:
                e = float(atoms.get_potential_energy())
            except Exception:
                e = float(atoms.info.get("energy", math.nan))
            out[str(sid)] = {"energy": e, "structure": AseAtomsAdaptor.get_structure(atoms)}
        return out
    raise ConfigError(f"{path}: energies must be a .csv or .extxyz file")


def supplied_jobs(supplied: dict, relaxed: dict, source: str, correction: str) -> list[dict]:
    """The DFT read-back's jobs of energies supplied from a file (read_energies): status `supplied`, or
    `converged` / `unconverged` where the file says; the file's structure, else the relaxed one."""
    jobs = []
    for sid, e in supplied.items():
        conv = e.get("converged")
        status = "supplied" if conv is None else ("converged" if bool(conv) else "unconverged")
        rec = {"status": status, "source": source, **{k: v for k, v in e.items() if k != "structure"}}
        structure = e["structure"] if e["structure"] is not None else relaxed[sid]
        jobs.append({"id": sid, "rec": rec, "entry": None, "structure": structure, "correct": correction})
    return jobs
