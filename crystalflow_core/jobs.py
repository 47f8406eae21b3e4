"""A job of the stage table: one rule's wildcards and settings (`Job`), and the file lists a job's inputs
are made of (shards, splits, fingerprints, the prediction model). Torch-free, as the table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crystalflow_core.layout import Layout
from crystalflow_core.sources import local_source, split_source


class Folder(str):
    """An output that is a folder (Snakemake's `directory()`)."""


@dataclass
class Job:
    cfg: dict  # the validated config
    rule: str
    run: str | None = None  # run name
    point: str | None = None  # sampling point: 100, heun_10
    shard: int | str | None = None
    job: str | None = None  # prediction job name
    dataset: str | None = None
    split: str | None = None
    limit: str | None = None  # fingerprint limit: a number or "all"
    tag: str | None = None  # dataset tag of a metric table (mp20)
    task: str | None = None  # csp or dng
    threads: int = 0  # of the Snakemake job or the command line (0: all cores)
    input: dict | None = None  # the job's files as Snakemake resolved them; None: from the table
    output: dict | None = None

    @property
    def L(self) -> Layout:
        return Layout(self.cfg["results"])

    @property
    def r(self) -> dict:
        return self.cfg["runs"][self.run]

    @property
    def p(self) -> dict:
        return self.cfg["predict"][self.job]

    @classmethod
    def from_snakemake(cls, smk) -> Job:
        wc = dict(smk.wildcards.items())
        return cls(
            smk.config,
            smk.rule,
            run=wc.get("run"),
            point=wc.get("steps"),
            shard=int(wc["shard"]) if "shard" in wc else None,
            job=wc.get("job"),
            dataset=wc.get("dataset"),
            split=wc.get("split"),
            limit=wc.get("limit"),
            tag=wc.get("tag"),
            task=wc.get("task"),
            threads=smk.threads,
            input={k: _plain(v) for k, v in smk.input.items()},
            output={k: _plain(v) for k, v in smk.output.items()},
        )

    @classmethod
    def pattern(cls, cfg: dict, rule: str) -> Job:
        """A job whose wildcards are Snakemake's placeholders: its outputs are the rule's patterns."""
        wc = dict(run="{run}", point="{steps}", shard="{shard}", job="{job}", dataset="{dataset}", split="{split}")
        return cls(cfg, rule, limit="{limit}", tag="{tag}", task="{task}", **wc)


def _plain(value):
    """A Snakemake input or output (a path, or a list of paths) as plain strings."""
    return [str(v) for v in value] if isinstance(value, list) else str(value)


# ----------------------------------------------------------------------------- shards and file lists
def sample_shards(j: Job) -> list[str]:
    return [j.L.sample_shard(j.run, j.point, i) for i in range(j.r["sample"]["shards"])]


def relax_shards(j: Job) -> list[str]:
    return [j.L.relaxed(j.run, j.point, i) for i in range(j.r["relax"]["shards"])]


def md_shards(j: Job) -> list[str]:
    return [j.L.transport_md(j.run, j.point, i) for i in range(j.r["transport"]["md"]["shards"])]


def predict_sample_shards(j: Job) -> list[str]:
    if j.p["until"]:  # a search: one file, grown in rounds
        return [j.L.predict_search_samples(j.job)]
    return [j.L.predict_samples(j.job, i) for i in range(j.p["shards"])]


def predict_relax_shards(j: Job) -> list[str]:
    if j.p["until"]:
        return [j.L.predict_search_relaxed(j.job)]
    return [j.L.predict_relaxed(j.job, i) for i in range(j.p["relax"]["shards"])]


def split_of(j: Job, key: str) -> str | None:
    return j.L.split(j.r["dataset"], j.r[key]) if j.r[key] else None


def novelty_of(j: Job) -> list[str]:
    return [j.L.split(j.r["dataset"], s) for s in j.r["novelty_splits"]]


def fingerprints_of(j: Job) -> str:
    return j.L.fingerprints(j.r["dataset"], j.r["test_split"], j.cfg["metrics"]["fingerprint_limit"])


def prediction_model_of(j: Job) -> str:
    return j.L.model(j.p["run"]) if j.p["run"] else j.p["checkpoint"]


def split_file(cfg: dict, dataset: str, split: str) -> str:
    """A split's CSV: the mirror's copy, or where the download rule puts it."""
    return str(local_source(split_source(cfg, dataset, split), cfg["data_mirror"], cfg["download_dir"]))


def parent_of(path: str) -> str:
    """The folder a file lies in."""
    return str(Path(path).parent)


def limit_of(limit: str) -> int | None:
    """A fingerprint limit wildcard: None for all."""
    return None if limit == "all" else int(limit)


def partials_of(*outs: str) -> list[str]:
    """The resumable records beside outputs (kept, never Snakemake outputs)."""
    return [f"{o}.partial" for o in outs] + [f"{o}.partial.key" for o in outs]
