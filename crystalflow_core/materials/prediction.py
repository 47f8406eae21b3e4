"""Structure prediction for a user's compositions (CSP as a search): the targets of a `predict` job,
the sampler's items, and the ranking of the relaxed candidates into distinct polymorphs.

A target is one composition with a number of atoms per cell at one pressure. Its candidates are
sampled from a CSP model, relaxed with CHGNet at the target's pressure (enthalpy H = E + PV), grouped
into polymorphs with pymatgen's StructureMatcher and ranked by enthalpy per atom. Targets of the same
composition and pressure (different z) are ranked together: enthalpies per atom compare across cell
sizes, and the same polymorph found in a 6- and a 12-atom cell is one polymorph.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from crystalflow_core.compositions import Target
from crystalflow_core.materials.relax import finished

log = logging.getLogger(__name__)


def candidate_items(targets: list[Target], n_candidates: int, pressure_condition: bool) -> list[dict]:
    """The sampler's items: n_candidates per composition and pressure, spread over its cell sizes in turn
    (candidate c takes the (c mod n_sizes)-th z), ids `{target}#{c}`; each with its target's pressure
    (`pressure_gpa`, the relaxation's) and, for a pressure-conditioned model, that pressure as the condition."""
    groups: dict[str, list[Target]] = {}
    for t in targets:
        groups.setdefault(t.group, []).append(t)
    items = []
    for sizes in groups.values():
        sizes = sorted(sizes, key=lambda t: t.z)
        for c in range(n_candidates):
            t = sizes[c % len(sizes)]
            it = {
                "id": f"{t.key}#{c}",
                "target": t.key,
                "candidate": c,
                "num_atoms": t.n_atoms,
                "atom_types": list(t.species),
                "pressure_gpa": t.pressure_gpa,
            }
            if pressure_condition:
                it["condition"] = {"pressure": t.pressure_gpa}
            items.append(it)
    return items


def candidate_record(item: dict, structure, **extra) -> dict:
    """A sample record, as the sampler writes it, of a candidate whose structure came from elsewhere (random
    search, a test's stand-in)."""
    rec = {k: v for k, v in item.items() if k != "atom_types"}
    rec.update(
        lattice=structure.lattice.matrix.tolist(),
        species=[site.specie.Z for site in structure],
        frac_coords=structure.frac_coords.tolist(),
        flag="",
        **extra,
    )
    return rec


# ----------------------------------------------------------------------------- per candidate
def spacegroup(structure, symprec: float) -> tuple[str, int]:
    """International symbol and number (spglib through pymatgen); ("", 0) where spglib finds none."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        return sga.get_space_group_symbol(), int(sga.get_space_group_number())
    except Exception:
        return "", 0


# what a candidate's relaxation record gives its row
RELAXATION_COLUMNS = (
    "initial_energy_per_atom",
    "initial_enthalpy_per_atom",
    "energy_per_atom",
    "enthalpy_per_atom",
    "initial_stress_pressure_gpa",
    "stress_pressure_gpa",
)
CANDIDATE_COLUMNS = [
    "id",
    "target",
    "group",
    "formula",
    "z",
    "cell",
    "n_atoms",
    "pressure_gpa",
    "pressure_aware",
    "flag",
    "error",
    "converged",
    "steps",
    *RELAXATION_COLUMNS,
    "density",
    "volume_per_atom",
    "spacegroup_loose",
    "spacegroup_number_loose",
    "spacegroup_tight",
    "spacegroup_number_tight",
    "cluster",
    "status",
]


def candidate_table(targets: list[Target], samples: list[dict], relaxed: list[dict], symprec) -> tuple:
    """(candidates DataFrame without clusters, {id: relaxed Structure}) from the sample and relaxation
    records of a job."""
    from crystalflow_core.crystals.crystal import structure_from

    by_key = {t.key: t for t in targets}
    rel = {r["id"]: r for r in relaxed}
    rows, finals = [], {}
    for smp in samples:
        t = by_key[smp["target"]]
        r = rel.get(smp["id"], {})
        row = {c: np.nan for c in CANDIDATE_COLUMNS}
        row.update(
            id=smp["id"],
            target=t.key,
            group=t.group,
            formula=t.formula,
            z=t.z,
            cell=t.cell,
            n_atoms=t.n_atoms,
            pressure_gpa=t.pressure_gpa,
            pressure_aware=smp.get("pressure_aware", np.nan),
            flag=smp.get("flag", ""),
            error=r.get("error", "" if r else "not relaxed"),
            converged=bool(r.get("converged", False)),
            steps=int(r.get("steps", 0)),
            spacegroup_loose="",
            spacegroup_tight="",
            cluster=-1,
        )
        for k in RELAXATION_COLUMNS:
            row[k] = r.get(k, np.nan)
        if finished(r):
            s = structure_from(r["final"])
            finals[smp["id"]] = s
            row["density"] = float(s.density)
            row["volume_per_atom"] = float(s.volume / len(s))
            for tag, prec in zip(("loose", "tight"), symprec):
                row[f"spacegroup_{tag}"], row[f"spacegroup_number_{tag}"] = spacegroup(s, prec)
        rows.append(row)
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS), finals


# ----------------------------------------------------------------------------- polymorphs
def cluster_polymorphs(
    structures: list, enthalpies: list[float], ltol: float, stol: float, angle_tol: float, energy_window: float = 0.1
) -> list[int]:
    """Cluster index per structure: lowest enthalpy first, each structure joins the first earlier cluster
    whose representative (its lowest-enthalpy member) StructureMatcher matches, else opens a new one.
    Only representatives within `energy_window` eV/atom are compared (the same polymorph relaxed twice
    lands within a few meV/atom; the window only saves comparisons)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True, attempt_supercell=True)
    order = sorted(range(len(structures)), key=lambda i: (enthalpies[i], i))
    reps: list[int] = []  # structure index of each cluster's representative
    labels = [-1] * len(structures)
    for i in order:
        for c, j in enumerate(reps):
            if abs(enthalpies[i] - enthalpies[j]) > energy_window:
                continue
            if sm.fit(structures[j], structures[i]):
                labels[i] = c
                break
        else:
            labels[i] = len(reps)
            reps.append(i)
    return labels


SYMMETRY_COLUMNS = ["spacegroup_symmetrised", "enthalpy_symmetrised_per_atom", "symmetrised_delta_mev", "symmetry_note"]
RANKED_COLUMNS = [
    "group",
    "rank",
    "formula",
    "pressure_gpa",
    "best_id",
    "cell",
    "enthalpy_per_atom",
    "energy_per_atom",
    "delta_h_mev",
    "spacegroup_loose",
    "spacegroup_tight",
    "spacegroup_number_tight",
    "n_candidates",
    "n_converged",
    "z_found",
    "density",
    "converged",
    "e_hull",
    "e_hull_reason",
    "hull",
    "hull_suspect",
    *SYMMETRY_COLUMNS,
    "cif",
]


def rank_polymorphs(
    cands: pd.DataFrame, finals: dict, dedupe: dict, rank_unconverged: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster the relaxed candidates of each group (composition and pressure) and rank the clusters by
    the enthalpy per atom of their best member. Only physical structures (no relaxation error) rank, and
    only converged ones unless `rank_unconverged`; `status` says of every candidate whether it ranked and
    why not. Returns (candidates with `cluster` and `status`, ranked polymorphs)."""
    cands = cands.copy()
    ranks = cands["id"].isin(finals) & cands["enthalpy_per_atom"].notna()
    if not rank_unconverged:
        ranks &= cands["converged"].astype(bool)
    cands["status"] = np.where(
        ranks,
        "ranked",
        np.where(
            cands["error"].fillna("") != "",
            cands["error"].fillna(""),
            np.where(cands["converged"].astype(bool), "no enthalpy", "not converged"),
        ),
    )
    ranked = []
    for group, g in cands[ranks].groupby("group", sort=True):
        ok = g
        if not len(ok):
            continue
        ids = list(ok["id"])
        h = [float(x) for x in ok["enthalpy_per_atom"]]
        labels = cluster_polymorphs([finals[i] for i in ids], h, dedupe["ltol"], dedupe["stol"], dedupe["angle_tol"])
        cands.loc[ok.index, "cluster"] = labels
        members = ok.assign(cluster=labels)
        best_h = min(h)
        for c, m in members.groupby("cluster"):
            best = m.loc[m["enthalpy_per_atom"].idxmin()]
            ranked.append(
                {
                    "group": group,
                    "cluster": int(c),
                    "formula": best["formula"],
                    "pressure_gpa": best["pressure_gpa"],
                    "best_id": best["id"],
                    "cell": best["cell"],
                    "enthalpy_per_atom": float(best["enthalpy_per_atom"]),
                    "energy_per_atom": float(best["energy_per_atom"]),
                    "delta_h_mev": 1000.0 * (float(best["enthalpy_per_atom"]) - best_h),
                    "spacegroup_loose": best["spacegroup_loose"],
                    "spacegroup_tight": best["spacegroup_tight"],
                    "spacegroup_number_tight": best["spacegroup_number_tight"],
                    "n_candidates": int(len(m)),
                    "n_converged": int(m["converged"].astype(bool).sum()),
                    "z_found": ",".join(str(int(z)) for z in sorted(set(m["z"]))),
                    "density": float(best["density"]),
                    "converged": bool(best["converged"]),
                }
            )
    df = pd.DataFrame(ranked)
    if not len(df):
        return cands, pd.DataFrame(columns=RANKED_COLUMNS)
    df = df.sort_values(["group", "enthalpy_per_atom", "best_id"]).reset_index(drop=True)
    df["rank"] = df.groupby("group").cumcount() + 1
    # the candidates' cluster numbers follow the ranks (1 = lowest enthalpy)
    rank_of = {(r["group"], r["cluster"]): int(r["rank"]) for _, r in df.iterrows()}
    has = cands["cluster"].astype(float) >= 0
    cands.loc[has, "cluster"] = [
        rank_of[(g, int(c))] for g, c in zip(cands.loc[has, "group"], cands.loc[has, "cluster"])
    ]
    for col in ("e_hull", "e_hull_reason", "hull", "hull_suspect", *SYMMETRY_COLUMNS, "cif"):
        df[col] = {"e_hull": np.nan, "hull_suspect": False}.get(col, "")
    for col in ("enthalpy_symmetrised_per_atom", "symmetrised_delta_mev"):
        df[col] = np.nan
    return cands, df[RANKED_COLUMNS]


def e_hull_at_zero_pressure(ranked: pd.DataFrame, finals: dict, refs: dict, hull, scales: dict) -> pd.DataFrame:
    """E_hull (eV/atom) of every polymorph at 0 GPa on the run's hull, with the hull's name and the suspect
    flag; `scales`: the energy scale of each candidate's record (its potential's: CHGNet's energies are
    MP2020-corrected already). NaN with the reason where there is none (another pressure, MP2020 refused,
    element without a reference)."""
    from crystalflow_core.materials.hull import hull_columns, on_hull_scale

    ranked = ranked.copy()
    ranked["hull"] = f"{hull.source} ({len(hull)} entries)"
    for i, r in ranked.iterrows():
        if r["pressure_gpa"] != 0:
            ranked.at[i, "e_hull_reason"] = "E_hull only at 0 GPa"
            continue
        s = finals[r["best_id"]]
        corrected, why = on_hull_scale(s, float(r["energy_per_atom"]) * len(s), scales[r["best_id"]])
        if not math.isfinite(corrected):
            ranked.at[i, "e_hull_reason"] = why
            continue
        try:
            h = hull_columns(s, corrected, refs, hull)
        except KeyError as exc:
            ranked.at[i, "e_hull_reason"] = str(exc).strip("'\"")
            continue
        ranked.at[i, "e_hull"], ranked.at[i, "hull_suspect"] = h["e_hull"], bool(h["hull_suspect"])
    return ranked


def cif_name(row) -> str:
    """group, rank, formula and the symmetrised space group: SiO2_p0_r01_SiO2_P3_221.cif (slashes replaced)."""
    sg = row.get("spacegroup_symmetrised") or row["spacegroup_tight"] or "P1"
    return f"{row['group']}_r{int(row['rank']):02d}_{row['formula']}_{str(sg).replace('/', '_')}.cif"


def symmetrise(structure, symprec: float, settings, calc, keep_symprec: float) -> tuple:
    """(structure, columns): the structure refined at its space group at `symprec` (spglib's standard
    primitive cell), re-relaxed with that symmetry kept (FixSymmetry, same pressure and settings); the
    columns give the space group it keeps, its enthalpy per atom and the change against the unsymmetrised
    one (meV/atom), so a symmetrisation that raises H never passes unseen. Where the refinement or its
    relaxation fails the unsymmetrised structure stays, with the reason in `symmetry_note`. `keep_symprec`:
    the tolerance of the symmetry kept while relaxing and of the space group read after."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from crystalflow_core.crystals.crystal import structure_from
    from crystalflow_core.materials.relax import relax_structure

    try:
        refined = SpacegroupAnalyzer(structure, symprec=symprec).get_primitive_standard_structure()
    except Exception as exc:
        return structure, {"symmetry_note": f"not refined ({type(exc).__name__})"}
    rec = relax_structure(refined, settings, calc=calc, fix_symmetry=keep_symprec)
    if not finished(rec):
        return structure, {"symmetry_note": f"symmetrised relaxation failed: {rec.get('error', '')}"}
    final = structure_from(rec["final"])
    sg, _ = spacegroup(final, keep_symprec)
    note = "" if rec["converged"] else "symmetrised relaxation not converged"
    return final, {
        "spacegroup_symmetrised": sg,
        "enthalpy_symmetrised_per_atom": float(rec["enthalpy_per_atom"]),
        "symmetry_note": note,
    }


# ----------------------------------------------------------------------------- pressure scan
PHASE_COLUMNS = [
    "formula",
    "polymorph",
    "spacegroup",
    "pressure_gpa",
    "enthalpy_per_atom",
    "volume_per_atom",
    "converged",
    "error",
]


def distinct_across_pressures(entries: list[tuple], dedupe: dict) -> list[tuple]:
    """(label, structure) of every distinct polymorph among `entries` (label, structure), first seen first:
    one found at 0 and at 20 GPa is one."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher(
        ltol=dedupe["ltol"], stol=dedupe["stol"], angle_tol=dedupe["angle_tol"], primitive_cell=True, scale=True
    )
    kept: list[tuple] = []
    for label, s in entries:
        if not any(sm.fit(s, k) for _, k in kept):
            kept.append((label, s))
    return kept


def enthalpy_scan(  # noqa: PLR0913
    polymorphs: list[tuple], pressures: list[float], settings, calc, formula: str, symprec: float
) -> pd.DataFrame:
    """H(P): every polymorph (label, structure) relaxed at every pressure, each pressure starting from the
    structure relaxed at the one before (in increasing order), space group kept free."""
    from dataclasses import replace

    from crystalflow_core.crystals.crystal import structure_from
    from crystalflow_core.materials.relax import relax_structure

    rows = []
    for label, s0 in polymorphs:
        s = s0
        for p in sorted(pressures):
            rec = relax_structure(s, replace(settings, pressure=float(p), record_energies=False), calc=calc)
            ok = finished(rec)
            if ok:
                s = structure_from(rec["final"])
            rows.append(
                {
                    "formula": formula,
                    "polymorph": label,
                    "spacegroup": spacegroup(s, symprec)[0] if ok else "",
                    "pressure_gpa": float(p),
                    "enthalpy_per_atom": rec.get("enthalpy_per_atom", np.nan) if ok else np.nan,
                    "volume_per_atom": rec["volume"] / len(s) if ok else np.nan,
                    "converged": bool(rec.get("converged")),
                    "error": rec.get("error", ""),
                }
            )
    return pd.DataFrame(rows, columns=PHASE_COLUMNS)


def transitions(scan: pd.DataFrame) -> list[dict]:
    """Where the lowest-enthalpy polymorph changes along the pressures of a scan: between two adjacent
    pressures, the pressure where H of the old and the new lowest cross (linear in P between them)."""
    h = scan.pivot_table(index="pressure_gpa", columns="polymorph", values="enthalpy_per_atom").sort_index()
    out = []
    best = h.idxmin(axis=1)
    for (p0, a), (p1, b) in zip(list(best.items())[:-1], list(best.items())[1:]):
        if a == b or not isinstance(a, str) or not isinstance(b, str):
            continue
        d0, d1 = h.loc[p0, b] - h.loc[p0, a], h.loc[p1, b] - h.loc[p1, a]  # H(new) - H(old): > 0, then < 0
        pt = p0 + (p1 - p0) * d0 / (d0 - d1) if d0 != d1 else (p0 + p1) / 2
        out.append({"from": a, "to": b, "between_gpa": (float(p0), float(p1)), "transition_gpa": float(pt)})
    return out


def committee_ranks(ranked: pd.DataFrame, name: str, second: dict, top_n: int, threshold_ev: float) -> pd.DataFrame:
    """The `top_n` polymorphs of each composition and pressure re-ranked under a second potential `name`
    (`second`: {best_id: its record with enthalpy_per_atom}). Delta-H within a composition needs no energy scale (the
    MP2020 corrections of one composition cancel). Per polymorph: the second's enthalpy, delta-H and rank,
    `committee_rank_changed` and `committee_disagrees` (the two delta-H differ by more than `threshold_ev`
    eV/atom, or the second has no energy for it)."""
    ranked = ranked.copy()
    h_col, d_col, r_col = f"enthalpy_{name}_per_atom", f"delta_h_{name}_mev", f"rank_{name}"
    for col in (h_col, d_col, r_col):
        ranked[col] = np.nan
    ranked["committee_rank_changed"] = False
    ranked["committee_disagrees"] = False
    for _, g in ranked.groupby("group"):
        top = g[g["rank"] <= top_n]
        h = {i: second.get(r["best_id"], {}).get("enthalpy_per_atom", np.nan) for i, r in top.iterrows()}
        h = {i: v if (v is not None and np.isfinite(v)) else np.nan for i, v in h.items()}
        ok = {i: v for i, v in h.items() if np.isfinite(v)}
        order = sorted(ok, key=ok.get)
        best = ok[order[0]] if order else np.nan
        for i in top.index:
            ranked.at[i, h_col] = h[i]
            if i in ok:
                ranked.at[i, d_col] = 1000.0 * (ok[i] - best)
                ranked.at[i, r_col] = order.index(i) + 1
                ranked.at[i, "committee_rank_changed"] = int(ranked.at[i, "rank"]) != order.index(i) + 1
                gap = abs(ranked.at[i, d_col] - ranked.at[i, "delta_h_mev"]) / 1000.0
                ranked.at[i, "committee_disagrees"] = bool(gap > threshold_ev)
            else:
                ranked.at[i, "committee_disagrees"] = True
    return ranked
