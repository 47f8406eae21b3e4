# Cluster resources, in one place: partition, account and QoS from the config's `cluster:` section (GPU
# partition for the jobs of runs that ask for a GPU), GPUs only where a run asks (`gpu` resource, as many
# as train.devices; never `gres` beside it), runtime and memory where they scale with the work. Cheap
# rules run on the submitting node.
import math

from crystalflow_core.materials.prediction import job_targets, n_groups


localrules:
    all,
    download,
    gather_samples,
    import_reference,
    metric_table,
    targets_table,
    report,
    dft,
    dft_results,
    predict,
    predict_dft,
    predict_dft_results,
    predict_report,


CLUSTER = config["cluster"]


def gpus(wildcards, rule_name: str) -> int:
    """GPUs a job asks for: 0 unless its run (or prediction job) sets gpu: true; training as many as
    train.devices (DDP), sampling one."""
    if rule_name == "predict_sample":
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
        n = n_groups(job_targets(config, wildcards.job, job)) * job["n_candidates"]
        return math.ceil(n / job["relax"]["shards"])
    run = RUNS[wildcards.run]
    s, r = run["sample"], run["relax"]
    n = (
        s["num_samples"] * max(1, len(s["targets"]))
        if run["task"] == "dng"
        else (s["test_limit"] or 10000) * max(s["k"])
    )
    return math.ceil(min(n, r["limit"] or n) / r["shards"])


def relax_runtime(rule_name: str):
    """Minutes: every structure of the shard at its time limit, over the job's workers, plus 15."""

    def f(wildcards, threads):
        section = PREDICT[wildcards.job]["relax"] if rule_name == "predict_relax" else RUNS[wildcards.run]["relax"]
        workers = section["workers"] or threads
        minutes = _structures_per_shard(rule_name, wildcards) * section["timeout"] / max(1, workers) / 60
        return min(10080, math.ceil(minutes) + 15)

    return f


def worker_mem(wildcards, threads):
    return CLUSTER["mem_mb_per_worker"] * threads + 2000


def _placement(rule_name: str, gpu_capable: bool):
    def partition(wildcards):
        if gpu_capable and gpus(wildcards, rule_name) and CLUSTER["gpu_partition"]:
            return CLUSTER["gpu_partition"]
        return CLUSTER["partition"]

    return partition


for _r in workflow.rules:
    if _r.name in workflow._localrules:
        continue
    _gpu_capable = _r.name in ("train", "sample", "predict_sample")
    if _gpu_capable:
        _r.resources["gpu"] = lambda wc, _n=_r.name: gpus(wc, _n)
    if CLUSTER["partition"] or (_gpu_capable and CLUSTER["gpu_partition"]):
        _r.resources["slurm_partition"] = _placement(_r.name, _gpu_capable)
    if CLUSTER["account"]:
        _r.resources["slurm_account"] = CLUSTER["account"]
    if CLUSTER["qos"]:
        _r.resources["qos"] = CLUSTER["qos"]
    if _r.name in ("relax", "predict_relax"):
        _r.resources["runtime"] = relax_runtime(_r.name)
    if _r.name in ("relax", "predict_relax", "transport_md", "transport_screen"):
        _r.resources["mem_mb"] = worker_mem
