"""The inputs and calls of the stage table's records that need more than a line: what a metric, import,
DFT read-back or report job reads, and how a record's inputs and outputs by name reach its stage function.
Torch-free: the stages are imported when a job runs (stage_functions)."""

from __future__ import annotations

from pathlib import Path

from crystalflow_core.builds import (
    conditions_tables,
    dft_tables,
    metric_tables,
    stability_relaxations,
    stability_tables,
    table_runs,
    transport_tables,
)
from crystalflow_core.config import (
    committees,
    pressure_relax,
    stability_relax,
    transport_screen,
    workers_for,
)
from crystalflow_core.jobs import (
    Job,
    fingerprints_of,
    hull_inputs,
    hull_of,
    novelty_of,
    relax_shards,
    split_of,
)
from crystalflow_core.points import is_baseline, metric_points


def stage_functions():
    from crystalflow_core import stages

    return stages


def metrics_inputs(job: Job) -> dict:
    L = job.layout
    baseline = is_baseline(job.point)  # no model; scored as the model's samples but with no DFT or transport stage
    inp = {"samples": L.samples(job.run, job.point), "test": split_of(job, "test_split")}
    if not baseline:
        inp["model"] = L.model(job.run)
    if pressure_relax(job.run_section):
        inp["relaxed"] = relax_shards(job)
    if job.run_section["task"] == "dng":
        inp["fingerprints"] = fingerprints_of(job)
        if stability_relax(job.run_section):
            inp["stability"] = L.stability(job.run, job.point)
            if not baseline:
                inp["dft"] = L.dft_stability(job.run, job.point)
        if transport_screen(job.run_section) and not baseline:
            inp["transport"] = L.transport(job.run, job.point)
    return inp


def metrics_call(job: Job, inp: dict, out: dict) -> None:
    S = stage_functions()
    common = {"cfg": job.cfg, "run_name": job.run, "run": job.run_section, "samples": inp["samples"]}
    common |= {"test_pt": inp["test"], "steps": job.point, "out": out["summary"], "workers": job.threads}
    if job.run_section["task"] == "csp":
        S.csp_metrics(**common, relaxed=inp.get("relaxed", []), ckpt=inp.get("model"))
        Path(out["conditions"]).write_text("")  # CSP runs have no condition values
        return
    dft = inp.get("dft")
    S.dng_metrics(
        **common,
        test_fp=inp["fingerprints"],
        stab_csv=inp.get("stability"),
        ckpt=inp.get("model"),
        conditions_out=out["conditions"],
        transport_csv=inp.get("transport"),
        dft_csv=dft if dft and Path(dft).exists() else None,
    )


def import_inputs(job: Job) -> dict:
    """The training split (its atom-count histogram) and the checkpoint files that are local."""
    out, init = (
        {"train": job.layout.split(job.run_section["dataset"], job.run_section["train_split"])},
        job.run_section["init"],
    )
    for key in ("reference_checkpoint", "hparams", "scalers"):
        if init[key] and (key != "reference_checkpoint" or not init["url"] or Path(init[key]).exists()):
            out[key] = init[key]
    return out


def import_call(job: Job, inp: dict, out: dict) -> None:
    """The resolved local files; a checkpoint that is not local yet is the download's path (the stage fetches it)."""
    init = job.run_section["init"]
    stage_functions().import_checkpoint(
        job.cfg,
        job.run,
        inp.get("reference_checkpoint", init["reference_checkpoint"]),
        out["ckpt"],
        hparams=inp.get("hparams"),
        scalers=inp.get("scalers"),
        sha256=init["sha256"],
        url=init["url"],
        train_pt=inp["train"],
    )


def sample_inputs(job: Job) -> dict:
    """The model's checkpoint (and a CSP run's test split); a baseline's: the training split it draws from."""
    if is_baseline(job.point):
        return {"train": split_of(job, "train_split")}
    return {
        "ckpt": job.layout.model(job.run),
        **({"test": split_of(job, "test_split")} if job.run_section["task"] == "csp" else {}),
    }


def sample_call(job: Job, inp: dict, out: dict) -> None:
    S, shards = stage_functions(), job.run_section["sample"]["shards"]
    if is_baseline(job.point):
        S.baseline_sample(job.run_section, inp["train"], job.point, job.shard, shards, out["shard"])
        return
    if not S.shard_is_current(
        out["shard"], job.run_section, inp["ckpt"], job.point, job.shard, shards
    ):  # else: same model, settings
        S.sample(job.run_section, inp["ckpt"], inp.get("test"), job.point, job.shard, shards, out["shard"], job.threads)


def dft_results_inputs(job: Job) -> dict:
    L = job.layout
    inp = {
        "manifest": L.vasp_manifest(job.run, job.point),
        "relaxed": relax_shards(job),
        "stability": L.stability(job.run, job.point),
        "novelty": novelty_of(job),
        **hull_of(job),
    }
    if job.run_section["dft"]["energies"]:
        inp["energies"] = job.run_section["dft"]["energies"]
    return inp


def report_inputs(job: Job) -> dict:
    cfg, L = job.cfg, job.layout
    return {
        "tables": metric_tables(cfg),
        "stability": stability_tables(cfg),
        "relaxed": stability_relaxations(cfg),
        "conditions": conditions_tables(cfg),
        "transport": transport_tables(cfg),
        "dft": dft_tables(cfg),
        "predict": [L.predict_report(p) for p in cfg["predict"]],
    }


def report_call(job: Job, inp: dict, out: dict) -> None:
    from crystalflow_core.evaluation.report import write_report

    write_report(inp, out, committees(job.cfg), job.cfg["metrics"])


def table_inputs(job: Job) -> dict:
    runs = table_runs(job.cfg, job.tag, job.task)
    if not runs:
        raise ValueError(f"no run built makes {job.layout.table(job.tag, job.task)}")
    return {"metrics": [job.layout.metrics(r, s) for r in runs for s in metric_points(job.cfg["runs"][r])]}


def conditions_table_inputs(job: Job) -> dict:
    runs = table_runs(job.cfg, job.tag, "dng")
    return {"metrics": [job.layout.condition_metrics(r, s) for r in runs for s in metric_points(job.cfg["runs"][r])]}


def predict_search_call(job: Job, inp: dict, out: dict) -> None:
    workers = workers_for(job.job_section["relax"], job.threads)
    stage_functions().predict_search(
        job.cfg,
        job.job,
        job.job_section,
        inp["model"],
        out["samples"],
        out["relaxed"],
        job.threads,
        workers,
        training=inp.get("training"),
    )


def predict_rank_call(job: Job, inp: dict, out: dict) -> None:
    stage_functions().predict_rank(
        job.cfg,
        job.job,
        job.job_section,
        inp["samples"],
        inp["relaxed"],
        {  # and what the table record keeps (`kept`)
            **out,
            "refined": job.layout.predict_refined(job.job),
            "second": job.layout.predict_second_opinion(job.job),
        },
        workers_for(job.job_section["relax"], job.threads),
        hull_inputs=hull_inputs(inp),
    )


def transport_md_call(job: Job, inp: dict, out: dict) -> None:
    shards, workers = (
        job.run_section["transport"]["md"]["shards"],
        workers_for(job.run_section["transport"], job.threads),
    )
    stage_functions().transport_md(
        job.run_section, inp["screen"], inp["relaxed"], job.shard, shards, out["md"], out["trajectories"], workers
    )
