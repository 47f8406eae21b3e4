"""A second potential's opinion on structures another relaxed: its static energy and enthalpy per atom, or
its own relaxation from there (relax.committee)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from crystalflow_core.io import read_jsonl, resume_jsonl
from crystalflow_core.materials.calculators import PotentialWorker, potential_fields, potential_pool
from crystalflow_core.materials.potentials import potential
from crystalflow_core.materials.relax import (
    RelaxSettings,
    enthalpy_per_atom,
    finished,
    keyed,
    relax_many,
    untagged,
)

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


def static_many(items: list[tuple], name: str, workers: int = 1, progress: bool = True, out=None) -> dict:
    """{id: record} of potential `name`'s energy and enthalpy per atom of (id, Structure, pressure) items.
    `out`: a jsonl file the records are kept in; the ids already there are not computed again (resume)."""
    import tempfile

    if not items:
        return {}
    if out is None:
        with tempfile.TemporaryDirectory() as tmp:
            return static_many(items, name, workers, progress, Path(tmp) / "static.jsonl")
    done = {r["id"] for r in resume_jsonl(out)}
    todo = [item for item in items if item[0] not in done]
    if todo:
        chunks = [todo[i : i + 8] for i in range(0, len(todo), 8)]
        potential_pool(StaticWorker, {"model": name}, chunks, workers, out, f"static ({name})", progress)
    want = {item[0] for item in items}
    return {r["id"]: r for r in read_jsonl(out) if r["id"] in want}


def second_opinion(items: list[tuple], section: dict, name: str, workers: int = 1, cache=None) -> dict:
    """{id: record} of potential `name` on (id, Structure, pressure) `items` that another potential relaxed:
    its energy and enthalpy per atom on each (static), or with `section["committee_relax"]` its own
    relaxation from there (`section`: the validated relax section). Each record holds the `structure` its
    energy belongs to. `cache`: a jsonl file each opinion is kept in under its id and `calculation_key`, so an
    interrupted stage resumes there and a rerun judges no unchanged structure again."""
    import tempfile

    from crystalflow_core.crystals.crystal import structure_from

    if cache is None:
        with tempfile.TemporaryDirectory() as tmp:
            return second_opinion(items, section, name, workers, Path(tmp) / "second.jsonl")
    settings = RelaxSettings.from_section(section, model=name, record_energies=False)
    # the potential (its package version and model too), and its relaxation or its static energy
    how = [potential_fields(potential(name)), asdict(settings) if section["committee_relax"] else "static"]
    tagged = keyed(items, how)
    given = {tag: s for tag, s, _ in tagged}
    if section["committee_relax"]:
        got = {r["id"]: r for r in relax_many(tagged, cache, settings, workers) if r["id"] in given}
    else:
        got = static_many(tagged, name, workers, out=cache)
    out = {}
    for tag, r in got.items():
        r = {**r, "id": untagged(tag)}
        if not section["committee_relax"]:
            r["structure"] = given[tag]
        elif finished(r):
            r["structure"] = structure_from(r["final"])
        else:
            r["error"] = r.get("error") or "not relaxed"
        out[r["id"]] = r
    return out
