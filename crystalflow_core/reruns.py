"""What makes a job run again beyond its input files: the parts of the config its outputs depend on. Each record
of the stage table names them (`Stage.reruns`: a name -> a function of the job); the Snakemake rules pass them as
params (`stage_params` in workflow/rules/common.smk), which Snakemake compares with those of the run that made the
outputs, so a changed setting reruns exactly the jobs that read it and what follows them. Values are canonical
(keys sorted): the same settings in another key order rerun nothing. Torch-free (the Snakefile imports it)."""

from __future__ import annotations

from collections.abc import Callable

from crystalflow_core.config import canonical

# what every view of a run keeps: the data a run is made from
RUN_KEYS = ("dataset", "task", "conditions", "train_split", "val_split", "test_split", "novelty_splits")
WHERE_FILES_COME_FROM = ("data_mirror", "download_dir")


def run_view(*sections: str) -> Callable:
    """The run's data and the named sections only, so that changing a sampling setting reruns sampling and what
    follows, never training. A job's sampling point is its {point} wildcard: adding a point (sample.steps,
    sample.extra) or a baseline reruns no other."""
    keep = {*RUN_KEYS, *sections}

    def view(job) -> dict:
        out = {k: v for k, v in job.run_section.items() if k in keep}
        if "sample" in out:
            out["sample"] = {k: v for k, v in out["sample"].items() if k not in ("steps", "extra")}
        return canonical(out)

    return view


def section_view(*keys: str) -> Callable:
    """Top-level sections of the config."""
    return lambda job: canonical({k: job.cfg[k] for k in keys})


def dataset_view(job) -> dict:
    """A dataset's section and where its files come from."""
    return canonical(
        {"datasets": {job.dataset: job.cfg["datasets"][job.dataset]}, **{k: job.cfg[k] for k in WHERE_FILES_COME_FROM}}
    )


def hull_view(job) -> dict:
    """The hull and where its file comes from (every E_hull)."""
    return canonical({k: job.cfg[k] for k in ("hull", *WHERE_FILES_COME_FROM)})


def predict_view(job) -> dict:
    """A prediction job's own section."""
    return canonical(job.job_section)


def predict_context(job) -> dict:
    """What a prediction job reads beyond its own section: its run (conditions, sampling settings) and the hull."""
    run = job.job_section["run"]
    runs = {run: job.cfg["runs"][run]} if run else {}
    return canonical({"runs": runs, **{k: job.cfg[k] for k in ("hull", *WHERE_FILES_COME_FROM)}})


def metrics_protocol(job) -> str:
    """The reference cells of the metrics (the CIF's or Niggli) and the structures the transport screen takes."""
    return job.cfg["metrics"]["protocol"]


def sample_export(job) -> list:
    return canonical(job.run_section["sample"]["export"])


def import_init(job) -> dict:
    return canonical(job.run_section["init"])


def import_config(job) -> dict:
    return canonical({"runs": {job.run: job.run_section}, "download_dir": job.cfg["download_dir"]})
