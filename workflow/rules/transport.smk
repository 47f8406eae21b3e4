rule transport_screen:
    input:
        unpack(job_inputs("transport_screen")),
    output:
        L.transport_screen("{run}", "{steps}"),
    log:
        L.log("transport", "{run}_s{steps}_screen"),
    benchmark:
        L.benchmark("transport", "{run}_s{steps}_screen")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        run=run_view("sample", "relax", "transport"),
        protocol=config["metrics"]["protocol"],  # screened: the valid structures, as the DNG metrics count them
    script:
        "../scripts/stage.py"


rule transport_md:
    input:
        unpack(job_inputs("transport_md")),
    output:
        L.transport_md("{run}", "{steps}", "{shard}"),
    log:
        L.log("transport", "{run}_s{steps}_md{shard}"),
    benchmark:
        L.benchmark("transport", "{run}_s{steps}_md{shard}")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    resources:
        runtime=24 * 60,
    params:
        run=run_view("sample", "relax", "transport"),
        trajectories=L.trajectories("{run}", "{steps}"),
    script:
        "../scripts/stage.py"


rule transport:
    input:
        unpack(job_inputs("transport")),
    output:
        L.transport("{run}", "{steps}"),
    log:
        L.log("transport", "{run}_s{steps}"),
    conda:
        "../../envs/workflow.yaml"
    params:
        run=run_view("sample", "relax", "transport"),
    script:
        "../scripts/stage.py"
