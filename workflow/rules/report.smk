rule report:
    input:
        unpack(stage_inputs("report")),
    output:
        **stage_outputs("report"),
    log:
        L.log("report", "report"),
    localrule: STAGES["report"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("report"),
    script:
        "../scripts/stage.py"
