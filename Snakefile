# CrystalFlow workflow: data -> train -> sample -> CHGNet relax -> VASP inputs / metrics -> tables.
# Paper settings: config/config.yaml. Quick CPU run: --configfile config/quick.yaml.
import os
import sys

from snakemake.utils import min_version

min_version("9")

if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


from crystalflow_core import config as cfgmod

# a prediction job's compositions file: relative to the working directory, else to the workflow's folder
for _job in (config.get("predict") or {}).values():
    _csv = (_job or {}).get("compositions")
    if _csv and not os.path.isabs(_csv) and not os.path.exists(_csv):
        _here = os.path.join(workflow.basedir, _csv)
        if os.path.exists(_here):
            _job["compositions"] = _here

try:
    config.update(cfgmod.validate(config))
except cfgmod.ConfigError as err:
    sys.exit(str(err))


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/relax.smk"
include: "workflow/rules/dft.smk"
include: "workflow/rules/transport.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cluster.smk"


rule all:
    default_target: True
    input:
        all_targets(config),
    localrule: True
