"""The compositions of a structure-prediction job: formulas checked (real elements the model embeds, whole
atoms, one formula unit), cell sizes (z, atoms or `auto`), pressures, from the config or a CSV. Imported
by the configuration's validation, so it holds nothing heavier than pymatgen's Composition (imported
where a formula is read)."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from crystalflow_core.errors import ConfigError
from crystalflow_core.io import check_columns, table_number

MAX_Z = 100  # the reference code's MAX_ATOMIC_NUM: CSP embeds Z - 1 in a table of 100 rows


@dataclass(frozen=True)
class Search:
    """One composition at one cell size and one pressure."""

    key: str  # SiO2_z3_p0: unique within the job, safe as a file name
    formula: str  # reduced formula
    z: int  # formula units per cell
    species: tuple  # atomic numbers of the cell's atoms, grouped by element
    pressure_gpa: float

    @property
    def n_atoms(self) -> int:
        return len(self.species)

    @property
    def cell(self) -> str:
        """The cell content searched: Si3O6 for SiO2 at z = 3."""
        from pymatgen.core import Composition

        return plain_formula(Composition(self.formula) * self.z)

    @property
    def group(self) -> str:
        """What candidates are ranked within: composition and pressure (all z together)."""
        return f"{self.formula}_p{self.pressure_gpa:g}"


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_formula(text, where: str):
    """A pymatgen Composition with integer amounts of real elements the model can embed, or one line
    naming `where` and what is wrong."""
    from pymatgen.core import Composition

    try:
        comp = Composition(str(text))
    except Exception as exc:
        raise ConfigError(f"{where}: '{text}' is not a chemical formula ({exc})") from exc
    if not comp.valid:
        unknown = [str(e) for e in comp.elements if not hasattr(e, "Z") or e.Z > 118 or e.Z < 1]
        raise ConfigError(f"{where}: '{text}' holds an unknown element ({', '.join(unknown) or '?'})")
    beyond = [e.symbol for e in comp.elements if e.Z > MAX_Z]
    if beyond:
        raise ConfigError(
            f"{where}: '{text}': {', '.join(beyond)} is outside the model's element embedding (Z <= {MAX_Z})"
        )
    if any(abs(a - round(a)) > 1e-8 for a in comp.values()):
        raise ConfigError(f"{where}: '{text}' has non-integer amounts; write whole atoms (Na1Cl1, not Na0.5Cl0.5)")
    _, unit, factor = formula_unit(comp)
    if factor != 1:  # the cell size is z's or atoms' to say, never a formula's amounts read silently
        raise ConfigError(
            f"{where}: '{text}' is {factor} x {unit}: give {unit} with z {factor}, or atoms {int(comp.num_atoms)}"
        )
    return comp


def formula_unit(comp) -> tuple:
    """(unit Composition, its formula, factor): the amounts divided by their greatest common divisor,
    H for H2 and O for O2 (pymatgen's reduced formula keeps diatomic elements as H2, O2, N2 ...)."""
    from pymatgen.core import Composition

    amounts = {el: int(round(a)) for el, a in comp.items()}
    factor = math.gcd(*amounts.values())
    unit = Composition({el: a // factor for el, a in amounts.items()})
    return unit, plain_formula(unit), factor


def plain_formula(comp) -> str:
    """SiO2, NaCl, H, Si3O6: the amounts as they are, ordered by electronegativity, no 1s."""
    return re.sub(r"(?<=[A-Za-z])1(?![0-9])", "", comp.formula.replace(" ", ""))


def _search(comp, z: int | None, atoms: int | None, pressure: float, job: dict, where: str) -> Search:
    reduced, formula, _ = formula_unit(comp)
    per_unit = int(round(reduced.num_atoms))
    if atoms is not None:
        if atoms % per_unit:
            raise ConfigError(f"{where}: {atoms} atoms is not a whole number of {formula} units ({per_unit} atoms)")
        z = atoms // per_unit
    n = per_unit * int(z)
    if n > job["max_atoms"]:
        raise ConfigError(f"{where}: {formula} with z = {z} has {n} atoms, above max_atoms ({job['max_atoms']})")
    species = tuple(int(el.Z) for el, amt in sorted(reduced.items(), key=lambda x: x[0].Z) for _ in range(int(amt) * z))
    return Search(f"{formula}_z{z}_p{pressure:g}", formula, int(z), species, float(pressure))


# the columns of a compositions CSV (one name per quantity, as in every table of the project)
COMPOSITION_COLUMNS = {
    "formula": "the composition's formula unit",
    "z": "formula units per cell, or auto",
    "atoms": "atoms per cell",
    "pressure_gpa": "pressure in GPa",
}


def read_compositions_csv(path) -> list[dict]:
    """Rows of a compositions CSV: formula, z or atoms, optional pressure_gpa (errors name file, row and
    column; an unknown column is refused with the closest known name)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"compositions file {path} not found")
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name; newline="": CRLF
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [(c or "").strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        blank = lambda r: not any(v.strip() for v in r.values() if isinstance(v, str))  # noqa: E731
        rows = [(reader.line_num, r) for r in reader if not blank(r)]
    if "formula" not in columns:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise ConfigError(f"{path}: needs a column 'formula' (and z or atoms, optional pressure_gpa); found {found}")
    check_columns(path, [c for c in columns if c], COMPOSITION_COLUMNS)
    if not rows:
        raise ConfigError(f"{path}: no rows below the header")
    out = []
    for i, r in rows:
        if None in r:  # more cells than the header has columns
            raise ConfigError(f"{path}, row {i}: {len(columns) + len(r[None])} cells, the header has {len(columns)}")
        entry = {"formula": (r.get("formula") or "").strip(), "row": i}
        for key, cast in (("z", int), ("atoms", int), ("pressure_gpa", float)):
            v = (r.get(key) or "").strip()
            if key == "z" and v.lower() == "auto":
                entry["z"] = "auto"
            elif v:
                entry[key] = table_number(path, i, key, v, cast)
        if not entry["formula"]:
            raise ConfigError(f"{path}, row {i}: empty formula")
        out.append(entry)
    return out


def model_conditions(cfg: dict, job: dict) -> list[str] | None:
    """The conditions of the job's model when the config knows them (a run), else None (a checkpoint:
    checked against the file when it is read)."""
    return list(cfg["runs"][job["run"]]["conditions"]) if job.get("run") else None


def check_model_conditions(conditions: list[str], name: str, searches: list[Search]) -> None:
    """A prediction model is an unconditional CSP model or one conditioned on pressure only. An
    unconditional model predicts at any pressure too: its candidates are relaxed at the pressure (the
    standard way of every generator that does not know pressure); the report says so."""
    other = [c for c in conditions if c != "pressure"]
    if other:
        raise ConfigError(
            f"config error at 'predict/{name}': the model is conditioned on {', '.join(other)}; structure "
            "prediction takes an unconditional CSP model or one conditioned on pressure"
        )


def _z_values(e: dict, job: dict, per_unit: int, cap: int) -> list:
    """The sizes (z, atoms) of one entry: its own z or atoms, else the job's; `auto`: every z whose
    cell fits `cap` atoms."""
    if "atoms" in e or ("z" not in e and job["atoms"] is not None):
        return [(None, a) for a in _as_list(e.get("atoms", job["atoms"]))]
    zs = e["z"] if "z" in e else job["z"]
    if zs == "auto":
        return [(z, None) for z in range(1, max(1, cap // per_unit) + 1)]
    return [(z, None) for z in _as_list(zs)]


def job_searches(cfg: dict, name: str, job: dict, largest: int | None = None) -> list[Search]:
    """Every search of a job, checked (one-line ConfigError naming the job and the entry). `z: auto`
    takes every z up to `largest` atoms (the model's largest training crystal, once the model is read)
    and never above the job's `max_atoms`."""
    where = f"config error at 'predict/{name}"
    if bool(job["run"]) == bool(job["checkpoint"]):
        raise ConfigError(f"{where}': set one of run (a CSP run of this config) or checkpoint (a model.ckpt)")
    if job["run"]:
        if job["run"] not in cfg["runs"]:
            raise ConfigError(f"{where}/run': '{job['run']}' is not a run; runs: {', '.join(cfg['runs'])}")
        if cfg["runs"][job["run"]]["task"] != "csp":
            raise ConfigError(f"{where}/run': '{job['run']}' is a {cfg['runs'][job['run']]['task']} run, not CSP")
    if job["atoms"] is not None and job["z"] not in (None, "auto"):
        raise ConfigError(f"{where}': give z or atoms, not both (z {job['z']}, atoms {job['atoms']})")
    entries = [{"formula": f, "where": f"{where}/formulas/{i}'"} for i, f in enumerate(job["formulas"])]
    if job["compositions"]:
        for r in read_compositions_csv(job["compositions"]):
            entries.append({**r, "where": f"{job['compositions']}, row {r['row']} (predict/{name})"})
    if not entries:
        raise ConfigError(f"{where}': no compositions (give formulas or a compositions CSV)")
    cap = min(job["max_atoms"], largest or job["max_atoms"])
    searches: dict[str, Search] = {}
    for e in entries:
        comp = parse_formula(e["formula"], e["where"])
        per_unit = int(round(formula_unit(comp)[0].num_atoms))
        if per_unit > job["max_atoms"]:
            raise ConfigError(f"{e['where']}: one unit of {e['formula']} has {per_unit} atoms, above max_atoms")
        pressures = _as_list(e["pressure_gpa"]) if "pressure_gpa" in e else _as_list(job["pressure_gpa"])
        for z, atoms in _z_values(e, job, per_unit, cap):
            for p in pressures:
                if p < 0:
                    raise ConfigError(f"{e['where']}: pressure {p} GPa is negative")
                t = _search(comp, z, atoms, float(p), job, e["where"])
                searches.setdefault(t.key, t)
    out = list(searches.values())
    conds = model_conditions(cfg, job)
    if conds is not None:
        check_model_conditions(conds, name, out)
    return out


def n_groups(searches: list[Search]) -> int:
    """Compositions x pressures of a job (what n_candidates counts per)."""
    return len({t.group for t in searches})
