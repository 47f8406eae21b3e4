rule train:
    input:
        unpack(train_inputs),
    output:
        ckpt=f"{R}/runs/{{run}}/model.ckpt",
    params:
        run=run_cfg,
        workdir=lambda wc: f"{R}/runs/{wc.run}/lightning",  # resumable checkpoints, undeclared
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
