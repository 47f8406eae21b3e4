rule dft:
    conda:
        "../../envs/relax.yaml"
    input:
        relaxed=relax_shards,
        stability=f"{R}/runs/{{run}}/s{{steps}}/stability.csv",
    output:
        manifest=f"{R}/runs/{{run}}/s{{steps}}/vasp/manifest.csv",
    params:
        run=run_view("relax", "dft"),
        outdir=lambda wc, output: os.path.dirname(output.manifest),
    log:
        f"{R}/logs/dft/{{run}}_s{{steps}}.log",
    script:
        "../scripts/dft.py"
