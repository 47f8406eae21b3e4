from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import transport_md, transport_screen, transport_table

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    run, inp, out = snakemake.params.run, snakemake.input, snakemake.output[0]
    workers = run["transport"]["workers"] or snakemake.threads
    if snakemake.rule == "transport_screen":
        transport_screen(run, inp.samples, list(inp.relaxed), inp.stability, out, snakemake.params.protocol, workers)
    elif snakemake.rule == "transport_md":
        shards = run["transport"]["md"]["shards"]
        shard = int(snakemake.wildcards.shard)
        transport_md(run, inp.screen, list(inp.relaxed), shard, shards, out, snakemake.params.trajectories, workers)
    else:
        transport_table(run, inp.screen, list(inp.md), list(inp.relaxed), out)
