"""Ion-transport screening of relaxed crystals: migration graphs (pymatgen-analysis-diffusion) with the
percolation dimensionality of the mobile-ion sublattice, then CHGNet molecular dynamics of the best
candidates analysed with `DiffusionAnalyzer` (diffusivity, conductivity, Arrhenius fit).

Percolation dimensionality: the hop network of the ion sites is a periodic graph (an edge is a hop
from site u to site v in the cell shifted by the integer vector j). Walking a connected component from
one site gives every site an image offset; each edge that closes a loop contributes the translation
offset[u] + j - offset[v], and the component extends to infinity along the lattice those translations
span: its rank (0-3) is the number of independent periodic directions the ions can travel. The
structure's dimensionality is the largest over its components.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.materials.md import arrhenius


@dataclass
class ScreenSettings:
    """The migration-graph screen (a run's validated `transport` section; defaults live in the schema)."""

    ions: list
    max_e_hull: float  # eV/atom; only structures at or below (stable or metastable) are screened
    max_hop: float  # A; hops up to this length make the migration graph
    hop_cutoff: float  # A; percolation counted over hops up to this length
    symprec: float

    @classmethod
    def from_section(cls, t: dict, **override) -> ScreenSettings:
        return replace(cls(**{f: t[f] for f in cls.__dataclass_fields__}), **override)


# ---------------------------------------------------------------------------------------------------
# migration graph and percolation


def lattice_rank(vectors) -> int:
    v = np.asarray(list(vectors), dtype=float).reshape(-1, 3)
    return int(np.linalg.matrix_rank(v)) if len(v) else 0


def percolation_dimension(n_nodes: int, edges) -> int:
    """Dimensionality (0-3) of a periodic graph: `edges` are (u, v, jimage) hops from site u in the
    home cell to site v in the cell shifted by jimage."""
    adj: dict[int, list] = {i: [] for i in range(n_nodes)}
    for u, v, j in edges:
        j = np.asarray(j, dtype=int)
        adj[u].append((v, j))
        adj[v].append((u, -j))
    offset: dict[int, np.ndarray] = {}
    best = 0
    for start in range(n_nodes):
        if start in offset:
            continue
        offset[start] = np.zeros(3, dtype=int)
        stack, loops = [start], []
        while stack:
            u = stack.pop()
            for v, j in adj[u]:
                if v not in offset:
                    offset[v] = offset[u] + j
                    stack.append(v)
                else:
                    t = offset[u] + j - offset[v]
                    if t.any():
                        loops.append(t)
        best = max(best, lattice_rank(loops))
    return best


def connecting_hops(n_nodes: int, edges_with_length) -> dict[int, float]:
    """For d = 1, 2, 3: the shortest hop cut-off at which the network percolates in >= d directions
    (the longest hop an ion must make to cross the crystal in d dimensions); NaN where no hop of the
    graph gets there."""
    out = {d: math.nan for d in (1, 2, 3)}
    lengths = sorted({length for *_, length in edges_with_length})
    for cut in lengths:
        dim = percolation_dimension(n_nodes, [(u, v, j) for u, v, j, length in edges_with_length if length <= cut])
        for d in (1, 2, 3):
            if dim >= d and math.isnan(out[d]):
                out[d] = float(cut)
        if dim == 3:
            break
    return out


def migration_screen(structure, ion: str, settings: ScreenSettings) -> dict:
    """Migration graph of `ion` in `structure`: unique hops, shortest hop, the hops needed to percolate
    in 1/2/3 D and the percolation dimensionality at the hop cut-off. Never raises: a structure without
    the ion, or one whose graph cannot be built, gets `status` and `reason`."""
    from pymatgen.analysis.diffusion.neb.full_path_mapper import MigrationGraph

    row = {"ion": ion, "n_ion_sites": 0, "status": "screened", "reason": ""}
    n_ion = sum(1 for s in structure if s.specie.symbol == ion)
    row["n_ion_sites"] = n_ion
    if n_ion == 0:
        return {**row, "status": "skipped", "reason": f"no {ion} in {structure.composition.reduced_formula}"}
    if n_ion == len(structure):
        return {**row, "status": "skipped", "reason": f"{ion} is the only element (no host framework)"}
    t0 = time.time()
    try:
        mg = MigrationGraph.with_distance(structure, ion, max_distance=settings.max_hop, symprec=settings.symprec)
        edges = [
            (u, v, tuple(int(x) for x in d["to_jimage"]), float(d["hop"].length))
            for u, v, d in mg.m_graph.graph.edges(data=True)
        ]
        n_unique = len(mg.unique_hops)
    except Exception as exc:  # pymatgen raises many kinds (symmetry, graph): record and go on
        return {**row, "status": "graph_failed", "reason": f"{type(exc).__name__}: {str(exc)[:200]}"}
    conn = connecting_hops(n_ion, edges)
    row.update(
        n_hops=len(edges),
        n_unique_hops=n_unique,
        shortest_hop=min((e[3] for e in edges), default=math.nan),
        longest_hop=max((e[3] for e in edges), default=math.nan),
        hop_1d=conn[1],
        hop_2d=conn[2],
        hop_3d=conn[3],
        percolation_dim=percolation_dimension(n_ion, [e[:3] for e in edges if e[3] <= settings.hop_cutoff]),
        hop_cutoff=settings.hop_cutoff,
        graph_s=time.time() - t0,
    )
    if not edges:
        row["reason"] = f"no two {ion} sites within {settings.max_hop} A"
    return row


class ScreenWorker:
    """Called with (id, structure, ions) it returns one migration-screen row per ion the structure has."""

    def __init__(self, settings: ScreenSettings):
        self.settings = settings

    def __call__(self, job) -> list[dict]:
        sid, structure, ions = job
        return [{"id": sid, **migration_screen(structure, ion, self.settings)} for ion in ions]


# ---------------------------------------------------------------------------------------------------
# molecular dynamics


# ----------------------------------------------------------------------------- screen and table
SCREEN_COLUMNS = [
    "id",
    "formula",
    "ion",
    "e_hull",
    "unique",
    "new",
    "status",
    "reason",
    "n_ion_sites",
    "n_hops",
    "n_unique_hops",
    "shortest_hop",
    "longest_hop",
    "hop_1d",
    "hop_2d",
    "hop_3d",
    "percolation_dim",
    "hop_cutoff",
    "graph_s",
]


def screen_plan(structures: dict, stab: pd.DataFrame, settings: ScreenSettings, why_invalid, done: set):
    """What a screen does with each relaxed structure holding a mobile ion: (jobs to screen as (head,
    structure, ions), rows of the ones it does not screen, the number of structures without an ion).
    Not screened: status `invalid` (`why_invalid(structure)` names the validity test it fails, "" when
    valid) or `above_hull_cut` (E_hull above the cut or none). `done`: (id, ion) pairs finished before;
    `stab`: stability.csv by id."""
    jobs, skipped, n_without = [], [], 0
    for sid, s in structures.items():
        ions = [ion for ion in settings.ions if ion in {el.symbol for el in s.composition}]
        if not ions:
            n_without += 1
            continue
        st = stab.loc[sid] if sid in stab.index else None
        head = {
            "id": sid,
            "formula": s.composition.reduced_formula,
            "e_hull": float(st["e_hull"]) if st is not None else math.nan,
            "unique": bool(st["unique"]) if st is not None else False,
            "new": bool(st["new"]) if st is not None else False,
        }
        todo = [ion for ion in ions if (sid, ion) not in done]
        if not todo:
            continue
        why = why_invalid(s)
        status = "invalid"
        if not why and (not np.isfinite(head["e_hull"]) or head["e_hull"] > settings.max_e_hull):
            status = "above_hull_cut"
            why = (
                "no E_hull (see stability.csv)"
                if not np.isfinite(head["e_hull"])
                else f"E_hull {head['e_hull']:.3f} > {settings.max_e_hull} eV/atom"
            )
        if why:
            skipped += [{**head, "ion": ion, "status": status, "reason": why} for ion in todo]
        else:
            jobs.append((head, s, todo))
    return jobs, skipped, n_without


def md_candidates(screen: pd.DataFrame, n: int) -> pd.DataFrame:
    """The best `n` screened rows: new and unique ones first, then the highest percolation
    dimensionality, the shortest hop needed to percolate in 1 D, the lowest E_hull."""
    ok = screen[screen["status"] == "screened"].copy()
    ok["_h1"] = ok["hop_1d"].fillna(np.inf)
    ok["_sun"] = ok["new"].astype(bool) & ok["unique"].astype(bool)
    ok = ok.sort_values(["_sun", "percolation_dim", "_h1", "e_hull", "id"], ascending=[False, False, True, True, True])
    return ok.drop(columns=["_h1", "_sun"]).head(n)


def transport_rows(screen: pd.DataFrame, md: list[dict], structures: dict, md_ps: float) -> pd.DataFrame:
    """The screen rows with D and sigma (and their errors) per temperature from the MD records, the
    Arrhenius activation energy and sigma(300 K) where >= 3 temperatures ran, the simulated time behind
    D (`md_ps`: sub-picosecond runs measure ballistic motion, not diffusion) and `conductor_candidate`
    (screened, new, unique, percolating in >= 1 D)."""
    by: dict = {}
    for r in md:
        sid, ion, _ = r["key"].rsplit("|", 2)
        by.setdefault((sid, ion), []).append(r)
    extra = []
    for _, row in screen.iterrows():
        runs = sorted(by.get((row["id"], row["ion"]), []), key=lambda r: r["temperature"])
        e = {"md_runs": len(runs), "md_failed": sum(1 for r in runs if not r["ok"])}
        if runs:
            e["md_ps"] = md_ps
        for r in runs:
            tk = f"{r['temperature']:g}K"
            for col in ("D", "D_err", "sigma", "sigma_err"):
                e[f"{col}_{tk}"] = r.get(col, math.nan) if r["ok"] else math.nan
            if not r["ok"]:
                e[f"md_error_{tk}"] = r["error"]
        good = [r for r in runs if r["ok"]]
        if good:
            temps, ds = [r["temperature"] for r in good], [r["D"] for r in good]
            e.update(arrhenius(temps, ds, structures[row["id"]], row["ion"]))
        extra.append(e)
    out = pd.concat([screen, pd.DataFrame(extra, index=screen.index)], axis=1) if len(screen) else screen.copy()
    for col in ("E_a", "E_a_err", "sigma_300K"):
        if col not in out:
            out[col] = math.nan
    out["conductor_candidate"] = (
        (out["status"] == "screened")
        & out["new"].astype(bool)
        & out["unique"].astype(bool)
        & (out["percolation_dim"].fillna(0) >= 1)
    )
    return out


def transport_summary(df: pd.DataFrame) -> dict:
    """The DNG metric columns of a transport table."""
    cand = df[df["conductor_candidate"].astype(bool)] if len(df) else df
    return {
        "n_transport_invalid": int(df[df["status"] == "invalid"]["id"].nunique()) if len(df) else 0,
        "n_transport_screened": int((df["status"] == "screened").sum()) if len(df) else 0,
        "n_conductor_candidates": int(cand["id"].nunique()) if len(df) else 0,
        "best_sigma_300K": float(df["sigma_300K"].max()) if len(df) and df["sigma_300K"].notna().any() else math.nan,
    }


def screen_many(jobs: list[tuple], settings: ScreenSettings, partial: Path, workers: int = 1) -> None:
    """Migration graphs of `jobs` ((head, structure, ions) of screen_plan) in chunks over `workers` forked
    processes, each chunk's rows appended to `partial` as it finishes (an interrupted screen resumes)."""
    from tqdm import tqdm

    from crystalflow_core.io import append_jsonl
    from crystalflow_core.parallel import fork_map

    chunk = max(1, 4 * max(1, workers))
    with tqdm(total=len(jobs), desc="migration graphs", mininterval=5) as bar:
        for i in range(0, len(jobs), chunk):
            part = jobs[i : i + chunk]
            jobs_part = [(h["id"], s, ions) for h, s, ions in part]
            rows = fork_map(lambda: ScreenWorker(settings), jobs_part, workers, desc="migration graphs")
            for (head, _, _), per_ion in zip(part, rows):
                for row in per_ion:
                    append_jsonl(partial, {**head, **row})
            bar.update(len(part))
