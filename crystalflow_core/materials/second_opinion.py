"""A second potential's opinion on structures another relaxed: its static energy and enthalpy per atom, or
its own relaxation from there (relax.committee)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from crystalflow_core.io import read_jsonl
from crystalflow_core.materials.calculators import PotentialWorker, potential_fields, potential_pool
from crystalflow_core.materials.relax import RelaxSettings, enthalpy_per_atom, finished, relax_many

log = logging.getLogger(__name__)


class StaticWorker(PotentialWorker):
    """Called with a chunk of (id, Structure, pressure): the potential's energy and enthalpy per atom of each
    structure as it is (a second opinion on another potential's relaxed structures)."""

    def __init__(self, settings: dict):
        super().__init__(settings["model"])

    def __call__(self, chunk) -> list[dict]:
        from pymatgen.io.ase import AseAtomsAdaptor

        out = []
        for sid, structure, pressure in chunk:
            rec = {"id": sid, **potential_fields(self.potential)}
            try:
                atoms = AseAtomsAdaptor.get_atoms(structure)
                atoms.calc = self.calc
                n, e = len(atoms), float(atoms.get_potential_energy())
                rec["energy_per_atom"] = e / n
                rec["enthalpy_per_atom"] = enthalpy_per_atom(e, atoms.get_volume(), pressure, n)
                if not np.isfinite(e):
                    raise FloatingPointError("non-finite energy")
            except Exception as exc:  # a structure the potential cannot take: recorded, the others go on
                rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            out.append(rec)
        return out


def static_many(items: list[tuple], name: str, workers: int = 1, progress: bool = True) -> dict:
    """{id: record} of potential `name`'s energy and enthalpy per atom of (id, Structure, pressure) items."""
    import tempfile

    if not items:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "static.jsonl"
        chunks = [items[i : i + 8] for i in range(0, len(items), 8)]
        potential_pool(StaticWorker, {"model": name}, chunks, workers, out, f"static ({name})", progress)
        return {r["id"]: r for r in read_jsonl(out)}


def second_opinion(items: list[tuple], section: dict, name: str, workers: int = 1) -> dict:
    """{id: record} of potential `name` on (id, Structure, pressure) `items` that another potential relaxed:
    its energy and enthalpy per atom on each (static), or with `section["committee_relax"]` its own
    relaxation from there (`section`: the validated relax section). Each record holds the `structure` its
    energy belongs to."""
    import tempfile

    from crystalflow_core.crystals.crystal import structure_from

    if section["committee_relax"]:
        with tempfile.TemporaryDirectory() as tmp:
            settings = RelaxSettings.from_section(section, model=name, record_energies=False)
            out = {r["id"]: r for r in relax_many(items, Path(tmp) / "second.jsonl", settings, workers)}
        for r in out.values():
            if finished(r):
                r["structure"] = structure_from(r["final"])
            else:
                r["error"] = r.get("error") or "not relaxed"
        return out
    out = static_many(items, name, workers)
    for sid, s, _ in items:
        if sid in out:
            out[sid]["structure"] = s
    return out
