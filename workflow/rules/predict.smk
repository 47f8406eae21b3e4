# Structure prediction for your own compositions: results/predict/{job}/ranked.csv per `predict` job.


rule predict_sample:
    input:
        unpack(stage_inputs("predict_sample")),
    output:
        **stage_outputs("predict_sample"),
    log:
        L.log("predict", "{job}_sample{shard}"),
    benchmark:
        L.benchmark("predict", "{job}_sample{shard}")
    localrule: STAGES["predict_sample"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("predict_sample"),
    script:
        "../scripts/stage.py"


rule predict_search:
    input:
        unpack(stage_inputs("predict_search")),
    output:
        **stage_outputs("predict_search"),
    log:
        L.log("predict", "{job}_search"),
    benchmark:
        L.benchmark("predict", "{job}_search")
    localrule: STAGES["predict_search"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("predict_search"),
    script:
        "../scripts/stage.py"


rule predict_relax:
    input:
        unpack(stage_inputs("predict_relax")),
    output:
        **stage_outputs("predict_relax"),
    log:
        L.log("predict", "{job}_relax{shard}"),
    benchmark:
        L.benchmark("predict", "{job}_relax{shard}")
    localrule: STAGES["predict_relax"].local
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        **stage_params("predict_relax"),
    script:
        "../scripts/stage.py"


rule predict_rank:
    input:
        unpack(stage_inputs("predict_rank")),
    output:
        **stage_outputs("predict_rank"),
    log:
        L.log("predict", "{job}_rank"),
    localrule: STAGES["predict_rank"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("predict_rank"),
    script:
        "../scripts/stage.py"


rule predict_dft:
    input:
        unpack(stage_inputs("predict_dft")),
    output:
        **stage_outputs("predict_dft"),
    log:
        L.log("predict", "{job}_dft"),
    localrule: STAGES["predict_dft"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("predict_dft"),
    script:
        "../scripts/stage.py"


rule predict_dft_results:
    input:
        unpack(stage_inputs("predict_dft_results", triggers=predict_dft_outputs)),
    output:
        **stage_outputs("predict_dft_results"),
    log:
        L.log("predict", "{job}_dft_results"),
    localrule: STAGES["predict_dft_results"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("predict_dft_results"),
    script:
        "../scripts/stage.py"


rule predict_report:
    input:
        unpack(stage_inputs("predict_report")),
    output:
        **stage_outputs("predict_report"),
    log:
        L.log("predict", "{job}_report"),
    localrule: STAGES["predict_report"].local
    conda:
        "../../envs/workflow.yaml"
    params:
        **stage_params("predict_report"),
    script:
        "../scripts/stage.py"


rule predict:
    input:
        predict_targets(config),
    localrule: True
