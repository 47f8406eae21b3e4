"""Markdown tables mirroring the paper (ours beside the paper's numbers), plots, and a summary page."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.io import write_text_atomic
from crystalflow_core.layout import Layout

K_B = 8.617333262e-5  # eV/K

# Paper Table 1 (CrystalFlow, S = 100): dataset -> k -> (MR %, RMSE)
PAPER_CSP = {
    "mp_20": {1: (62.02, 0.0710), 20: (78.34, 0.0577), 100: (82.49, 0.0513)},
    "mpts_52": {1: (21.00, 0.1613), 20: (37.81, 0.1584), 100: (45.54, 0.1633)},
}
PAPER_DNG = {
    "struct_valid_pct": 99.55,
    "comp_valid_pct": 81.96,
    "cov_recall_pct": 98.21,
    "cov_precision_pct": 99.84,
    "wdist_density_g_cm3": 0.169,
    "wdist_num_elems": 0.259,
    "stable_pct": 5.1,
    "sun_pct": 3.7,
}


def _fmt(x, nd=2):
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def _protocols(df: pd.DataFrame) -> str:
    vals = sorted(set(df["protocol"].dropna())) if "protocol" in df else []
    return ", ".join(vals) if vals else "unrecorded"


def _point(r) -> str:
    """How a row was sampled: 'euler S=100 (NFE 100)'."""
    nfe = r.get("nfe")
    return f"{r['method']} S={int(r['steps'])}" + ("" if pd.isna(nfe) else f" (NFE {nfe})")


def csp_table(df: pd.DataFrame) -> str:
    lines = [
        "# Table 1: crystal structure prediction (ours vs paper, CrystalFlow S = 100)",
        "",
        f"Metrics protocol: {_protocols(df)} (crystalflow: the authors' scripts; diffcsp: validity-gated matching).",
        "",
        "| run | dataset | k | sampling | MR % (ours) | MR % (paper) | RMSE (ours) | RMSE (paper) | cRMSE (ours) "
        "| METRe % | METRe RMSE | METRe cRMSE | METRe % valid | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in df.iterrows():
        paper = PAPER_CSP.get(r["dataset"], {}).get(int(r["k"]))
        lines.append(
            f"| {r['run']} | {r['dataset']} | {int(r['k'])} | {_point(r)} | {_fmt(r['match_rate_pct'])} | "
            f"{_fmt(paper[0]) if paper else '-'} | {_fmt(r['rmse_norm'], 4)} | {_fmt(paper[1], 4) if paper else '-'} | "
            f"{_fmt(r['rmse_all_norm'], 4)} | {_fmt(r.get('metre_pct', np.nan))} | "
            f"{_fmt(r.get('metre_rmse_norm', np.nan), 4)} | {_fmt(r.get('metre_crmse_norm', np.nan), 4)} | "
            f"{_fmt(r.get('metre_valid_pct', np.nan))} | {int(r['n_targets'])} |"
        )
    tol = sorted({str(t) for t in df.get("metre_tolerances", pd.Series(dtype=str)).dropna()})
    lines += [
        "",
        "MR: each test structure against its own k candidates (the paper's columns). cRMSE: the RMSE over every "
        "test structure, an unmatched one counted as stol (RMSE averages the matched only). METRe: a test "
        "structure is matched when any generated structure of the run (the first k per target) with its "
        "reduced composition matches it; RMSE the best over its matches; 'valid': structurally and "
        f"compositionally valid candidates only. METRe tolerances: {', '.join(tol) or '-'}.",
    ]
    return "\n".join(lines) + "\n"


def dng_table(df: pd.DataFrame, targets: pd.DataFrame | None = None) -> str:
    cols = list(PAPER_DNG)
    lines = [
        "# Table 3: de novo generation on MP-20 (ours vs paper, 10,000 samples in the paper)",
        "",
        f"Metrics protocol: {_protocols(df)} (crystalflow: the authors' scripts; diffcsp: DiffCSP/CDVAE rules).",
        "",
        "| run | sampling | samples | " + " | ".join(cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
        "| paper | 100 | 10000 | " + " | ".join(_fmt(PAPER_DNG[c], 3) for c in cols) + " |",
    ]
    for _, r in df.iterrows():
        lines.append(
            f"| {r['run']} | {_point(r)} | {int(r['n_samples'])} | "
            + " | ".join(_fmt(r.get(c, np.nan), 3) for c in cols)
            + " |"
        )
    for _, r in df.iterrows():  # which hull, how complete, and what its thin spots change
        if isinstance(r.get("hull"), str) and r["hull"]:
            lines.append(
                f"\n{r['run']}: E_hull against the {r['hull']} hull; {int(r.get('n_hull_suspect', 0))} of "
                f"{int(r.get('n_relaxed', 0))} relaxed samples lie more than 0.1 eV/atom below the hull "
                f"(a hole of the potential, or phases the hull lacks): stable / SUN without them "
                f"{_fmt(r.get('stable_pct_without_suspects'), 1)} % / {_fmt(r.get('sun_pct_without_suspects'), 1)} %."
            )
        lines += _committee_lines(r)
    if targets is not None and len(targets):
        lines += [
            "",
            "## Formation-energy conditioning (eV/atom; paper MAE 0.67-2.02 before, 0.17-0.82 after relaxation)",
            "",
            "| run | target | n | MAE before | RMSE before | MAE after | RMSE after |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in targets.iterrows():
            lines.append(
                f"| {r['run']} | {r['target']:g} | {int(r['n_samples'])} | {_fmt(r['mae_before_ev_atom'], 3)} | "
                f"{_fmt(r['rmse_before_ev_atom'], 3)} | {_fmt(r['mae_after_ev_atom'], 3)} | "
                f"{_fmt(r['rmse_after_ev_atom'], 3)} |"
            )
    return "\n".join(lines) + "\n"


def _committee_lines(r) -> list[str]:
    """A DNG row's second opinion: stable / S.U.N. under each potential and under both."""
    if not isinstance(r.get("committee"), str) or "+" not in r["committee"]:
        return []
    first, second = r["committee"].split("+")
    rate = lambda key: _fmt(r.get(key), 1)
    return [
        f"\n{r['run']}, committee {first} + {second}: stable {rate('stable_pct')} % ({first}), "
        f"{rate(f'stable_{second}_pct')} % ({second}), {rate('stable_agreed_pct')} % agreed by both; S.U.N. "
        f"{rate('sun_pct')} / {rate(f'sun_{second}_pct')} / {rate('sun_agreed_pct')} %; "
        f"{int(r.get('n_committee_disagree', 0) or 0)} structures whose E_hull differ by more than the threshold "
        f"(median spread {_fmt(r.get('e_hull_spread_median'), 3)} eV/atom; picture: committee_parity.png)."
    ]


def _figure(path: Path, xlabel: str, ylabel: str, draw) -> bool:
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


def _hists(ax, groups, column, clip=None, bins=40, label="{}"):
    for key, g in groups:
        e = g[column].dropna()
        if clip:
            e = e.clip(*clip)
        if len(e):
            ax.hist(e, bins=bins, alpha=0.55, label=label.format(key))


def plots(csp: pd.DataFrame, stab: list[str], outdir: Path) -> list[str]:
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

        _figure(outdir / "match_rate_vs_steps.png", "integration steps S", "match rate (%)", draw_mr)
        made.append("match_rate_vs_steps.png")
    frames = [pd.read_csv(p).assign(source=Path(p).parent.parent.name) for p in stab]
    if frames:
        st = pd.concat(frames, ignore_index=True)

        def draw_hull(ax):
            _hists(ax, st.groupby("source"), "e_hull", clip=(-0.5, 2.0))
            ax.axvline(0.0, color="k", lw=0.8)
            ax.axvline(0.1, color="k", lw=0.8, ls="--")

        relaxer = "/".join(sorted(st["potential"].dropna().unique())) if "potential" in st else "chgnet"
        _figure(outdir / "e_hull_hist.png", f"E above hull (eV/atom, {relaxer}-relaxed)", "structures", draw_hull)
        made.append("e_hull_hist.png")
        made += committee_parity(st, outdir)
        cond = st[st["target"].notna()] if "target" in st else st.iloc[0:0]
        if len(cond):
            _figure(
                outdir / "formation_energy_by_target.png",
                "CHGNet formation energy after relaxation (eV/atom)",
                "structures",
                lambda ax: _hists(ax, cond.groupby("target"), "e_form", bins=30, label="target {:g}"),
            )
            made.append("formation_energy_by_target.png")
    return made


def committee_parity(st: pd.DataFrame, outdir: Path) -> list[str]:
    """E_hull under the committee's second potential against the relaxer's, flagged structures marked."""
    second = [c for c in st.columns if c.startswith("e_hull_") and c not in ("e_hull_spread", "e_hull_agreed")]
    if not second or not st[second[0]].notna().any():
        return []
    first = "/".join(sorted(st["potential"].dropna().unique())) if "potential" in st else "relaxer"
    name = second[0].removeprefix("e_hull_")

    def draw(ax):
        flag = st["committee_disagrees"].astype(bool)
        for mask, label, marker in ((~flag, "agree", "o"), (flag, "disagree", "x")):
            ax.plot(st.loc[mask, "e_hull"], st.loc[mask, second[0]], marker, ms=3, ls="", label=label)
        lo = float(np.nanmin(st[["e_hull", second[0]]].to_numpy(float)))
        hi = float(np.nanmax(st[["e_hull", second[0]]].to_numpy(float)))
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)

    _figure(outdir / "committee_parity.png", f"E_hull {first} (eV/atom)", f"E_hull {name} (eV/atom)", draw)
    return ["committee_parity.png"]


def _md_rows(transport: list[str]) -> list[tuple]:
    """(run label, row) of every transport row with MD runs."""
    rows = []
    for p in transport:
        df = pd.read_csv(p, dtype={"id": str})
        if "md_runs" in df:
            rows += [(Layout.run_label(p), r) for _, r in df[df["md_runs"].fillna(0) > 0].iterrows()]
    return rows


def transport_section(transport: list[str]) -> str:
    """Ion-transport screen: counts per run, the MD candidates' D / sigma / E_a."""
    if not transport:
        return ""
    lines = [
        "## Ion transport (migration graph + CHGNet MD)",
        "",
        "| run | with ion | invalid (not screened) | valid, E_hull <= cut | screened | graph failed "
        "| percolating 1D/2D/3D | conductor candidates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    md_rows = _md_rows(transport)
    for p in transport:
        df = pd.read_csv(p, dtype={"id": str})
        ok = df[df["status"] == "screened"]
        perc = "/".join(str(int((ok["percolation_dim"] == d).sum())) for d in (1, 2, 3))
        n = {s: int((df["status"] == s).sum()) for s in ("invalid", "above_hull_cut", "graph_failed")}
        lines.append(
            f"| {Layout.run_label(p)} | {len(df)} | {n['invalid']} | {len(df) - n['invalid'] - n['above_hull_cut']} | "
            f"{len(ok)} | {n['graph_failed']} | {perc} | {int(df['conductor_candidate'].sum())} |"
        )
    lines += [
        "",
        "Rows are (structure, ion) pairs. Only structures that are structurally and compositionally valid "
        "(the metric protocol's tests, as in the DNG validity) are screened. Percolation counted over hops "
        "up to the run's `transport.hop_cutoff`; candidates are valid, new, unique, at or below the E_hull "
        "cut and percolating in >= 1 D.",
        "",
    ]
    if md_rows:
        lines += [
            "| run | id | formula | ion | dim | E_hull | D (cm^2/s) per T | E_a (eV) | sigma 300 K (mS/cm) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for run, r in md_rows:
            ds = ", ".join(
                f"{c[2:]}: {_fmt(r[c], 2) if r[c] >= 0.01 else f'{r[c]:.1e}'}"
                for c in r.index
                if c.startswith("D_") and not c.startswith("D_err") and pd.notna(r[c])
            )
            lines.append(
                f"| {run} | {r['id']} | {r['formula']} | {r['ion']} | {int(r['percolation_dim'])} | "
                f"{_fmt(r['e_hull'], 3)} | {ds or 'failed'} | {_fmt(r['E_a'], 2)} | "
                f"{r['sigma_300K']:.2e} |"
            )
        short = sorted({float(r["md_ps"]) for _, r in md_rows if "md_ps" in r and r["md_ps"] < 5})
        if short:
            lines.append(
                f"Caution: trajectories of {', '.join(f'{p:g}' for p in short)} ps. Below a few picoseconds the "
                "mean-square displacement is dominated by vibration, so these D, E_a and sigma(300 K) show "
                "that the stage runs, not how the crystals conduct (the paper configuration runs 10 ps)."
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def transport_plots(transport: list[str], outdir: Path) -> list[str]:
    """The Arrhenius plot of the MD candidates (file names made in `outdir`)."""
    md_rows = _md_rows(transport)
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
    _figure(outdir / "arrhenius.png", "1000 / T (1/K)", "D (cm^2/s), CHGNet MD", draw)
    return ["arrhenius.png"]


# Table 2 of arXiv:2412.11693 (method, S, test set CR %, test set ion-steps, SiO2 CR %, SiO2 ion-steps)
PAPER_TABLE2 = [
    ("Cond-CDVAE", "5000", "82.20", "45.91", "96.00", "44.36"),
    ("CrystalFlow", "100", "89.20", "49.84", "100.00", "35.65"),
    ("CrystalFlow", "1000", "90.20", "39.40", "100.00", "35.84"),
    ("CrystalFlow", "5000", "90.60", "39.82", "100.00", "31.99"),
]


def dft_table(dng: pd.DataFrame) -> str:
    """Table 2 (DFT relaxation: convergence rate, mean ionic steps) with DFT stability / SUN rates."""
    lines = [
        "# Table 2: DFT relaxation of generated structures",
        "",
        "The paper's rows (DFT local optimisation of its pressure-conditioned model's structures; CR = share "
        "converged, ion-steps = mean ionic steps):",
        "",
        "| method | S | test set CR (%) | test set ion-steps | SiO2 CR (%) | SiO2 ion-steps |",
        "|---|---|---|---|---|---|",
        *(f"| {' | '.join(r)} |" for r in PAPER_TABLE2),
        "",
        "This project's runs: the same DFT columns, and beside them the CHGNet pre-relaxation of the same "
        "samples (convergence of every relaxed sample, mean optimiser steps of the converged):",
        "",
        "| run | steps | jobs | converged | unconverged | crashed | running | not run | supplied | foreign | "
        "convergence (%) | mean ionic steps | CHGNet convergence (%) | CHGNet mean steps | DFT-evaluated | "
        "DFT stable (%) | DFT metastable (%) | DFT SUN (%) | E_hull MAE CHGNet vs DFT |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = dng[dng["dft_jobs"].notna()] if "dft_jobs" in dng else dng.iloc[0:0]
    for _, r in rows.iterrows():
        counts = " | ".join(
            str(int(r.get(f"dft_{k}", 0) or 0))
            for k in ("converged", "unconverged", "crashed", "running", "not_run", "supplied", "foreign")
        )
        lines.append(
            f"| {r['run']} | {int(r['steps'])} | {int(r['dft_jobs'])} | {counts} | "
            f"{_fmt(r.get('dft_convergence_pct'), 1)} | {_fmt(r.get('dft_mean_ionic_steps'), 1)} | "
            f"{_fmt(r.get('relax_convergence_pct'), 1)} | {_fmt(r.get('relax_mean_steps'), 1)} | "
            f"{int(r.get('n_dft_evaluated', 0) or 0)} | {_fmt(r.get('dft_stable_pct'), 1)} | "
            f"{_fmt(r.get('dft_metastable_pct'), 1)} | {_fmt(r.get('dft_sun_pct'), 1)} | "
            f"{_fmt(r.get('dft_vs_chgnet_e_hull_mae'), 3)} |"
        )
    if not len(rows):
        lines.append("\nNo DNG run with DFT results.")
    lines += [
        "",
        "Foreign: outputs of another structure than the folder was emitted for (copied in, or left from an "
        "earlier sampling); they count in no rate. "
        "Convergence rate: converged of the jobs that ended (converged + unconverged + crashed); ionic steps: "
        "mean over the jobs with a readable output; DFT rates: of the structures with a DFT E_hull (MP2020, "
        "same hull as the CHGNet stage).",
    ]
    return "\n".join(lines) + "\n"


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
        _figure(outdir / "e_hull_parity.png", "E_hull DFT (eV/atom)", "E_hull CHGNet (eV/atom)", draw)
        made.append("e_hull_parity.png")
    return made


def write_report(  # noqa: PLR0913  (one argument per table and folder the report reads or writes)
    tables: list[str],
    stability: list[str],
    results: str,
    report: str,
    table1: str,
    table3: str,
    targets: list[str] = (),
    transport: list[str] = (),
    dft: list[str] = (),
    table2: str | None = None,
    predict: list[str] = (),
):
    dfs = [pd.read_csv(t) for t in tables]
    tdfs = [pd.read_csv(t) for t in targets]
    tdf = pd.concat(tdfs, ignore_index=True) if tdfs else None
    csp = (
        pd.concat([d for d in dfs if (d["task"] == "csp").all()], ignore_index=True)
        if any((d["task"] == "csp").all() for d in dfs)
        else pd.DataFrame()
    )
    dng = (
        pd.concat([d for d in dfs if (d["task"] == "dng").all()], ignore_index=True)
        if any((d["task"] == "dng").all() for d in dfs)
        else pd.DataFrame()
    )
    t1 = csp_table(csp) if len(csp) else "# Table 1\n\nNo CSP run in the targets.\n"
    t3 = dng_table(dng, tdf) if len(dng) else "# Table 3\n\nNo DNG run in the targets.\n"
    write_text_atomic(table1, t1)
    write_text_atomic(table3, t3)
    plot_dir = Path(Layout(results).plots())
    figs = plots(csp, stability, plot_dir)
    tsec = transport_section(list(transport))
    figs += transport_plots(list(transport), plot_dir)
    t2 = dft_table(dng)
    figs += dft_plots(list(dft), plot_dir)
    if table2:
        write_text_atomic(table2, t2)
    body = [
        "# CrystalFlow results",
        "",
        "Metric tables: " + ", ".join(f"`{Path(t).name}`" for t in tables),
        "",
        t1,
        t3,
        t2,
        tsec,
        *(_predict_included(p, results) for p in predict),
        "## Plots",
        "",
    ] + [f"![{f}](plots/{f})" for f in figs]
    write_text_atomic(report, "\n".join(body) + "\n")


# ----------------------------------------------------------------------------- structure prediction
def _predict_included(section_md: str, results: str) -> str:
    """A prediction job's section with its pictures' links made relative to the results folder."""
    import os

    rel = os.path.relpath(Path(section_md).parent, results)
    text = Path(section_md).read_text()
    return re.sub(r"!\[([^\]]*)\]\(((?!/|https?:)[^)]+)\)", lambda m: f"![{m.group(1)}]({rel}/{m.group(2)})", text)


def predict_section(
    name: str, job: dict, cands: pd.DataFrame, ranked: pd.DataFrame, phase: pd.DataFrame, traces: dict, outdir: Path
) -> str:
    """Report section of one prediction job: per composition and pressure the candidates' fate and the
    ranked polymorphs; pictures in `outdir` (a folder beside the section's markdown): enthalpy against
    optimiser step (the paper's Fig. 2c), enthalpy
    distributions of every candidate before and after relaxation (Fig. 2d), the generated cells' pressure against the
    target when the job has several pressures (Fig. 2a), and a delta-H ladder of the best ranks."""
    outdir.mkdir(parents=True, exist_ok=True)
    model = f"run {job['run']}" if job["run"] else f"checkpoint {job['checkpoint']}"
    aware = cands["pressure_aware"].dropna().astype(bool) if "pressure_aware" in cands else pd.Series([], dtype=bool)
    pressures = sorted(cands["pressure_gpa"].dropna().unique())
    note = ""
    if any(pressures) and not aware.any():
        note = (
            " The model is not conditioned on pressure: its candidates were sampled as at any pressure and only "
            "the relaxation knows the target."
        )
    lines = [
        f"## Structure prediction: {name}",
        "",
        f"{model}, {job['method']} S={job['steps']}, {job['n_candidates']} candidates per composition and "
        f"pressure (spread over the cell sizes z), CHGNet relaxation (fmax {job['relax']['fmax']} eV/A, at most "
        f"{job['relax']['steps']} steps) at the target pressure; polymorphs by StructureMatcher "
        f"(ltol {job['dedupe']['ltol']}, stol {job['dedupe']['stol']}, angle_tol {job['dedupe']['angle_tol']}), "
        f"ranked by enthalpy per atom across z; only physical{'' if job['rank_unconverged'] else ', converged'} "
        f"structures rank.{note}",
        "",
        "| composition, pressure | cells searched | candidates | flagged | unphysical or failed | converged (%) | "
        "mean steps (converged) | ranked | distinct polymorphs | best: space group (symmetrised / tight) | "
        "best H (eV/atom) | best found (times) | stopping rule |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    until = job.get("until")
    for group, g in cands.groupby("group", sort=True):
        failed = g[g["error"].fillna("") != ""]
        conv = g[g["converged"].astype(bool)]
        r = ranked[ranked["group"] == group]
        best = r.iloc[0] if len(r) else None
        sg = f"{best.get('spacegroup_symmetrised') or '-'} / {best['spacegroup_tight']}" if best is not None else "-"
        cells = ", ".join(sorted(set(g["cell"].astype(str)), key=len)) if "cell" in g else ""
        lines.append(
            f"| {group} | {cells} | {len(g)} | {int((g['flag'].fillna('') != '').sum())} | {len(failed)} | "
            f"{_fmt(100.0 * len(conv) / len(g) if len(g) else float('nan'), 1)} | "
            f"{_fmt(float(conv['steps'].mean()) if len(conv) else float('nan'), 1)} | "
            f"{int((g['status'] == 'ranked').sum()) if 'status' in g else '-'} | {len(r)} | {sg} | "
            f"{_fmt(best['enthalpy_per_atom'], 4) if best is not None else '-'} | "
            f"{int(best['n_candidates']) if best is not None else 0} | {_rule(until, best)} |"
        )
    lines += [
        "",
        "For comparison, the paper's DFT local optimisation of 200 SiO2 candidates (z = 3, 0 GPa): convergence "
        "100 %, mean ionic steps 35.65 at S = 100 (Table 2; DFT, not CHGNet).",
        "",
    ]
    for group, r in ranked.groupby("group", sort=True):
        lines += [
            f"### {group}",
            "",
            "| rank | delta-H (meV/atom) | H (eV/atom) | space group tight / loose | symmetrised: space group, "
            "delta H (meV/atom) | candidates | z found | best id | E_hull (eV/atom; hull) | CIF |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, x in r.head(max(job["top_n"], 5)).iterrows():
            sym = x.get("spacegroup_symmetrised")
            sym = f"{sym}, {_fmt(x.get('symmetrised_delta_mev'), 1)}" if isinstance(sym, str) and sym else "-"
            e_hull = _fmt(x["e_hull"], 3)
            if isinstance(x.get("hull"), str) and x["hull"]:
                e_hull += f" ({x['hull']}{', suspect' if str(x.get('hull_suspect')) == 'True' else ''})"
            lines.append(
                f"| {int(x['rank'])} | {_fmt(x['delta_h_mev'], 1)} | {_fmt(x['enthalpy_per_atom'], 4)} | "
                f"{x['spacegroup_tight']} / {x['spacegroup_loose']} | {sym} | {int(x['n_candidates'])} | "
                f"{x['z_found']} | {x['best_id']} | {e_hull} | {x['cif'] if isinstance(x['cif'], str) else ''} |"
            )
        lines.append("")
    lines += _phase_lines(phase, outdir)
    figs = _predict_figures(cands, ranked, traces, outdir)
    lines += [f"![{f}]({outdir.name}/{f})" for f in figs]
    return "\n".join(lines) + "\n"


def _rule(until, best) -> str:
    """Whether a search's stopping rule was met for one composition (best found `found` times)."""
    if not until:
        return "- (a batch)"
    times = int(best["n_candidates"]) if best is not None else 0
    return f"{'met' if times >= until['found'] else 'not met (budget used)'}: best found {times} of {until['found']}"


def _phase_lines(phase: pd.DataFrame, outdir: Path) -> list[str]:
    """The pressure scan: transitions per composition and H(P) relative to the lowest-pressure ground state."""
    from crystalflow_core.materials.prediction import transitions

    lines = []
    for formula, f in phase.groupby("formula", sort=True):
        found = transitions(f)
        lines += [f"### Pressure scan: {formula}", ""]
        lines += [
            f"- {t['from']} -> {t['to']} at {t['transition_gpa']:.1f} GPa (between {t['between_gpa'][0]:g} and "
            f"{t['between_gpa'][1]:g} GPa, H interpolated linearly)"
            for t in found
        ] or ["- no transition: the same polymorph is lowest at every pressure"]
        h = f.pivot_table(index="pressure_gpa", columns="polymorph", values="enthalpy_per_atom").sort_index()
        ref = h.iloc[0].idxmin()

        def draw(ax, h=h, ref=ref, found=found):
            for col in h.columns:
                ax.plot(h.index, 1000.0 * (h[col] - h[ref]), "o-", ms=3, label=col)
            for t in found:
                ax.axvline(t["transition_gpa"], color="k", lw=0.6, ls="--")

        png = f"phase_{formula}.png"
        _figure(outdir / png, "pressure (GPa)", f"H - H({ref}) (meV/atom)", draw)
        lines += ["", f"![{png}]({outdir.name}/{png})", ""]
    return lines


def _energy_curves(cands: pd.DataFrame, traces: dict):
    """Per group: (steps, mean, std, n) of E(step) - E(final) in meV/atom over the converged candidates
    (each relative to its own local minimum, as the paper's Fig. 2c); a relaxation that ended stays at
    its final energy."""
    out = {}
    done = cands[cands["converged"].astype(bool) & (cands["error"].fillna("") == "")]
    for group, g in done.groupby("group", sort=True):
        tr = [np.asarray(traces[i], float) for i in g["id"] if i in traces and len(traces[i]) > 1]
        if not tr:
            continue
        n = max(len(t) for t in tr)
        rel = np.array([np.pad(t - t[-1], (0, n - len(t))) for t in tr]) * 1000.0
        out[group] = (np.arange(n), rel.mean(axis=0), rel.std(axis=0), len(tr))
    return out


def _predict_figures(cands: pd.DataFrame, ranked: pd.DataFrame, traces: dict, outdir: Path) -> list[str]:
    made = []
    curves = _energy_curves(cands, traces)
    if curves:

        def draw_curves(ax):
            for group, (x, m, sd, n) in curves.items():
                line = ax.plot(x, m, label=f"{group} ({n})")[0]
                ax.fill_between(x, m - sd, m + sd, color=line.get_color(), alpha=0.2)
            ax.set_yscale("symlog", linthresh=1.0)

        ylabel = "H - H_final (meV/atom; H = E + PV), converged, mean +- sd"
        _figure(outdir / "energy_vs_step.png", "optimiser step", ylabel, draw_curves)
        made.append("energy_vs_step.png")
    both = cands[cands["initial_enthalpy_per_atom"].notna() & cands["enthalpy_per_atom"].notna()]
    if len(both):

        def draw_hist(ax):  # every candidate: log-spaced bins from 1 meV/atom to the largest
            for group, g in both.groupby("group", sort=True):
                lo = float(g["enthalpy_per_atom"].min())
                dh = [np.maximum(g[c] - lo, 1e-3) for c in ("initial_enthalpy_per_atom", "enthalpy_per_atom")]
                bins = np.geomspace(1e-3, max(0.01, float(max(x.max() for x in dh))) * 1.01, 40)
                ax.hist(dh[0], bins=bins, alpha=0.5, label=f"{group} generated")
                ax.hist(dh[1], bins=bins, alpha=0.5, label=f"{group} relaxed")
            ax.set_xscale("log")

        xlabel = "H - H_best relaxed (eV/atom); every candidate, below 1 meV/atom drawn at 1 meV/atom"
        _figure(outdir / "enthalpy_hist.png", xlabel, "candidates", draw_hist)
        made.append("enthalpy_hist.png")
    stress = cands[cands["initial_stress_pressure_gpa"].notna()]
    if stress["pressure_gpa"].nunique() > 1:

        def draw_stress(ax):
            ax.plot(stress["pressure_gpa"], stress["initial_stress_pressure_gpa"], "o", ms=3, alpha=0.6)
            lim = [float(stress["pressure_gpa"].min()), float(stress["pressure_gpa"].max())]
            ax.plot(lim, lim, "k-", lw=0.8)

        _figure(
            outdir / "stress_vs_target.png",
            "target pressure (GPa)",
            "CHGNet pressure, generated cell (GPa)",
            draw_stress,
        )
        made.append("stress_vs_target.png")
    if len(ranked):

        def draw_ladder(ax):
            groups = sorted(ranked["group"].unique())
            for gi, group in enumerate(groups):
                top = ranked[ranked["group"] == group].head(8)
                for _, r in top.iterrows():
                    ax.hlines(r["delta_h_mev"], gi - 0.3, gi + 0.3, lw=2)
                    ax.annotate(
                        f"{int(r['rank'])} {r['spacegroup_tight']}",
                        (gi + 0.32, r["delta_h_mev"]),
                        fontsize=6,
                        va="center",
                    )
            ax.set_xticks(range(len(groups)), groups, fontsize=7)
            ax.set_xlim(-0.6, len(groups) - 0.1)

        _figure(outdir / "delta_h_ladder.png", "composition, pressure", "delta-H to the best (meV/atom)", draw_ladder)
        made.append("delta_h_ladder.png")
    return made + _delta_h_parity(ranked, outdir)


def _delta_h_parity(ranked: pd.DataFrame, outdir: Path) -> list[str]:
    """Delta-H of the top polymorphs under the committee's second potential against the relaxer's."""
    second = [c for c in ranked.columns if c.startswith("delta_h_") and c.endswith("_mev") and c != "delta_h_mev"]
    if not second or not ranked[second[0]].notna().any():
        return []
    name = second[0].removeprefix("delta_h_").removesuffix("_mev")

    def draw(ax):
        flag = ranked["committee_disagrees"].astype(bool)
        for mask, label, marker in ((~flag, "agree", "o"), (flag, "disagree", "x")):
            ax.plot(ranked.loc[mask, "delta_h_mev"], ranked.loc[mask, second[0]], marker, ms=4, ls="", label=label)
        hi = float(np.nanmax(ranked[["delta_h_mev", second[0]]].to_numpy(float)))
        ax.plot([0, hi], [0, hi], "k-", lw=0.6)

    _figure(outdir / "committee_parity.png", "delta-H, relaxer (meV/atom)", f"delta-H, {name} (meV/atom)", draw)
    return ["committee_parity.png"]
