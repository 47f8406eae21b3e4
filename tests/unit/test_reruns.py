"""What makes a job run again (crystalflow_core/reruns.py): each stage table record names the parts of the config its
job reads, the Snakemake rules pass exactly those as params, and a changed setting changes the params of the jobs
that read it and of no other."""

import copy
import re

import yaml
from conftest import REPO

from crystalflow_core import config as cfgmod
from crystalflow_core.registry import STAGES, Job

JOBS = {  # one job of each rule of the tiny config, by its wildcards
    "prepare": {"dataset": "mp_20", "split": "val"},
    "test_fingerprints": {"dataset": "mp_20", "split": "test", "limit": "all"},
    "train": {"run": "mp20_csp"},
    "sample": {"run": "mp20_csp", "point": "3", "shard": "0"},
    "gather_samples": {"run": "mp20_csp", "point": "3"},
    "relax": {"run": "mp20_dng", "point": "3", "shard": "0"},
    "stability": {"run": "mp20_dng", "point": "3"},
    "metrics": {"run": "mp20_dng", "point": "3"},
    "dft": {"run": "mp20_dng", "point": "3"},
    "dft_results": {"run": "mp20_dng", "point": "3"},
    "transport_screen": {"run": "mp20_dng", "point": "3"},
    "predict_relax": {"job": "salt", "shard": "0"},
    "predict_rank": {"job": "salt"},
    "report": {},
}


def _raw():
    return yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())


def _params(raw) -> dict:
    cfg = cfgmod.validate(copy.deepcopy(raw), mirror_check=False)
    return {
        rule: {k: repr(f(Job.from_wildcards(cfg, rule, wc))) for k, f in STAGES[rule].reruns.items()}
        for rule, wc in JOBS.items()
    }


def _changed(change) -> set[str]:
    raw = _raw()
    before = _params(raw)
    change(raw)
    after = _params(raw)
    return {rule for rule in JOBS if before[rule] != after[rule]}


def test_every_rule_passes_its_records_params_and_no_other():
    rules = "\n".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    for name, stage in STAGES.items():
        body = re.search(rf"^rule {name}:\n(.*?)(?=^rule |\Z)", rules, re.S | re.M)
        assert body, name
        passes = f'**stage_params("{name}")' in body.group(1)
        assert passes == bool(stage.reruns), name
        params = re.search(r"    params:\n((?:        .*\n)+)", body.group(1))
        assert not params or params.group(1).strip() == f'**stage_params("{name}"),', name  # nothing beside it


def test_a_changed_setting_reruns_the_jobs_that_read_it_and_no_other():
    def setter(path, value):
        def change(raw):
            node = raw
            for k in path[:-1]:
                node = node.setdefault(k, {})
            node[path[-1]] = value

        return change

    # its run's sampling; a prediction job reads its run's whole section (conditions, sampling settings)
    assert _changed(setter(("runs", "mp20_csp", "sample", "k"), [1, 3])) == {"sample", "predict_rank"}
    assert _changed(setter(("runs", "mp20_dng", "train", "lr"), 0.01)) == set()  # no job of JOBS trains mp20_dng
    assert _changed(setter(("runs", "mp20_csp", "train", "lr"), 0.01)) == {"train", "predict_rank"}
    # a new sampling point reruns no other point (a prediction job reads its run's whole section)
    assert _changed(setter(("runs", "mp20_csp", "sample", "steps"), [3, 7])) == {"predict_rank"}
    assert _changed(setter(("runs", "mp20_dng", "relax", "fmax"), 0.3)) == {
        "relax",
        "stability",
        "metrics",
        "dft",
        "dft_results",
        "transport_screen",
    }
    assert _changed(setter(("runs", "mp20_dng", "dft", "max_structures"), 5)) == {"dft", "dft_results"}
    hull = _changed(setter(("hull", "local_sources"), ["mp_20/val.csv.gz"]))
    assert hull == {"stability", "dft_results", "predict_rank"}  # every E_hull, nothing before it
    assert _changed(setter(("metrics", "metastable_e_hull"), 0.05)) == {"metrics", "report"}
    protocol = _changed(setter(("metrics", "protocol"), "diffcsp"))
    assert protocol == {"test_fingerprints", "metrics", "transport_screen", "report"}
    assert _changed(setter(("predict", "salt", "rank", "tie_mev"), 2.0)) == {"predict_relax", "predict_rank"}
    assert _changed(setter(("datasets", "mp_20", "min_distance"), 0.7)) == {"prepare"}  # the rest: through its files


def test_the_same_settings_in_another_key_order_rerun_nothing():
    raw = _raw()
    reordered = copy.deepcopy(raw)
    reordered["runs"]["mp20_dng"] = dict(reversed(list(raw["runs"]["mp20_dng"].items())))
    reordered["predict"]["salt"] = dict(reversed(list(raw["predict"]["salt"].items())))
    assert _params(raw) == _params(reordered)
