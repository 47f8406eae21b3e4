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

from crystalflow_core import reruns as R
from crystalflow_core.config import (
    workers_for,
)
from crystalflow_core.jobs import (
    Folder,
    Job,
    hull_inputs,
    hull_of,
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
    training_of,
)
from crystalflow_core.stage_wiring import (
    conditions_table_inputs,
    dft_results_inputs,
    import_call,
    import_inputs,
    metrics_call,
    metrics_inputs,
    predict_rank_call,
    predict_search_call,
    report_call,
    report_inputs,
    sample_call,
    sample_inputs,
    stage_functions,
    table_inputs,
    transport_md_call,
)


@dataclass(frozen=True)
class Stage:
    inputs: Callable[[Job], dict]  # name -> path or list of paths
    outputs: Callable[[Job], dict]  # name -> path (Folder for a folder); uses the job's wildcards only
    call: Callable[[Job, dict, dict], None]  # the stage on (job, inputs, outputs)
    shards: Callable[[Job], int] | None = None  # shard jobs per run and point, or per prediction job
    local: bool = False  # cheap: runs on the submitting node, never submitted to a cluster
    uses_gpu: bool = False  # may ask for a GPU (the run's or prediction job's `gpu: true`)
    kept: Callable[[Job], list[str]] = field(default=lambda job: [])  # written, never deleted by Snakemake
    # outputs shown in Snakemake's HTML report (`snakemake --report`): name -> (category, subcategory); the
    # caption of each is workflow/report/captions/{rule}_{name}.rst (caption_file)
    report: dict = field(default_factory=dict)
    # what makes a job run again beyond its inputs: param name -> the part of the config it reads (reruns.py);
    # the rule passes them as Snakemake params, compared with those of the run that made its outputs
    reruns: dict = field(default_factory=dict)


CAPTIONS = Path(__file__).resolve().parent.parent / "workflow" / "report" / "captions"


def caption_file(rule: str, key: str) -> Path:
    """The caption of a report output: a file of the workflow, read by Snakemake (never written at parse time)."""
    return CAPTIONS / f"{rule}_{key}.rst"


# ----------------------------------------------------------------------------- the records


STAGES: dict[str, Stage] = {
    "prepare": Stage(
        inputs=lambda job: {"csv": split_file(job.cfg, job.dataset, job.split)},
        outputs=lambda job: {
            "pt": job.layout.split(job.dataset, job.split),
            "rejected": job.layout.rejected(job.dataset, job.split),
        },
        call=lambda job, inp, out: stage_functions().prepare(
            job.cfg, job.dataset, job.split, out["pt"], out["rejected"], job.threads, csv=inp["csv"]
        ),
        reruns={"cfg": R.dataset_view},
    ),
    "test_fingerprints": Stage(
        inputs=lambda job: {"test": job.layout.split(job.dataset, job.split)},
        outputs=lambda job: {"fingerprints": job.layout.fingerprints(job.dataset, job.split, job.limit)},
        call=lambda job, inp, out: stage_functions().test_fingerprints(
            inp["test"],
            out["fingerprints"],
            limit_of(job.limit),
            job.threads,
            job.cfg["metrics"]["protocol"],
        ),
        reruns={"protocol": R.metrics_protocol},
    ),
    "train": Stage(
        inputs=lambda job: {
            "train": split_of(job, "train_split"),
            **({"val": split_of(job, "val_split")} if job.run_section["val_split"] else {}),
        },
        outputs=lambda job: {"ckpt": job.layout.model(job.run)},
        call=lambda job, inp, out: stage_functions().train(
            job.run_section, inp["train"], inp.get("val"), out["ckpt"], job.layout.lightning(job.run), job.threads
        ),
        uses_gpu=True,
        kept=lambda job: [job.layout.lightning(job.run)],
        reruns={"run": R.run_view("model", "train")},
    ),
    "import_reference": Stage(
        inputs=import_inputs,
        outputs=lambda job: {"ckpt": job.layout.model(job.run)},
        call=import_call,
        local=True,
        reruns={"init": R.import_init, "config": R.import_config},
    ),
    "sample": Stage(
        inputs=sample_inputs,
        outputs=lambda job: {"shard": job.layout.sample_shard(job.run, job.point, job.shard)},
        call=sample_call,
        shards=lambda job: job.run_section["sample"]["shards"],
        uses_gpu=True,
        reruns={"run": R.run_view("sample")},
    ),
    "gather_samples": Stage(
        inputs=lambda job: {"shards": sample_shards(job)},
        outputs=lambda job: {
            "samples": job.layout.samples(job.run, job.point),
            "export": Folder(job.layout.sample_export(job.run, job.point)),
        },
        call=lambda job, inp, out: stage_functions().gather(
            inp["shards"], out["samples"], out["export"], job.run_section["sample"]["export"]
        ),
        local=True,
        reruns={"export": R.sample_export},
    ),
    "relax": Stage(
        inputs=lambda job: {"samples": job.layout.samples(job.run, job.point)},
        outputs=lambda job: {"relaxed": job.layout.relaxed(job.run, job.point, job.shard)},
        call=lambda job, inp, out: stage_functions().relax(
            job.run_section,
            inp["samples"],
            job.shard,
            job.run_section["relax"]["shards"],
            out["relaxed"],
            workers_for(job.run_section["relax"], job.threads),
        ),
        shards=lambda job: job.run_section["relax"]["shards"],
        kept=lambda job: partials_of(job.layout.relaxed(job.run, job.point, job.shard)),
        reruns={"run": R.run_view("sample", "relax")},
    ),
    "stability": Stage(
        inputs=lambda job: {
            "samples": job.layout.samples(job.run, job.point),
            "relaxed": relax_shards(job),
            "novelty": novelty_of(job),
            **hull_of(job),
        },
        outputs=lambda job: {"stability": job.layout.stability(job.run, job.point)},
        call=lambda job, inp, out: stage_functions().stability(
            job.cfg,
            job.run_section,
            inp["samples"],
            inp["relaxed"],
            inp["novelty"],
            out["stability"],
            workers_for(job.run_section["relax"], job.threads),
            hull_inputs=hull_inputs(inp),
            second_cache=job.layout.stability_second_opinion(job.run, job.point),
        ),
        kept=lambda job: [job.layout.stability_second_opinion(job.run, job.point)],
        report={"stability": ("Stability", "{run} s{point}")},
        reruns={"cfg": R.hull_view, "run": R.run_view("sample", "relax")},
    ),
    "metrics": Stage(
        inputs=metrics_inputs,
        outputs=lambda job: {
            "summary": job.layout.metrics(job.run, job.point),
            "conditions": job.layout.condition_metrics(job.run, job.point),
        },
        call=metrics_call,
        reruns={"cfg": R.section_view("metrics"), "run": R.run_view("sample", "relax")},
    ),
    "dft": Stage(
        inputs=lambda job: {"relaxed": relax_shards(job), "stability": job.layout.stability(job.run, job.point)},
        outputs=lambda job: {"manifest": job.layout.vasp_manifest(job.run, job.point)},
        call=lambda job, inp, out: stage_functions().dft(
            job.run_section, inp["relaxed"], inp["stability"], parent_of(out["manifest"]), out["manifest"]
        ),
        local=True,
        kept=lambda job: [job.layout.vasp_dir(job.run, job.point)],
        reruns={"run": R.run_view("relax", "dft")},
    ),
    "dft_results": Stage(
        inputs=dft_results_inputs,
        outputs=lambda job: {"dft": job.layout.dft_stability(job.run, job.point)},
        call=lambda job, inp, out: stage_functions().dft_results(
            job.cfg,
            job.run_section,
            inp["manifest"],
            inp["relaxed"],
            inp["stability"],
            inp["novelty"],
            out["dft"],
            energies=inp.get("energies"),
            hull_inputs=hull_inputs(inp),
        ),
        local=True,
        reruns={"cfg": R.hull_view, "run": R.run_view("sample", "relax", "dft")},
    ),
    "transport_screen": Stage(
        inputs=lambda job: {
            "samples": job.layout.samples(job.run, job.point),
            "relaxed": relax_shards(job),
            "stability": job.layout.stability(job.run, job.point),
        },
        outputs=lambda job: {"screen": job.layout.transport_screen(job.run, job.point)},
        call=lambda job, inp, out: stage_functions().transport_screen(
            job.run_section,
            inp["samples"],
            inp["relaxed"],
            inp["stability"],
            out["screen"],
            job.cfg["metrics"]["protocol"],
            workers_for(job.run_section["transport"], job.threads),
        ),
        kept=lambda job: partials_of(job.layout.transport_screen(job.run, job.point)),
        reruns={"run": R.run_view("sample", "relax", "transport"), "protocol": R.metrics_protocol},
    ),
    "transport_md": Stage(
        inputs=lambda job: {"screen": job.layout.transport_screen(job.run, job.point), "relaxed": relax_shards(job)},
        outputs=lambda job: {
            "md": job.layout.transport_md(job.run, job.point, job.shard),
            "trajectories": Folder(job.layout.trajectories(job.run, job.point, job.shard)),
        },
        call=transport_md_call,
        shards=lambda job: job.run_section["transport"]["md"]["shards"],
        kept=lambda job: partials_of(job.layout.transport_md(job.run, job.point, job.shard)),
        reruns={"run": R.run_view("sample", "relax", "transport")},
    ),
    "transport": Stage(
        inputs=lambda job: {
            "screen": job.layout.transport_screen(job.run, job.point),
            "md": md_shards(job),
            "relaxed": relax_shards(job),
        },
        outputs=lambda job: {"transport": job.layout.transport(job.run, job.point)},
        call=lambda job, inp, out: stage_functions().transport_table(
            job.run_section, inp["screen"], inp["md"], inp["relaxed"], out["transport"]
        ),
        report={"transport": ("Ion transport", "{run} s{point}")},
        reruns={"run": R.run_view("sample", "relax", "transport")},
    ),
    "predict_sample": Stage(
        inputs=lambda job: {"model": prediction_model_of(job), **training_of(job)},
        outputs=lambda job: {"samples": job.layout.predict_samples(job.job, job.shard)},
        call=lambda job, inp, out: stage_functions().predict_sample(
            job.cfg,
            job.job,
            job.job_section,
            inp["model"],
            job.shard,
            job.job_section["shards"],
            out["samples"],
            job.threads,
            training=inp.get("training"),
        ),
        shards=lambda job: 0 if job.job_section["until"] else job.job_section["shards"],
        uses_gpu=True,
        reruns={"cfg": R.predict_context, "job": R.predict_view},
    ),
    "predict_search": Stage(
        inputs=lambda job: {"model": prediction_model_of(job), **training_of(job)},
        outputs=lambda job: {
            "samples": job.layout.predict_search_samples(job.job),
            "relaxed": job.layout.predict_search_relaxed(job.job),
        },
        call=predict_search_call,
        uses_gpu=True,
        kept=lambda job: partials_of(job.layout.predict_search_relaxed(job.job)),
        reruns={"cfg": R.predict_context, "job": R.predict_view},
    ),
    "predict_relax": Stage(
        inputs=lambda job: {"samples": predict_sample_shards(job)},
        outputs=lambda job: {"relaxed": job.layout.predict_relaxed(job.job, job.shard)},
        call=lambda job, inp, out: stage_functions().predict_relax(
            job.job_section,
            inp["samples"],
            job.shard,
            job.job_section["relax"]["shards"],
            out["relaxed"],
            workers_for(job.job_section["relax"], job.threads),
        ),
        shards=lambda job: 0 if job.job_section["until"] else job.job_section["relax"]["shards"],
        kept=lambda job: partials_of(job.layout.predict_relaxed(job.job, job.shard)),
        reruns={"job": R.predict_view},
    ),
    "predict_rank": Stage(
        inputs=lambda job: {
            "samples": predict_sample_shards(job),
            "relaxed": predict_relax_shards(job),
            **hull_of(job, optional=True),
        },
        outputs=lambda job: {
            "candidates": job.layout.predict_candidates(job.job),
            "ranked": job.layout.predict_ranked(job.job),
            "extxyz": job.layout.predict_extxyz(job.job),
            "phase": job.layout.predict_phase_diagram(job.job),
            "cif": Folder(job.layout.predict_cifs(job.job)),
        },
        call=predict_rank_call,
        kept=lambda job: [job.layout.predict_refined(job.job), job.layout.predict_second_opinion(job.job)],
        report={
            "ranked": ("Structure prediction", "{job}"),
            "candidates": ("Structure prediction", "{job}"),
            "phase": ("Structure prediction", "{job}"),
        },
        reruns={"cfg": R.predict_context, "job": R.predict_view},
    ),
    "predict_dft": Stage(
        inputs=lambda job: {"ranked": job.layout.predict_ranked(job.job), "cifs": job.layout.predict_cifs(job.job)},
        outputs=lambda job: {"manifest": job.layout.predict_vasp_manifest(job.job)},
        call=lambda job, inp, out: stage_functions().predict_dft(
            job.job_section, inp["ranked"], inp["cifs"], parent_of(out["manifest"]), out["manifest"]
        ),
        local=True,
        kept=lambda job: [parent_of(job.layout.predict_vasp_manifest(job.job))],
        reruns={"job": R.predict_view},
    ),
    "predict_dft_results": Stage(
        inputs=lambda job: {
            "manifest": job.layout.predict_vasp_manifest(job.job),
            "ranked": job.layout.predict_ranked(job.job),
        },
        outputs=lambda job: {"dft": job.layout.predict_dft(job.job)},
        call=lambda job, inp, out: stage_functions().predict_dft_results(
            inp["manifest"], inp["ranked"], out["dft"], job.job_section["running_minutes"]
        ),
        local=True,
        reruns={"job": R.predict_view},
    ),
    "predict_report": Stage(
        inputs=lambda job: {
            "candidates": job.layout.predict_candidates(job.job),
            "ranked": job.layout.predict_ranked(job.job),
            "relaxed": predict_relax_shards(job),
            "phase": job.layout.predict_phase_diagram(job.job),
            "cifs": Folder(job.layout.predict_cifs(job.job)),
        },
        outputs=lambda job: {
            "report": job.layout.predict_report(job.job),
            "plots": Folder(job.layout.predict_plots(job.job)),
        },
        call=lambda job, inp, out: stage_functions().predict_report(job.job, job.job_section, inp, out),
        local=True,
        report={"plots": ("Structure prediction", "{job}")},
        reruns={"job": R.predict_view},
    ),
    "metric_table": Stage(
        inputs=table_inputs,
        outputs=lambda job: {"table": job.layout.table(job.tag, job.task)},
        call=lambda job, inp, out: stage_functions().collect(inp["metrics"], out["table"]),
        local=True,
        report={"table": ("Metrics", "{tag} {task}")},
    ),
    "conditions_table": Stage(
        inputs=conditions_table_inputs,
        outputs=lambda job: {"table": job.layout.conditions_table(job.tag)},
        call=lambda job, inp, out: stage_functions().collect(inp["metrics"], out["table"]),
        local=True,
        report={"table": ("Metrics", "{tag} conditional generation, per condition value")},
    ),
    "report": Stage(
        inputs=report_inputs,
        outputs=lambda job: {
            "report": job.layout.report(),
            "table1": job.layout.paper_table("table1_csp"),
            "table3": job.layout.paper_table("table3_dng"),
            "table2": job.layout.paper_table("table2_dft"),
            "plots": Folder(job.layout.plots()),
        },
        call=report_call,
        local=True,
        report={
            "table1": ("Paper tables", "Table 1"),
            "table3": ("Paper tables", "Table 3"),
            "table2": ("Paper tables", "Table 2"),
            "plots": ("Plots", "results"),
        },
        reruns={"cfg": R.section_view("metrics")},
    ),
}


def stage(rule: str) -> Stage:
    if rule not in STAGES:
        raise KeyError(f"no stage '{rule}' in the registry; stages: {', '.join(STAGES)}")
    return STAGES[rule]


def inputs(job: Job) -> dict:
    """Named inputs of a job (a path or a list of paths each)."""
    return stage(job.rule).inputs(job)


def outputs(job: Job) -> dict:
    """Named outputs of a job: every file and folder it writes."""
    return {k: str(v) for k, v in stage(job.rule).outputs(job).items()}


def run(job: Job) -> None:
    """Run one job: its stage on its inputs (Snakemake's, else the table's), writing its outputs."""
    st = stage(job.rule)
    inp = job.input if job.input is not None else st.inputs(job)
    out = job.output if job.output is not None else outputs(job)
    st.call(job, inp, out)
