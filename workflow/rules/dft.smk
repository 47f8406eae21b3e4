rule dft:
    input:
        relaxed=relax_shards,
        stability=rules.stability.output[0],
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
        "../scripts/dft.py"


rule dft_results:
    input:
        unpack(dft_results_inputs),
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
        "../scripts/dft_results.py"
