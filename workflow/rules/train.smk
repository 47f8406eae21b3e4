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
