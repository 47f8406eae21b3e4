from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import csp_metrics, dng_metrics

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    run, cfg, inp, out = snakemake.params.run, snakemake.params.cfg, snakemake.input, snakemake.output
    steps = snakemake.wildcards.steps  # a sampling point: 100, heun_10
    if run["task"] == "csp":
        csp_metrics(
            cfg,
            snakemake.wildcards.run,
            run,
            inp.samples,
            inp.test,
            steps,
            out.summary,
            snakemake.threads,
            relaxed=list(inp.get("relaxed", [])),
            ckpt=inp.model,
        )
        open(out.targets, "w").close()  # CSP runs have no condition targets
    else:
        dng_metrics(
            cfg,
            snakemake.wildcards.run,
            run,
            inp.samples,
            inp.test,
            inp.fingerprints,
            inp.get("stability"),
            steps,
            out.summary,
            snakemake.threads,
            ckpt=inp.model,
            targets_out=out.targets,
            transport_csv=inp.get("transport"),
            dft_csv=inp.get("dft"),
        )
