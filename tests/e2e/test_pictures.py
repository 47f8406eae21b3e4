"""Pictures a scientist can read (#46): every plot of the tiny workflow rendered again in this process and
checked as a person would look at it (no text beyond the canvas, whole numbers on count axes), and a picture
of each best polymorph of the prediction job."""

import pandas as pd
import yaml

from crystalflow_core import config as cfgmod
from crystalflow_core import registry
from crystalflow_core.evaluation import plots
from crystalflow_core.jobs import Job


def test_every_plot_of_the_tiny_workflow_is_whole_and_legible(tiny_run, tmp_path, monkeypatch):
    work, cfg_path = tiny_run
    monkeypatch.chdir(work)
    cfg = cfgmod.validate(yaml.safe_load(cfg_path.read_text()))
    plots.PROBLEMS.clear()
    # the report and the prediction job's section, written again into tmp_path from the tiny run's inputs
    report = Job(cfg, "report")
    report.output = {
        k: str(tmp_path / "results" / name)
        for k, name in (
            ("report", "report.md"),
            ("table1", "t1.md"),
            ("table2", "t2.md"),
            ("table3", "t3.md"),
            ("plots", "plots"),
        )
    }
    registry.run(report)
    section = Job(cfg, "predict_report", job="salt")
    section.output = {"report": str(tmp_path / "salt" / "report.md"), "plots": str(tmp_path / "salt" / "plots")}
    registry.run(section)
    drawn = set(plots.PROBLEMS)
    on_disk = {p.name for p in (work / "results" / "plots").glob("*.png")}
    on_disk |= {p.name for p in (work / "results" / "predict" / "salt" / "plots").glob("*.png")}
    assert on_disk <= drawn, f"not rendered again: {on_disk - drawn}"
    assert {"e_hull_hist.png", "energy_vs_step.png", "enthalpy_hist.png", "delta_h_ladder.png"} <= drawn
    bad = {name: p for name, p in plots.PROBLEMS.items() if p}
    assert not bad, bad
    # a picture of each best polymorph (top_n per composition and pressure), named in the section
    ranked = pd.read_csv(work / "results" / "predict" / "salt" / "ranked.csv")
    top = ranked[(ranked["rank"] <= cfg["predict"]["salt"]["top_n"]) & ranked["cif"].notna()]
    pictures = sorted((tmp_path / "salt" / "plots").glob("structure_*.png"))
    assert len(pictures) == len(top) >= 1
    text = (tmp_path / "salt" / "report.md").read_text()
    assert all(p.name in text for p in pictures)


def test_layout_check_sees_text_beyond_the_canvas_and_fractional_counts(tmp_path):
    """The check itself: a label placed outside the figure and a count axis with 0.5 ticks are reported."""
    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.hist([1, 2, 2, 3])
    ax.set_ylim(0, 2.5)
    ax.set_yticks([0, 0.5, 1, 1.5, 2, 2.5])
    fig.text(0.95, 0.5, "a long label that runs off the right edge")
    problems = plots.check_layout(fig, [(ax, "y")])
    plt.close(fig)
    assert any("beyond the canvas" in p for p in problems) and any("fractional" in p for p in problems)
    assert plots.figure(tmp_path / "ok.png", "x " * 80, "count", lambda ax: ax.hist([1, 2, 2, 3]), "y")
    assert plots.PROBLEMS["ok.png"] == []  # the long label is wrapped, the counts whole
