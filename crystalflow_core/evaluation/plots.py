"""The summary page's pictures: every run's distributions, the committee's parity, transport and DFT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.evaluation.metrics import METASTABLE_E_HULL
from crystalflow_core.evaluation.paper_tables import read_md_rows
from crystalflow_core.layout import Layout

K_B = 8.617333262e-5  # eV/K


def figure(path: Path, xlabel: str, ylabel: str, draw) -> bool:
    """One small PNG: `draw(ax)` plots; the labels, legend and file are handled here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    draw(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def hists(ax, groups, column, clip=None, bins=40, label="{}"):
    for key, g in groups:
        e = g[column].dropna()
        if clip:
            e = e.clip(*clip)
        if len(e):
            ax.hist(e, bins=bins, alpha=0.55, label=label.format(key))


def plots(csp: pd.DataFrame, stab: list[str], outdir: Path, committees: dict[str, str]) -> list[str]:
    """Match rate vs integration steps, E_hull histogram, formation energy per target (paper Fig. 3)."""
    made = []
    outdir.mkdir(parents=True, exist_ok=True)
    if len(csp):

        def draw_mr(ax):
            keys = ["run", "k", "method"] if "method" in csp else ["run", "k"]
            for key, g in csp.groupby(keys):
                g = g.sort_values("steps")
                ax.plot(g["steps"], g["match_rate_pct"], "o-", label=", ".join(map(str, key)))
            ax.set_xscale("log")

        figure(outdir / "match_rate_vs_steps.png", "integration steps S", "match rate (%)", draw_mr)
        made.append("match_rate_vs_steps.png")
    frames = [pd.read_csv(p).assign(source=Path(p).parent.parent.name) for p in stab]
    if frames:
        st = pd.concat(frames, ignore_index=True)

        def draw_hull(ax):
            hists(ax, st.groupby("source"), "e_hull", clip=(-0.5, 2.0))
            ax.axvline(0.0, color="k", lw=0.8)
            ax.axvline(METASTABLE_E_HULL, color="k", lw=0.8, ls="--")

        relaxer = "/".join(sorted(st["potential"].dropna().unique())) if "potential" in st else "chgnet"
        figure(outdir / "e_hull_hist.png", f"E above hull (eV/atom, {relaxer}-relaxed)", "structures", draw_hull)
        made.append("e_hull_hist.png")
        made += committee_parity(st, outdir, committees)
        cond = st[st["target"].notna()] if "target" in st else st.iloc[0:0]
        if len(cond):
            figure(
                outdir / "formation_energy_by_target.png",
                "CHGNet formation energy after relaxation (eV/atom)",
                "structures",
                lambda ax: hists(ax, cond.groupby("target"), "e_form", bins=30, label="target {:g}"),
            )
            made.append("formation_energy_by_target.png")
    return made


def committee_parity(st: pd.DataFrame, outdir: Path, committees: dict[str, str]) -> list[str]:
    """E_hull under the committee's second potential (`committees`: run -> the config's relax.committee[1])
    against the relaxer's, flagged structures marked; the runs with a committee only."""
    names = sorted({committees[r] for r in st["source"].unique() if r in committees})
    if not names:
        return []
    name = names[0]  # one picture: the runs whose committee names this potential
    st = st[st["source"].map(committees.get) == name]
    second = [f"e_hull_{name}"]
    if second[0] not in st or not st[second[0]].notna().any():
        return []
    first = "/".join(sorted(st["potential"].dropna().unique())) if "potential" in st else "relaxer"

    def draw(ax):
        flag = st["committee_disagrees"].astype(bool)
        for mask, label, marker in ((~flag, "agree", "o"), (flag, "disagree", "x")):
            ax.plot(st.loc[mask, "e_hull"], st.loc[mask, second[0]], marker, ms=3, ls="", label=label)
        lo = float(np.nanmin(st[["e_hull", second[0]]].to_numpy(float)))
        hi = float(np.nanmax(st[["e_hull", second[0]]].to_numpy(float)))
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)

    figure(outdir / "committee_parity.png", f"E_hull {first} (eV/atom)", f"E_hull {name} (eV/atom)", draw)
    return ["committee_parity.png"]


def transport_plots(transport: list[str], outdir: Path) -> list[str]:
    """The Arrhenius plot of the MD candidates (file names made in `outdir`)."""
    md_rows = read_md_rows(transport)
    if not md_rows:
        return []

    def draw(ax):
        for _, r in md_rows:
            cols = [c for c in r.index if c.startswith("D_") and not c.startswith("D_err") and c.endswith("K")]
            pts = [(float(c[2:-1]), r[c]) for c in cols if pd.notna(r[c]) and r[c] > 0]
            if not pts:
                continue
            t, d = map(np.array, zip(*sorted(pts)))
            line = ax.semilogy(1000 / t, d, "o", label=f"{r['formula']} ({r['id']})")[0]
            if pd.notna(r["E_a"]) and len(t) >= 3:  # the fit through the points: ln D = ln c - E_a / kT
                x = np.linspace((1000 / t).min(), (1000 / t).max(), 20)
                c = np.exp(np.mean(np.log(d) + r["E_a"] / (K_B * t)))
                ax.semilogy(x, c * np.exp(-r["E_a"] * x / (1000 * K_B)), "-", color=line.get_color(), lw=0.8)

    outdir.mkdir(parents=True, exist_ok=True)
    figure(outdir / "arrhenius.png", "1000 / T (1/K)", "D (cm^2/s), CHGNet MD", draw)
    return ["arrhenius.png"]


def dft_plots(dft: list[str], outdir: Path) -> list[str]:
    """The CHGNet-vs-DFT E_hull parity plot (file names made in `outdir`)."""
    made = []
    frames = [pd.read_csv(p).assign(source=Layout.run_label(p)) for p in dft]
    st = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    both = st[st["e_hull_dft"].notna() & st["e_hull_chgnet"].notna()] if len(st) else st
    if len(both):

        def draw(ax):
            for src, g in both.groupby("source"):
                ax.plot(g["e_hull_dft"], g["e_hull_chgnet"], "o", ms=3, label=src)
            lo = float(min(both["e_hull_dft"].min(), both["e_hull_chgnet"].min()))
            hi = float(max(both["e_hull_dft"].max(), both["e_hull_chgnet"].max()))
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)

        outdir.mkdir(parents=True, exist_ok=True)
        figure(outdir / "e_hull_parity.png", "E_hull DFT (eV/atom)", "E_hull CHGNet (eV/atom)", draw)
        made.append("e_hull_parity.png")
    return made
