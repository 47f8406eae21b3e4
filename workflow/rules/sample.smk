rule sample:
    input:
        unpack(stage_inputs("sample")),
    output:
        **stage_outputs("sample"),
    log:
        L.log("sample", "{run}_s{point}_shard{shard}"),
    benchmark:
        L.benchmark("sample", "{run}_s{point}_shard{shard}")
    localrule: STAGES["sample"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("sample"),
    script:
        "../scripts/stage.py"


rule gather_samples:
    input:
        unpack(stage_inputs("gather_samples")),
    output:
        **stage_outputs("gather_samples"),
    log:
        L.log("sample", "{run}_s{point}_gather"),
    localrule: STAGES["gather_samples"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("gather_samples"),
    script:
        "../scripts/stage.py"
