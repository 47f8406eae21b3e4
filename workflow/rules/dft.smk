rule dft:
    input:
        relaxed=relax_shards,
        stability=f"{R}/runs/{{run}}/s{{steps}}/stability.csv",
    output:
        manifest=f"{R}/runs/{{run}}/s{{steps}}/vasp/manifest.csv",
    params:
        run=run_cfg,
        outdir=lambda wc: f"{R}/runs/{wc.run}/s{wc.steps}/vasp",
    log:
        f"{R}/logs/dft/{{run}}_s{{steps}}.log",
    script:
        "../scripts/dft.py"
