rule train:
    input:
        unpack(stage_inputs("train")),
    output:
        **stage_outputs("train"),
    log:
        L.log("train", "{run}"),
    benchmark:
        L.benchmark("train", "{run}")
    wildcard_constraints:
        run=runs_pattern(TRAINED_RUNS),
    localrule: STAGES["train"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    resources:
        runtime=CLUSTER["train_runtime_minutes"],
    params:
        **stage_params("train"),
    script:
        "../scripts/stage.py"


rule import_reference:
    input:
        unpack(stage_inputs("import_reference")),
    output:
        **stage_outputs("import_reference"),
    log:
        L.log("train", "{run}_import"),
    wildcard_constraints:
        run=runs_pattern(IMPORTED_RUNS),
    localrule: STAGES["import_reference"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("import_reference"),
    script:
        "../scripts/stage.py"
