from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import prepare

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    prepare(
        snakemake.params.cfg,
        snakemake.wildcards.dataset,
        snakemake.wildcards.split,
        snakemake.output.pt,
        snakemake.output.rejected,
        workers=snakemake.threads,
    )
