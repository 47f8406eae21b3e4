rule test_fingerprints:
    conda:
        "../../envs/metrics.yaml"
    input:
        f"{R}/data/{{dataset}}/{{split}}.pt",
    output:
        f"{R}/data/{{dataset}}/{{split}}_fingerprints2_{{limit}}.npz",
    params:
        limit=lambda wc: None if wc.limit == "all" else int(wc.limit),
    threads: config["threads"]
    log:
        f"{R}/logs/fingerprints/{{dataset}}_{{split}}_{{limit}}.log",
    benchmark:
        f"{R}/benchmarks/fingerprints/{{dataset}}_{{split}}_{{limit}}.tsv"
    script:
        "../scripts/fingerprints.py"


rule metrics:
    conda:
        "../../envs/metrics.yaml"
    input:
        unpack(metrics_inputs),
    output:
        f"{R}/runs/{{run}}/s{{steps}}/metrics.csv",
    params:
        cfg={"metrics": config["metrics"]},
        run=run_view("sample", "relax"),
    threads: config["threads"]
    log:
        f"{R}/logs/metrics/{{run}}_s{{steps}}.log",
    benchmark:
        f"{R}/benchmarks/metrics/{{run}}_s{{steps}}.tsv"
    script:
        "../scripts/metrics.py"


rule metric_table:
    conda:
        "../../envs/metrics.yaml"
    input:
        table_inputs,
    output:
        f"{R}/{{tag}}_{{task}}_metrics.csv",
    log:
        f"{R}/logs/tables/{{tag}}_{{task}}.log",
    script:
        "../scripts/collect.py"
