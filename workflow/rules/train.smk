rule train:
    input:
        unpack(job_inputs("train")),
    output:
        ckpt=L.model("{run}"),
    log:
        L.log("train", "{run}"),
    benchmark:
        L.benchmark("train", "{run}")
    wildcard_constraints:
        run=runs_pattern(TRAINED_RUNS),
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    resources:
        runtime=24 * 60,
    params:
        run=run_view("model", "train"),
        # resumable Lightning checkpoints live beside model.ckpt, undeclared
        workdir=lambda wc: L.lightning(wc.run),
    script:
        "../scripts/stage.py"


rule import_reference:
    input:
        unpack(import_inputs),
    output:
        ckpt=L.model("{run}"),
    log:
        L.log("train", "{run}_import"),
    wildcard_constraints:
        run=runs_pattern(IMPORTED_RUNS),
    conda:
        "../../envs/workflow.yaml"
    params:
        init=lambda wc: canonical(RUNS[wc.run]["init"]),
        config=lambda wc: canonical({"runs": {wc.run: RUNS[wc.run]}, "download_dir": config["download_dir"]}),
    script:
        "../scripts/stage.py"
