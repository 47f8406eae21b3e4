# CrystalFlow workflow: data -> train -> sample -> CHGNet relax -> VASP inputs / metrics -> tables.
# Paper settings: config/config.yaml. Quick CPU run: --configfile config/quick.yaml.
import sys

from snakemake.utils import min_version

min_version("9")

if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


from crystalflow_core import config as cfgmod

try:
    config.update(cfgmod.validate(config))
except cfgmod.ConfigError as err:
    sys.exit(str(err))


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
        all_targets(),
