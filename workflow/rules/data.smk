rule prepare:
    input:
        split_file,
    output:
        pt=L.split("{dataset}", "{split}"),
        rejected=L.rejected("{dataset}", "{split}"),
    log:
        L.log("prepare", "{dataset}_{split}"),
    benchmark:
        L.benchmark("prepare", "{dataset}_{split}")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        cfg=dataset_view,
    script:
        "../scripts/stage.py"
