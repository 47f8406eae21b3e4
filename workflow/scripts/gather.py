from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import gather

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    gather(list(snakemake.input), snakemake.output[0], snakemake.params.export)
