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
        run=run_view("relax", "dft"),
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
        cfg=hull_view(),
        run=run_view("sample", "relax", "dft"),
    script:
        "../scripts/stage.py"
