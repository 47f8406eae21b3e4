rule relax:
    input:
        unpack(stage_inputs("relax")),
    output:
        **stage_outputs("relax"),
    log:
        L.log("relax", "{run}_s{point}_shard{shard}"),
    benchmark:
        L.benchmark("relax", "{run}_s{point}_shard{shard}")
    localrule: STAGES["relax"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("relax"),
    script:
        "../scripts/stage.py"


rule stability:
    input:
        unpack(stage_inputs("stability")),
    output:
        **stage_outputs("stability"),
    log:
        L.log("stability", "{run}_s{point}"),
    benchmark:
        L.benchmark("stability", "{run}_s{point}")
    localrule: STAGES["stability"].local
    conda:
        "../../envs/workflow.yaml"
    threads: lambda wc: config["threads"] if RUNS[wc.run]["relax"]["committee"] else 1  # the second potential
    params:
        **stage_params("stability"),
    script:
        "../scripts/stage.py"
