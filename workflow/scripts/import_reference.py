from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import import_checkpoint

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    init = snakemake.params.init
    import_checkpoint(
        snakemake.params.config,
        snakemake.wildcards.run,
        init["reference_checkpoint"],
        snakemake.output.ckpt,
        init["hparams"],
        init["scalers"],
        init["sha256"],
        init["url"],
        train_pt=snakemake.input.train,
    )
