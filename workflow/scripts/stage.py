# Every rule of the stage table (crystalflow_core.registry): Snakemake's input and output go straight to
# the stage (so shadow rules and storage plugins work); the wildcards, config and threads give the settings.
from crystalflow_core.logs import setup_logging
from crystalflow_core.registry import Job, run

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    run(Job.from_snakemake(snakemake))
