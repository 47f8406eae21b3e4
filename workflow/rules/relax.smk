rule relax:
    conda:
        "../../envs/relax.yaml"
    input:
        samples=rules.gather_samples.output[0],
    output:
        L.relaxed("{run}", "{steps}", "{shard}"),
    params:
        run=run_view("sample", "relax"),
    threads: config["threads"]
    resources:
        runtime=12 * 60,
    log:
        L.log("relax", "{run}_s{steps}_shard{shard}"),
    benchmark:
        L.benchmark("relax", "{run}_s{steps}_shard{shard}")
    script:
        "../scripts/relax.py"


rule stability:
    conda:
        "../../envs/relax.yaml"
    input:
        samples=rules.gather_samples.output[0],
        relaxed=relax_shards,
        novelty=novelty_pts,
    output:
        L.stability("{run}", "{steps}"),
    params:
        cfg=hull_view(),
        run=run_view("sample", "relax"),
    log:
        L.log("stability", "{run}_s{steps}"),
    benchmark:
        L.benchmark("stability", "{run}_s{steps}")
    script:
        "../scripts/stability.py"
