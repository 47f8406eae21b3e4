rule sample:
    input:
        unpack(job_inputs("sample")),
    output:
        L.sample_shard("{run}", "{steps}", "{shard}"),
    log:
        L.log("sample", "{run}_s{steps}_shard{shard}"),
    benchmark:
        L.benchmark("sample", "{run}_s{steps}_shard{shard}")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        run=run_view("sample"),
    script:
        "../scripts/stage.py"


rule gather_samples:
    input:
        unpack(job_inputs("gather_samples")),
    output:
        L.samples("{run}", "{steps}"),
    log:
        L.log("sample", "{run}_s{steps}_gather"),
    conda:
        "../../envs/workflow.yaml"
    params:
        export=lambda wc: RUNS[wc.run]["sample"]["export"],
    script:
        "../scripts/stage.py"
