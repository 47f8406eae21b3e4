"""The summary page: Tables 1-3 (paper_tables), the pictures (plots) and every prediction job's section
(prediction_report), written together."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from crystalflow_core.evaluation.paper_tables import csp_table, dft_table, dng_table, transport_section
from crystalflow_core.evaluation.plots import dft_plots, plots, transport_plots
from crystalflow_core.io import write_text_atomic


def write_report(inp: dict, out: dict, committees: dict[str, str], metrics: dict) -> None:
    """The summary page from the stage's inputs by name (tables, stability, conditions, transport, dft, predict)
    into its outputs by name (report, table1, table2, table3; the pictures in the results' plots folder).
    `committees`: run -> the config's second potential (config.committees); `metrics`: the config's section
    (`structure_pictures`: how many stable DNG samples are drawn, their relaxations in inp["relaxed"];
    `metastable_e_hull`: the cut the E_hull histogram draws)."""
    tables, stability, predict = inp["tables"], inp["stability"], inp.get("predict", [])
    conditions, transport, dft = inp.get("conditions", []), inp.get("transport", []), inp.get("dft", [])
    report, table1, table3, table2 = out["report"], out["table1"], out["table3"], out.get("table2")
    results = str(Path(report).parent)
    dfs = [pd.read_csv(t) for t in tables]
    tdfs = [pd.read_csv(t) for t in conditions]
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
    t1 = csp_table(csp) if len(csp) else "# Table 1\n\nNo CSP run built.\n"
    t3 = dng_table(dng, tdf, committees) if len(dng) else "# Table 3\n\nNo DNG run built.\n"
    write_text_atomic(table1, t1)
    write_text_atomic(table3, t3)
    plot_dir = Path(out["plots"])  # the folder Snakemake resolved
    figs = plots(csp, stability, plot_dir, committees, metrics["metastable_e_hull"])
    figs += _dng_pictures(stability, inp.get("relaxed", []), metrics["structure_pictures"], plot_dir)
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
    ] + [f"![{f}]({os.path.relpath(plot_dir, results)}/{f})" for f in figs]
    write_text_atomic(report, "\n".join(body) + "\n")


# ----------------------------------------------------------------------------- structure prediction
def _predict_included(section_md: str, results: str) -> str:
    """A prediction job's section with its pictures' links made relative to the results folder."""
    import os

    rel = os.path.relpath(Path(section_md).parent, results)
    text = Path(section_md).read_text()
    return re.sub(r"!\[([^\]]*)\]\(((?!/|https?:)[^)]+)\)", lambda m: f"![{m.group(1)}]({rel}/{m.group(2)})", text)


def _dng_pictures(stability: list[str], relaxed: list[str], limit: int, plot_dir: Path) -> list[str]:
    """Pictures of the best stable DNG samples of every stability table (structures from their relaxations)."""
    from crystalflow_core.evaluation.structure_pictures import SYMPREC, dng_pictures
    from crystalflow_core.io import read_jsonl
    from crystalflow_core.materials.relax import finished, relaxed_structure

    label = lambda folder: f"{folder.parent.name}_{folder.name}"  # noqa: E731  ({run}_s{point}: one sampling point)
    frames = [pd.read_csv(p, dtype={"id": str}).assign(source=label(Path(p).parent)) for p in stability]
    if not frames or limit <= 0:
        return []
    st = pd.concat(frames, ignore_index=True)
    wanted = {(r["source"], r["id"]) for _, r in st[st["e_hull"] <= 0].iterrows()}
    structures = {}
    for p in relaxed:  # results/runs/{run}/s{point}/relax/shard{i}.jsonl
        source = label(Path(p).parents[1])
        for rec in read_jsonl(p) if Path(p).exists() else []:
            if (source, rec.get("id")) in wanted and finished(rec):
                structures[(source, rec["id"])] = relaxed_structure(rec)
    return dng_pictures(st, structures, limit, plot_dir, SYMPREC)
