from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import sample

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    run = snakemake.params.run
    sample(
        run,
        snakemake.input.ckpt,
        snakemake.input.test,
        snakemake.wildcards.steps,
        int(snakemake.wildcards.shard),
        run["sample"]["shards"],
        snakemake.output[0],
        snakemake.threads,
    )
