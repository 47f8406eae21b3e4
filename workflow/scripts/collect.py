from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import collect

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    collect(list(snakemake.input), snakemake.output[0])
