# Every rule of the stage table (crystalflow_core.registry): Snakemake's input and output go straight to
# the stage (so shadow rules and storage plugins work); the wildcards, config and threads give the settings.
import os

from crystalflow_core.entry import guarded
from crystalflow_core.logs import setup_logging
from crystalflow_core.registry import Job, run

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    # one line in the log for a project error or a cancelled job (SIGTERM): every worker ended first
    guarded(
        f"rule {snakemake.rule}",
        lambda: run(Job.from_snakemake(snakemake)),
        debug=bool(os.environ.get("CRYSTALFLOW_DEBUG")),
    )
