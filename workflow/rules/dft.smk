rule dft:
    conda:
        "../../envs/relax.yaml"
    input:
        relaxed=relax_shards,
        stability=rules.stability.output[0],
    output:
        manifest=L.vasp_manifest("{run}", "{steps}"),
    params:
        run=run_view("relax", "dft"),
        outdir=lambda wc, output: os.path.dirname(output.manifest),
    log:
        L.log("dft", "{run}_s{steps}"),
    script:
        "../scripts/dft.py"
