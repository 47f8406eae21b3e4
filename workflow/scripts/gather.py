from crystalflow_core.stages import gather, setup_logging

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    gather(list(snakemake.input), snakemake.output[0], snakemake.params.export)
