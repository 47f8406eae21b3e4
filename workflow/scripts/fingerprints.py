from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import test_fingerprints

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    test_fingerprints(snakemake.input[0], snakemake.output[0], snakemake.params.limit, snakemake.threads)
