"""The summary page's pictures: every run's distributions, the committee's parity, transport and DFT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.evaluation.paper_tables import read_md_rows
from crystalflow_core.layout import Layout

K_B = 8.617333262e-5  # eV/K


# file name -> the layout problems `check_layout` found when it was saved (the tests read it; empty is good)
PROBLEMS: dict[str, list[str]] = {}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wrap(text: str, width: int) -> str:
    """A label broken into lines of at most `width` characters (a long label never leaves the canvas)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def integer_axis(ax, which: str) -> None:
    """Whole-number ticks on a count axis (structures, candidates): never 0.5 of a structure."""
    from matplotlib.ticker import MaxNLocator

    (ax.yaxis if which == "y" else ax.xaxis).set_major_locator(MaxNLocator(integer=True))


def check_layout(fig, count_axes: list[tuple]) -> list[str]:
    """What a reader would see wrong: drawn text or legends beyond the canvas, fractional ticks on a count
    axis (`count_axes`: (axes, "x" or "y"))."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.get_tightbbox(renderer)  # inches: every drawn artist
    w, h = fig.get_size_inches()
    out = []
    if box.x0 < -0.01 or box.y0 < -0.01 or box.x1 > w + 0.01 or box.y1 > h + 0.01:
        out.append(f"drawn beyond the canvas: {box.x0:.2f}..{box.x1:.2f} x {box.y0:.2f}..{box.y1:.2f} in of {w}x{h}")
    for ax, which in count_axes:
        lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
        ticks = ax.get_yticks() if which == "y" else ax.get_xticks()
        if any(abs(t - round(t)) > 1e-9 for t in ticks if lo <= t <= hi):
            out.append(f"fractional ticks on the count axis {which}")
    return out


def save(fig, path: Path, count_axes: list[tuple] = ()) -> bool:
    """Check the layout (problems logged and kept in PROBLEMS), write the PNG, close the figure."""
    import logging

    problems = check_layout(fig, list(count_axes))
    PROBLEMS[Path(path).name] = problems
    for p in problems:
        logging.getLogger(__name__).warning("%s: %s", Path(path).name, p)
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return True


def figure(path: Path, xlabel: str, ylabel: str, draw, count_axis: str | None = None, size=(5.5, 3.8)) -> bool:
    """One small PNG: `draw(ax)` plots; labels (wrapped to fit), legend, layout (constrained: everything
    inside the canvas), whole-number ticks on the `count_axis` ("x" or "y") and the file are handled here."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    draw(ax)
    ax.set_xlabel(wrap(xlabel, 70))
    ax.set_ylabel(wrap(ylabel, 42))
    if count_axis:
        integer_axis(ax, count_axis)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return save(fig, path, [(ax, count_axis)] if count_axis else [])


def small_multiples(path: Path, panels: list[tuple], xlabel: str, ylabel: str, count_axis: str | None = None) -> bool:
    """One panel per series that would overlap in one (`panels`: (title, draw(ax))), stacked, shared labels."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(n, 1, figsize=(5.5, 1.6 + 1.7 * n), layout="constrained", squeeze=False)
    counted = []
    for ax, (title, draw) in zip(axes[:, 0], panels):
        draw(ax)
        ax.set_title(title, fontsize=8)
        if count_axis:
            integer_axis(ax, count_axis)
            counted.append((ax, count_axis))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.supxlabel(wrap(xlabel, 70), fontsize=10)
    fig.supylabel(wrap(ylabel, 42), fontsize=10)
    return save(fig, path, counted)


def hists(ax, groups, column, clip=None, bins=40, label="{}"):
    for key, g in groups:
        e = g[column].dropna()
        if clip:
            e = e.clip(*clip)
        if len(e):
            ax.hist(e, bins=bins, alpha=0.55, label=label.format(key))


def _source(path) -> str:
    label = Layout.run_label(path)
    return label if label.endswith(" baseline") else Path(path).parent.parent.name


def plots(csp: pd.DataFrame, stab: list[str], outdir: Path, committees: dict[str, str], metastable: float) -> list[str]:
    """Match rate vs integration steps, E_hull histogram, formation energy per condition value (paper Fig. 3)."""
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
    # one histogram per run, and per baseline beside it ('mp20_dng random baseline')
    frames = [pd.read_csv(p).assign(source=_source(p)) for p in stab]
    if frames:
        st = pd.concat(frames, ignore_index=True)

        def draw_hull(ax):
            hists(ax, st.groupby("source"), "e_hull", clip=(-0.5, 2.0))
            if not st["e_hull"].notna().any():  # say so rather than draw an empty frame
                ax.text(0.5, 0.5, "no relaxed sample has an E_hull", transform=ax.transAxes, ha="center")
            ax.axvline(0.0, color="k", lw=0.8)
            ax.axvline(metastable, color="k", lw=0.8, ls="--")

        relaxer = "/".join(sorted(st["potential"].dropna().unique())) if "potential" in st else "chgnet"
        figure(outdir / "e_hull_hist.png", f"E above hull (eV/atom, {relaxer}-relaxed)", "structures", draw_hull, "y")
        made.append("e_hull_hist.png")
        made += committee_parity(st, outdir, committees)
        cond = st[st["condition_value"].notna()] if "condition_value" in st else st.iloc[0:0]
        if len(cond):
            figure(
                outdir / "formation_energy_by_condition.png",
                "CHGNet formation energy after relaxation (eV/atom)",
                "structures",
                lambda ax: hists(ax, cond.groupby("condition_value"), "e_form", bins=30, label="sampled at {:g}"),
                "y",
            )
            made.append("formation_energy_by_condition.png")
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
