rule train:
    conda:
        "../../envs/train.yaml"
    input:
        unpack(train_inputs),
    output:
        ckpt=L.model("{run}"),
    params:
        run=run_view("model", "train"),
        # resumable Lightning checkpoints live beside model.ckpt, undeclared
        workdir=lambda wc: L.lightning(wc.run),
    wildcard_constraints:
        run=runs_pattern(TRAINED_RUNS),
    threads: config["threads"]
    resources:
        gpu=gpu_res("train"),
        runtime=24 * 60,
    log:
        L.log("train", "{run}"),
    benchmark:
        L.benchmark("train", "{run}")
    script:
        "../scripts/train.py"


rule import_reference:
    conda:
        "../../envs/train.yaml"
    input:
        unpack(import_inputs),
    output:
        ckpt=L.model("{run}"),
    params:
        init=lambda wc: RUNS[wc.run]["init"],
        config=lambda wc: {"runs": {wc.run: RUNS[wc.run]}, "download_dir": config["download_dir"]},
    wildcard_constraints:
        run=runs_pattern(IMPORTED_RUNS),
    log:
        L.log("train", "{run}_import"),
    script:
        "../scripts/import_reference.py"
