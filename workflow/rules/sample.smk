rule sample:
    conda:
        "../../envs/train.yaml"
    input:
        ckpt=L.model("{run}"),
        test=lambda wc: test_pt(wc.run),
    output:
        L.sample_shard("{run}", "{steps}", "{shard}"),
    params:
        run=run_view("sample"),
    threads: config["threads"]
    resources:
        gpu=gpu_res("sample"),
    log:
        L.log("sample", "{run}_s{steps}_shard{shard}"),
    benchmark:
        L.benchmark("sample", "{run}_s{steps}_shard{shard}")
    script:
        "../scripts/sample.py"


rule gather_samples:
    conda:
        "../../envs/train.yaml"
    input:
        sample_shards,
    output:
        L.samples("{run}", "{steps}"),
    params:
        export=lambda wc: RUNS[wc.run]["sample"]["export"],
    log:
        L.log("sample", "{run}_s{steps}_gather"),
    script:
        "../scripts/gather.py"
