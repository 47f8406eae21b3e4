rule test_fingerprints:
    input:
        rules.prepare.output.pt,
    output:
        L.fingerprints("{dataset}", "{split}", "{limit}"),
    log:
        L.log("fingerprints", "{dataset}_{split}_{limit}"),
    benchmark:
        L.benchmark("fingerprints", "{dataset}_{split}_{limit}")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        limit=lambda wc: None if wc.limit == "all" else int(wc.limit),
        protocol=config["metrics"]["protocol"],  # the reference cells: the CIF's (crystalflow) or Niggli (diffcsp)
    script:
        "../scripts/stage.py"


rule metrics:
    input:
        unpack(job_inputs("metrics")),
    output:
        summary=L.metrics("{run}", "{steps}"),
        targets=L.targets_metrics("{run}", "{steps}"),
    log:
        L.log("metrics", "{run}_s{steps}"),
    benchmark:
        L.benchmark("metrics", "{run}_s{steps}")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        cfg=section_view("metrics"),
        run=run_view("sample", "relax"),
    script:
        "../scripts/stage.py"


rule metric_table:
    input:
        table_inputs,
    output:
        L.table("{tag}", "{task}"),
    log:
        L.log("tables", "{tag}_{task}"),
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/collect.py"


rule targets_table:
    input:
        targets_inputs,
    output:
        L.targets_table("{tag}"),
    log:
        L.log("tables", "{tag}_dng_targets"),
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/collect.py"
