"""Wyckoff assignments for a symmetric model's candidates: which space group and Wyckoff positions each
candidate of a composition is sampled in.

Three sources, as a predict job says:
- `spacegroups: [225, ...]`: every assignment of the composition's atoms to the group's Wyckoff positions
  (pyxtal's enumeration, in the conventional cell of the search's size);
- `spacegroups: ["225_Na1x4a_Cl1x4b", ...]`: the strings as given (checked against the formula);
- `symmetry: auto`: templates, as DiffCSP++ retrieves them: the space groups and Wyckoff patterns of the
  training crystals with the same anonymous formula and cell size (AB2 at 6 atoms per primitive cell), their
  elements replaced by the composition's of the same count. From the run's training split only, never the
  test split; the most common pattern first.
Cell sizes compare as primitive cells: a conventional cell holds 2 (A, B, C, I), 3 (R) or 4 (F) of them.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, defaultdict

from crystalflow_core.crystals.wyckoff import WyckoffString, parse_wyckoff, wyckoff_of_sites

log = logging.getLogger("crystalflow")

CENTRING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}
MAX_PER_GROUP = 20  # assignments of one space group to one cell (pyxtal's enumeration can be long)
MAX_RELABELLINGS = 6  # element relabellings of one template (elements of equal count swap places)


def centring(spacegroup: int) -> int:
    """Primitive cells per conventional cell of a space group (pyxtal's settings: R groups hexagonal)."""
    from crystalflow_core.crystals.wyckoff import space_group

    return CENTRING[space_group(spacegroup).symbol[0]]


def anonymous(counts: dict) -> tuple:
    """The anonymous formula of a cell's element counts: the sorted counts (AB2 at 6 atoms: (2, 4))."""
    return tuple(sorted(int(v) for v in counts.values()))


def element_counts(atom_types) -> dict[str, int]:
    """Atoms of each element among atomic numbers (a search's `species`, a structure's atomic_numbers), in the
    order first seen."""
    from pymatgen.core import Element

    counts: dict[str, int] = {}
    for z in atom_types:
        el = Element.from_Z(int(z)).symbol
        counts[el] = counts.get(el, 0) + 1
    return counts


def equal_count_maps(old: dict, new: dict, limit: int) -> list[dict]:
    """Every mapping of the elements of `old` onto those of `new` with the same atom count (elements of equal
    count swap places), at most `limit`; [] when the anonymous formulas differ. Templates are relabelled and
    prototypes substituted by these."""
    if anonymous(old) != anonymous(new):
        return []
    by_old, by_new = defaultdict(list), defaultdict(list)
    for el, n in sorted(old.items()):
        by_old[n].append(el)
    for el, n in sorted(new.items()):
        by_new[n].append(el)
    blocks = [[dict(zip(by_old[n], p)) for p in itertools.permutations(by_new[n])] for n in sorted(by_old)]
    return [
        {k: v for part in combo for k, v in part.items()}
        for combo in itertools.islice(itertools.product(*blocks), limit)
    ]


def primitive_counts(ws: WyckoffString) -> dict:
    f = centring(ws.spacegroup)
    return {el: n // f for el, n in ws.composition.items()}


def relabelled(template: WyckoffString, counts: dict) -> list[str]:
    """The template's Wyckoff string with its elements replaced by those of `counts` (primitive-cell
    element counts) of the same count, every such relabelling (at most MAX_RELABELLINGS); [] when the
    counts do not fit."""
    out = []
    for rename in equal_count_maps(primitive_counts(template), counts, MAX_RELABELLINGS):
        sites = [(rename[s.element], s.letter, s.multiplicity) for s in template.sites for _ in range(s.count)]
        out.append(str(wyckoff_of_sites(template.spacegroup, sites)))
    return out


def template_library(wyckoff_strings: list[str], ids: list[str]) -> dict:
    """{(anonymous formula, primitive atoms): [(Wyckoff string, how many training crystals, first id)]},
    the most common first."""
    seen: dict[tuple, Counter] = defaultdict(Counter)
    first: dict[str, str] = {}
    for w, i in zip(wyckoff_strings, ids):
        ws = parse_wyckoff(w)
        counts = primitive_counts(ws)
        seen[(anonymous(counts), sum(counts.values()))][w] += 1
        first.setdefault(w, i)
    return {key: [(w, n, first[w]) for w, n in c.most_common()] for key, c in seen.items()}


def group_assignments(spacegroup: int, counts: dict) -> list[str]:
    """Every assignment (at most MAX_PER_GROUP) of a cell's atoms (`counts`: primitive-cell element counts)
    to the Wyckoff positions of a space group, as Wyckoff strings; [] when the group cannot hold them."""
    from crystalflow_core.crystals.wyckoff import space_group

    f = centring(spacegroup)
    els = sorted(counts)
    conv = [counts[el] * f for el in els]
    try:
        combos = space_group(spacegroup).list_wyckoff_combinations(conv)[0]
    except Exception:  # pyxtal: an impossible count raises rather than returning nothing
        return []
    out = []
    for combo in combos[:MAX_PER_GROUP]:
        sites = [(el, label[-1], int(label[:-1])) for el, labels in zip(els, combo) for label in labels]
        out.append(str(wyckoff_of_sites(spacegroup, sites)))
    return out


def search_assignments(search, job: dict, library: dict | None) -> list[tuple[str, str]]:
    """[(Wyckoff string, where it came from)] for one search (composition at one cell size)."""
    counts = element_counts(search.species)
    out: list[tuple[str, str]] = []
    for sg in job["spacegroups"]:
        if isinstance(sg, str):
            ws = parse_wyckoff(sg, search.formula)
            if sum(primitive_counts(ws).values()) == search.n_atoms:
                out.append((str(ws), "given"))
        else:
            out += [(w, f"space group {sg}") for w in group_assignments(int(sg), counts)]
    if job["symmetry"] == "auto" and library is not None:
        for w, n, first in library.get((anonymous(counts), search.n_atoms), []):
            out += [(r, f"template {first} ({n} training crystals)") for r in relabelled(parse_wyckoff(w), counts)]
    distinct = list(dict.fromkeys(w for w, _ in out))
    source = {}
    for w, s in out:
        source.setdefault(w, s)
    return [(w, source[w]) for w in distinct]


def p1_assignment(search) -> str:
    """Space group 1 with every atom on the general position: the assignment that constrains nothing."""
    counts = element_counts(search.species).items()
    return str(wyckoff_of_sites(1, [(el, "a", 1) for el, n in counts for _ in range(n)]))


def with_assignments(items: list[dict], searches: list, job: dict, library: dict | None, name: str) -> list[dict]:
    """Each candidate item with its Wyckoff string (`wyckoff`), its generating space group and where the
    assignment came from: candidate c of a search takes its c-th assignment (cycling). A search without one
    samples in P1, with a warning."""
    per_search = {}
    for t in searches:
        found = search_assignments(t, job, library)
        if not found:
            log.warning(
                "predict/%s %s: no Wyckoff assignment from %s: its candidates are sampled in P1",
                name,
                t.key,
                "the space groups given" if job["spacegroups"] else "the training templates",
            )
            found = [(p1_assignment(t), "P1 (no assignment found)")]
        per_search[t.key] = found
    out = []
    for it in items:
        found = per_search[it["search"]]
        w, source = found[it["candidate"] % len(found)]
        out.append({**it, "wyckoff": w, "spacegroup_generated": int(w.split("_")[0]), "assignment": source})
    return out
