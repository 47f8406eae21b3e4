from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import stability

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    stability(
        snakemake.params.cfg,
        snakemake.params.run,
        snakemake.input.samples,
        list(snakemake.input.relaxed),
        list(snakemake.input.novelty),
        snakemake.output[0],
    )
