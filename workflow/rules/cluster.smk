# Cluster resources, in one place: partition, account and QoS from the config's `cluster:` section (GPU
# partition for the jobs of runs that ask for a GPU), GPUs only where a run asks (`gpu` resource, as many
# as train.devices; never `gres` beside it), runtime and memory where they scale with the work. Which rules
# may use a GPU and which run on the submitting node: the stage table (`gpu`, `local`).
import math

from crystalflow_core.compositions import job_searches, n_groups
from crystalflow_core.config import workers_for


def gpus(wildcards, rule_name: str) -> int:
    """GPUs a job asks for: 0 unless its run (or prediction job) sets gpu: true; training as many as
    train.devices (DDP), sampling one."""
    if rule_name in ("predict_sample", "predict_search"):
        return 1 if PREDICT[wildcards.job]["gpu"] else 0
    run = RUNS[wildcards.run]
    section = run["train" if rule_name == "train" else "sample"]
    if not section["gpu"]:
        return 0
    devices = run["train"]["devices"] if rule_name == "train" else 1
    return devices if isinstance(devices, int) else 1


def _structures_per_shard(rule_name: str, wildcards) -> int:
    if rule_name == "predict_relax":
        job = PREDICT[wildcards.job]
        n = n_groups(job_searches(config, wildcards.job, job)) * job["n_candidates"]
        return math.ceil(n / job["relax"]["shards"])
    run = RUNS[wildcards.run]
    s, r = run["sample"], run["relax"]
    n = (
        s["num_samples"] * max(1, len(s["condition_values"]))
        if run["task"] == "dng"
        else (s["test_limit"] or CLUSTER["test_structures_estimate"]) * max(s["k"])
    )
    return math.ceil(min(n, r["limit"] or n) / r["shards"])


def relax_runtime(rule_name: str):
    """Minutes: every structure of the shard at its time limit, over the job's workers, plus the margin."""

    def f(wildcards, threads):
        section = PREDICT[wildcards.job]["relax"] if rule_name == "predict_relax" else RUNS[wildcards.run]["relax"]
        workers = workers_for(section, threads)
        minutes = _structures_per_shard(rule_name, wildcards) * section["timeout"] / max(1, workers) / 60
        return min(CLUSTER["max_runtime_minutes"], math.ceil(minutes) + CLUSTER["relax_runtime_margin_minutes"])

    return f


def worker_mem(wildcards, threads):
    return CLUSTER["mem_mb_per_worker"] * threads + CLUSTER["mem_mb_margin"]


def _placement(rule_name: str, gpu_capable: bool):
    def partition(wildcards):
        if gpu_capable and gpus(wildcards, rule_name) and CLUSTER["gpu_partition"]:
            return CLUSTER["gpu_partition"]
        return CLUSTER["partition"]

    return partition


for _name, _stage in STAGES.items():
    if _stage.local:
        continue
    _r = getattr(rules, _name).rule
    if _stage.uses_gpu:
        _r.resources["gpu"] = lambda wc, _n=_name: gpus(wc, _n)
    if CLUSTER["partition"] or (_stage.uses_gpu and CLUSTER["gpu_partition"]):
        _r.resources["slurm_partition"] = _placement(_name, _stage.uses_gpu)
    if CLUSTER["account"]:
        _r.resources["slurm_account"] = CLUSTER["account"]
    if CLUSTER["qos"]:
        _r.resources["qos"] = CLUSTER["qos"]
    if _name in ("relax", "predict_relax"):
        _r.resources["runtime"] = relax_runtime(_name)
    if _name in ("relax", "predict_relax", "predict_search", "transport_md", "transport_screen"):
        _r.resources["mem_mb"] = worker_mem
