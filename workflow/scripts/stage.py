# Every rule whose stage is in the registry (crystalflow_core.stages.registry): the job's wildcards, config
# and threads name the inputs, outputs and settings, as on the command line.
from crystalflow_core.logs import setup_logging
from crystalflow_core.stages.registry import Job, run

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    run(Job.from_snakemake(snakemake))
