rule relax:
    input:
        unpack(job_inputs("relax")),
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
        "../scripts/stage.py"


rule stability:
    input:
        unpack(job_inputs("stability", hull=hull_file())),
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
        "../scripts/stage.py"
