from crystalflow_core.stages import prepare, setup_logging

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    prepare(
        snakemake.params.cfg,
        snakemake.wildcards.dataset,
        snakemake.wildcards.split,
        snakemake.output.pt,
        workers=snakemake.threads,
    )
