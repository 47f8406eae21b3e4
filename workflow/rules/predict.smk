# Structure prediction for your own compositions: results/predict/{job}/ranked.csv per `predict` job.


rule predict_sample:
    input:
        unpack(job_inputs("predict_sample")),
    output:
        L.predict_samples("{job}", "{shard}"),
    log:
        L.log("predict", "{job}_sample{shard}"),
    benchmark:
        L.benchmark("predict", "{job}_sample{shard}")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        cfg=predict_cfg,
        job=predict_view,
    script:
        "../scripts/stage.py"


rule predict_search:
    input:
        unpack(job_inputs("predict_search")),
    output:
        samples=L.predict_search_samples("{job}"),
        relaxed=L.predict_search_relaxed("{job}"),
    log:
        L.log("predict", "{job}_search"),
    benchmark:
        L.benchmark("predict", "{job}_search")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        cfg=predict_cfg,
        job=predict_view,
    script:
        "../scripts/stage.py"


rule predict_relax:
    input:
        unpack(job_inputs("predict_relax")),
    output:
        L.predict_relaxed("{job}", "{shard}"),
    log:
        L.log("predict", "{job}_relax{shard}"),
    benchmark:
        L.benchmark("predict", "{job}_relax{shard}")
    conda:
        "../../envs/workflow.yaml"
    threads: config["threads"]
    params:
        job=predict_view,
    script:
        "../scripts/stage.py"


rule predict_rank:
    input:
        unpack(job_inputs("predict_rank", hull=hull_file())),
    output:
        candidates=L.predict_candidates("{job}"),
        ranked=L.predict_ranked("{job}"),
        extxyz=L.predict_extxyz("{job}"),
        phase=L.predict_phase_diagram("{job}"),
        cif=directory(L.predict_cifs("{job}")),
    log:
        L.log("predict", "{job}_rank"),
    conda:
        "../../envs/workflow.yaml"
    params:
        cfg=predict_cfg,
        job=predict_view,
    script:
        "../scripts/stage.py"


rule predict_dft:
    input:
        unpack(job_inputs("predict_dft")),
    output:
        manifest=L.predict_vasp_manifest("{job}"),
    log:
        L.log("predict", "{job}_dft"),
    conda:
        "../../envs/workflow.yaml"
    params:
        job=predict_view,
    script:
        "../scripts/stage.py"


rule predict_dft_results:
    input:
        unpack(job_inputs("predict_dft_results", triggers=predict_dft_outputs)),
    output:
        L.predict_dft("{job}"),
    log:
        L.log("predict", "{job}_dft_results"),
    conda:
        "../../envs/workflow.yaml"
    params:
        running_minutes=lambda wc: PREDICT[wc.job]["running_minutes"],
    script:
        "../scripts/stage.py"


rule predict_report:
    input:
        unpack(job_inputs("predict_report")),
    output:
        L.predict_report("{job}"),
    log:
        L.log("predict", "{job}_report"),
    conda:
        "../../envs/workflow.yaml"
    params:
        job=predict_view,
    script:
        "../scripts/stage.py"


rule predict:
    input:
        predict_targets(),
