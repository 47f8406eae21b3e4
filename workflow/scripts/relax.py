from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import relax

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    run = snakemake.params.run
    relax(
        run,
        snakemake.input.samples,
        int(snakemake.wildcards.shard),
        run["relax"]["shards"],
        snakemake.output[0],
        workers=run["relax"]["workers"] or snakemake.threads,
    )
