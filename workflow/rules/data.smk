rule prepare:
    conda:
        "../../envs/train.yaml"
    output:
        pt=f"{R}/data/{{dataset}}/{{split}}.pt",
        rejected=f"{R}/data/{{dataset}}/{{split}}_rejected.csv",
    params:
        cfg=dataset_view,
    threads: config["threads"]
    log:
        f"{R}/logs/prepare/{{dataset}}_{{split}}.log",
    benchmark:
        f"{R}/benchmarks/prepare/{{dataset}}_{{split}}.tsv"
    script:
        "../scripts/prepare.py"
