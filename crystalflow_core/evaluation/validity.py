"""Validity of a generated structure under each protocol: the authors' shape check, interatomic distances,
SMACT charge balance (their caps), the reason a structure is invalid."""

from __future__ import annotations

import functools
import logging
import math
import warnings

import numpy as np

log = logging.getLogger(__name__)


PROTOCOLS = ("crystalflow", "diffcsp")


MAX_OX_COMBINATIONS = 1e7  # the authors' cap on the oxidation-state product


MAX_ELEMENTS = 8  # the authors count compositions of 8 or more elements as invalid


def _quiet(method):
    """Run `method` with warnings silenced inside it only (pymatgen and matminer warn per structure)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return method(*args, **kwargs)

    return wrapper


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown metrics protocol '{protocol}' ({', '.join(PROTOCOLS)})")


def is_odd(structure) -> bool:
    """The authors' shape check: an angle < 10 or > 170 deg, a length / N^(1/3) > 20 or < 0.1, or a
    volume per atom outside (0.1, 100) A^3."""
    lengths = np.array(structure.lattice.abc)
    angles = np.array(structure.lattice.angles)
    n = len(structure)
    scaled = lengths / n ** (1.0 / 3.0)
    vpa = structure.volume / n
    return bool(
        np.any(angles < 10)
        or np.any(angles > 170)
        or np.any(scaled > 20)
        or np.any(scaled < 0.1)
        or not (0.1 < vpa < 100)
    )


def structure_valid(structure, cutoff: float = 0.5, *, protocol: str) -> bool:
    """diffcsp: all interatomic distances > cutoff (A) and volume > 0.1 A^3.
    crystalflow: constructible (finite, volume >= 0.1), not odd, and every distance >= cutoff with
    an atom's distance to itself replaced by the shortest lattice length."""
    if structure is None:
        return False
    try:
        vol = structure.volume
        if not math.isfinite(vol) or vol < 0.1:
            return False
        if protocol == "crystalflow":
            if is_odd(structure):
                return False
            dm = structure.distance_matrix + np.eye(len(structure)) * min(structure.lattice.abc)
            return bool(dm.min() >= cutoff)
        if len(structure) == 1:
            return min(structure.lattice.abc) > cutoff
        dm = structure.distance_matrix + np.eye(len(structure)) * (cutoff + 10.0)
        return bool(dm.min() >= cutoff)
    except Exception:
        return False


def smact_valid(
    symbols: list[str], counts: list[int], pauling: bool = True, alloys: bool = True, *, protocol: str
) -> bool:
    """SMACT charge neutrality + Pauling electronegativity test (single elements and all-metal
    alloys count as valid), on the gcd-reduced stoichiometry.

    Same answer as enumerating every combination of oxidation states (the CDVAE/DiffCSP code) but
    without the exponential product: the Pauling test (every cation less electronegative than
    every anion, smact's eneg_states_test) means some cut t separates them, so for each candidate
    cut the reachable charge sums are built element by element and neutrality is a set lookup.
    crystalflow protocol: >= 8 elements invalid first, SMACT 1.4 oxidation states, more than 1e7
    combinations invalid, no states -> invalid. A missing electronegativity (Pm, He, Ne, Ar) fails the
    Pauling test under both protocols, as SMACT's eneg_states_test does (the authors' `except TypeError`
    never fires with it).
    """
    import smact

    _check_protocol(protocol)
    cf = protocol == "crystalflow"
    if cf and len(set(symbols)) >= MAX_ELEMENTS:
        return False
    if len(set(symbols)) == 1:
        return True
    if alloys and all(s in smact.metals for s in symbols):
        return True
    g = math.gcd(*counts)
    counts = [c // g for c in counts]
    try:
        space = smact.element_dictionary(symbols)
        els = [space[s] for s in symbols]
    except Exception:  # element unknown to SMACT
        return False
    eneg = [e.pauling_eneg for e in els]
    if cf:
        ox = [sorted(set(e.oxidation_states_smact14 or [])) for e in els]
        if math.prod(len(o) for o in ox) > MAX_OX_COMBINATIONS:
            return False
        if not all(ox):
            return False
    else:
        ox = [sorted(set(e.oxidation_states or [0])) for e in els]  # noble gases carry no states
    if not pauling:
        return _neutral_reachable(ox, counts, lambda s, e: True, eneg)
    if any(e is None or (isinstance(e, float) and math.isnan(e)) for e in eneg):
        return False  # smact's Pauling test fails whenever an electronegativity is missing
    for cut in sorted(set(eneg)) + [math.inf]:
        allowed = lambda s, e, cut=cut: s == 0 or (s > 0 and e < cut) or (s < 0 and e >= cut)  # noqa: E731
        if _neutral_reachable(ox, counts, allowed, eneg):
            return True
    return False


def _neutral_reachable(ox, counts, allowed, eneg) -> bool:
    sums = {0}
    for states, c, e in zip(ox, counts, eneg):
        opts = [s for s in states if allowed(s, e)]
        if not opts:
            return False
        sums = {x + c * s for x in sums for s in opts}
    return 0 in sums


def composition_valid(structure, protocol: str) -> bool:
    if structure is None:
        return False
    comp = structure.composition
    syms = [el.symbol for el in comp.elements]
    counts = [int(round(comp[el])) for el in comp.elements]
    return smact_valid(syms, counts, protocol=protocol)


def valid(structure, protocol: str) -> bool:
    """Structurally and compositionally valid under a metric protocol."""
    return structure_valid(structure, protocol=protocol) and composition_valid(structure, protocol)


def invalid_reason(structure, protocol: str) -> str:
    """Why a relaxed structure is not worth screening: "" when it is structurally and compositionally
    valid under the run's metric protocol (the DNG validity), else which test it fails."""
    why = [
        w
        for w, ok in (
            ("structurally", structure_valid(structure, protocol=protocol)),
            ("compositionally", composition_valid(structure, protocol=protocol)),
        )
        if not ok
    ]
    return f"{' and '.join(why)} invalid ({protocol} protocol)" if why else ""
