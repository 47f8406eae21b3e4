rule dft:
    input:
        unpack(job_inputs("dft")),
    output:
        manifest=L.vasp_manifest("{run}", "{steps}"),
    log:
        L.log("dft", "{run}_s{steps}"),
    conda:
        "../../envs/workflow.yaml"
    params:
        run=run_view("relax", "dft"),
        outdir=lambda wc, output: os.path.dirname(output.manifest),
    script:
        "../scripts/stage.py"


rule dft_results:
    input:
        unpack(job_inputs("dft_results", triggers=dft_outputs)),
    output:
        L.dft_stability("{run}", "{steps}"),
    log:
        L.log("dft", "{run}_s{steps}_results"),
    conda:
        "../../envs/workflow.yaml"
    params:
        cfg=hull_view(),
        run=run_view("sample", "relax", "dft"),
    script:
        "../scripts/stage.py"
