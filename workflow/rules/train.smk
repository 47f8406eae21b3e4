rule train:
    conda:
        "../../envs/train.yaml"
    input:
        unpack(train_inputs),
    output:
        ckpt=f"{R}/runs/{{run}}/model.ckpt",
    params:
        run=run_view("model", "train"),
        # resumable Lightning checkpoints live beside model.ckpt, undeclared
        workdir=lambda wc, output: os.path.join(os.path.dirname(output.ckpt), "lightning"),
    wildcard_constraints:
        run=runs_pattern(TRAINED_RUNS),
    threads: config["threads"]
    resources:
        gpu=gpu_res("train"),
        runtime=24 * 60,
    log:
        f"{R}/logs/train/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{run}}.tsv"
    script:
        "../scripts/train.py"


rule import_reference:
    conda:
        "../../envs/train.yaml"
    input:
        unpack(import_inputs),
    output:
        ckpt=f"{R}/runs/{{run}}/model.ckpt",
    params:
        init=lambda wc: RUNS[wc.run]["init"],
        config=lambda wc: {"runs": {wc.run: RUNS[wc.run]}, "download_dir": config["download_dir"]},
    wildcard_constraints:
        run=runs_pattern(IMPORTED_RUNS),
    log:
        f"{R}/logs/train/{{run}}_import.log",
    script:
        "../scripts/import_reference.py"
