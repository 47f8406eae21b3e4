"""A prediction job's section of the report: cells searched, what ranked, the stopping rule, the phase
diagram, and its pictures (Fig. 2c and 2d, the delta-H ladder, the committee's parity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.config import committee_second
from crystalflow_core.evaluation.paper_tables import fmt
from crystalflow_core.evaluation.plots import figure, small_multiples
from crystalflow_core.evaluation.structure_pictures import prediction_pictures


def predict_section(  # noqa: PLR0913  (the job, its four tables, traces, the folder, the drawn structures)
    name: str,
    job: dict,
    cands: pd.DataFrame,
    ranked: pd.DataFrame,
    phase: pd.DataFrame,
    traces: dict,
    outdir: Path,
    drawn: dict | None = None,
) -> str:
    """Report section of one prediction job: per composition and pressure the candidates' fate and the
    ranked polymorphs; pictures in `outdir` (a folder beside the section's markdown): enthalpy against
    optimiser step (the paper's Fig. 2c), enthalpy
    distributions of every candidate before and after relaxation (Fig. 2d), the generated cells' pressure against the
    target when the job has several pressures (Fig. 2a), a delta-H ladder of the best ranks, and a picture of
    each best polymorph (`drawn`: best id -> its symmetrised structure, the job's top_n)."""
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
            f"{fmt(100.0 * len(conv) / len(g) if len(g) else float('nan'), 1)} | "
            f"{fmt(float(conv['steps'].mean()) if len(conv) else float('nan'), 1)} | "
            f"{int((g['status'] == 'ranked').sum()) if 'status' in g else '-'} | {len(r)} | {sg} | "
            f"{fmt(best['enthalpy_per_atom'], 4) if best is not None else '-'} | "
            f"{int(best['n_candidates']) if best is not None else 0} | {_rule(until, best)} |"
        )
    lines += [
        "",
        "For comparison, the paper's DFT local optimisation of 200 SiO2 candidates (z = 3, 0 GPa): convergence "
        "100 %, mean ionic steps 35.65 at S = 100 (Table 2; DFT, not CHGNet).",
        "",
    ]
    lines += _refinement_lines(job, ranked)
    lines += _generator_lines(job, cands, ranked)
    lines += _assignment_lines(cands)
    for group, r in ranked.groupby("group", sort=True):
        lines += [f"### {group}", "", *_lead_lines(r, job["rank"]["tie_mev"]), *_disagree_lines(r, job)]
        lines += [
            "| rank | delta-H (meV/atom) | H (eV/atom) | space group tight / loose | symmetrised: space group, "
            "delta H (meV/atom) | candidates | found by | z found | best id | E_hull (eV/atom; hull) | CIF |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, x in r.head(max(job["top_n"], 5)).iterrows():
            sym = x.get("spacegroup_symmetrised")
            sym = f"{sym}, {fmt(x.get('symmetrised_delta_mev'), 1)}" if isinstance(sym, str) and sym else "-"
            e_hull = fmt(x["e_hull"], 3)
            if isinstance(x.get("hull"), str) and x["hull"]:
                e_hull += f" ({x['hull']}{', suspect' if str(x.get('hull_suspect')) == 'True' else ''})"
            lines.append(
                f"| {int(x['rank'])} | {fmt(x['delta_h_mev'], 1)} | {fmt(x['enthalpy_per_atom'], 4)} | "
                f"{x['spacegroup_tight']} / {x['spacegroup_loose']} | {sym} | {int(x['n_candidates'])} | "
                f"{x.get('found_by', 'model')} | {x['z_found']} | {x['best_id']} | {e_hull} | "
                f"{x['cif'] if isinstance(x['cif'], str) else ''} |"
            )
        lines.append("")
    lines += _phase_lines(phase, outdir)
    figs = _predict_figures(cands, ranked, traces, outdir, committee_second(job["relax"]))
    lines += [f"![{f}]({outdir.name}/{f})" for f in figs]
    pictures = prediction_pictures(ranked, drawn or {}, job["top_n"], outdir)
    if pictures:
        lines += ["", f"### The best polymorphs (top {job['top_n']} of each composition and pressure)", ""]
        lines += [f"![{f}]({outdir.name}/{f})" for f in pictures]
    return "\n".join(lines) + "\n"


def _refinement_lines(job: dict, ranked: pd.DataFrame) -> list[str]:
    """How often re-relaxing the best polymorphs tightly put another one first (outside the lead group before)."""
    rank = job["rank"]
    if not rank["refine_top"] or "refined" not in ranked or not len(ranked):
        return []
    firsts = ranked.sort_values(["group", "enthalpy_per_atom"]).groupby("group").head(1)
    changed = firsts[firsts["rank_before_refinement"].astype(int) != 1]
    names = ", ".join(f"{g} (now {x})" for g, x in zip(changed["group"], changed["best_id"]))
    return [
        f"Refinement: the best {rank['refine_top']} polymorphs of each composition and pressure re-relaxed to fmax "
        f"{rank['refine_fmax']} eV/A ({int(ranked['refined'].astype(str).eq('True').sum())} converged) and ranked "
        f"again: another polymorph came first in {len(changed)} of {len(firsts)}" + (f": {names}." if names else "."),
        "",
    ]


def _disagree_lines(r: pd.DataFrame, job: dict) -> list[str]:
    """With a committee: what orders the polymorphs, and those whose delta-H the two potentials put more than
    rank.disagree_mev apart."""
    if "rank_by" not in r or not job["relax"]["committee"]:
        return []
    flagged = r[r["committee_disagrees"].astype(str) == "True"] if "committee_disagrees" in r else r.head(0)
    line = f"Ordered by {r['rank_by'].iloc[0]} (ranks under the first potential in `rank_first`)."
    if len(flagged):
        line += (
            f" The potentials disagree by more than {job['rank']['disagree_mev']:g} meV/atom on "
            + ", ".join(str(x) for x in flagged["best_id"])
            + ": their order is uncertain."
        )
    return [line, ""]


def _lead_lines(r: pd.DataFrame, tie_mev: float) -> list[str]:
    """The lead group of one composition and pressure: the polymorphs within `tie_mev` of the best, together."""
    lead = r[r["lead"].astype(str) == "True"] if "lead" in r else r.head(1)
    if len(lead) < 2:
        return [f"Lead: one polymorph; the next lies more than {tie_mev:g} meV/atom above it.", ""]
    members = ", ".join(
        f"{x['best_id']} ({x['spacegroup_tight']}, +{fmt(x['delta_h_mev'], 1)} meV/atom)" for _, x in lead.iterrows()
    )
    return [
        f"**Lead group** ({len(lead)} polymorphs within {tie_mev:g} meV/atom of the best, all rank 1): equally "
        f"plausible at this potential's accuracy; all go to the CIFs and DFT inputs, so DFT decides: {members}.",
        "",
    ]


def _generator_lines(job: dict, cands: pd.DataFrame, ranked: pd.DataFrame) -> list[str]:
    """Which generator made the candidates and found the best polymorphs (and, with the model alone, the advice
    to mix in random structures and prototypes)."""
    shares = job.get("generators") or {"model": 1.0}
    if set(shares) == {"model"}:
        return [
            "The model alone generated these candidates. Where the model is small or briefly trained (the quick "
            "configuration's), search with prototype substitutions and random structures too: on 40 MP-20 test "
            "compositions at 20 candidates each, prototypes alone (`generators: {prototype: 1.0}`) made the known "
            "structure in 28 and ranked it first in 18, the quick mixture (`{model: 0.5, random: 0.25, "
            "prototype: 0.25}`) in 24 and 18, with a quick model of 1.25 epochs (docs/benchmarks.md; "
            "`benchmarks/predict.py` measures each generator for your model).",
            "",
        ]
    gen = cands["generator"].fillna("model") if "generator" in cands else pd.Series(["model"] * len(cands))
    # the lowest-enthalpy polymorph of each composition (a lead group's first member)
    best = ranked.sort_values(["group", "enthalpy_per_atom"]).groupby("group").head(1) if len(ranked) else ranked
    lines = [
        "Generators (shares " + ", ".join(f"{g} {v:g}" for g, v in shares.items()) + "): candidates each made, "
        "how many ranked, in how many compositions it found the best polymorph (any member of the first "
        "cluster) and made its lowest-enthalpy member. A structure found by two generators is one polymorph.",
        "",
        "| generator | candidates | ranked | found the best | made the best |",
        "|---|---|---|---|---|",
    ]
    for g in sorted(set(gen)):
        mine = cands[gen == g]
        found = int(best["found_by"].astype(str).str.split(",").apply(lambda x, g=g: g in x).sum()) if len(best) else 0
        made = int((best["generator"] == g).sum()) if len(best) else 0
        ranked_n = int((mine["status"] == "ranked").sum()) if "status" in mine else 0
        lines.append(f"| {g} | {len(mine)} | {ranked_n} | {found} of {len(best)} | {made} of {len(best)} |")
    return [*lines, ""]


def _assignment_lines(cands: pd.DataFrame) -> list[str]:
    """A symmetric model's candidates by the Wyckoff assignment they were sampled in and where it came from
    (space groups given, Wyckoff strings given, training templates), with the space groups they relaxed into."""
    if "assignment" not in cands or not (cands["assignment"].fillna("") != "").any():
        return []
    lines = [
        "Symmetric model: each candidate was sampled in a space group; where its Wyckoff assignment came from, "
        "and the space groups (tight) its relaxed structures have:",
        "",
        "| generated in | assignment from | candidates | ranked | space groups after relaxation |",
        "|---|---|---|---|---|",
    ]
    sym = cands[cands["assignment"].fillna("") != ""]
    for (sg, src), g in sym.groupby(["spacegroup_generated", "assignment"], sort=True):
        found = ", ".join(
            f"{k} ({v})" for k, v in g["spacegroup_tight"].fillna("").replace("", "-").value_counts().items()
        )
        ranked_n = int((g["status"] == "ranked").sum()) if "status" in g else 0
        lines.append(f"| {int(sg)} | {src} | {len(g)} | {ranked_n} | {found} |")
    return [*lines, ""]


def _rule(until, best) -> str:
    """Whether a search's stopping rule was met for one composition (best found `found` times)."""
    if not until:
        return "- (a batch)"
    times = int(best["n_candidates"]) if best is not None else 0
    return f"{'met' if times >= until['found'] else 'not met (budget used)'}: best found {times} of {until['found']}"


def _phase_lines(phase: pd.DataFrame, outdir: Path) -> list[str]:
    """The pressure scan: transitions per composition and H(P) relative to the lowest-pressure ground state."""
    from crystalflow_core.materials.prediction.scan import transitions

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
        figure(outdir / png, "pressure (GPa)", f"H - H({ref}) (meV/atom)", draw)
        lines += ["", f"![{png}]({outdir.name}/{png})", ""]
    return lines


# meV/atom added to H - H_final before its log is drawn (a finished relaxation sits at 0, drawn at the floor)
CURVE_FLOOR_MEV = 0.01


def _energy_curves(cands: pd.DataFrame, traces: dict):
    """Per group: (steps, median, 10 %, 90 % quantile, n) of H(step) - H(final) in meV/atom over the converged
    candidates (each relative to its own local minimum, as the paper's Fig. 2c); a relaxation that ended
    stays at its final enthalpy."""
    out = {}
    done = cands[cands["converged"].astype(bool) & (cands["error"].fillna("") == "")]
    for group, g in done.groupby("group", sort=True):
        tr = [np.asarray(traces[i], float) for i in g["id"] if i in traces and len(traces[i]) > 1]
        if not tr:
            continue
        n = max(len(t) for t in tr)
        rel = np.array([np.pad(t - t[-1], (0, n - len(t))) for t in tr]) * 1000.0
        q10, med, q90 = np.quantile(rel, [0.1, 0.5, 0.9], axis=0)
        out[group] = (np.arange(n), med, q10, q90, len(tr))
    return out


def _ladder_labels(ys: list[float], gap: float) -> list[float]:
    """Label heights for levels `ys` (ascending) at least `gap` apart: a crowded label moves up, never onto
    another."""
    out: list[float] = []
    for y in ys:
        out.append(y if not out or y >= out[-1] + gap else out[-1] + gap)
    return out


def _predict_figures(
    cands: pd.DataFrame, ranked: pd.DataFrame, traces: dict, outdir: Path, second: str | None
) -> list[str]:
    made = []
    curves = _energy_curves(cands, traces)
    if curves:

        def draw_curves(ax):
            for group, (x, med, q10, q90, n) in curves.items():
                floor = lambda v: np.maximum(v, 0.0) + CURVE_FLOOR_MEV  # noqa: E731
                line = ax.plot(x, floor(med), label=f"{group} ({n} converged)")[0]
                ax.fill_between(x, floor(q10), floor(q90), color=line.get_color(), alpha=0.2)
            ax.set_yscale("log")

        ylabel = f"H - H_final + {CURVE_FLOOR_MEV:g} (meV/atom)"
        xlabel = "optimiser step; line: median, band: 10-90 % of the converged candidates (H = E + PV)"
        figure(outdir / "energy_vs_step.png", xlabel, ylabel, draw_curves)
        made.append("energy_vs_step.png")
    both = cands[cands["initial_enthalpy_per_atom"].notna() & cands["enthalpy_per_atom"].notna()]
    if len(both):
        panels = []
        for group, g in both.groupby("group", sort=True):  # one panel per composition and pressure

            def draw_hist(ax, g=g):  # every candidate: log-spaced bins from 1 meV/atom to the largest
                lo = float(g["enthalpy_per_atom"].min())
                dh = [np.maximum(g[c] - lo, 1e-3) for c in ("initial_enthalpy_per_atom", "enthalpy_per_atom")]
                bins = np.geomspace(1e-3, max(0.01, float(max(x.max() for x in dh))) * 1.01, 40)
                ax.hist(dh[0], bins=bins, alpha=0.5, label="generated")
                ax.hist(dh[1], bins=bins, alpha=0.5, label="relaxed")
                ax.set_xscale("log")

            panels.append((f"{group} ({len(g)} candidates)", draw_hist))
        xlabel = "H - H_best relaxed (eV/atom); every candidate, below 1 meV/atom drawn at 1 meV/atom"
        small_multiples(outdir / "enthalpy_hist.png", panels, xlabel, "candidates", "y")
        made.append("enthalpy_hist.png")
    stress = cands[cands["initial_stress_pressure_gpa"].notna()]
    if stress["pressure_gpa"].nunique() > 1:

        def draw_stress(ax):
            ax.plot(stress["pressure_gpa"], stress["initial_stress_pressure_gpa"], "o", ms=3, alpha=0.6)
            lim = [float(stress["pressure_gpa"].min()), float(stress["pressure_gpa"].max())]
            ax.plot(lim, lim, "k-", lw=0.8)

        figure(
            outdir / "stress_vs_target.png",
            "target pressure (GPa)",
            "CHGNet pressure, generated cell (GPa)",
            draw_stress,
        )
        made.append("stress_vs_target.png")
    if len(ranked):

        def draw_ladder(ax):
            groups = sorted(ranked["group"].unique())
            tops = {g: ranked[ranked["group"] == g].sort_values("delta_h_mev").head(8) for g in groups}
            span = max(1.0, max(float(t["delta_h_mev"].max()) for t in tops.values()))
            for gi, group in enumerate(groups):
                top = tops[group]
                ys = top["delta_h_mev"].astype(float).tolist()
                for y, y_label, (_, r) in zip(ys, _ladder_labels(ys, 0.07 * span), top.iterrows()):
                    ax.hlines(y, gi - 0.3, gi + 0.3, lw=2)
                    sg = r.get("spacegroup_symmetrised") or r["spacegroup_tight"]
                    sg = sg if isinstance(sg, str) and sg else r["spacegroup_tight"]
                    ax.annotate(
                        f"{int(r['rank'])}: {sg}, {r.get('cell', '')}",
                        (gi + 0.3, y),
                        xytext=(gi + 0.36, y_label),
                        fontsize=6,
                        va="center",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if y_label != y else None,
                    )
            ax.set_xticks(range(len(groups)), groups, fontsize=7)
            ax.set_xlim(-0.6, len(groups) + 0.4)
            ax.set_ylim(-0.05 * span, 1.7 * span)

        figure(
            outdir / "delta_h_ladder.png",
            "composition, pressure; labels: rank, symmetrised space group, cell",
            "delta-H to the best (meV/atom)",
            draw_ladder,
        )
        made.append("delta_h_ladder.png")
    return made + _delta_h_parity(ranked, outdir, second)


def _delta_h_parity(ranked: pd.DataFrame, outdir: Path, name: str | None) -> list[str]:
    """Delta-H of the top polymorphs under the committee's second potential (`name`, the job's
    relax.committee[1]) against the relaxer's."""
    second = [f"delta_h_{name}_mev"]
    if name is None or second[0] not in ranked or not ranked[second[0]].notna().any():
        return []

    def draw(ax):
        flag = ranked["committee_disagrees"].astype(bool)
        for mask, label, marker in ((~flag, "agree", "o"), (flag, "disagree", "x")):
            ax.plot(ranked.loc[mask, "delta_h_mev"], ranked.loc[mask, second[0]], marker, ms=4, ls="", label=label)
        hi = float(np.nanmax(ranked[["delta_h_mev", second[0]]].to_numpy(float)))
        ax.plot([0, hi], [0, hi], "k-", lw=0.6)

    figure(outdir / "committee_parity.png", "delta-H, relaxer (meV/atom)", f"delta-H, {name} (meV/atom)", draw)
    return ["committee_parity.png"]
