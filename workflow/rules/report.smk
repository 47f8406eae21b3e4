rule report:
    conda:
        "../../envs/metrics.yaml"
    input:
        tables=metric_tables(),
        stability=[f"{R}/runs/{r}/s{s}/stability.csv" for r in TARGET_RUNS if relax_enabled(r)
                   for s in RUNS[r]["sample"]["steps"]],
    output:
        report=f"{R}/report.md",
        table1=f"{R}/tables/table1_csp.md",
        table3=f"{R}/tables/table3_dng.md",
    params:
        results=lambda wc, output: os.path.dirname(output.report),
    log:
        f"{R}/logs/report.log",
    script:
        "../scripts/report.py"
