"""Bad input never yields a wrong number: strict reading, stated denominators, safe names, schema
bounds, early one-line errors (issue classes beyond the fault table of tests/e2e/test_faults.py)."""

import json

import pandas as pd
import pytest
from conftest import module_settings, rejected_of

from crystalflow_core import stages
from crystalflow_core.config import defaults
from crystalflow_core.errors import DamagedFileError
from crystalflow_core.io import read_jsonl


def _csp_setup(tmp_path, nacl, n=3):
    from pymatgen.io.cif import CifWriter

    from crystalflow_core.crystals.data import PrepareSettings, prepare_split

    csv = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": [f"m{i}" for i in range(n)], "cif": [str(CifWriter(nacl))] * n}).to_csv(
        csv, index=False
    )
    test_pt = tmp_path / "test.pt"
    cache = prepare_split(
        csv, test_pt, rejected_of(test_pt), PrepareSettings.from_dataset(defaults("dataset"), workers=1)
    )
    cfg = {"metrics": {**defaults("metrics"), "n_property_samples": 10, "protocol": "crystalflow"}}
    from crystalflow_core.config import run_defaults

    run = run_defaults({"dataset": "x", "task": "csp", "sample": {"k": [1]}})
    good = []
    for i in range(n):
        st = nacl.get_reduced_structure("niggli")
        good.append(
            {
                "id": f"m{i}#0",
                "target_id": f"m{i}",
                "target_index": i,
                "candidate": 0,
                "lattice": st.lattice.matrix.tolist(),
                "species": [s.specie.Z for s in st],
                "frac_coords": st.frac_coords.tolist(),
                "flag": "",
            }
        )
    return cache, test_pt, cfg, run, good


def _write(path, recs, cut=0):
    text = "".join(json.dumps(r) + "\n" for r in recs)
    path.write_text(text[: len(text) - cut] if cut else text)


def test_truncated_samples_file_is_an_error_naming_file_and_line(tmp_path, nacl):
    _, test_pt, cfg, run, good = _csp_setup(tmp_path, nacl)
    samples = tmp_path / "samples.jsonl"
    _write(samples, good, cut=20)
    with pytest.raises(DamagedFileError, match=r"samples.jsonl: line 3 is damaged"):
        stages.csp_metrics(cfg, "r", run, str(samples), str(test_pt), 10, str(tmp_path / "m.csv"), workers=1)
    _write(samples, good, cut=1)  # only the final newline missing: still a cut file
    with pytest.raises(DamagedFileError, match="line 3"):
        read_jsonl(samples)
    # the append-as-you-go files of resumable stages may end in a half line, dropped on resume
    _write(tmp_path / "x.partial", good, cut=20)
    assert len(read_jsonl(tmp_path / "x.partial", tolerate_truncated_tail=True)) == 2


def test_impossible_records_are_counted_and_the_denominator_stays(tmp_path, nacl):
    _, test_pt, cfg, run, good = _csp_setup(tmp_path, nacl, n=4)
    recs = [good[0], dict(good[1], lattice=[[float("nan")] * 3] * 3), dict(good[2], species=[], frac_coords=[])]
    # the fourth target has no record at all: missing, counted as unmatched
    samples = tmp_path / "samples.jsonl"
    _write(samples, recs)
    out = tmp_path / "m.csv"
    stages.csp_metrics(cfg, "r", run, str(samples), str(test_pt), 10, str(out), workers=1)
    row = pd.read_csv(out).iloc[0]
    assert row["n_targets"] == 4 and row["n_matched"] == 1 and row["match_rate_pct"] == 25.0
    assert row["n_flagged"] == 2 and row["n_missing_candidates"] == 1 and row["n_unreadable"] == 0
    # a record for a target outside the test split is a foreign file, not a sample
    _write(samples, [dict(good[0], target_index=7)])
    with pytest.raises(DamagedFileError, match="another run or test split"):
        stages.csp_metrics(cfg, "r", run, str(samples), str(test_pt), 10, str(out), workers=1)
    _write(samples, [dict(good[0], target_id="mp-999")])
    with pytest.raises(DamagedFileError, match="another test split"):
        stages.csp_metrics(cfg, "r", run, str(samples), str(test_pt), 10, str(out), workers=1)


def test_impossible_atomic_numbers_do_not_count_as_structures():
    from crystalflow_core.generative.sampling import record_problem, record_to_structure

    rec = {
        "lattice": [[4, 0, 0], [0, 4, 0], [0, 0, 4]],
        "species": [11, 200],
        "frac_coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
        "flag": "",
    }
    assert record_problem(rec) == ("flagged", "atomic number outside 1..118")
    assert record_to_structure(rec) is None and record_to_structure(rec, strict=False) is None
    assert record_problem(dict(rec, species=[11]))[0] == "unreadable"  # 1 species for 2 positions
    ok = dict(rec, species=[11, 17], flag="exploded_lattice")
    assert record_to_structure(ok) is None and record_to_structure(ok, strict=False) is not None


# ----------------------------------------------------------------------------- provenance
def _modules(tmp_path):
    import torch

    from crystalflow_core.generative.reference import save_module
    from crystalflow_core.generative.training import CrystalFlowModule

    out = {}
    for task in ("csp", "dng"):
        torch.manual_seed(0)
        m = CrystalFlowModule(
            model={
                **defaults("model"),
                **dict(hidden=16, layers=1, fourier=4, recip=2, time_dim=16, task=task, conditions=[]),
            },
            atom_count_hist=[0, 1, 1],
            **module_settings(),
        )
        out[task] = tmp_path / f"{task}.ckpt"
        save_module(m, out[task])
    return out


def _run(task, **sample):
    from crystalflow_core.config import run_defaults

    return run_defaults(
        {"dataset": "x", "task": task, "sample": dict(steps=[2], k=[1], num_samples=3, batch_size=4, **sample)}
    )


def test_checkpoint_of_another_task_is_never_sampled(tmp_path, nacl):
    ck = _modules(tmp_path)
    _, test_pt, *_ = _csp_setup(tmp_path, nacl)
    with pytest.raises(stages.StageError, match="dng model.*asks for csp"):
        stages.sample(_run("csp"), str(ck["dng"]), str(test_pt), 2, 0, 1, str(tmp_path / "s.jsonl"), 1)


def test_stale_shards_are_rebuilt_and_foreign_samples_refused(tmp_path, nacl):
    ck = _modules(tmp_path)
    cache, test_pt, cfg, _, _ = _csp_setup(tmp_path, nacl)
    run = _run("csp")
    shard = tmp_path / "shard0.jsonl"
    stages.sample(run, str(ck["csp"]), str(test_pt), 2, 0, 1, str(shard), 1)
    assert stages.shard_is_current(shard, run, str(ck["csp"]), 2, 0, 1)
    assert not stages.shard_is_current(shard, _run("csp", seed=5), str(ck["csp"]), 2, 0, 1)  # other settings
    other = tmp_path / "other.ckpt"
    from crystalflow_core.generative.reference import save_module
    from crystalflow_core.generative.training import load_module

    m = load_module(ck["csp"])
    with __import__("torch").no_grad():
        m.net.head_f.weight.add_(0.1)
    save_module(m, other)
    assert not stages.shard_is_current(shard, run, str(other), 2, 0, 1)  # retrained: rebuild
    out = tmp_path / "m.csv"
    stages.csp_metrics(cfg, "r", run, str(shard), str(test_pt), 2, str(out), workers=1, ckpt=str(ck["csp"]))
    row = pd.read_csv(out).iloc[0]
    assert row["model_sha256"] == __import__("crystalflow_core.io", fromlist=["x"]).sha256_file(ck["csp"])[:16]
    with pytest.raises(stages.StageError, match="another checkpoint"):
        stages.csp_metrics(cfg, "r", run, str(shard), str(test_pt), 2, str(out), workers=1, ckpt=str(other))


# ----------------------------------------------------------------------------- config values and early errors
def _cfg_file(tmp_path, **changes):
    from conftest import tiny_config

    return tiny_config(tmp_path, results=str(tmp_path / "results"), **changes)


@pytest.mark.parametrize(
    "path,value,where",
    [
        ("metrics.fingerprint_limit", -5, "metrics/fingerprint_limit"),
        ("runs.mp20_csp.sample.steps", [], "runs/mp20_csp/sample/steps"),
        ("runs.mp20_csp.sample.k", [], "runs/mp20_csp/sample/k"),
        ("metrics.coverage_cutoffs", [0.4], "metrics/coverage_cutoffs"),
        ("metrics.stol", 0, "metrics/stol"),
        ("runs.mp20_dng.sample.guidance", -1, "runs/mp20_dng/sample/guidance"),
    ],
)
def test_schema_bounds_stop_bad_values(tmp_path, path, value, where):
    from crystalflow_core import config as cfgmod

    with pytest.raises(cfgmod.ConfigError, match=where):
        cfgmod.load(_cfg_file(tmp_path, **{path: value}))


def _cli(*args, cwd):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "crystalflow_core.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_overrides_go_through_the_schema_and_errors_are_one_line(tmp_path):
    p = _cli("sample", "--config", str(_cfg_file(tmp_path)), "--run", "mp20_csp", "--steps", "-3", cwd=tmp_path)
    assert p.returncode == 1 and "runs/mp20_csp/sample/steps/0" in p.stderr and "Traceback" not in p.stderr
    p = _cli("metrics", "--config", str(_cfg_file(tmp_path)), "--run", "mp20_csp", cwd=tmp_path)
    assert p.returncode == 1 and "not found" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = _cli("metrics", "--config", str(_cfg_file(tmp_path)), "--run", "mp20_csp", "--debug", cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" in p.stderr


def test_missing_inputs_fail_before_any_job(tmp_path):
    from crystalflow_core import config as cfgmod

    with pytest.raises(cfgmod.ConfigError, match="data_mirror.*does not exist"):
        cfgmod.load(_cfg_file(tmp_path, data_mirror=str(tmp_path / "nowhere")))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(cfgmod.ConfigError, match="data_mirror.*is a file"):
        cfgmod.load(_cfg_file(tmp_path, data_mirror=str(tmp_path / "afile")))
    with pytest.raises(cfgmod.ConfigError, match="hull/elemental_refs.*needed by the stability of mp20_dng"):
        cfgmod.load(_cfg_file(tmp_path, **{"hull.elemental_refs": "hull/missing.json.gz"}))
    cfg = cfgmod.load(_cfg_file(tmp_path))
    assert cfg["download_dir"] == str(tmp_path / "results" / "downloads")  # under the results folder


def test_unwritable_output_is_reported_before_the_work(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(stages.StageError, match="cannot write"):
        stages.ensure_writable(blocker / "relax" / "shard0.jsonl")
    samples = tmp_path / "s.jsonl"
    samples.write_text("")
    called = []
    import crystalflow_core.materials.relax as R

    orig = R.relax_many
    R.relax_many = lambda *a, **k: called.append(1) or orig(*a, **k)
    try:
        with pytest.raises(stages.StageError):
            stages.relax(_run("dng"), str(samples), 0, 1, str(blocker / "shard0.jsonl"), 1)
    finally:
        R.relax_many = orig
    assert not called


def test_relaxations_of_other_samples_are_never_mixed_in(tmp_path, nacl):
    st = nacl.get_primitive_structure()
    rec = {
        "id": "s0",
        "lattice": st.lattice.matrix.tolist(),
        "species": [s.specie.Z for s in st],
        "frac_coords": st.frac_coords.tolist(),
        "flag": "",
        "provenance": "new-samples",
    }
    samples = tmp_path / "samples.jsonl"
    _write(samples, [rec])
    # a torn .partial left by a relaxation of earlier samples with the same ids: not resumed
    out = tmp_path / "relax" / "shard0.jsonl"
    out.parent.mkdir()
    stale = {"id": "s0", "converged": True, "error": "", "energy_per_atom": -99.0}
    (tmp_path / "relax" / "shard0.jsonl.partial").write_text(json.dumps(stale) + "\n")
    run = _run("dng")
    run["relax"].update(steps=2, fmax=0.5, timeout=60, batch_size=1)
    stages.relax(run, str(samples), 0, 1, str(out), 1)
    done = read_jsonl(out)
    assert len(done) == 1 and done[0]["energy_per_atom"] != -99.0 and done[0]["sample_provenance"] == "new-samples"
    # relaxations made for other samples are refused by the stability stage
    _write(samples, [dict(rec, provenance="resampled")])
    cfg = {"hull": {}, "data_mirror": None}
    with pytest.raises(stages.StageError, match="does not belong"):
        stages.stability(cfg, run, str(samples), [str(out)], [], str(tmp_path / "stability.csv"), 1)
