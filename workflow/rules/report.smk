rule report:
    input:
        tables=metric_tables(),
        stability=stability_tables(),
        targets=targets_tables(),
        transport=transport_tables(),
        dft=dft_tables(),
        predict=predict_reports(),
    output:
        report=L.report(),
        table1=L.paper_table("table1_csp"),
        table3=L.paper_table("table3_dng"),
        table2=L.paper_table("table2_dft"),
    log:
        L.log("report", "report"),
    conda:
        "../../envs/workflow.yaml"
    params:
        results=lambda wc, output: os.path.dirname(output.report),
    script:
        "../scripts/report.py"
