rule sample:
    conda:
        "../../envs/train.yaml"
    input:
        ckpt=f"{R}/runs/{{run}}/model.ckpt",
        test=lambda wc: test_pt(wc.run),
    output:
        f"{R}/runs/{{run}}/s{{steps}}/samples/shard{{shard}}.jsonl",
    params:
        run=run_view("sample"),
    threads: config["threads"]
    resources:
        gpu=gpu_res("sample"),
    log:
        f"{R}/logs/sample/{{run}}_s{{steps}}_shard{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/sample/{{run}}_s{{steps}}_shard{{shard}}.tsv"
    script:
        "../scripts/sample.py"


rule gather_samples:
    conda:
        "../../envs/train.yaml"
    input:
        sample_shards,
    output:
        f"{R}/runs/{{run}}/s{{steps}}/samples.jsonl",
    params:
        export=lambda wc: RUNS[wc.run]["sample"]["export"],
    log:
        f"{R}/logs/sample/{{run}}_s{{steps}}_gather.log",
    script:
        "../scripts/gather.py"
