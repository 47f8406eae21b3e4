rule test_fingerprints:
    input:
        unpack(stage_inputs("test_fingerprints")),
    output:
        **stage_outputs("test_fingerprints"),
    log:
        L.log("fingerprints", "{dataset}_{split}_{limit}"),
    benchmark:
        L.benchmark("fingerprints", "{dataset}_{split}_{limit}")
    localrule: STAGES["test_fingerprints"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("test_fingerprints"),
    script:
        "../scripts/stage.py"


rule metrics:
    input:
        unpack(stage_inputs("metrics")),
    output:
        **stage_outputs("metrics"),
    log:
        L.log("metrics", "{run}_s{point}"),
    benchmark:
        L.benchmark("metrics", "{run}_s{point}")
    localrule: STAGES["metrics"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("metrics"),
    script:
        "../scripts/stage.py"


rule metric_table:
    input:
        unpack(stage_inputs("metric_table")),
    output:
        **stage_outputs("metric_table"),
    log:
        L.log("tables", "{tag}_{task}"),
    localrule: STAGES["metric_table"].local
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/stage.py"


rule conditions_table:
    input:
        unpack(stage_inputs("conditions_table")),
    output:
        **stage_outputs("conditions_table"),
    log:
        L.log("tables", "{tag}_dng_conditions"),
    localrule: STAGES["conditions_table"].local
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/stage.py"
