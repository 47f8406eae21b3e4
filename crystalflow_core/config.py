"""Configuration: load, fill defaults from the packaged schema (crystalflow_core/schema.yaml), validate,
and check cross-references.

Errors are raised as ConfigError with one line naming the key and the allowed values.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import jsonschema
import yaml

from crystalflow_core.compositions import job_searches
from crystalflow_core.errors import ConfigError
from crystalflow_core.extras import check_config_extras
from crystalflow_core.layout import Layout, check_name

# the one schema (every default and bound), installed with the package; the workflow and the CLI read it
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        ref = node["$ref"].lstrip("#/").split("/")
        node = schema
        for part in ref:
            node = node[part]
    return node


def _fill_defaults(schema: dict, node: dict, value):
    node = _resolve(schema, node)
    if not isinstance(value, dict):
        return value
    for key, sub in node.get("properties", {}).items():
        sub_r = _resolve(schema, sub)
        default = sub.get("default", sub_r.get("default"))  # a default beside a $ref is that use's own
        if key not in value and (default is not None or "default" in sub or "default" in sub_r):
            value[key] = copy.deepcopy(default)
        elif isinstance(default, dict) and isinstance(value.get(key), dict) and not sub_r.get("x-replace"):
            # a use's own defaults (a predict job's relax) under what is given; `x-replace`: what is given
            # replaces the default whole (shares that must add up)
            value[key] = {**copy.deepcopy(default), **value[key]}
        if key in value:
            value[key] = _fill_defaults(schema, sub_r, value[key])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in node.get("properties", {}):
                value[key] = _fill_defaults(schema, extra, value[key])
    return value


# keys renamed in 0.11.0, by the section they sit in ("" the top level): refused with their new name
RENAMED = {"": {"targets": "build"}, "sample": {"targets": "condition_values"}}


def _one_line(err, schema) -> str:
    path = "/".join(str(p) for p in err.absolute_path) or "<top level>"
    msg = err.message
    if err.validator == "additionalProperties":
        props = _resolve(schema, err.schema).get("properties", {})
        renamed = RENAMED.get(str(err.absolute_path[-1]) if err.absolute_path else "", {})
        msg += "".join(f" ('{k}' is now '{renamed[k]}')" for k in err.instance if k not in props and k in renamed)
        msg += f"; allowed keys: {', '.join(sorted(props))}"
    return f"config error at '{path}': {msg}"


def check_committee(where: str, relax: dict) -> None:
    """A committee is the relaxing potential and one other, in that order."""
    c = relax["committee"]
    if c and (len(c) != 2 or c[0] != relax["model"] or c[1] == c[0]):
        raise ConfigError(
            f"config error at '{where}/relax/committee': {c}: give [{relax['model']}, the other potential] "
            f"(the first is relax.model, which relaxes; the second gives the second opinion)"
        )


def _check_run(name: str, run: dict, datasets: dict) -> None:
    """A run's references to its dataset (splits, conditions) and the settings that exclude each other."""
    _check_run_data(name, run, datasets)
    check_committee(f"runs/{name}", run["relax"])
    t = run["train"]
    if t["recipe"] == "paper":
        extra = [k for k in ("ema_decay", "warmup_steps", "ot_pairing") if t[k]]
        extra += ["lr_schedule"] if t["lr_schedule"] != "plateau" else []
        extra += [f"precision {t['precision']}"] if t["precision"] != "fp32" else []
        if extra:
            raise ConfigError(
                f"config error at 'runs/{name}/train': recipe 'paper' keeps the authors' recipe, but "
                f"{', '.join(extra)} is set; use recipe: fast for this project's levers"
            )
    if run["conditions"] and run["task"] == "dng" and not run["sample"]["condition_values"]:
        raise ConfigError(
            f"config error at 'runs/{name}/sample/condition_values': a conditional DNG run needs values to sample at"
        )
    if run["baselines"] and (run["task"] != "dng" or run["conditions"]):
        raise ConfigError(
            f"config error at 'runs/{name}/baselines': baselines are rows of an unconditional DNG run "
            f"(this run is {'conditional ' if run['conditions'] else ''}{run['task']})"
        )
    if run["baselines"] and not stability_relax(run):
        raise ConfigError(f"config error at 'runs/{name}/baselines': baselines are judged relaxed: relax.enabled")
    _check_symmetry(name, run, datasets)


def _check_symmetry(name: str, run: dict, datasets: dict) -> None:
    """The space-group-constrained model: CSP only, not with OT pairing, on a dataset with symmetry cached."""
    m = run["model"]
    if m["symmetry"] == "none":
        if m["symmetrize_loss"]:
            raise ConfigError(f"config error at 'runs/{name}/model/symmetrize_loss': needs model.symmetry: anchor")
        return
    where = f"config error at 'runs/{name}/model/symmetry'"
    if run["task"] != "csp":
        raise ConfigError(
            f"{where}: the space-group constraint is for CSP runs (the atom types come from the Wyckoff "
            "assignment; the authors' code does not symmetrise predicted types)"
        )
    if run["train"]["ot_pairing"]:
        raise ConfigError(f"{where}: not with train.ot_pairing (the authors' code refuses OT with symmetry too)")
    if run["init"]:
        raise ConfigError(f"{where}: an imported checkpoint is the plain model; train the symmetric one")
    if not datasets[run["dataset"]]["symmetry"]:
        ds = run["dataset"]
        raise ConfigError(f"{where}: dataset '{ds}' caches no symmetry; set datasets/{ds}/symmetry: true")


def _check_run_data(name: str, run: dict, datasets: dict) -> None:
    ds = run["dataset"]
    if ds not in datasets:
        raise ConfigError(
            f"config error at 'runs/{name}/dataset': '{ds}' is not a dataset; allowed: {', '.join(datasets)}"
        )
    splits = datasets[ds]["splits"]
    for key in ("train_split", "val_split", "test_split"):
        sp = run[key]
        if sp is not None and sp not in splits:
            raise ConfigError(
                f"config error at 'runs/{name}/{key}': '{sp}' is not a split of {ds}; allowed: {', '.join(splits)}"
            )
    if stability_relax(run):
        for sp in run["novelty_splits"]:
            if sp not in splits:
                raise ConfigError(
                    f"config error at 'runs/{name}/novelty_splits': '{sp}' is not a split of {ds}; "
                    f"allowed: {', '.join(splits)}"
                )
    for c in run["conditions"]:
        if c not in datasets[ds]["conditions"]:
            raise ConfigError(
                f"config error at 'runs/{name}/conditions': '{c}' is not a condition column of {ds}; "
                f"allowed: {', '.join(datasets[ds]['conditions']) or 'none'}"
            )


# the form of a Wyckoff string (crystals.wyckoff reads it): space group, then element, orbits, multiplicity, letter
WYCKOFF_FORM = re.compile(r"^\d{1,3}(_[A-Z][a-z]?[1-9]\d*x\d+[a-zA-Z])+$")


def _check_job_symmetry(cfg: dict, name: str, job: dict) -> None:
    """Generator shares that add up; space groups for a symmetric model only, and a symmetric model of a run
    given where to find them. A
    Wyckoff string's form is checked here; its letters and counts against the group's table and the formula
    when the job starts (crystals.wyckoff.parse_wyckoff, which needs pyxtal)."""
    where = f"config error at 'predict/{name}"
    total = sum(job["generators"].values())
    if abs(total - 1.0) > 1e-6:
        shares = ", ".join(f"{g} {v:g}" for g, v in job["generators"].items())
        raise ConfigError(f"{where}/generators': the shares ({shares}) sum to {total:g}, not 1")
    if job["generators"].get("prototype") and not job["run"]:
        raise ConfigError(f"{where}/generators': prototype substitutes into a run's training crystals; give run:")
    for sg in job["spacegroups"]:
        if isinstance(sg, str) and not (WYCKOFF_FORM.match(sg) and 1 <= int(sg.split("_")[0]) <= 230):
            raise ConfigError(
                f"{where}/spacegroups': '{sg}' is not a Wyckoff string SPG_El{{count}}x{{multiplicity}}{{letter}}_... "
                "(e.g. 225_Na1x4a_Cl1x4b)"
            )
    if job["symmetry"] == "auto" and not job["run"]:
        raise ConfigError(f"{where}/symmetry': auto takes its templates from a run's training split; give run:")
    if not job["run"]:
        return  # a checkpoint's model is known when it is read (the stage checks it there)
    symmetric = cfg["runs"][job["run"]]["model"]["symmetry"] != "none"
    if symmetric and not job["spacegroups"] and job["symmetry"] == "none":
        raise ConfigError(
            f"{where}': run {job['run']} is a symmetric model: give spacegroups (numbers or Wyckoff strings) "
            "or symmetry: auto"
        )
    if not symmetric and (job["spacegroups"] or job["symmetry"] != "none"):
        raise ConfigError(f"{where}/spacegroups': run {job['run']} is the plain model (P1); it samples no space group")


def _check_names(cfg: dict) -> None:
    """Every name of the config that becomes a path under results/ (runs, prediction jobs, datasets, splits)."""
    for section in ("runs", "predict", "datasets"):
        for name in cfg[section]:
            check_name(name, f"config error at '{section}'")
    for ds, d in cfg["datasets"].items():
        for split in d["splits"]:
            check_name(split, f"config error at 'datasets/{ds}/splits'")


def validate(config: dict, mirror_check: bool = True) -> dict:
    """Return a copy of `config` with defaults filled in; raise ConfigError on the first problem."""
    schema = load_schema()
    cfg = _fill_defaults(schema, schema, copy.deepcopy(config))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(_one_line(errors[0], schema))
    _check_names(cfg)
    for name, run in cfg["runs"].items():
        for section in ("model", "train", "sample"):  # settings whose default depends on the task
            _fill_task_defaults(schema, section, run[section], run["task"])
        _check_run(name, run, cfg["datasets"])
    for name, job in cfg["predict"].items():
        job_searches(cfg, name, job)  # every prediction job's compositions, checked before any job
        check_committee(f"predict/{name}", job["relax"])
        _check_rank_by(name, job)
        _check_job_symmetry(cfg, name, job)
        if job["checkpoint"] and mirror_check and not Path(job["checkpoint"]).is_file():
            raise ConfigError(f"config error at 'predict/{name}/checkpoint': {job['checkpoint']} not found")
    for t in cfg["build"]:
        if t not in cfg["runs"]:
            raise ConfigError(f"config error at 'build': '{t}' is not a run; allowed: {', '.join(cfg['runs'])}")
    check_config_extras(cfg)  # a potential whose package is missing: refused before any job
    if cfg["download_dir"] is None:  # downloads live under the configured results folder
        cfg["download_dir"] = Layout(cfg["results"]).downloads()
    if mirror_check:
        check_inputs(cfg)
    return cfg


def check_inputs(cfg: dict) -> None:
    """Every input the configured runs will read exists before any job starts (one line each)."""
    mirror = cfg["data_mirror"]
    if mirror is not None:
        mp = Path(mirror)
        if not mp.exists():
            raise ConfigError(
                f"config error at 'data_mirror': folder {mirror} does not exist (set data_mirror: null "
                "to download every file instead)"
            )
        if not mp.is_dir():
            raise ConfigError(f"config error at 'data_mirror': {mirror} is a file, not a folder")
    datasets = cfg["datasets"]
    built = runs_to_build(cfg)
    for name, run in cfg["runs"].items():
        init = run["init"]
        if name in built and init and not init["url"] and not Path(init["reference_checkpoint"]).is_file():
            raise ConfigError(
                f"config error at 'runs/{name}/init/reference_checkpoint': {init['reference_checkpoint']} "
                "not found (and no url to download it from)"
            )
        for key in ("hparams", "scalers"):
            if name in built and init and init[key] and not Path(init[key]).is_file():
                raise ConfigError(f"config error at 'runs/{name}/init/{key}': {init[key]} not found")
    _check_hull_inputs(cfg, mirror, built)
    for dname, ds in datasets.items():
        for sname, sp in ds["splits"].items():
            used = any(
                r["dataset"] == dname and sname in (r["train_split"], r["val_split"], r["test_split"])
                for r in cfg["runs"].values()
            )
            in_mirror = mirror and (Path(mirror) / sp["file"]).exists()
            if used and not in_mirror and not sp.get("url"):
                raise ConfigError(
                    f"config error at 'datasets/{dname}/splits/{sname}/file': {sp['file']} is not in "
                    f"data_mirror ({mirror}) and no url is set"
                )


def _check_hull_inputs(cfg: dict, mirror: str | None, built: list[str]) -> None:
    """The hull files of the runs whose stability is computed."""
    stability_runs = [r for r in built if stability_relax(cfg["runs"][r])]
    if stability_runs:
        h = cfg["hull"]
        need = [("hull/elemental_refs", h["elemental_refs"])]
        if h["source"] == "local":
            need += [("hull/local_sources", f) for f in h["local_sources"]]
        elif h["matbench_path"] and not Path(h["matbench_path"]).is_file():
            raise ConfigError(
                f"config error at 'hull/matbench_path': {h['matbench_path']} not found "
                f"(needed by {', '.join(stability_runs)})"
            )
        for key, rel in need:
            if mirror is None or not (Path(mirror) / rel).is_file():
                raise ConfigError(
                    f"config error at '{key}': {rel} not found in data_mirror ({mirror}); "
                    f"needed by the stability of {', '.join(stability_runs)}"
                )


def load(path, overrides: dict | None = None) -> dict:
    cfg = yaml.safe_load(Path(path).read_text()) or {}
    if overrides:
        cfg = deep_update(cfg, overrides)
    return validate(cfg)


def deep_update(base: dict, new: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in new.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def canonical(value):
    """`value` with every mapping's keys sorted, recursively (lists keep their order): the form in which
    settings are handed to a job, so that the same settings written in another key order are the same
    (Snakemake compares params by their repr, which includes the order of dict keys)."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def runs_to_build(cfg: dict) -> list[str]:
    """The runs `rule all` builds: the config's `build` list, or every run."""
    return cfg["build"] or list(cfg["runs"])


def dataset_tag(name: str) -> str:
    """mp_20 -> mp20 (the prefix of results/{tag}_{task}_metrics.csv)."""
    return name.replace("_", "")


def workers_for(section: dict, threads: int) -> int:
    """Worker processes of a job of a potential or a screen (the one rule, in the workflow, on a cluster and
    at the command line): the section's `workers`, else the job's threads (a Snakemake job's; the command
    line's --threads), else every core this process may use."""
    return section["workers"] or threads or len(os.sched_getaffinity(0)) or 1


def _check_rank_by(name: str, job: dict) -> None:
    """rank.by names what the job computes: committee_mean needs a committee, a potential must be one of it."""
    by, relax = job["rank"]["by"], job["relax"]
    have = [relax["model"], *relax["committee"][1:]]
    where = f"config error at 'predict/{name}/rank/by'"
    if by == "committee_mean" and not relax["committee"]:
        raise ConfigError(f"{where}: committee_mean needs relax.committee ([{relax['model']}, another potential])")
    if by not in ("auto", "first", "committee_mean") and by not in have:
        raise ConfigError(f"{where}: {by} is not a potential of this job (it has {', '.join(have)})")


def committee_second(relax: dict) -> str | None:
    """The committee's second potential of a validated relax section (`relax.committee[1]`), None without one."""
    return relax["committee"][1] if relax["committee"] else None


def committees(cfg: dict) -> dict[str, str]:
    """run -> the second potential of every run with a committee."""
    return {name: committee_second(run["relax"]) for name, run in cfg["runs"].items() if run["relax"]["committee"]}


def stability_relax(run: dict) -> bool:
    """DNG runs: samples are relaxed, then stability (hull, SUN) and DFT inputs follow."""
    return run["task"] == "dng" and run["relax"]["enabled"]


def transport_screen(run: dict) -> bool:
    """DNG runs with relaxation and `transport.enabled`: the relaxed samples are screened for ion transport."""
    return stability_relax(run) and run["transport"]["enabled"]


def pressure_relax(run: dict) -> bool:
    """CSP runs conditioned on pressure: every candidate is relaxed at its target pressure and the
    metrics compare the CHGNet stress of the relaxed cell with that target."""
    return run["task"] == "csp" and run["relax"]["enabled"] and "pressure" in run["conditions"]


def run_defaults(run: dict) -> dict:
    """A run dict with every schema default filled in (for library callers outside a config file)."""
    schema = load_schema()
    out = _fill_defaults(schema, schema["definitions"]["run"], copy.deepcopy(run))
    for section in ("model", "train", "sample"):
        _fill_task_defaults(schema, section, out[section], out["task"])
    return out


def _fill_task_defaults(schema: dict, section: str, values: dict, task: str) -> dict:
    """Settings left null whose default depends on the task (the schema's `task_default`) get it, so
    that every later reader sees one value."""
    node = _resolve(schema, schema["definitions"]["run"]["properties"].get(section, {}))
    for key, sub in node.get("properties", {}).items():
        if "task_default" in sub and values.get(key) is None:
            values[key] = sub["task_default"][task]
    return values


def defaults(section: str, for_task: str = "csp") -> dict:
    """The schema's defaults of one section: dataset, model, train, sample, relax, dft, metrics or hull
    (settings whose default depends on the task: that of `for_task`)."""
    schema = load_schema()
    run_sections = schema["definitions"]["run"]["properties"]
    if section == "dataset":
        node = schema["definitions"]["dataset"]
    elif section in run_sections:
        node = run_sections[section]
    else:
        node = schema["properties"][section]
    return _fill_task_defaults(schema, section, _fill_defaults(schema, node, {}), for_task)
