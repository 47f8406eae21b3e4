# Functions and wildcard constraints shared by the rules.
import os

from crystalflow_core.config import anneal_for, dataset_tag, pressure_relax, stability_relax

R = config["results"]
RUNS = config["runs"]
TARGET_RUNS = config["targets"] or list(RUNS)
IMPORTED_RUNS = [r for r in RUNS if RUNS[r]["init"]]  # the authors' checkpoint instead of training
TRAINED_RUNS = [r for r in RUNS if not RUNS[r]["init"]]


def runs_pattern(names):
    return "|".join(names) or "NO_RUNS"


wildcard_constraints:
    run=runs_pattern(RUNS),
    dataset="|".join(config["datasets"]) or "NO_DATASETS",
    split="[A-Za-z0-9_]+",
    steps=r"\d+",
    shard=r"\d+",
    tag="[a-z0-9]+",
    task="csp|dng",


def data_pt(dataset, split):
    return f"{R}/data/{dataset}/{split}.pt"


def train_inputs(wildcards):
    run = RUNS[wildcards.run]
    out = {"train": data_pt(run["dataset"], run["train_split"])}
    if run["val_split"]:
        out["val"] = data_pt(run["dataset"], run["val_split"])
    return out


def import_inputs(wildcards):
    """The training split (its atom-count histogram) and the checkpoint where it is a local file."""
    run = RUNS[wildcards.run]
    out = {"train": data_pt(run["dataset"], run["train_split"])}
    init = run["init"]
    for key in ("reference_checkpoint", "hparams", "scalers"):
        if init[key] and (key != "reference_checkpoint" or not init["url"] or os.path.exists(init[key])):
            out[key] = init[key]
    return out


def test_pt(run_name):
    run = RUNS[run_name]
    return data_pt(run["dataset"], run["test_split"])


def sample_shards(wildcards):
    n = RUNS[wildcards.run]["sample"]["shards"]
    return [f"{R}/runs/{wildcards.run}/s{wildcards.steps}/samples/shard{i}.jsonl" for i in range(n)]


def relax_shards(wildcards):
    n = RUNS[wildcards.run]["relax"]["shards"]
    return [f"{R}/runs/{wildcards.run}/s{wildcards.steps}/relax/shard{i}.jsonl" for i in range(n)]


def relax_enabled(run_name):
    return stability_relax(RUNS[run_name])


def pressure_csp(run_name):
    return pressure_relax(RUNS[run_name])


def fingerprint_file(run_name):
    run = RUNS[run_name]
    lim = config["metrics"]["fingerprint_limit"] or "all"
    return f"{R}/data/{run['dataset']}/{run['test_split']}_fingerprints2_{lim}.npz"


def novelty_pts(wildcards):
    run = RUNS[wildcards.run]
    return [data_pt(run["dataset"], s) for s in run["novelty_splits"]]


def run_metrics(run_name):
    steps = RUNS[run_name]["sample"]["steps"]
    return [f"{R}/runs/{run_name}/s{s}/metrics.csv" for s in steps]


def table_runs(tag, task):
    return [r for r in TARGET_RUNS if dataset_tag(RUNS[r]["dataset"]) == tag and RUNS[r]["task"] == task]


def table_inputs(wildcards):
    runs = table_runs(wildcards.tag, wildcards.task)
    if not runs:
        raise ValueError(f"no run in targets builds results/{wildcards.tag}_{wildcards.task}_metrics.csv")
    return [m for r in runs for m in run_metrics(r)]


def metric_tables():
    pairs = sorted({(dataset_tag(RUNS[r]["dataset"]), RUNS[r]["task"]) for r in TARGET_RUNS})
    return [f"{R}/{tag}_{task}_metrics.csv" for tag, task in pairs]


def dft_targets():
    return [f"{R}/runs/{r}/s{s}/vasp/manifest.csv" for r in TARGET_RUNS if relax_enabled(r)
            for s in RUNS[r]["sample"]["steps"]]


def all_targets():
    return metric_tables() + dft_targets() + [f"{R}/report.md"]


def gpu_res(section):
    def f(wildcards):
        return 1 if RUNS[wildcards.run][section]["gpu"] else 0
    return f


def metrics_inputs(wildcards):
    run = RUNS[wildcards.run]
    inp = {"samples": f"{R}/runs/{wildcards.run}/s{wildcards.steps}/samples.jsonl", "test": test_pt(wildcards.run)}
    if pressure_csp(wildcards.run):
        inp["relaxed"] = relax_shards(wildcards)
    if run["task"] == "dng":
        inp["fingerprints"] = fingerprint_file(wildcards.run)
        if relax_enabled(wildcards.run):
            inp["stability"] = f"{R}/runs/{wildcards.run}/s{wildcards.steps}/stability.csv"
    return inp


def run_view(*sections):
    """Params function: only the parts of a run a rule depends on, so that changing a sampling
    setting reruns sampling and what follows, never training."""
    keep = {"dataset", "task", "conditions", "train_split", "val_split", "test_split", "novelty_splits", *sections}

    def f(wildcards):
        return {k: v for k, v in RUNS[wildcards.run].items() if k in keep}
    return f


def dataset_view(wildcards):
    return {"datasets": {wildcards.dataset: config["datasets"][wildcards.dataset]},
            "data_mirror": config["data_mirror"], "download_dir": config["download_dir"]}


def hull_view():
    return {k: config[k] for k in ("hull", "data_mirror", "download_dir")}
