from crystalflow_core.stages import download, setup_logging

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    download(snakemake.params.source, snakemake.params.download_dir)
