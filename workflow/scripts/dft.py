from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import dft

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    dft(
        snakemake.params.run,
        list(snakemake.input.relaxed),
        snakemake.input.stability,
        snakemake.params.outdir,
        snakemake.output.manifest,
    )
