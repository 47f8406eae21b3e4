from crystalflow_core.evaluation.report import write_report
from crystalflow_core.logs import setup_logging

# guarded: worker processes started with 'spawn' import this file again
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    write_report(
        list(snakemake.input.tables),
        list(snakemake.input.stability),
        snakemake.params.results,
        snakemake.output.report,
        snakemake.output.table1,
        snakemake.output.table3,
        targets=list(snakemake.input.targets),
        transport=list(snakemake.input.transport),
        dft=list(snakemake.input.dft),
        table2=snakemake.output.table2,
        predict=list(snakemake.input.predict),
    )
