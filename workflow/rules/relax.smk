rule relax:
    conda:
        "../../envs/relax.yaml"
    input:
        samples=f"{R}/runs/{{run}}/s{{steps}}/samples.jsonl",
    output:
        f"{R}/runs/{{run}}/s{{steps}}/relax/shard{{shard}}.jsonl",
    params:
        run=run_view("sample", "relax"),
    threads: config["threads"]
    resources:
        runtime=12 * 60,
    log:
        f"{R}/logs/relax/{{run}}_s{{steps}}_shard{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/relax/{{run}}_s{{steps}}_shard{{shard}}.tsv"
    script:
        "../scripts/relax.py"


rule stability:
    conda:
        "../../envs/relax.yaml"
    input:
        samples=f"{R}/runs/{{run}}/s{{steps}}/samples.jsonl",
        relaxed=relax_shards,
        novelty=novelty_pts,
    output:
        f"{R}/runs/{{run}}/s{{steps}}/stability.csv",
    params:
        cfg=hull_view(),
        run=run_view("sample", "relax"),
    log:
        f"{R}/logs/stability/{{run}}_s{{steps}}.log",
    benchmark:
        f"{R}/benchmarks/stability/{{run}}_s{{steps}}.tsv"
    script:
        "../scripts/stability.py"
