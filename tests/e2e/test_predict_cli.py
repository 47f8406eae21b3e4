"""The crystalflow predict command end to end (a trained tiny model, every stage of a prediction job) and its
rerun keeping finished work."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import DATA, REPO, need_data


@pytest.mark.slow  # minutes: kept out of the default set (pytest -m slow)
def test_predict_command_end_to_end_and_rerun_keeps_work(tmp_path):
    need_data("mp_20/val.csv.gz", "mp_20/test.csv.gz", "hull/2023-02-07-mp-elemental-reference-entries.json.gz")
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["data_mirror"], cfg["results"] = str(DATA), str(tmp_path / "results")
    cfg["predict"] = {
        "salt": {
            "run": "mp20_csp",
            "formulas": ["NaCl"],
            "z": [1, 2],
            "n_candidates": 6,  # per composition, spread over the two sizes
            "rank_unconverged": True,  # 15 optimiser steps: rank what there is
            "steps": 3,
            "relax": {"fmax": 0.2, "steps": 15, "timeout": 60},
            "top_n": 2,
        }
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "crystalflow_core.cli"]
    prep = [["prepare", "--dataset", "mp_20", "--split", split] for split in ("val", "test")]
    for args in (*prep, ["train", "--run", "mp20_csp"]):
        subprocess.run([*cli, *args, "--config", str(path)], cwd=REPO, env=env, check=True, capture_output=True)
    run = [*cli, "predict", "--config", str(path), "--job", "salt", "--threads", "1"]
    p = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "results/predict/salt"
    cands = pd.read_csv(out / "candidates.csv")
    ranked = pd.read_csv(out / "ranked.csv")
    assert sorted(cands["id"]) == sorted(f"NaCl_z{1 + i % 2}_p0#{i}" for i in range(6))
    assert set(cands["n_atoms"]) == {2, 4} and (cands["pressure_gpa"] == 0).all()
    ok = cands[cands["error"].fillna("") == ""]
    assert len(ok) and ok["initial_stress_pressure_gpa"].notna().all() and ok["spacegroup_loose"].notna().all()
    # every relaxed candidate is in one cluster; the ranks are 1..n by enthalpy
    assert (ok["cluster"] >= 1).all() and sorted(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert ranked["enthalpy_per_atom"].is_monotonic_increasing and ranked["delta_h_mev"].iloc[0] == 0
    assert ranked["n_candidates"].sum() == len(ok)
    cifs = sorted(x.name for x in (out / "cif").iterdir())
    assert cifs == sorted(ranked[ranked["rank"] <= 2]["cif"]) and all(c.startswith("NaCl_p0_r0") for c in cifs)
    from ase.io import read

    assert len(read(out / "relaxed.extxyz", index=":")) == len(ok)
    manifest = pd.read_csv(out / "vasp/manifest.csv")
    assert len(manifest) == min(2, len(ranked)) and (pd.read_csv(out / "dft.csv")["status"] == "not_run").all()
    traces = [json.loads(line) for line in (out / "relax/shard0.jsonl").read_text().splitlines()]
    assert all(len(t["energy_trace"]) == t["steps"] + 1 for t in traces if not t.get("error"))
    assert "## Structure prediction: salt" in (out / "report.md").read_text()
    assert (out / "plots/delta_h_ladder.png").exists() and (out / "plots/energy_vs_step.png").exists()
    # the same command again: nothing sampled or relaxed again
    p = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0 and "shard0.jsonl is current" in p.stderr and "relaxed 6" not in p.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "ranked.csv"), ranked)
    # a bad formula on the command line: one line, exit 1, before any work
    bad = [*cli, "predict", "--config", str(path), "--run", "mp20_csp", "--formula", "NaXx"]
    p = subprocess.run(bad, cwd=REPO, env=env, capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("crystalflow predict: error:")
    assert "'NaXx' holds an unknown element" in p.stderr
