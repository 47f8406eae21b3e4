"""Pictures of crystal structures: the best polymorphs of a prediction and the stable / S.U.N. samples of a DNG
run, drawn with ASE's matplotlib renderer (atoms coloured by element with a legend, the unit cell, two viewing
directions), formula, space group and energy in the title."""

from __future__ import annotations

import re
from pathlib import Path

from crystalflow_core.evaluation.plots import _plt, save, wrap

VIEWS = (("along c", "0x,0y,0z"), ("tilted", "-70x,20y,0z"))
SYMPREC = 0.1  # A: the space group in a DNG sample's title (the loose tolerance of a prediction's default pair)


def picture_name(label: str) -> str:
    """A file name for a picture of `label` (letters, digits, _ - . only)."""
    return "structure_" + re.sub(r"[^A-Za-z0-9_.-]", "_", label) + ".png"


def draw_structure(structure, path: Path, title: str) -> bool:
    """The structure (a pymatgen Structure) in two views, its elements in a legend, `title` above."""
    from ase.data import atomic_numbers
    from ase.data.colors import jmol_colors
    from ase.visualize.plot import plot_atoms
    from matplotlib.patches import Patch
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.wrap()  # every atom drawn inside the cell it belongs to
    plt = _plt()
    fig, axes = plt.subplots(1, len(VIEWS), figsize=(6.4, 3.6), layout="constrained")
    for ax, (name, rotation) in zip(axes, VIEWS):
        plot_atoms(atoms, ax, rotation=rotation, radii=0.45, show_unit_cell=2)
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    elements = sorted({s.symbol for s in structure.species}, key=lambda e: atomic_numbers[e])
    handles = [Patch(facecolor=jmol_colors[atomic_numbers[e]], edgecolor="k", label=e) for e in elements]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), fontsize=8)
    fig.suptitle(wrap(title, 80), fontsize=9)
    return save(fig, path)


def spacegroup_label(structure, symprec: float) -> str:
    """Space group symbol and number at `symprec` (P1 where spglib finds nothing)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except Exception:  # a structure spglib cannot take: drawn without its group
        return "P1 (1)"


def prediction_pictures(ranked, finals: dict, top_n: int, outdir: Path) -> list[str]:
    """A picture of each of the `top_n` best polymorphs of every composition and pressure (`ranked`: the job's
    ranked.csv; `finals`: id -> relaxed Structure)."""
    made = []
    for _, r in ranked[ranked["rank"].astype(int) <= top_n].iterrows():
        s = finals.get(r["best_id"])
        if s is None:
            continue
        sg = r.get("spacegroup_symmetrised") or r["spacegroup_tight"]
        name = picture_name(f"{r['group']}_r{int(r['rank']):02d}")
        title = (
            f"{r['group']} rank {int(r['rank'])}: {s.composition.formula.replace(' ', '')}, {sg}, "
            f"delta-H {float(r['delta_h_mev']):.1f} meV/atom"
        )
        draw_structure(s, outdir / name, title)
        made.append(name)
    return made


def dng_pictures(st, structures: dict, limit: int, outdir: Path, symprec: float) -> list[str]:
    """Pictures of up to `limit` stable samples of DNG stability tables (`st`: rows with source, id, e_hull,
    unique, new; S.U.N. ones first, then by E_hull); `structures`: (source, id) -> relaxed Structure."""
    stable = st[(st["e_hull"] <= 0) & st.apply(lambda r: (r["source"], r["id"]) in structures, axis=1)]
    if not len(stable) or limit <= 0:
        return []
    stable = stable.assign(sun=stable["unique"].astype(bool) & stable["new"].astype(bool))
    made = []
    for _, r in stable.sort_values(["sun", "e_hull"], ascending=[False, True]).head(limit).iterrows():
        s = structures[(r["source"], r["id"])]
        name = picture_name(f"{r['source']}_{r['id']}")
        what = "S.U.N." if r["sun"] else "stable"
        title = (
            f"{r['source']} {r['id']} ({what}): {s.composition.reduced_formula}, {spacegroup_label(s, symprec)}, "
            f"E_hull {float(r['e_hull']):.3f} eV/atom"
        )
        draw_structure(s, outdir / name, title)
        made.append(name)
    return made
