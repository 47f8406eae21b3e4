"""What the workflow builds: the files of Snakemake's target rules (`all`, `predict`), the runs a config builds
and the tables they fill. Torch-free (the Snakefile imports it to build its DAG)."""

from __future__ import annotations

from crystalflow_core.config import dataset_tag, runs_to_build, stability_relax, transport_screen
from crystalflow_core.layout import Layout
from crystalflow_core.points import metric_points, sampling_points


def _per_point(cfg: dict, path, keep=lambda r: True, points=sampling_points) -> list[str]:
    """`path` of every run built (where `keep`) at each of its `points` (the model's sampling points; with
    metric_points also the DNG baselines)."""
    runs = cfg["runs"]
    return [path(r, s) for r in runs_to_build(cfg) if keep(runs[r]) for s in points(runs[r])]


def table_runs(cfg: dict, tag: str, task: str) -> list[str]:
    runs = cfg["runs"]
    return [r for r in runs_to_build(cfg) if dataset_tag(runs[r]["dataset"]) == tag and runs[r]["task"] == task]


def metric_tables(cfg: dict) -> list[str]:
    runs, L = cfg["runs"], Layout(cfg["results"])
    pairs = sorted({(dataset_tag(runs[r]["dataset"]), runs[r]["task"]) for r in runs_to_build(cfg)})
    return [L.table(tag, task) for tag, task in pairs]


def conditions_tables(cfg: dict) -> list[str]:
    runs, L = cfg["runs"], Layout(cfg["results"])
    return sorted(
        {L.conditions_table(dataset_tag(runs[r]["dataset"])) for r in runs_to_build(cfg) if runs[r]["task"] == "dng"}
    )


def stability_tables(cfg: dict) -> list[str]:
    """Every stability table the report draws: the model's points and the baselines beside them."""
    return _per_point(cfg, Layout(cfg["results"]).stability, stability_relax, metric_points)


def stability_relaxations(cfg: dict) -> list[str]:
    """The relaxation shards behind every stability table (the structures the report draws)."""
    runs, L = cfg["runs"], Layout(cfg["results"])
    return [
        L.relaxed(r, s, i)
        for r in runs_to_build(cfg)
        if stability_relax(runs[r])
        for s in metric_points(runs[r])
        for i in range(runs[r]["relax"]["shards"])
    ]


def dft_tables(cfg: dict) -> list[str]:
    return _per_point(cfg, Layout(cfg["results"]).dft_stability, stability_relax)


def dft_targets(cfg: dict) -> list[str]:
    return _per_point(cfg, Layout(cfg["results"]).vasp_manifest, stability_relax)


def transport_tables(cfg: dict) -> list[str]:
    return _per_point(cfg, Layout(cfg["results"]).transport, transport_screen)


def predict_targets(cfg: dict) -> list[str]:
    L = Layout(cfg["results"])
    return [f for j in cfg["predict"] for f in (L.predict_ranked(j), L.predict_dft(j), L.predict_report(j))]


def all_targets(cfg: dict) -> list[str]:
    return metric_tables(cfg) + dft_targets(cfg) + predict_targets(cfg) + [Layout(cfg["results"]).report()]
