"""The one table of stages. Every rule of the workflow that does work has one record here: the files a job
reads (`inputs`), the files it writes (`outputs`, every one of them), the stage function it calls, how
many shard jobs it has, whether it runs on the submitting node and whether it may use a GPU. The
Snakemake rules take `input:` and `output:` from the table, their script passes `snakemake.input` and
`snakemake.output` straight to the record's `call`, and the command line builds the same jobs from the
same table, so the two cannot disagree.

  Job(cfg, "sample", run="mp20_csp", point="10", shard=0)  ->  inputs(job), outputs(job), run(job)

`outputs` only uses the job's wildcards (never the config), so the workflow builds its output patterns
from it with wildcards as values ("{run}"). `kept` names what a stage writes that Snakemake must never
delete before a rerun, so it is not a Snakemake output: resumable state kept between attempts (Lightning
checkpoints, *.partial records, removed by the stage when its outputs are done) and the VASP folders
(VASP runs inside them; a rerun adds folders and leaves finished calculations alone).

Torch-free: the Snakefile imports this module to build the DAG; the stages are imported when a job runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crystalflow_core.builds import (
    dft_tables,
    metric_tables,
    stability_tables,
    table_runs,
    targets_tables,
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
    Folder,
    Job,
    fingerprints_of,
    limit_of,
    md_shards,
    novelty_of,
    parent_of,
    partials_of,
    predict_relax_shards,
    predict_sample_shards,
    prediction_model_of,
    relax_shards,
    sample_shards,
    split_file,
    split_of,
)
from crystalflow_core.points import sampling_points


@dataclass(frozen=True)
class Stage:
    inputs: Callable[[Job], dict]  # name -> path or list of paths
    outputs: Callable[[Job], dict]  # name -> path (Folder for a folder); uses the job's wildcards only
    call: Callable[[Job, dict, dict], None]  # the stage on (job, inputs, outputs)
    shards: Callable[[Job], int] | None = None  # shard jobs per run and point, or per prediction job
    local: bool = False  # cheap: runs on the submitting node, never submitted to a cluster
    uses_gpu: bool = False  # may ask for a GPU (the run's or prediction job's `gpu: true`)
    kept: Callable[[Job], list[str]] = field(default=lambda j: [])  # written, never deleted by Snakemake
    # outputs shown in Snakemake's HTML report (`snakemake --report`): name -> (category, subcategory); the
    # caption of each is workflow/report/captions/{rule}_{name}.rst (caption_file)
    report: dict = field(default_factory=dict)


CAPTIONS = Path(__file__).resolve().parent.parent / "workflow" / "report" / "captions"


def caption_file(rule: str, key: str) -> Path:
    """The caption of a report output: a file of the workflow, read by Snakemake (never written at parse time)."""
    return CAPTIONS / f"{rule}_{key}.rst"


def _S():
    from crystalflow_core import stages

    return stages


# ----------------------------------------------------------------------------- the records
def _metrics_inputs(j: Job) -> dict:
    L = j.L
    inp = {"samples": L.samples(j.run, j.point), "test": split_of(j, "test_split"), "model": L.model(j.run)}
    if pressure_relax(j.r):
        inp["relaxed"] = relax_shards(j)
    if j.r["task"] == "dng":
        inp["fingerprints"] = fingerprints_of(j)
        if stability_relax(j.r):
            inp["stability"] = L.stability(j.run, j.point)
            inp["dft"] = L.dft_stability(j.run, j.point)
        if transport_screen(j.r):
            inp["transport"] = L.transport(j.run, j.point)
    return inp


def _metrics_call(j: Job, i: dict, o: dict) -> None:
    S = _S()
    if j.r["task"] == "csp":
        args = (j.cfg, j.run, j.r, i["samples"], i["test"], j.point, o["summary"], j.threads)
        S.csp_metrics(*args, relaxed=i.get("relaxed", []), ckpt=i["model"])
        Path(o["targets"]).write_text("")  # CSP runs have no condition targets
        return
    dft = i.get("dft")
    args = (j.cfg, j.run, j.r, i["samples"], i["test"], i["fingerprints"], i.get("stability"), j.point)
    S.dng_metrics(
        *args,
        o["summary"],
        j.threads,
        ckpt=i["model"],
        targets_out=o["targets"],
        transport_csv=i.get("transport"),
        dft_csv=dft if dft and Path(dft).exists() else None,
    )


def _import_inputs(j: Job) -> dict:
    """The training split (its atom-count histogram) and the checkpoint files that are local."""
    out, init = {"train": j.L.split(j.r["dataset"], j.r["train_split"])}, j.r["init"]
    for key in ("reference_checkpoint", "hparams", "scalers"):
        if init[key] and (key != "reference_checkpoint" or not init["url"] or Path(init[key]).exists()):
            out[key] = init[key]
    return out


def _import_call(j: Job, i: dict, o: dict) -> None:
    init = j.r["init"]
    args = (init["reference_checkpoint"], o["ckpt"], init["hparams"], init["scalers"], init["sha256"], init["url"])
    _S().import_checkpoint(j.cfg, j.run, *args, train_pt=i["train"])


def _sample_call(j: Job, i: dict, o: dict) -> None:
    S, shards = _S(), j.r["sample"]["shards"]
    if not S.shard_is_current(o["shard"], j.r, i["ckpt"], j.point, j.shard, shards):  # else: same model, settings
        S.sample(j.r, i["ckpt"], i.get("test"), j.point, j.shard, shards, o["shard"], j.threads)


def _dft_results_inputs(j: Job) -> dict:
    L = j.L
    inp = {
        "manifest": L.vasp_manifest(j.run, j.point),
        "relaxed": relax_shards(j),
        "stability": L.stability(j.run, j.point),
        "novelty": novelty_of(j),
    }
    if j.r["dft"]["energies"]:
        inp["energies"] = j.r["dft"]["energies"]
    return inp


def _report_inputs(j: Job) -> dict:
    cfg, L = j.cfg, j.L
    return {
        "tables": metric_tables(cfg),
        "stability": stability_tables(cfg),
        "targets": targets_tables(cfg),
        "transport": transport_tables(cfg),
        "dft": dft_tables(cfg),
        "predict": [L.predict_report(p) for p in cfg["predict"]],
    }


def _report_call(j: Job, i: dict, o: dict) -> None:
    from crystalflow_core.evaluation.report import write_report

    write_report(i, o, committees(j.cfg))


def _table_inputs(j: Job) -> dict:
    runs = table_runs(j.cfg, j.tag, j.task)
    if not runs:
        raise ValueError(f"no run in targets builds {j.L.table(j.tag, j.task)}")
    return {"metrics": [j.L.metrics(r, s) for r in runs for s in sampling_points(j.cfg["runs"][r])]}


def _targets_table_inputs(j: Job) -> dict:
    runs = table_runs(j.cfg, j.tag, "dng")
    return {"metrics": [j.L.targets_metrics(r, s) for r in runs for s in sampling_points(j.cfg["runs"][r])]}


def _predict_search_call(j: Job, i: dict, o: dict) -> None:
    workers = workers_for(j.p["relax"], j.threads)
    _S().predict_search(j.cfg, j.job, j.p, i["model"], o["samples"], o["relaxed"], j.threads, workers)


def _predict_rank_call(j: Job, i: dict, o: dict) -> None:
    _S().predict_rank(j.cfg, j.job, j.p, i["samples"], i["relaxed"], o, workers_for(j.p["relax"], j.threads))


def _transport_md_call(j: Job, i: dict, o: dict) -> None:
    shards, workers = j.r["transport"]["md"]["shards"], workers_for(j.r["transport"], j.threads)
    _S().transport_md(j.r, i["screen"], i["relaxed"], j.shard, shards, o["md"], o["trajectories"], workers)


STAGES: dict[str, Stage] = {
    "prepare": Stage(
        inputs=lambda j: {"csv": split_file(j.cfg, j.dataset, j.split)},
        outputs=lambda j: {"pt": j.L.split(j.dataset, j.split), "rejected": j.L.rejected(j.dataset, j.split)},
        call=lambda j, i, o: _S().prepare(j.cfg, j.dataset, j.split, o["pt"], o["rejected"], j.threads),
    ),
    "test_fingerprints": Stage(
        inputs=lambda j: {"test": j.L.split(j.dataset, j.split)},
        outputs=lambda j: {"fingerprints": j.L.fingerprints(j.dataset, j.split, j.limit)},
        call=lambda j, i, o: _S().test_fingerprints(
            i["test"],
            o["fingerprints"],
            limit_of(j.limit),
            j.threads,
            j.cfg["metrics"]["protocol"],
        ),
    ),
    "train": Stage(
        inputs=lambda j: {
            "train": split_of(j, "train_split"),
            **({"val": split_of(j, "val_split")} if j.r["val_split"] else {}),
        },
        outputs=lambda j: {"ckpt": j.L.model(j.run)},
        call=lambda j, i, o: _S().train(j.r, i["train"], i.get("val"), o["ckpt"], j.L.lightning(j.run), j.threads),
        uses_gpu=True,
        kept=lambda j: [j.L.lightning(j.run)],
    ),
    "import_reference": Stage(
        inputs=_import_inputs,
        outputs=lambda j: {"ckpt": j.L.model(j.run)},
        call=_import_call,
        local=True,
    ),
    "sample": Stage(
        inputs=lambda j: {
            "ckpt": j.L.model(j.run),
            **({"test": split_of(j, "test_split")} if j.r["task"] == "csp" else {}),
        },
        outputs=lambda j: {"shard": j.L.sample_shard(j.run, j.point, j.shard)},
        call=_sample_call,
        shards=lambda j: j.r["sample"]["shards"],
        uses_gpu=True,
    ),
    "gather_samples": Stage(
        inputs=lambda j: {"shards": sample_shards(j)},
        outputs=lambda j: {"samples": j.L.samples(j.run, j.point), "export": Folder(j.L.sample_export(j.run, j.point))},
        call=lambda j, i, o: _S().gather(i["shards"], o["samples"], o["export"], j.r["sample"]["export"]),
        local=True,
    ),
    "relax": Stage(
        inputs=lambda j: {"samples": j.L.samples(j.run, j.point)},
        outputs=lambda j: {"relaxed": j.L.relaxed(j.run, j.point, j.shard)},
        call=lambda j, i, o: _S().relax(
            j.r, i["samples"], j.shard, j.r["relax"]["shards"], o["relaxed"], workers_for(j.r["relax"], j.threads)
        ),
        shards=lambda j: j.r["relax"]["shards"],
        kept=lambda j: partials_of(j.L.relaxed(j.run, j.point, j.shard)),
    ),
    "stability": Stage(
        inputs=lambda j: {"samples": j.L.samples(j.run, j.point), "relaxed": relax_shards(j), "novelty": novelty_of(j)},
        outputs=lambda j: {"stability": j.L.stability(j.run, j.point)},
        call=lambda j, i, o: _S().stability(
            j.cfg, j.r, i["samples"], i["relaxed"], i["novelty"], o["stability"], workers_for(j.r["relax"], j.threads)
        ),
        report={"stability": ("Stability", "{run} s{steps}")},
    ),
    "metrics": Stage(
        inputs=_metrics_inputs,
        outputs=lambda j: {"summary": j.L.metrics(j.run, j.point), "targets": j.L.targets_metrics(j.run, j.point)},
        call=_metrics_call,
    ),
    "dft": Stage(
        inputs=lambda j: {"relaxed": relax_shards(j), "stability": j.L.stability(j.run, j.point)},
        outputs=lambda j: {"manifest": j.L.vasp_manifest(j.run, j.point)},
        call=lambda j, i, o: _S().dft(j.r, i["relaxed"], i["stability"], parent_of(o["manifest"]), o["manifest"]),
        local=True,
        kept=lambda j: [j.L.vasp_dir(j.run, j.point)],
    ),
    "dft_results": Stage(
        inputs=_dft_results_inputs,
        outputs=lambda j: {"dft": j.L.dft_stability(j.run, j.point)},
        call=lambda j, i, o: _S().dft_results(
            j.cfg, j.r, i["manifest"], i["relaxed"], i["stability"], i["novelty"], o["dft"], energies=i.get("energies")
        ),
        local=True,
    ),
    "transport_screen": Stage(
        inputs=lambda j: {
            "samples": j.L.samples(j.run, j.point),
            "relaxed": relax_shards(j),
            "stability": j.L.stability(j.run, j.point),
        },
        outputs=lambda j: {"screen": j.L.transport_screen(j.run, j.point)},
        call=lambda j, i, o: _S().transport_screen(
            j.r,
            i["samples"],
            i["relaxed"],
            i["stability"],
            o["screen"],
            j.cfg["metrics"]["protocol"],
            workers_for(j.r["transport"], j.threads),
        ),
        kept=lambda j: partials_of(j.L.transport_screen(j.run, j.point)),
    ),
    "transport_md": Stage(
        inputs=lambda j: {"screen": j.L.transport_screen(j.run, j.point), "relaxed": relax_shards(j)},
        outputs=lambda j: {
            "md": j.L.transport_md(j.run, j.point, j.shard),
            "trajectories": Folder(j.L.trajectories(j.run, j.point, j.shard)),
        },
        call=_transport_md_call,
        shards=lambda j: j.r["transport"]["md"]["shards"],
        kept=lambda j: partials_of(j.L.transport_md(j.run, j.point, j.shard)),
    ),
    "transport": Stage(
        inputs=lambda j: {
            "screen": j.L.transport_screen(j.run, j.point),
            "md": md_shards(j),
            "relaxed": relax_shards(j),
        },
        outputs=lambda j: {"transport": j.L.transport(j.run, j.point)},
        call=lambda j, i, o: _S().transport_table(j.r, i["screen"], i["md"], i["relaxed"], o["transport"]),
        report={"transport": ("Ion transport", "{run} s{steps}")},
    ),
    "predict_sample": Stage(
        inputs=lambda j: {"model": prediction_model_of(j)},
        outputs=lambda j: {"samples": j.L.predict_samples(j.job, j.shard)},
        call=lambda j, i, o: _S().predict_sample(
            j.cfg, j.job, j.p, i["model"], j.shard, j.p["shards"], o["samples"], j.threads
        ),
        shards=lambda j: 0 if j.p["until"] else j.p["shards"],
        uses_gpu=True,
    ),
    "predict_search": Stage(
        inputs=lambda j: {"model": prediction_model_of(j)},
        outputs=lambda j: {"samples": j.L.predict_search_samples(j.job), "relaxed": j.L.predict_search_relaxed(j.job)},
        call=_predict_search_call,
        uses_gpu=True,
        kept=lambda j: partials_of(j.L.predict_search_relaxed(j.job)),
    ),
    "predict_relax": Stage(
        inputs=lambda j: {"samples": predict_sample_shards(j)},
        outputs=lambda j: {"relaxed": j.L.predict_relaxed(j.job, j.shard)},
        call=lambda j, i, o: _S().predict_relax(
            j.p, i["samples"], j.shard, j.p["relax"]["shards"], o["relaxed"], workers_for(j.p["relax"], j.threads)
        ),
        shards=lambda j: 0 if j.p["until"] else j.p["relax"]["shards"],
        kept=lambda j: partials_of(j.L.predict_relaxed(j.job, j.shard)),
    ),
    "predict_rank": Stage(
        inputs=lambda j: {"samples": predict_sample_shards(j), "relaxed": predict_relax_shards(j)},
        outputs=lambda j: {
            "candidates": j.L.predict_candidates(j.job),
            "ranked": j.L.predict_ranked(j.job),
            "extxyz": j.L.predict_extxyz(j.job),
            "phase": j.L.predict_phase_diagram(j.job),
            "cif": Folder(j.L.predict_cifs(j.job)),
        },
        call=_predict_rank_call,
        report={
            "ranked": ("Structure prediction", "{job}"),
            "candidates": ("Structure prediction", "{job}"),
            "phase": ("Structure prediction", "{job}"),
        },
    ),
    "predict_dft": Stage(
        inputs=lambda j: {"ranked": j.L.predict_ranked(j.job), "cifs": j.L.predict_cifs(j.job)},
        outputs=lambda j: {"manifest": j.L.predict_vasp_manifest(j.job)},
        call=lambda j, i, o: _S().predict_dft(j.p, i["ranked"], i["cifs"], parent_of(o["manifest"]), o["manifest"]),
        local=True,
        kept=lambda j: [parent_of(j.L.predict_vasp_manifest(j.job))],
    ),
    "predict_dft_results": Stage(
        inputs=lambda j: {"manifest": j.L.predict_vasp_manifest(j.job), "ranked": j.L.predict_ranked(j.job)},
        outputs=lambda j: {"dft": j.L.predict_dft(j.job)},
        call=lambda j, i, o: _S().predict_dft_results(i["manifest"], i["ranked"], o["dft"], j.p["running_minutes"]),
        local=True,
    ),
    "predict_report": Stage(
        inputs=lambda j: {
            "candidates": j.L.predict_candidates(j.job),
            "ranked": j.L.predict_ranked(j.job),
            "relaxed": predict_relax_shards(j),
            "phase": j.L.predict_phase_diagram(j.job),
        },
        outputs=lambda j: {"report": j.L.predict_report(j.job), "plots": Folder(j.L.predict_plots(j.job))},
        call=lambda j, i, o: _S().predict_report(
            j.job, j.p, i["candidates"], i["ranked"], i["relaxed"], i["phase"], o["report"], o["plots"]
        ),
        local=True,
        report={"plots": ("Structure prediction", "{job}")},
    ),
    "metric_table": Stage(
        inputs=_table_inputs,
        outputs=lambda j: {"table": j.L.table(j.tag, j.task)},
        call=lambda j, i, o: _S().collect(i["metrics"], o["table"]),
        local=True,
        report={"table": ("Metrics", "{tag} {task}")},
    ),
    "targets_table": Stage(
        inputs=_targets_table_inputs,
        outputs=lambda j: {"table": j.L.targets_table(j.tag)},
        call=lambda j, i, o: _S().collect(i["metrics"], o["table"]),
        local=True,
        report={"table": ("Metrics", "{tag} conditional targets")},
    ),
    "report": Stage(
        inputs=_report_inputs,
        outputs=lambda j: {
            "report": j.L.report(),
            "table1": j.L.paper_table("table1_csp"),
            "table3": j.L.paper_table("table3_dng"),
            "table2": j.L.paper_table("table2_dft"),
            "plots": Folder(j.L.plots()),
        },
        call=_report_call,
        local=True,
        report={
            "table1": ("Paper tables", "Table 1"),
            "table3": ("Paper tables", "Table 3"),
            "table2": ("Paper tables", "Table 2"),
            "plots": ("Plots", "results"),
        },
    ),
}


def stage(rule: str) -> Stage:
    if rule not in STAGES:
        raise KeyError(f"no stage '{rule}' in the registry; stages: {', '.join(STAGES)}")
    return STAGES[rule]


def inputs(j: Job) -> dict:
    """Named inputs of a job (a path or a list of paths each)."""
    return stage(j.rule).inputs(j)


def outputs(j: Job) -> dict:
    """Named outputs of a job: every file and folder it writes."""
    return {k: str(v) for k, v in stage(j.rule).outputs(j).items()}


def run(j: Job) -> None:
    """Run one job: its stage on its inputs (Snakemake's, else the table's), writing its outputs."""
    st = stage(j.rule)
    inp = j.input if j.input is not None else st.inputs(j)
    out = j.output if j.output is not None else outputs(j)
    st.call(j, inp, out)
