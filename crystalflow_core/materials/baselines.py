"""Baselines of a de novo generation run (`baselines: [random, prototype]`): structures made without the model,
as many as the model's samples, that go through the same relaxation, hull and metrics, so a DNG table says what
the model adds over what costs nothing (ion exchange was ahead of the generative models on stability in a 2025
baseline study, arXiv 2501.02144).

random     a training crystal's cell content drawn at random (seeded), placed by pyxtal in a random space group
           that admits it (the prediction's random generator: pyxtal's distance checks, P1 where none does)
prototype  a training crystal drawn at random (seeded) with each element replaced by an ion of the same
           oxidation state (pymatgen's oxidation-state guess), drawn with pymatgen's substitution
           probability among the elements of the training split (itself included, at least one changed,
           two elements never merged): charge-balanced by construction; the volume predicted for the new
           elements (pymatgen's RLS predictor)

Sample i of a baseline depends only on (seed, i) and the training split, never on the shard that makes it.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from crystalflow_core.materials.prediction.assignments import element_counts
from crystalflow_core.materials.prediction.candidates import candidate_record
from crystalflow_core.materials.prediction.generators import (
    oxidation_guess,
    random_structure,
    substituted,
    substitution_label,
)

log = logging.getLogger("crystalflow")

BASELINE_TRIES = 200  # prototypes drawn for one prototype sample before it is given up (flagged)


def baseline_items(n: int, seed: int) -> list[dict]:
    """The n samples of a baseline, with the model's ids (s0, s1, ...) and each its own random stream."""
    return [{"id": f"s{i}", "sample_index": i, "seed": seed} for i in range(n)]


def _rng(seed: int, i: int):
    return np.random.default_rng([seed, i])


def random_sample(item: dict, structures: list, ids: list[str]) -> dict:
    """A random symmetric crystal of a training crystal's cell content."""
    rng = _rng(item["seed"], item["sample_index"])
    j = int(rng.integers(len(structures)))
    s, group = random_structure(structures[j].atomic_numbers, int(rng.integers(2**31)))
    return candidate_record(
        {**item, "num_atoms": len(s)}, s, generator="random", composition_of=ids[j], spacegroup_generated=group
    )


class Substitutions:
    """Ions of each oxidation state among the training split's elements, and the pairwise substitution
    probabilities (pymatgen's data), for the prototype baseline."""

    def __init__(self, structures: list):
        from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

        self.sp = SubstitutionProbability()
        elements = {str(el) for s in structures for el in s.composition.elements}
        self.by_state: dict[int, list] = defaultdict(list)
        for ion in sorted(self.sp.species, key=str):
            if ion.symbol in elements and float(ion.oxi_state).is_integer():
                self.by_state[int(ion.oxi_state)].append(ion)
        self._ox: dict[int, dict | None] = {}

    def oxidation(self, j: int, structure) -> dict | None:
        if j not in self._ox:
            self._ox[j] = oxidation_guess(element_counts(structure.atomic_numbers))
        return self._ox[j]

    def draw(self, counts: dict, ox: dict, rng) -> dict | None:
        """{old: new} for every element of `counts` (at least one changed, no two merged), or None."""
        from pymatgen.core import Species

        mapping: dict[str, str] = {}
        for el in sorted(counts):
            old = Species(el, ox[el])
            taken = set(mapping.values()) | (set(counts) - {el})
            ions = [ion for ion in self.by_state.get(ox[el], []) if ion.symbol not in taken]
            if not any(ion.symbol == el for ion in ions):
                ions.append(old)  # the element itself, where pymatgen's table lacks this ion
            w = np.array([self.sp.prob(ion, old) for ion in ions], dtype=float)
            w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
            if w.sum() <= 0:
                return None
            mapping[el] = ions[int(rng.choice(len(ions), p=w / w.sum()))].symbol
        return mapping if any(o != n for o, n in mapping.items()) else None


def prototype_sample(item: dict, structures: list, ids: list[str], subs: Substitutions) -> dict:
    """A random charge-balanced substitution into a random training crystal (flagged where none is found)."""
    rng = _rng(item["seed"], item["sample_index"])
    for _ in range(BASELINE_TRIES):
        j = int(rng.integers(len(structures)))
        ox = subs.oxidation(j, structures[j])
        if not ox:
            continue  # no oxidation states: no charge-balanced substitution to draw
        mapping = subs.draw(element_counts(structures[j].atomic_numbers), ox, rng)
        if mapping is None:
            continue
        s = substituted(structures[j], mapping)
        return candidate_record(
            {**item, "num_atoms": len(s)},
            s,
            generator="prototype",
            prototype=ids[j],
            substitution=substitution_label(mapping),
        )
    log.warning("prototype baseline %s: no charge-balanced substitution in %d draws", item["id"], BASELINE_TRIES)
    return {
        **item,
        "num_atoms": 0,
        "lattice": np.eye(3).tolist(),
        "species": [],
        "frac_coords": [],
        "flag": f"no charge-balanced substitution in {BASELINE_TRIES} draws",
        "generator": "prototype",
    }


def baseline_records(kind: str, items: list[dict], structures: list, ids: list[str], progress: bool = False) -> list:
    """The records of `items` made by baseline `kind` (random | prototype) from the training crystals."""
    if not structures:
        raise ValueError("the training split holds no crystals to draw from")
    from tqdm.auto import tqdm

    subs = Substitutions(structures) if kind == "prototype" else None
    out = []
    for it in tqdm(items, desc=f"{kind} baseline", disable=not progress):
        if kind == "random":
            out.append(random_sample(it, structures, ids))
        elif kind == "prototype":
            out.append(prototype_sample(it, structures, ids, subs))
        else:
            raise ValueError(f"unknown baseline {kind!r} (random, prototype)")
    return out
