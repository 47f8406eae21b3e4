from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import dft_results

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    inp = snakemake.input
    dft_results(
        snakemake.params.cfg,
        snakemake.params.run,
        inp.manifest,
        list(inp.relaxed),
        inp.stability,
        list(inp.novelty),
        snakemake.output[0],
        energies=inp.get("energies"),
    )
