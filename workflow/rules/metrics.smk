rule test_fingerprints:
    input:
        f"{R}/data/{{dataset}}/{{split}}.pt",
    output:
        f"{R}/data/{{dataset}}/{{split}}_fingerprints_{{limit}}.npz",
    params:
        limit=lambda wc: None if wc.limit == "all" else int(wc.limit),
    threads: config["threads"]
    log:
        f"{R}/logs/fingerprints/{{dataset}}_{{split}}_{{limit}}.log",
    benchmark:
        f"{R}/benchmarks/fingerprints/{{dataset}}_{{split}}_{{limit}}.tsv"
    script:
        "../scripts/fingerprints.py"


def metrics_inputs(wildcards):
    run = RUNS[wildcards.run]
    inp = {"samples": f"{R}/runs/{wildcards.run}/s{wildcards.steps}/samples.jsonl", "test": test_pt(wildcards.run)}
    if run["task"] == "dng":
        inp["fingerprints"] = fingerprint_file(wildcards.run)
        if relax_enabled(wildcards.run):
            inp["stability"] = f"{R}/runs/{wildcards.run}/s{wildcards.steps}/stability.csv"
    return inp


rule metrics:
    input:
        unpack(metrics_inputs),
    output:
        f"{R}/runs/{{run}}/s{{steps}}/metrics.csv",
    params:
        cfg=config,
        run=run_cfg,
    threads: config["threads"]
    log:
        f"{R}/logs/metrics/{{run}}_s{{steps}}.log",
    benchmark:
        f"{R}/benchmarks/metrics/{{run}}_s{{steps}}.tsv"
    script:
        "../scripts/metrics.py"


rule metric_table:
    input:
        table_inputs,
    output:
        f"{R}/{{tag}}_{{task}}_metrics.csv",
    log:
        f"{R}/logs/tables/{{tag}}_{{task}}.log",
    script:
        "../scripts/collect.py"
