"""Defaults live in the schema only: every field of the typed settings is a key of its schema section,
and building the settings from the schema's defaults invents nothing."""

import dataclasses

import pytest
from conftest import REPO

from crystalflow_core.config import _resolve, defaults, load_schema
from crystalflow_core.crystals.data import PhysicalBounds, PrepareSettings
from crystalflow_core.evaluation.sample_metrics import MetricSettings
from crystalflow_core.generative.network import ModelConfig
from crystalflow_core.generative.sampling import SampleSettings
from crystalflow_core.generative.training import TrainSettings
from crystalflow_core.materials.md import MDSettings
from crystalflow_core.materials.relax import RelaxSettings
from crystalflow_core.materials.transport import ScreenSettings

# fields that are not configuration: how a job runs (its worker count) or a nested settings object
NOT_CONFIG = {"workers", "bounds"}
RUN_KEYS = {"task", "conditions"}  # the run's own keys, beside its section


def _section_keys(section):
    schema = load_schema()
    run = schema["definitions"]["run"]["properties"]
    if section == "transport.md":  # and the run's relax.model: the MD runs on the relaxing potential
        return set(run["transport"]["properties"]["md"]["properties"]) | {"model"}
    node = (
        schema["definitions"]["dataset"] if section == "dataset" else run.get(section) or schema["properties"][section]
    )
    return set(_resolve(schema, node)["properties"])


@pytest.mark.parametrize(
    "cls,section",
    [
        (SampleSettings, "sample"),
        (RelaxSettings, "relax"),
        (MetricSettings, "metrics"),
        (ModelConfig, "model"),
        (PrepareSettings, "dataset"),
        (TrainSettings, "train"),
        (PhysicalBounds, "dataset"),
        (ScreenSettings, "transport"),
        (MDSettings, "transport.md"),
    ],
)
def test_every_settings_field_is_a_schema_key_without_a_default_in_code(cls, section):
    keys = _section_keys(section)
    for f in dataclasses.fields(cls):
        assert f.name in keys | NOT_CONFIG | RUN_KEYS, f"{cls.__name__}.{f.name} is not a key of {section}"
        assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (
            f"{cls.__name__}.{f.name} has a default in code; it belongs in crystalflow_core/schema.yaml"
        )


def test_settings_built_from_schema_defaults():
    s = SampleSettings.from_section(defaults("sample"), "csp", 100)
    assert (s.steps, s.method, s.anneal, s.anneal_vars, s.guidance) == (100, "euler", 5.0, ("f",), 1.0)
    assert SampleSettings.from_section(defaults("sample", "dng"), "dng", 100).anneal == 0.0  # the schema's null
    r = RelaxSettings.from_section(defaults("relax"))
    assert (r.fmax, r.optimizer, r.max_vacuum_gap) == (0.1, "LBFGS", 7.0)
    m = MetricSettings.from_config(defaults("metrics"))
    assert (m.protocol, m.stol, m.coverage_cutoffs) == ("crystalflow", 0.5, (0.4, 10.0))
    p = PrepareSettings.from_dataset(defaults("dataset"), workers=3)
    assert p.workers == 3 and p.bounds.min_distance == 0.5 and "workers" not in p.key()
    cfg = ModelConfig.from_run({"model": defaults("model"), "task": "dng", "conditions": ["x"]})
    assert (cfg.hidden, cfg.layers, cfg.cond_gaussians, cfg.task) == (512, 6, 50, "dng")


def test_one_table_of_integrators():
    """The schema's integrator names, the sampling-point pattern and the evaluations per step all come
    from sampling's INTEGRATOR_TABLE."""
    from crystalflow_core.generative.integrators import EVALS_PER_STEP, INTEGRATOR_TABLE
    from crystalflow_core.generative.sampling import METHODS
    from crystalflow_core.points import parse_point

    assert load_schema()["definitions"]["integrator"]["enum"] == list(INTEGRATOR_TABLE) == list(METHODS)
    assert EVALS_PER_STEP == {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
    for name in METHODS:
        assert parse_point(f"{name}_7") == (name, 7)
    with pytest.raises(ValueError):
        parse_point("leapfrog_7")
    smk = (REPO / "workflow/rules/common.smk").read_text()
    assert "point=POINT_PATTERN" in smk and "heun" not in smk


def _schema_keys(node, out: set) -> set:
    if isinstance(node, dict):
        for key, sub in node.get("properties", {}).items():
            out.add(key)
            _schema_keys(sub, out)
        for sub in node.get("definitions", {}).values():
            _schema_keys(sub, out)
        for k in ("additionalProperties", "items"):
            _schema_keys(node.get(k), out)
    return out


def test_no_library_function_carries_a_default_the_schema_owns():
    """A parameter named like a schema key has no default in code (the schema's reaches it through the
    config), except the absent ones (None, empty) and how a job runs (its workers or threads)."""
    import importlib
    import inspect
    import pkgutil

    import crystalflow_core

    keys = _schema_keys(load_schema(), set())
    assert {"lr", "k_sigma", "stol", "protocol", "anneal", "steps", "running_minutes"} <= keys
    found = []
    for info in pkgutil.walk_packages(crystalflow_core.__path__, "crystalflow_core."):
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            funcs = [(name, obj)] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                funcs += [(f"{name}.{n}", f) for n, f in vars(obj).items() if inspect.isfunction(f)]
            for fname, f in funcs:
                for p in inspect.signature(f).parameters.values():
                    absent = p.default is None or (isinstance(p.default, (tuple, list, dict)) and not p.default)
                    if (
                        p.name in keys
                        and p.default is not p.empty
                        and not absent
                        and p.name not in NOT_CONFIG | {"threads"}
                    ):
                        found.append(f"{mod.__name__}.{fname}({p.name}={p.default!r})")
    assert not found, found


def test_a_predict_jobs_relax_defaults_lie_under_what_the_job_gives():
    """The schema gives a prediction job's relaxation its own defaults (energies at every step for Fig. 2c,
    fmax 0.05, 1000 steps); a job that sets some keys keeps the others from there, not from a run's."""
    from crystalflow_core import config as cfgmod

    job = {"checkpoint": "m.ckpt", "formulas": ["NaCl"], "relax": {"fmax": 0.2}}
    cfg = cfgmod.validate({"datasets": {}, "runs": {}, "predict": {"p": job}}, mirror_check=False)
    relax = cfg["predict"]["p"]["relax"]
    assert (relax["fmax"], relax["steps"], relax["record_energies"]) == (0.2, 1000, True)
    assert (
        relax["timeout"] == cfgmod.defaults("relax")["timeout"] and cfgmod.defaults("relax")["record_energies"] is False
    )
