rule transport_screen:
    input:
        unpack(stage_inputs("transport_screen")),
    output:
        **stage_outputs("transport_screen"),
    log:
        L.log("transport", "{run}_s{point}_screen"),
    benchmark:
        L.benchmark("transport", "{run}_s{point}_screen")
    localrule: STAGES["transport_screen"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("transport_screen"),
    script:
        "../scripts/stage.py"


rule transport_md:
    input:
        unpack(stage_inputs("transport_md")),
    output:
        **stage_outputs("transport_md"),
    log:
        L.log("transport", "{run}_s{point}_md{shard}"),
    benchmark:
        L.benchmark("transport", "{run}_s{point}_md{shard}")
    localrule: STAGES["transport_md"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    resources:
        runtime=CLUSTER["md_runtime_minutes"],
    params:
        **stage_params("transport_md"),
    script:
        "../scripts/stage.py"


rule transport:
    input:
        unpack(stage_inputs("transport")),
    output:
        **stage_outputs("transport"),
    log:
        L.log("transport", "{run}_s{point}"),
    localrule: STAGES["transport"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("transport"),
    script:
        "../scripts/stage.py"
