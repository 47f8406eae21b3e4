from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import (
    predict_dft,
    predict_dft_results,
    predict_rank,
    predict_relax,
    predict_report,
    predict_sample,
)

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    inp, out, rule = snakemake.input, snakemake.output, snakemake.rule
    job_name = snakemake.wildcards.job
    job = snakemake.params.get("job")
    if rule == "predict_sample":
        shard = int(snakemake.wildcards.shard)
        predict_sample(snakemake.params.cfg, job_name, job, inp.model, shard, job["shards"], out[0], snakemake.threads)
    elif rule == "predict_relax":
        shard = int(snakemake.wildcards.shard)
        workers = job["relax"]["workers"] or snakemake.threads
        predict_relax(job, list(inp.samples), shard, job["relax"]["shards"], out[0], workers)
    elif rule == "predict_rank":
        predict_rank(
            snakemake.params.cfg,
            job_name,
            job,
            list(inp.samples),
            list(inp.relaxed),
            out.candidates,
            out.ranked,
            out.cif,
            out.extxyz,
        )
    elif rule == "predict_dft":
        predict_dft(job, inp.ranked, list(inp.relaxed), str(snakemake.output.manifest).rsplit("/", 1)[0], out.manifest)
    elif rule == "predict_dft_results":
        predict_dft_results(inp.manifest, inp.ranked, out[0], snakemake.params.running_minutes)
    else:
        predict_report(job_name, job, inp.candidates, inp.ranked, list(inp.relaxed), out[0])
