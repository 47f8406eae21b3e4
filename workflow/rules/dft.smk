rule dft:
    input:
        unpack(stage_inputs("dft")),
    output:
        **stage_outputs("dft"),
    log:
        L.log("dft", "{run}_s{point}"),
    localrule: STAGES["dft"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("dft"),
    script:
        "../scripts/stage.py"


rule dft_results:
    input:
        unpack(stage_inputs("dft_results", triggers=dft_outputs)),
    output:
        **stage_outputs("dft_results"),
    log:
        L.log("dft", "{run}_s{point}_results"),
    localrule: STAGES["dft_results"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("dft_results"),
    script:
        "../scripts/stage.py"
