rule test_fingerprints:
    conda:
        "../../envs/metrics.yaml"
    input:
        rules.prepare.output.pt,
    output:
        L.fingerprints("{dataset}", "{split}", "{limit}"),
    params:
        limit=lambda wc: None if wc.limit == "all" else int(wc.limit),
    threads: config["threads"]
    log:
        L.log("fingerprints", "{dataset}_{split}_{limit}"),
    benchmark:
        L.benchmark("fingerprints", "{dataset}_{split}_{limit}")
    script:
        "../scripts/fingerprints.py"


rule metrics:
    conda:
        "../../envs/metrics.yaml"
    input:
        unpack(metrics_inputs),
    output:
        summary=L.metrics("{run}", "{steps}"),
        targets=L.targets_metrics("{run}", "{steps}"),
    params:
        cfg={"metrics": config["metrics"]},
        run=run_view("sample", "relax"),
    threads: config["threads"]
    log:
        L.log("metrics", "{run}_s{steps}"),
    benchmark:
        L.benchmark("metrics", "{run}_s{steps}")
    script:
        "../scripts/metrics.py"


rule metric_table:
    conda:
        "../../envs/metrics.yaml"
    input:
        table_inputs,
    output:
        L.table("{tag}", "{task}"),
    log:
        L.log("tables", "{tag}_{task}"),
    script:
        "../scripts/collect.py"


rule targets_table:
    conda:
        "../../envs/metrics.yaml"
    input:
        targets_inputs,
    output:
        L.targets_table("{tag}"),
    log:
        L.log("tables", "{tag}_dng_targets"),
    script:
        "../scripts/collect.py"
