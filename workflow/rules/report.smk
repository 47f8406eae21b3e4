rule report:
    conda:
        "../../envs/metrics.yaml"
    input:
        tables=metric_tables(),
        stability=stability_tables(),
        targets=targets_tables(),
    output:
        report=L.report(),
        table1=L.paper_table("table1_csp"),
        table3=L.paper_table("table3_dng"),
    params:
        results=L.root,
    log:
        L.log("report", "report"),
    script:
        "../scripts/report.py"
