"""`crystalflow` command line: run one stage without Snakemake, with the same defaults and paths.
Each command runs one stage on inputs that exist (a missing one is an error naming it);
`snakemake TARGET` runs every stage a target needs.

Examples:
  crystalflow prepare --config config/quick.yaml --dataset mp_20 --split val
  crystalflow train   --config config/quick.yaml --run mp20_csp
  crystalflow import-checkpoint CKPT [--hparams hparams.yaml] [--scalers prop_scalers.pt] --config ... --run NAME
  crystalflow sample  --config config/quick.yaml --run mp20_csp --steps 10
  crystalflow relax   --config config/quick.yaml --run mp20_dng --steps 10
  crystalflow stability --config config/quick.yaml --run mp20_dng --steps 10
  crystalflow fingerprints --config config/quick.yaml --run mp20_dng
  crystalflow metrics --config config/quick.yaml --run mp20_csp --steps 10
  crystalflow dft     --config config/quick.yaml --run mp20_dng --steps 10
  crystalflow transport --config config/quick.yaml --run mp20_dng --steps 10
  crystalflow dft-results --config config/quick.yaml --run mp20_dng --steps 10 [--energies dft.csv|dft.extxyz]
  crystalflow predict --config config/quick.yaml --run mp20_csp --formula SiO2 --z 3 --pressure 0 -n 200
  crystalflow predict --config config/quick.yaml --job sio2        (a predict job of the config)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from crystalflow_core import config as cfgmod
from crystalflow_core import registry
from crystalflow_core.entry import guarded
from crystalflow_core.errors import PROJECT_ERRORS  # noqa: F401 - the command line's one-line errors
from crystalflow_core.layout import Layout, check_name
from crystalflow_core.logs import setup_logging
from crystalflow_core.points import is_baseline, parse_point, sampling_points
from crystalflow_core.registry import Job


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="crystalflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="stage", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default="config/config.yaml", help="config file (default: %(default)s)")
    common.add_argument("--threads", type=int, default=0, help="worker processes (0: all cores)")
    common.add_argument("--log", default=None, help="also write the log to this file")
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sp = sub.add_parser("prepare", parents=[common], help="CSV of CIFs -> cached tensors")
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--split", required=True)
    sp.add_argument("--out", default=None)
    for name, helptext in [
        ("train", "train a run"),
        ("sample", "sample from a trained run (every shard, then gathered)"),
        ("relax", "CHGNet-relax DNG samples (or pressure-CSP candidates)"),
        ("stability", "formation energy, E_hull, unique and new of the relaxed samples"),
        ("fingerprints", "structure and composition fingerprints of the run's test split (coverage)"),
        ("metrics", "metrics of a run"),
        ("dft", "VASP inputs for stable relaxed samples"),
        ("dft-results", "read the VASP folders (or --energies) back: DFT E_hull, convergence, SUN"),
        ("transport", "ion-transport screen of the relaxed samples (migration graph, CHGNet MD, Arrhenius)"),
    ]:
        s = sub.add_parser(name, parents=[common], help=helptext)
        s.add_argument("--run", required=True)
        if name != "train":
            s.add_argument(
                "--steps",
                default=None,
                help="sampling point: integration steps, method and steps (heun_10), or a DNG baseline "
                "(random, prototype); default: first",
            )
        if name == "dft-results":
            s.add_argument("--energies", default=None, help="energies from elsewhere (.csv or .extxyz) instead of VASP")
    s = sub.add_parser(
        "predict",
        parents=[common],
        help="structure prediction for your own compositions: sample, relax at the pressure, rank, VASP inputs",
    )
    s.add_argument("--job", default=None, help="a predict job of the config (flags below override its settings)")
    s.add_argument("--name", default=None, help="folder under results/predict/ (default: --job, or the formulas)")
    s.add_argument("--run", default=None, help="a CSP run of the config whose model.ckpt predicts")
    s.add_argument("--checkpoint", default=None, help="or a model.ckpt")
    s.add_argument("--formula", action="append", default=None, help="a composition (repeat for several)")
    s.add_argument("--compositions", default=None, help="CSV with formula, z or atoms, optional pressure_gpa")
    s.add_argument("--z", nargs="+", default=None, help="formula units per cell: auto (default) or one or more")
    s.add_argument("--atoms", type=int, nargs="+", default=None, help="or atoms per cell")
    s.add_argument("--pressure", type=float, nargs="+", default=None, help="target pressure(s), GPa")
    s.add_argument("-n", "--n-candidates", type=int, default=None, help="candidates per composition and pressure")
    s.add_argument("--steps", type=int, default=None, help="integration steps")
    s.add_argument("--method", default=None, help="integrator (euler, midpoint, heun, rk4)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--top-n", type=int, default=None, help="CIFs and VASP folders for this many best polymorphs")
    s.add_argument(
        "--spacegroups",
        nargs="+",
        default=None,
        help="a symmetric model's space groups: numbers or Wyckoff strings (225 or 225_Na1x4a_Cl1x4b)",
    )
    s.add_argument(
        "--generators",
        nargs="+",
        default=None,
        help="shares of the candidates: model=0.5 random=0.25 prototype=0.25 (summing to 1)",
    )
    s.add_argument(
        "--symmetry", choices=["none", "auto"], default=None, help="auto: Wyckoff templates from the run's training"
    )
    s = sub.add_parser(
        "import-checkpoint",
        parents=[common],
        help="the authors' trained checkpoint -> results/runs/{run}/model.ckpt (instead of training)",
    )
    s.add_argument("checkpoint", help="the authors' Lightning checkpoint (.ckpt)")
    s.add_argument("--run", required=True)
    s.add_argument("--hparams", default=None, help="hparams.yaml of their run folder (default: the checkpoint's own)")
    s.add_argument("--scalers", default=None, help="prop_scalers.pt of a conditional run")
    s.add_argument("--sha256", default=None, help="sha256 the checkpoint must have")
    a = p.parse_args(argv)
    setup_logging(a.log)
    guarded(f"crystalflow {a.stage}", lambda: _run(a), a.debug)


def _load_config(a):
    """The config file, with the command line's overrides validated by the same schema."""
    overrides = {}
    if getattr(a, "steps", None) is not None and getattr(a, "run", None) and is_baseline(a.steps):
        overrides = {"runs": {a.run: {"baselines": [a.steps]}}}  # a DNG run's baseline (random, prototype)
    elif getattr(a, "steps", None) is not None and getattr(a, "run", None):
        try:  # a number goes through the schema as it is (its bounds, its key in the error)
            method, steps = None, int(a.steps)
        except ValueError:
            try:
                method, steps = parse_point(a.steps)
            except ValueError as exc:
                raise cfgmod.ConfigError(f"--steps: {exc}") from exc
        extra = {"extra": [{"method": method, "steps": steps}]} if method else {"steps": [steps]}
        overrides = {"runs": {a.run: {"sample": extra}}}
    try:
        return cfgmod.load(a.config, overrides)
    except FileNotFoundError as exc:
        raise cfgmod.ConfigError(f"config file {a.config} not found") from exc


def _shares(words: list[str]) -> dict:
    """`model=0.5 random=0.5` -> {"model": 0.5, "random": 0.5} (names and sums checked by the schema)."""
    out = {}
    for w in words:
        name, _, value = w.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise cfgmod.ConfigError(f"--generators: '{w}' is not name=share (e.g. random=0.25)") from None
    return out


def _predict_job(a, raw: dict) -> tuple[str, dict]:
    """The prediction job the command line describes: a job of the config (`raw`) and/or the flags."""
    flags = {
        "run": a.run,
        "checkpoint": a.checkpoint,
        "formulas": a.formula,
        "compositions": a.compositions,
        "z": a.z,
        "atoms": a.atoms,
        "pressure_gpa": a.pressure,
        "n_candidates": a.n_candidates,
        "steps": a.steps,
        "method": a.method,
        "seed": a.seed,
        "top_n": a.top_n,
        "spacegroups": [int(s) if s.isdigit() else s for s in a.spacegroups] if a.spacegroups else None,
        "symmetry": a.symmetry,
        "generators": _shares(a.generators) if a.generators else None,
    }
    if a.z is not None:
        try:
            flags["z"] = "auto" if a.z == ["auto"] else [int(z) for z in a.z]
        except ValueError:
            raise cfgmod.ConfigError(f"--z: {' '.join(a.z)}: give auto or whole numbers") from None
    job = {k: v for k, v in flags.items() if v is not None}
    if a.run and not a.checkpoint:
        job["checkpoint"] = None
    if a.checkpoint and not a.run:
        job["run"] = None
    if a.formula and not a.compositions:
        job["compositions"] = None
    if a.compositions and not a.formula:
        job["formulas"] = []
    if a.atoms and not a.z:
        job["z"] = "auto"
    base = {}
    if a.job:
        jobs = raw.get("predict") or {}
        if a.job not in jobs:
            raise cfgmod.ConfigError(
                f"--job: no predict job '{a.job}' in {a.config}; jobs: {', '.join(jobs) or 'none'}"
            )
        base = jobs[a.job]
        if a.z and base.get("atoms") is not None and not a.atoms:
            raise cfgmod.ConfigError(
                f"--z {' '.join(a.z)}: job '{a.job}' sets atoms {base['atoms']}; give --atoms instead, or drop atoms "
                "from the job"
            )
        if a.atoms and not a.z:
            job["z"] = "auto"
    elif not job.get("formulas") and not job.get("compositions"):
        raise cfgmod.ConfigError("predict: give --formula (or --compositions, or --job of the config)")
    name = a.name or a.job or "_".join(a.formula or [Path(a.compositions).stem])
    check_name(name, "--name" if a.name else "predict: the job's name (give --name)")
    merged = cfgmod.deep_update(base, job)
    if a.generators:  # the shares given replace the job's (merged, they would no longer sum to 1)
        merged["generators"] = job["generators"]
    return name, merged


def _predict(a):
    try:
        raw = yaml.safe_load(Path(a.config).read_text()) or {}
    except FileNotFoundError as exc:
        raise cfgmod.ConfigError(f"config file {a.config} not found") from exc
    name, job = _predict_job(a, raw)
    raw["predict"] = {name: job}  # this job only: the config's others are not checked or run here
    cfg = cfgmod.validate(raw)
    job = cfg["predict"][name]
    run_prediction(cfg, name, a.threads)  # the registry's jobs in order, as the workflow runs them


def _run(a):
    if a.stage == "predict":
        _predict(a)
        return
    cfg = _load_config(a)
    if getattr(a, "run", None) and a.run not in cfg["runs"]:
        raise cfgmod.ConfigError(f"unknown run '{a.run}'; runs in {a.config}: {', '.join(cfg['runs'])}")
    if a.stage == "prepare":
        if a.dataset not in cfg["datasets"] or a.split not in cfg["datasets"][a.dataset]["splits"]:
            known = {d: list(v["splits"]) for d, v in cfg["datasets"].items()}
            raise cfgmod.ConfigError(f"unknown dataset/split {a.dataset}/{a.split}; {a.config} has {known}")
        job = Job(cfg, "prepare", dataset=a.dataset, split=a.split, threads=a.threads)
        if a.out:  # the rejected rows beside the chosen file
            job.output = {"pt": a.out, "rejected": str(Path(a.out).with_name(f"{Path(a.out).stem}_rejected.csv"))}
        registry.run(job)
        return
    run = cfg["runs"][a.run]
    point = getattr(a, "steps", None) or sampling_points(run)[0]
    L = Layout(cfg["results"])
    # one stage on explicit inputs (a missing input is an error naming it; snakemake TARGET runs several),
    # wired by the registry exactly as the workflow's jobs are: every shard, the same workers
    if a.stage == "import-checkpoint":  # the run's `init` as the command line gives it, then the table's job
        init = {"reference_checkpoint": a.checkpoint, "hparams": a.hparams, "scalers": a.scalers, "sha256": a.sha256}
        run["init"] = {**(run["init"] or {}), **init, "url": None}
        job = Job(cfg, "import_reference", run=a.run, threads=a.threads)
        registry.run(job)
        print(registry.outputs(job)["ckpt"])
        return
    if a.stage == "fingerprints":
        limit = cfg["metrics"]["fingerprint_limit"]
        limit = "all" if limit is None else str(limit)
        split = {"dataset": run["dataset"], "split": run["test_split"], "limit": limit}
        registry.run(Job(cfg, "test_fingerprints", threads=a.threads, **split))
        return
    if a.stage == "transport" and not cfgmod.transport_screen(run):
        raise cfgmod.ConfigError(f"run '{a.run}' has no transport screen (a DNG run with transport: {{enabled: true}})")
    if a.stage == "dft-results" and a.energies:
        run["dft"]["energies"] = a.energies
    rules = {
        "train": ["train"],
        "sample": ["sample", "gather_samples"],
        "relax": ["relax"],
        "stability": ["stability"],
        "metrics": ["metrics"],
        "dft": ["dft"],
        "dft-results": ["dft_results"],
        "transport": ["transport_screen", "transport_md", "transport"],
    }[a.stage]
    for rule in rules:
        run_stage_of_run(cfg, rule, a.run, point, a.threads)
    if a.stage == "metrics":
        print(Path(L.metrics(a.run, point)).read_text())
    elif a.stage in ("transport", "dft-results"):
        print(L.transport(a.run, point) if a.stage == "transport" else L.dft_stability(a.run, point))


# ----------------------------------------------------------------------------- the table's jobs, as the CLI runs them
def shard_jobs(cfg: dict, rule: str, **wildcards) -> list[Job]:
    """Every job of one rule for one run and sampling point or one prediction job (every shard)."""
    threads = wildcards.pop("threads", 0)
    probe = Job(cfg, rule, threads=threads, **wildcards)
    count = registry.stage(rule).shards
    if count is None:
        return [probe]
    return [Job(cfg, rule, shard=i, threads=threads, **wildcards) for i in range(count(probe))]


def run_stage_of_run(cfg: dict, rule: str, run_name: str, point: str | None, threads: int) -> None:
    """Every job of one rule for one run and sampling point (every shard), as the command line runs it."""
    for job in shard_jobs(cfg, rule, run=run_name, point=point, threads=threads):
        registry.run(job)


def run_prediction(cfg: dict, name: str, threads: int) -> None:
    """Every stage of one prediction job in order, every shard (the command line's `predict`)."""
    search = bool(cfg["predict"][name]["until"])  # a search samples and relaxes in rounds, in one job
    first = ["predict_search"] if search else ["predict_sample", "predict_relax"]
    for rule in first + ["predict_rank", "predict_dft", "predict_dft_results", "predict_report"]:
        for job in shard_jobs(cfg, rule, job=name, threads=threads):
            registry.run(job)


if __name__ == "__main__":
    main()
