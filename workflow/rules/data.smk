rule prepare:
    conda:
        "../../envs/train.yaml"
    output:
        pt=L.split("{dataset}", "{split}"),
        rejected=L.rejected("{dataset}", "{split}"),
    params:
        cfg=dataset_view,
    threads: config["threads"]
    log:
        L.log("prepare", "{dataset}_{split}"),
    benchmark:
        L.benchmark("prepare", "{dataset}_{split}")
    script:
        "../scripts/prepare.py"
