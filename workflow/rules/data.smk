rule prepare:
    input:
        unpack(stage_inputs("prepare")),
    output:
        **stage_outputs("prepare"),
    log:
        L.log("prepare", "{dataset}_{split}"),
    benchmark:
        L.benchmark("prepare", "{dataset}_{split}")
    localrule: STAGES["prepare"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("prepare"),
    script:
        "../scripts/stage.py"
