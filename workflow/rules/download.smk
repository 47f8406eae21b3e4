# Downloads: one local job per dataset file (and the Matbench Discovery hull) that the mirror lacks, so
# that compute jobs never download and two jobs never race on one file.


rule download:
    output:
        os.path.join(config["download_dir"], "{dl_group}", "{dl_file}"),
    log:
        L.log("download", "{dl_group}_{dl_file}"),
    wildcard_constraints:
        dl_group="[^/]+",
        dl_file="[^/]+",
    localrule: True
    conda:
        "../../envs/workflow.yaml"
    params:
        source=lambda wc: DOWNLOADS[(wc.dl_group, wc.dl_file)],
        download_dir=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),
    script:
        "../scripts/download.py"
