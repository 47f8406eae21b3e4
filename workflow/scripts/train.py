from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import train

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    train(
        snakemake.params.run,
        snakemake.input.train,
        snakemake.input.get("val"),
        snakemake.output.ckpt,
        snakemake.params.workdir,
        snakemake.threads,
    )
