# What the rules share: the stage registry's table (crystalflow_core.registry) gives every rule its
# input and output; the functions here add the params that make a changed setting rerun a job, and the
# files that only trigger a rerun (the hull, VASP outputs). Nothing here imports torch, Lightning or
# pymatgen: building the DAG loads only the config, the layout and the table.
from pathlib import Path

from crystalflow_core.layout import Layout
from crystalflow_core.points import POINT_PATTERN
from crystalflow_core.sources import download_path, hull_source, split_source
from crystalflow_core.builds import all_targets, predict_targets
from crystalflow_core.registry import STAGES, Folder, Job, caption_file

L = Layout(config["results"])  # every results path; rules pass wildcards ("{run}") as arguments
RUNS = config["runs"]
IMPORTED_RUNS = [r for r in RUNS if RUNS[r]["init"]]  # the authors' checkpoint instead of training
TRAINED_RUNS = [r for r in RUNS if not RUNS[r]["init"]]
PREDICT = config["predict"]  # structure-prediction jobs
CLUSTER = config["cluster"]


def _downloads():
    """(group, file name) -> source of every file the `download` job may fetch: the dataset splits and
    the Matbench Discovery hull."""
    out = {}
    sources = [split_source(config, d, s) for d, ds in config["datasets"].items() for s in ds["splits"]]
    for src in sources + [hull_source(config)]:
        if src is not None and src.url:
            p = download_path(src, config["download_dir"])
            out[(p.parent.name, p.name)] = src
    return out


DOWNLOADS = _downloads()


def runs_pattern(names):
    return "|".join(names) or "NO_RUNS"


wildcard_constraints:
    run=runs_pattern(RUNS),
    dataset="|".join(config["datasets"]) or "NO_DATASETS",
    split="[A-Za-z0-9_]+",
    point=POINT_PATTERN,
    shard=r"\d+",
    tag="[a-z0-9]+",
    task="csp|dng",
    job=runs_pattern(PREDICT),
    limit=r"\d+|all",


def stage_inputs(name, **extra):
    """Input function from the stage table: what a job of `name` reads, plus `extra` (files that only
    trigger a rerun, such as the hull or VASP outputs: a list or an input function)."""

    def f(wildcards):
        job = Job.from_wildcards(config, name, wildcards)
        out = STAGES[name].inputs(job)
        for key, fn in extra.items():
            out[key] = fn(wildcards) if callable(fn) else fn
        return out

    return f


def stage_outputs(name):
    """The rule's output patterns from the stage table: folders as Snakemake directories, and the outputs
    the table marks for the HTML report (`snakemake --report`) with their category and caption."""
    st = STAGES[name]
    out = {}
    for key, path in st.outputs(Job.pattern(config, name)).items():
        f = directory(path) if isinstance(path, Folder) else path
        if key in st.report:
            category, sub = st.report[key]
            kw = {"patterns": ["{name}.png"]} if isinstance(path, Folder) else {}
            f = report(f, caption=str(caption_file(name, key)), category=category, subcategory=sub, **kw)
        out[key] = f
    return out


def _vasp_outputs(folder):
    pats = ("vasprun.xml", "vasprun.xml.gz", "OUTCAR", "OUTCAR.gz")
    return sorted(str(p) for pat in pats for p in Path(folder).glob(f"*/{pat}"))


def dft_outputs(wildcards):
    """The VASP outputs present now (jobs finishing later make the read-back run again); none when the
    run's energies come from a file."""
    if RUNS[wildcards.run]["dft"]["energies"]:
        return []
    return _vasp_outputs(L.vasp_dir(wildcards.run, wildcards.point))


def predict_dft_outputs(wildcards):
    return _vasp_outputs(Path(L.predict_vasp_manifest(wildcards.job)).parent)


# ----------------------------------------------------------------------------- params: what a job depends on
def stage_params(name):
    """The rule's params from the stage table: the parts of the config that make its job run again
    (`Stage.reruns`, crystalflow_core/reruns.py), each a function of the job's wildcards."""

    def param(view):
        return lambda wildcards: view(Job.from_wildcards(config, name, wildcards))

    return {key: param(view) for key, view in STAGES[name].reruns.items()}
