from crystalflow_core.logs import setup_logging
from crystalflow_core.stages import download

if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    download(snakemake.params.source, snakemake.params.download_dir)
