"""The one registry of stages: for every rule of the workflow that works on a run, a prediction job or a
split, what a job reads and writes (paths from Layout) and the stage function it calls with which
settings. The workflow's input functions and scripts and the command line all take their wiring from
here, so they cannot disagree (relaxation workers and shards, the files a stage reads, skipping work that
is current).

  Job(cfg, "sample", run="mp20_csp", point="10", shard=0)  ->  inputs(job), outputs(job), run(job)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crystalflow_core.config import pressure_relax, stability_relax, transport_screen
from crystalflow_core.layout import Layout


@dataclass
class Job:
    cfg: dict  # the validated config
    rule: str
    run: str | None = None  # run name
    point: str | None = None  # sampling point: 100, heun_10
    shard: int | None = None
    job: str | None = None  # prediction job name
    dataset: str | None = None
    split: str | None = None
    threads: int = 0  # of the Snakemake job or the command line (0: all cores)

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
            threads=smk.threads,
        )


# ----------------------------------------------------------------------------- what a job reads
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


def _split(j: Job, key: str) -> str | None:
    return j.L.split(j.r["dataset"], j.r[key]) if j.r[key] else None


def _novelty(j: Job) -> list[str]:
    return [j.L.split(j.r["dataset"], s) for s in j.r["novelty_splits"]]


def _fingerprints(j: Job) -> str:
    return j.L.fingerprints(j.r["dataset"], j.r["test_split"], j.cfg["metrics"]["fingerprint_limit"])


def _predict_model(j: Job) -> str:
    return j.L.model(j.p["run"]) if j.p["run"] else j.p["checkpoint"]


def inputs(j: Job) -> dict:
    """Named inputs of a job (a path or a list of paths each)."""
    L = j.L
    if j.rule == "train":
        return {"train": _split(j, "train_split"), **({"val": _split(j, "val_split")} if j.r["val_split"] else {})}
    if j.rule == "sample":
        return {"ckpt": L.model(j.run), **({"test": _split(j, "test_split")} if j.r["task"] == "csp" else {})}
    if j.rule == "gather_samples":
        return {"shards": sample_shards(j)}
    if j.rule == "relax":
        return {"samples": L.samples(j.run, j.point)}
    if j.rule == "stability":
        return {"samples": L.samples(j.run, j.point), "relaxed": relax_shards(j), "novelty": _novelty(j)}
    if j.rule == "metrics":
        inp = {"samples": L.samples(j.run, j.point), "test": _split(j, "test_split"), "model": L.model(j.run)}
        if pressure_relax(j.r):
            inp["relaxed"] = relax_shards(j)
        if j.r["task"] == "dng":
            inp["fingerprints"] = _fingerprints(j)
            if stability_relax(j.r):
                inp["stability"] = L.stability(j.run, j.point)
                inp["dft"] = L.dft_stability(j.run, j.point)
            if transport_screen(j.r):
                inp["transport"] = L.transport(j.run, j.point)
        return inp
    if j.rule == "dft":
        return {"relaxed": relax_shards(j), "stability": L.stability(j.run, j.point)}
    if j.rule == "dft_results":
        inp = {
            "manifest": L.vasp_manifest(j.run, j.point),
            "relaxed": relax_shards(j),
            "stability": L.stability(j.run, j.point),
            "novelty": _novelty(j),
        }
        if j.r["dft"]["energies"]:
            inp["energies"] = j.r["dft"]["energies"]
        return inp
    if j.rule == "transport_screen":
        return {
            "samples": L.samples(j.run, j.point),
            "relaxed": relax_shards(j),
            "stability": L.stability(j.run, j.point),
        }
    if j.rule == "transport_md":
        return {"screen": L.transport_screen(j.run, j.point), "relaxed": relax_shards(j)}
    if j.rule == "transport":
        return {"screen": L.transport_screen(j.run, j.point), "md": md_shards(j), "relaxed": relax_shards(j)}
    if j.rule in ("predict_sample", "predict_search"):
        return {"model": _predict_model(j)}
    if j.rule == "predict_relax":
        return {"samples": predict_sample_shards(j)}
    if j.rule == "predict_rank":
        return {"samples": predict_sample_shards(j), "relaxed": predict_relax_shards(j)}
    if j.rule == "predict_report":
        return {
            "candidates": L.predict_candidates(j.job),
            "ranked": L.predict_ranked(j.job),
            "relaxed": predict_relax_shards(j),
            "phase": L.predict_phase_diagram(j.job),
        }
    if j.rule == "predict_dft":
        return {"ranked": L.predict_ranked(j.job), "cifs": L.predict_cifs(j.job)}
    if j.rule == "predict_dft_results":
        return {"manifest": L.predict_vasp_manifest(j.job), "ranked": L.predict_ranked(j.job)}
    raise KeyError(f"no stage '{j.rule}' in the registry")


# ----------------------------------------------------------------------------- what a job writes and does
def _workers(section: dict, threads: int) -> int:
    """Worker processes of a CHGNet or screening job: the section's `workers`, else the job's threads."""
    return section["workers"] or threads or 1


def run(j: Job) -> None:
    """Run one job: its stage on its inputs, writing its outputs."""
    from crystalflow_core import stages as S

    cfg, L, inp = j.cfg, j.L, inputs(j) if j.rule not in ("prepare", "test_fingerprints", "import_reference") else {}
    if j.rule == "prepare":
        S.prepare(cfg, j.dataset, j.split, L.split(j.dataset, j.split), L.rejected(j.dataset, j.split), j.threads)
    elif j.rule == "test_fingerprints":
        limit = cfg["metrics"]["fingerprint_limit"]
        out, protocol = L.fingerprints(j.dataset, j.split, limit), cfg["metrics"]["protocol"]
        S.test_fingerprints(L.split(j.dataset, j.split), out, limit, j.threads, protocol)
    elif j.rule == "train":
        S.train(j.r, inp["train"], inp.get("val"), L.model(j.run), L.lightning(j.run), j.threads)
    elif j.rule == "import_reference":
        init, train = j.r["init"], j.L.split(j.r["dataset"], j.r["train_split"])
        args = (init["reference_checkpoint"], L.model(j.run), init["hparams"], init["scalers"], init["sha256"])
        S.import_checkpoint(cfg, j.run, *args, init["url"], train_pt=train)
    elif j.rule == "sample":
        shards, out = j.r["sample"]["shards"], L.sample_shard(j.run, j.point, j.shard)
        if not S.shard_is_current(out, j.r, inp["ckpt"], j.point, j.shard, shards):  # else: same model, settings
            S.sample(j.r, inp["ckpt"], inp.get("test"), j.point, j.shard, shards, out, j.threads)
    elif j.rule == "gather_samples":
        S.gather(inp["shards"], L.samples(j.run, j.point), j.r["sample"]["export"])
    elif j.rule == "relax":
        out = L.relaxed(j.run, j.point, j.shard)
        S.relax(j.r, inp["samples"], j.shard, j.r["relax"]["shards"], out, _workers(j.r["relax"], j.threads))
    elif j.rule == "stability":
        S.stability(cfg, j.r, inp["samples"], inp["relaxed"], inp["novelty"], L.stability(j.run, j.point))
    elif j.rule == "metrics":
        _metrics(j, inp)
    elif j.rule == "dft":
        manifest = L.vasp_manifest(j.run, j.point)
        S.dft(j.r, inp["relaxed"], inp["stability"], str(Path(manifest).parent), manifest)
    elif j.rule == "dft_results":
        out = L.dft_stability(j.run, j.point)
        args = (inp["manifest"], inp["relaxed"], inp["stability"], inp["novelty"], out)
        S.dft_results(cfg, j.r, *args, energies=inp.get("energies"))
    elif j.rule.startswith("transport"):
        _transport(j, inp)
    else:
        _predict(j, inp)


def _metrics(j: Job, inp: dict) -> None:
    from crystalflow_core import stages as S

    out, targets = j.L.metrics(j.run, j.point), j.L.targets_metrics(j.run, j.point)
    if j.r["task"] == "csp":
        args = (j.cfg, j.run, j.r, inp["samples"], inp["test"], j.point, out, j.threads)
        S.csp_metrics(*args, relaxed=inp.get("relaxed", []), ckpt=inp["model"])
        Path(targets).write_text("")  # CSP runs have no condition targets
        return
    dft = inp.get("dft")
    S.dng_metrics(
        j.cfg,
        j.run,
        j.r,
        inp["samples"],
        inp["test"],
        inp["fingerprints"],
        inp.get("stability"),
        j.point,
        out,
        j.threads,
        ckpt=inp["model"],
        targets_out=targets,
        transport_csv=inp.get("transport"),
        dft_csv=dft if dft and Path(dft).exists() else None,
    )


def _transport(j: Job, inp: dict) -> None:
    from crystalflow_core import stages as S

    workers = _workers(j.r["transport"], j.threads)
    if j.rule == "transport_screen":
        out, protocol = j.L.transport_screen(j.run, j.point), j.cfg["metrics"]["protocol"]
        S.transport_screen(j.r, inp["samples"], inp["relaxed"], inp["stability"], out, protocol, workers)
    elif j.rule == "transport_md":
        shards, out = j.r["transport"]["md"]["shards"], j.L.transport_md(j.run, j.point, j.shard)
        traj = j.L.trajectories(j.run, j.point)
        S.transport_md(j.r, inp["screen"], inp["relaxed"], j.shard, shards, out, traj, workers)
    else:
        S.transport_table(j.r, inp["screen"], inp["md"], inp["relaxed"], j.L.transport(j.run, j.point))


def _predict(j: Job, inp: dict) -> None:
    from crystalflow_core import stages as S

    L, job, name = j.L, j.p, j.job
    if j.rule == "predict_sample":
        out = L.predict_samples(name, j.shard)
        S.predict_sample(j.cfg, name, job, inp["model"], j.shard, job["shards"], out, j.threads)
    elif j.rule == "predict_search":
        outs = (L.predict_search_samples(name), L.predict_search_relaxed(name))
        S.predict_search(j.cfg, name, job, inp["model"], *outs, j.threads, _workers(job["relax"], j.threads))
    elif j.rule == "predict_relax":
        out, shards = L.predict_relaxed(name, j.shard), job["relax"]["shards"]
        S.predict_relax(job, inp["samples"], j.shard, shards, out, _workers(job["relax"], j.threads))
    elif j.rule == "predict_rank":
        outs = (L.predict_candidates(name), L.predict_ranked(name), L.predict_cifs(name), L.predict_extxyz(name))
        outs += (L.predict_phase_diagram(name),)
        S.predict_rank(j.cfg, name, job, inp["samples"], inp["relaxed"], *outs)
    elif j.rule == "predict_dft":
        manifest = L.predict_vasp_manifest(name)
        S.predict_dft(job, inp["ranked"], inp["cifs"], str(Path(manifest).parent), manifest)
    elif j.rule == "predict_dft_results":
        S.predict_dft_results(inp["manifest"], inp["ranked"], L.predict_dft(name), job["running_minutes"])
    elif j.rule == "predict_report":
        ins = (inp["candidates"], inp["ranked"], inp["relaxed"], inp["phase"])
        S.predict_report(name, job, *ins, L.predict_report(name))
    else:
        raise KeyError(f"no stage '{j.rule}' in the registry")


def run_stage_of_run(cfg: dict, rule: str, run_name: str, point: str | None, threads: int) -> None:
    """Every job of one rule for one run and sampling point (every shard), as the command line runs it."""
    r = cfg["runs"][run_name]
    shards = {
        "sample": r["sample"]["shards"],
        "relax": r["relax"]["shards"],
        "transport_md": r["transport"]["md"]["shards"],
    }.get(rule)
    for shard in range(shards) if shards else [None]:
        run(Job(cfg, rule, run=run_name, point=point, shard=shard, threads=threads))


def run_prediction(cfg: dict, name: str, threads: int) -> None:
    """Every stage of one prediction job in order, every shard (the command line's `predict`)."""
    job = cfg["predict"][name]
    if job["until"]:  # a search: sampling and relaxation in rounds, in one job
        run(Job(cfg, "predict_search", job=name, threads=threads))
    else:
        for shard in range(job["shards"]):
            run(Job(cfg, "predict_sample", job=name, shard=shard, threads=threads))
        for shard in range(job["relax"]["shards"]):
            run(Job(cfg, "predict_relax", job=name, shard=shard, threads=threads))
    for rule in ("predict_rank", "predict_dft", "predict_dft_results", "predict_report"):
        run(Job(cfg, rule, job=name, threads=threads))
