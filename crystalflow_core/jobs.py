"""A job of the stage table: one rule's wildcards and settings (`Job`), and the file lists a job's inputs
are made of (shards, splits, fingerprints, the prediction model). Torch-free, as the table."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from crystalflow_core.layout import Layout
from crystalflow_core.sources import hull_files, hull_source, local_source, split_source

# a Job's field -> the workflow's wildcard that holds it (the one mapping between the two)
WILDCARDS = {
    "run": "run",
    "point": "point",
    "shard": "shard",
    "job": "job",
    "dataset": "dataset",
    "split": "split",
    "limit": "limit",
    "tag": "tag",
    "task": "task",
}


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
    def layout(self) -> Layout:
        """Every path under the config's results folder."""
        return Layout(self.cfg["results"])

    @property
    def run_section(self) -> dict:
        """The job's run (`runs/{run}` of the validated config)."""
        return self.cfg["runs"][self.run]

    @property
    def job_section(self) -> dict:
        """The job's prediction job (`predict/{job}` of the validated config)."""
        return self.cfg["predict"][self.job]

    @classmethod
    def from_wildcards(cls, cfg: dict, rule: str, wildcards, **settings) -> Job:
        """The job of a rule's wildcards (Snakemake's, or any mapping of wildcard name -> value): the one
        mapping of wildcards onto a job's fields (WILDCARDS), for the rules' input functions and scripts."""
        wc = dict(wildcards.items())
        fields = {f: wc.get(w) for f, w in WILDCARDS.items()}
        fields["shard"] = int(wc["shard"]) if wc.get("shard") is not None else None
        return cls(cfg, rule, **fields, **settings)

    @classmethod
    def from_snakemake(cls, smk) -> Job:
        """The job of a running Snakemake rule: its wildcards, threads and resolved files."""
        files = {"input": {k: _plain(v) for k, v in smk.input.items()}}
        files["output"] = {k: _plain(v) for k, v in smk.output.items()}
        return cls.from_wildcards(smk.config, smk.rule, smk.wildcards, threads=smk.threads, **files)

    @classmethod
    def pattern(cls, cfg: dict, rule: str) -> Job:
        """A job whose wildcards are Snakemake's placeholders: its outputs are the rule's patterns."""
        return cls(cfg, rule, **{f: "{" + w + "}" for f, w in WILDCARDS.items()})


def _plain(value):
    """A Snakemake input or output (a path, or a list of paths) as plain strings."""
    return [str(v) for v in value] if isinstance(value, list) else str(value)


# ----------------------------------------------------------------------------- shards and file lists
def shard_of(items: list, shard: int, shards: int, key=lambda item: item["id"]) -> list:
    """This shard's share of `items` (the one sharding of every sharded stage: sampling, relaxation,
    prediction, MD): by a hash of each item's key, so an item stays in its shard when others are added."""
    if shards == 1:
        return list(items)
    pick = lambda k: int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:4], "little") % shards  # noqa: E731
    return [it for it in items if pick(key(it)) == shard]


def sample_shards(j: Job) -> list[str]:
    return [j.layout.sample_shard(j.run, j.point, i) for i in range(j.run_section["sample"]["shards"])]


def relax_shards(j: Job) -> list[str]:
    return [j.layout.relaxed(j.run, j.point, i) for i in range(j.run_section["relax"]["shards"])]


def md_shards(j: Job) -> list[str]:
    return [j.layout.transport_md(j.run, j.point, i) for i in range(j.run_section["transport"]["md"]["shards"])]


def predict_sample_shards(j: Job) -> list[str]:
    if j.job_section["until"]:  # a search: one file, grown in rounds
        return [j.layout.predict_search_samples(j.job)]
    return [j.layout.predict_samples(j.job, i) for i in range(j.job_section["shards"])]


def predict_relax_shards(j: Job) -> list[str]:
    if j.job_section["until"]:
        return [j.layout.predict_search_relaxed(j.job)]
    return [j.layout.predict_relaxed(j.job, i) for i in range(j.job_section["relax"]["shards"])]


def split_of(j: Job, key: str) -> str | None:
    return j.layout.split(j.run_section["dataset"], j.run_section[key]) if j.run_section[key] else None


def novelty_of(j: Job) -> list[str]:
    return [j.layout.split(j.run_section["dataset"], s) for s in j.run_section["novelty_splits"]]


def fingerprints_of(j: Job) -> str:
    return j.layout.fingerprints(
        j.run_section["dataset"], j.run_section["test_split"], j.cfg["metrics"]["fingerprint_limit"]
    )


def prediction_model_of(j: Job) -> str:
    return j.layout.model(j.job_section["run"]) if j.job_section["run"] else j.job_section["checkpoint"]


def training_of(j: Job) -> dict:
    """The training split of a prediction job's run where the job draws on it: Wyckoff templates (`symmetry:
    auto`) or prototypes (a `prototype` generator share); {} otherwise."""
    job = j.job_section
    if not job["run"] or (job["symmetry"] != "auto" and not job["generators"].get("prototype")):
        return {}
    run = j.cfg["runs"][job["run"]]
    return {"training": j.layout.split(run["dataset"], run["train_split"])}


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


def hull_of(job: Job, optional: bool = False) -> dict:
    """The hull's files as inputs of a stage that reads the hull (`hull_refs`, `hull`; sources.hull_files).
    `optional` (a prediction's E_hull, which it reports without where there is no hull): only where each
    file is there or the `download` rule makes it."""
    files = hull_files(job.cfg)
    if optional:
        src = hull_source(job.cfg)
        made = set(files["hull"]) if src and src.url else set()  # the Matbench file, where it is downloaded
        if not all(Path(p).exists() or p in made for p in [files["refs"], *files["hull"]]):
            return {}
    return {"hull_refs": files["refs"], "hull": files["hull"]}


def hull_inputs(inp: dict) -> dict | None:
    """The hull's files among a stage's inputs by name, as the stages take them (None: none declared)."""
    return {"refs": inp["hull_refs"], "hull": list(inp["hull"])} if "hull" in inp else None
