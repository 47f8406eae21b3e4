"""The generators beside the model in a prediction (a job's `generators:` shares of its candidate budget):

model      the CSP model (as before; the default alone)
random     random symmetric crystals of the cell content (pyxtal: a random space group that admits it,
           random Wyckoff positions, pyxtal's distance checks; P1 where none does), as AIRSS seeds a search
prototype  element substitution into known structures with the same anonymous formula and cell size (ion
           exchange, CSPML-like templates) from the training split only, never one of the composition's
           own (no answer by lookup); ranked by pymatgen's substitution probabilities, the cell volume
           predicted for the new elements (pymatgen's RLS volume predictor, atomic radii where it fails)

Candidate c of a composition takes its generator from a smooth weighted round robin over the shares, so any
first n candidates (a search's rounds) hold the shares as nearly as n allows, and a larger budget keeps the
generators of the first candidates.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import defaultdict

import numpy as np

from crystalflow_core.errors import StageError
from crystalflow_core.materials.prediction.assignments import anonymous, element_counts, equal_count_maps

log = logging.getLogger("crystalflow")

GENERATORS = ("model", "random", "prototype")
RANDOM_TRIES = 40  # space groups drawn before P1
MAX_MAPPINGS = 24  # element mappings tried per prototype


def generator_sequence(shares: dict, n: int) -> list[str]:
    """The generator of each of the first n candidates (smooth weighted round robin over `shares`)."""
    names = [g for g in GENERATORS if shares.get(g, 0) > 0]
    credit = dict.fromkeys(names, 0.0)
    out = []
    for _ in range(n):
        for g in names:
            credit[g] += shares[g]
        pick = max(names, key=lambda g: (credit[g], -names.index(g)))
        credit[pick] -= 1.0
        out.append(pick)
    return out


def with_generators(items: list[dict], shares: dict) -> list[dict]:
    """Each candidate item with its `generator` (by its index within its composition and pressure)."""
    n = 1 + max((it["candidate"] for it in items), default=-1)
    seq = generator_sequence(shares, n)
    return [{**it, "generator": seq[it["candidate"]]} for it in items]


# ----------------------------------------------------------------------------- random
def random_structure(atom_types, seed: int) -> tuple:
    """(Structure, space group): a random symmetric crystal of these atoms (pyxtal), reproducible from `seed`."""
    from pyxtal import pyxtal

    counts = element_counts(atom_types)
    rng = np.random.default_rng(seed)
    for group in [*(int(g) for g in rng.integers(1, 231, RANDOM_TRIES)), 1]:  # P1 always admits the content
        state = int(rng.integers(2**31))
        x = pyxtal(random_state=state)
        try:
            x.from_random(3, group, list(counts), list(counts.values()), random_state=state)
        except Exception:
            continue
        if x.valid:
            return x.to_pymatgen(), int(x.group.number)
    raise StageError(f"pyxtal could not place {counts} even in P1")


# ----------------------------------------------------------------------------- prototypes
def prototype_library(structures: list, ids: list[str]) -> dict:
    """{(anonymous formula, atoms): [(id, Structure)]} of the training crystals (their cells as cached)."""
    lib: dict = defaultdict(list)
    for i, s in zip(ids, structures):
        lib[(anonymous(element_counts(s.atomic_numbers)), len(s))].append((i, s))
    return dict(lib)


def oxidation_guess(counts: dict) -> dict | None:
    from pymatgen.core import Composition

    try:
        guesses = Composition(counts).oxi_state_guesses(max_sites=-50)
    except Exception:
        return None
    return {el: round(v) for el, v in guesses[0].items()} if guesses else None


def _pair_score(sp, new: str, old: str, ox_new: dict | None, ox_old: dict | None) -> float:
    """How likely `new` replaces `old`: pymatgen's substitution probability of the two ions where both
    compositions have oxidation states, else an electronegativity likeness."""
    from pymatgen.core import Element, Species

    if new == old:
        return 1.0
    if ox_new and ox_old:
        try:
            return float(sp.prob(Species(new, ox_new[new]), Species(old, ox_old[old])))
        except Exception:
            pass
    x1, x2 = Element(new).X, Element(old).X
    return 1e-4 * math.exp(-abs(x1 - x2)) if math.isfinite(x1) and math.isfinite(x2) else 1e-6


def substitutions(counts: dict, library: dict, limit: int) -> list[tuple[float, str, dict]]:
    """The best `limit` (score, prototype id, {old element: new element}) for a cell content `counts`: every
    prototype of the same anonymous formula and size except those of this very composition, every mapping
    of elements with equal counts, ranked by the product of the pair scores."""
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability
    from pymatgen.core import Composition

    sp = SubstitutionProbability()
    own = Composition(counts).reduced_composition
    ox_new = oxidation_guess(counts)
    out = []
    for pid, s in library.get((anonymous(counts), sum(counts.values())), []):
        if s.composition.reduced_composition == own:
            continue  # the composition's own structure: that would be lookup, not prediction
        old = element_counts(s.atomic_numbers)
        ox_old = oxidation_guess(old)
        for mapping in equal_count_maps(old, counts, MAX_MAPPINGS):
            score = math.prod(_pair_score(sp, new, o, ox_new, ox_old) for o, new in mapping.items())
            out.append((score, pid, mapping))
    out.sort(key=lambda x: (-x[0], x[1], sorted(x[2].items())))
    return out[:limit]


def substituted(structure, mapping: dict):
    """The prototype with its elements replaced and its volume predicted for the new ones."""
    from pymatgen.analysis.structure_prediction.volume_predictor import RLSVolumePredictor
    from pymatgen.core import Element

    new = structure.copy()
    new.replace_species({Element(o): Element(n) for o, n in mapping.items()})
    try:
        with warnings.catch_warnings():  # its ionic radii lookups warn for ions it has none of (handled below)
            warnings.simplefilter("ignore")
            out = RLSVolumePredictor().get_predicted_structure(new, structure)
        if math.isfinite(out.volume) and out.volume > 0:
            return out
    except Exception:
        pass
    r = {el: Element(el).atomic_radius or 1.5 for el in set(mapping) | set(mapping.values())}
    ratio = sum(r[mapping[str(site.specie)]] ** 3 for site in structure) / sum(
        r[str(site.specie)] ** 3 for site in structure
    )
    new.scale_lattice(structure.volume * ratio)
    return new


def substitution_label(mapping: dict) -> str:
    changed = [f"{o}->{n}" for o, n in sorted(mapping.items()) if o != n]
    return ", ".join(changed) or "none"


def prototype_structures(items: list[dict], searches: list, shares: dict, library: dict, name: str) -> dict:
    """{id: (Structure, prototype id, substitution)} of the prototype candidates among `items`: the k-th
    prototype candidate of a cell size takes the k-th best substitution of its content (cycling); a cell
    size without a prototype of its anonymous formula gets a random structure instead (id: None), logged."""
    by_key = {t.key: t for t in searches}
    sizes: dict[str, int] = defaultdict(int)
    for t in searches:
        sizes[t.group] += 1
    mine = [it for it in items if it.get("generator") == "prototype"]
    if not mine:
        return {}
    seq = generator_sequence(shares, 1 + max(it["candidate"] for it in mine))
    plans: dict[str, list] = {}
    out = {}
    for it in mine:
        t = by_key[it["search"]]
        if t.key not in plans:
            plans[t.key] = substitutions(element_counts(t.species), library, limit=max(1, seq.count("prototype")))
            if not plans[t.key]:
                log.warning(
                    "predict/%s %s: no training prototype with its anonymous formula and %d atoms (other than "
                    "its own composition): random structures instead",
                    name,
                    t.key,
                    t.n_atoms,
                )
        n, c = sizes[t.group], it["candidate"]
        k = sum(1 for c2 in range(c) if seq[c2] == "prototype" and c2 % n == c % n)
        plan = plans[t.key]
        if not plan:
            out[it["id"]] = (None, None, None)
            continue
        _, pid, mapping = plan[k % len(plan)]
        proto = next(s for i, s in library[(anonymous(element_counts(t.species)), t.n_atoms)] if i == pid)
        out[it["id"]] = (substituted(proto, mapping), pid, substitution_label(mapping))
    return out
