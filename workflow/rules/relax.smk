rule relax:
    input:
        samples=rules.gather_samples.output[0],
    output:
        L.relaxed("{run}", "{steps}", "{shard}"),
    log:
        L.log("relax", "{run}_s{steps}_shard{shard}"),
    benchmark:
        L.benchmark("relax", "{run}_s{steps}_shard{shard}")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        run=run_view("sample", "relax"),
    script:
        "../scripts/relax.py"


rule stability:
    input:
        samples=rules.gather_samples.output[0],
        relaxed=relax_shards,
        novelty=novelty_pts,
        hull=hull_file(),
    output:
        L.stability("{run}", "{steps}"),
    log:
        L.log("stability", "{run}_s{steps}"),
    benchmark:
        L.benchmark("stability", "{run}_s{steps}")
    conda:
        "../../envs/workflow.yaml"
    params:
        cfg=hull_view(),
        run=run_view("sample", "relax"),
    script:
        "../scripts/stability.py"
