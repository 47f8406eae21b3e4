# Functions and wildcard constraints shared by the rules.
import os
from pathlib import Path

from crystalflow_core.config import canonical, dataset_tag, stability_relax, transport_screen
from crystalflow_core.crystals.data import download_path, local_source
from crystalflow_core.layout import Layout
from crystalflow_core.stages.registry import Job, inputs
from crystalflow_core.stages.data import split_source
from crystalflow_core.materials.hull import hull_source
from crystalflow_core.generative.sampling import POINT_PATTERN, sampling_points

L = Layout(config["results"])  # every results path; rules pass wildcards ("{run}") as arguments
RUNS = config["runs"]
TARGET_RUNS = config["targets"] or list(RUNS)
IMPORTED_RUNS = [r for r in RUNS if RUNS[r]["init"]]  # the authors' checkpoint instead of training
TRAINED_RUNS = [r for r in RUNS if not RUNS[r]["init"]]
PREDICT = config["predict"]  # structure-prediction jobs


def _downloads():
    """(group, file name) -> source of every file the `download` job may fetch: the dataset splits and
    the Matbench Discovery hull."""
    out = {}
    sources = [split_source(config, d, s) for d, ds in config["datasets"].items() for s in ds["splits"]]
    for src in sources + [hull_source(config)]:
        if src is not None and src.url:
            p = download_path(src, config["download_dir"])
            out[(p.parent.name, p.name)] = src
    return out


DOWNLOADS = _downloads()


def split_file(wildcards):
    """A split's CSV: the mirror's copy, or the download rule's."""
    src = split_source(config, wildcards.dataset, wildcards.split)
    return str(local_source(src, config["data_mirror"], config["download_dir"]))


def hull_file():
    """The Matbench Discovery hull file where the hull needs one (from the mirror or the download rule)."""
    src = hull_source(config)
    return [str(local_source(src, config["data_mirror"], config["download_dir"]))] if src else []


def runs_pattern(names):
    return "|".join(names) or "NO_RUNS"


wildcard_constraints:
    run=runs_pattern(RUNS),
    dataset="|".join(config["datasets"]) or "NO_DATASETS",
    split="[A-Za-z0-9_]+",
    steps=POINT_PATTERN,
    shard=r"\d+",
    tag="[a-z0-9]+",
    task="csp|dng",
    job=runs_pattern(PREDICT),


def job_inputs(rule, **extra):
    """Input function from the stage registry: what a job of `rule` reads, plus `extra`
    (input functions of files that only trigger a rerun, such as the hull or VASP outputs)."""

    def f(wildcards):
        wc = dict(wildcards.items())
        shard = int(wc["shard"]) if "shard" in wc else None
        job = Job(config, rule, run=wc.get("run"), point=wc.get("steps"), shard=shard, job=wc.get("job"))
        out = inputs(job)
        for key, fn in extra.items():
            out[key] = fn(wildcards) if callable(fn) else fn
        return out

    return f


def _vasp_outputs(folder):
    pats = ("vasprun.xml", "vasprun.xml.gz", "OUTCAR", "OUTCAR.gz")
    return sorted(str(p) for pat in pats for p in Path(folder).glob(f"*/{pat}"))


def dft_outputs(wildcards):
    """The VASP outputs present now (jobs finishing later make the read-back run again); none when the
    run's energies come from a file."""
    if RUNS[wildcards.run]["dft"]["energies"]:
        return []
    return _vasp_outputs(L.vasp_dir(wildcards.run, wildcards.steps))


def predict_dft_outputs(wildcards):
    return _vasp_outputs(Path(L.predict_vasp_manifest(wildcards.job)).parent)


def import_inputs(wildcards):
    """The training split (its atom-count histogram) and the checkpoint where it is a local file."""
    run = RUNS[wildcards.run]
    out = {"train": L.split(run["dataset"], run["train_split"])}
    init = run["init"]
    for key in ("reference_checkpoint", "hparams", "scalers"):
        if init[key] and (key != "reference_checkpoint" or not init["url"] or os.path.exists(init[key])):
            out[key] = init[key]
    return out


def relax_enabled(run_name):
    return stability_relax(RUNS[run_name])


def transport_enabled(run_name):
    return transport_screen(RUNS[run_name])


def transport_tables():
    return [L.transport(r, s) for r in TARGET_RUNS if transport_enabled(r) for s in sampling_points(RUNS[r])]


def run_metrics(run_name):
    steps = sampling_points(RUNS[run_name])
    return [L.metrics(run_name, s) for s in steps]


def table_runs(tag, task):
    return [r for r in TARGET_RUNS if dataset_tag(RUNS[r]["dataset"]) == tag and RUNS[r]["task"] == task]


def table_inputs(wildcards):
    runs = table_runs(wildcards.tag, wildcards.task)
    if not runs:
        raise ValueError(f"no run in targets builds {L.table(wildcards.tag, wildcards.task)}")
    return [m for r in runs for m in run_metrics(r)]


def targets_inputs(wildcards):
    """Per-target rows (conditional DNG runs) of every DNG run of a dataset tag."""
    return [L.targets_metrics(r, s) for r in table_runs(wildcards.tag, "dng") for s in sampling_points(RUNS[r])]


def targets_tables():
    return sorted({L.targets_table(dataset_tag(RUNS[r]["dataset"])) for r in TARGET_RUNS if RUNS[r]["task"] == "dng"})


def metric_tables():
    pairs = sorted({(dataset_tag(RUNS[r]["dataset"]), RUNS[r]["task"]) for r in TARGET_RUNS})
    return [L.table(tag, task) for tag, task in pairs]


def dft_targets():
    return [L.vasp_manifest(r, s) for r in TARGET_RUNS if relax_enabled(r) for s in sampling_points(RUNS[r])]


def all_targets():
    return metric_tables() + dft_targets() + predict_targets() + [L.report()]


# ----------------------------------------------------------------------------- structure prediction
def predict_targets():
    return [f for j in PREDICT for f in (L.predict_ranked(j), L.predict_dft(j), L.predict_report(j))]


def predict_reports():
    return [L.predict_report(j) for j in PREDICT]


def predict_view(wildcards):
    return canonical(PREDICT[wildcards.job])


def predict_cfg(wildcards):
    """What a prediction job reads beyond its own section: its run (conditions, sampling settings) and the hull."""
    job = PREDICT[wildcards.job]
    runs = {job["run"]: RUNS[job["run"]]} if job["run"] else {}
    return canonical({"runs": runs, **{k: config[k] for k in ("hull", "data_mirror", "download_dir")}})


def run_view(*sections):
    """Params function: only the parts of a run a rule depends on, so that changing a sampling
    setting reruns sampling and what follows, never training; keys sorted, so that the same settings
    in another key order rerun nothing."""
    keep = {"dataset", "task", "conditions", "train_split", "val_split", "test_split", "novelty_splits", *sections}

    def f(wildcards):
        out = {k: v for k, v in RUNS[wildcards.run].items() if k in keep}
        if "sample" in out:  # a job's sampling point is its {steps} wildcard: adding a point reruns no other
            out["sample"] = {k: v for k, v in out["sample"].items() if k not in ("steps", "extra")}
        return canonical(out)

    return f


def dataset_view(wildcards):
    return canonical(
        {
            "datasets": {wildcards.dataset: config["datasets"][wildcards.dataset]},
            "data_mirror": config["data_mirror"],
            "download_dir": config["download_dir"],
        }
    )


def stability_tables():
    return [L.stability(r, s) for r in TARGET_RUNS if relax_enabled(r) for s in sampling_points(RUNS[r])]


def dft_tables():
    return [L.dft_stability(r, s) for r in TARGET_RUNS if relax_enabled(r) for s in sampling_points(RUNS[r])]


def hull_view():
    return canonical({k: config[k] for k in ("hull", "data_mirror", "download_dir")})


def section_view(*keys):
    """Params value: top-level config sections, keys sorted (params are compared by their repr)."""
    return canonical({k: config[k] for k in keys})
