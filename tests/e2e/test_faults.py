"""Injected faults: killed training resumes, killed sampling leaves no trusted partial output,
empty or all-invalid sample sets give rows of zeros and counts."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml
from conftest import DATA, REPO, need_data, rejected_of

from crystalflow_core import safe_load
from crystalflow_core.config import defaults


def _tiny_cfg(tmp_path, epochs=4, results="results"):
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["data_mirror"] = str(DATA)
    cfg["results"] = str(tmp_path / results)
    cfg["datasets"]["mp_20"]["max_rows"] = 200
    run = cfg["runs"]["mp20_csp"]
    run["model"] = {"hidden": 64, "layers": 2, "fourier": 32, "recip": 4, "time_dim": 32}
    run["train"].update(max_epochs=epochs, batch_size=8)
    p = tmp_path / f"cfg_{results}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_training_killed_mid_epoch_resumes_to_same_epochs(tmp_path):
    need_data("mp_20/val.csv.gz", "mp_20/test.csv.gz")
    cfg = _tiny_cfg(tmp_path, epochs=8)
    cmd = [
        sys.executable,
        "-m",
        "crystalflow_core.cli",
        "train",
        "--config",
        str(cfg),
        "--run",
        "mp20_csp",
        "--threads",
        "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)  # one stage: data must exist
    assert p.returncode == 1 and "val.pt not found" in p.stderr
    for results in ("results", "straight"):
        for split in ("val", "test"):
            prep = [
                *cmd[:3],
                "prepare",
                "--config",
                str(_tiny_cfg(tmp_path, 8, results)),
                "--dataset",
                "mp_20",
                "--split",
                split,
            ]
            subprocess.run([*prep, "--threads", "1"], cwd=REPO, env=env, check=True, capture_output=True)
    last = tmp_path / "results/runs/mp20_csp/lightning/last.ckpt"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.3)  # now mid-way through a later epoch
    assert proc.poll() is None, "training finished before it could be killed; make the test run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results/runs/mp20_csp/model.ckpt").exists()
    done_before = safe_load.load_path(last, "checkpoint")["epoch"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming from" in p.stderr
    final = safe_load.load_path(tmp_path / "results/runs/mp20_csp/model.ckpt", "checkpoint")
    assert safe_load.load_path(last, "checkpoint")["epoch"] == 7 and done_before < 7  # 8 epochs, counted from 0
    # the kept model is the best monitored loss (the authors' recipe), not simply the last epoch
    best = list((tmp_path / "results/runs/mp20_csp/lightning").glob("best-epoch*.ckpt"))
    assert len(best) == 1 and safe_load.load_path(best[0], "checkpoint")["epoch"] == final["epoch"]
    # same seeds: the resumed run ends with the weights of an uninterrupted one
    straight_cmd = [*cmd[:5], str(_tiny_cfg(tmp_path, epochs=8, results="straight")), *cmd[6:]]
    p = subprocess.run(straight_cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    straight = safe_load.load_path(tmp_path / "straight/runs/mp20_csp/model.ckpt", "checkpoint")["state_dict"]
    for name, w in final["state_dict"].items():
        assert torch.allclose(w, straight[name], rtol=0, atol=1e-6), name


def test_corrupt_last_checkpoint_is_detected_and_training_restarts(tmp_path, caplog):
    from crystalflow_core.generative.training import _valid_checkpoint

    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"\x00garbage")
    assert not _valid_checkpoint(bad)
    assert (tmp_path / "last.ckpt.corrupt").exists() and not bad.exists()
    assert "corrupt" in caplog.text


def test_sampling_shard_killed_half_way_leaves_no_output(tmp_path):
    """Shard files are written to a temporary name and renamed only when complete."""
    from crystalflow_core.io import write_jsonl_atomic

    out = tmp_path / "shard0.jsonl"

    def records():
        yield {"id": "a"}
        raise KeyboardInterrupt("killed half way")

    with pytest.raises(KeyboardInterrupt):
        write_jsonl_atomic(out, records())
    assert not out.exists() and not list(tmp_path.glob(".shard0*"))
    write_jsonl_atomic(out, iter([{"id": "a"}, {"id": "b"}]))  # the rerun writes the whole shard
    assert len(out.read_text().splitlines()) == 2


def _write_samples(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


@pytest.mark.parametrize("protocol", ["crystalflow", "diffcsp"])
def test_empty_and_all_invalid_sample_sets_give_zero_rows(tmp_path, nacl, protocol):
    from pymatgen.io.cif import CifWriter

    from crystalflow_core import stages
    from crystalflow_core.crystals.data import PrepareSettings, prepare_split

    csv = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": ["a", "b"], "cif": [str(CifWriter(nacl))] * 2}).to_csv(csv, index=False)
    test_pt = tmp_path / "test.pt"
    prepare_split(csv, test_pt, rejected_of(test_pt), PrepareSettings.from_dataset(defaults("dataset"), workers=1))
    fp = tmp_path / "fp.npz"
    stages.test_fingerprints(str(test_pt), str(fp), None, workers=1, protocol="crystalflow")
    from crystalflow_core.config import run_defaults

    run = run_defaults({"dataset": "x", "task": "dng", "sample": {"k": [1]}})
    cfg = {"metrics": {**defaults("metrics"), "n_property_samples": 10, "protocol": protocol}}
    bad = {
        "id": "s0",
        "lattice": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        "species": [11, 17],
        "frac_coords": [[0, 0, 0], [0.01, 0, 0]],
        "flag": "",
    }
    for name, recs in (("empty", []), ("invalid", [bad, dict(bad, id="s1", flag="nan")])):
        samples = tmp_path / f"{name}.jsonl"
        _write_samples(samples, recs)
        out = tmp_path / f"{name}_metrics.csv"
        stages.dng_metrics(cfg, "r", run, str(samples), str(test_pt), str(fp), None, 10, str(out), workers=1)
        row = pd.read_csv(out).iloc[0]
        assert row["n_samples"] == len(recs)
        assert row["struct_valid_pct"] == 0 and row["valid_pct"] == 0 and row["protocol"] == protocol
        if protocol == "diffcsp" or not recs:  # crystalflow covers with every generated crystal, valid or not
            assert row["cov_recall_pct"] == 0
    csp_run = run_defaults({"dataset": "x", "task": "csp", "sample": {"k": [1, 2]}})
    samples = tmp_path / "csp.jsonl"
    _write_samples(
        samples,
        [
            dict(bad, id="a#0", target_index=0, candidate=0),
            dict(bad, id="a#1", target_index=0, candidate=1, flag="nan"),
        ],
    )
    out = tmp_path / "csp_metrics.csv"
    stages.csp_metrics(cfg, "r", csp_run, str(samples), str(test_pt), 10, str(out), workers=1)
    df = pd.read_csv(out)
    assert df["match_rate_pct"].tolist() == [0.0, 0.0] and df["n_flagged"].tolist() == [0, 1]


def test_log_file_that_cannot_be_written_loses_no_error(tmp_path):
    """`--log` on a full device (/dev/full): the one-line error still reaches the terminal."""
    cmd = [sys.executable, "-m", "crystalflow_core.cli", "train", "--config", str(tmp_path / "nope.yaml")]
    p = subprocess.run([*cmd, "--run", "x", "--log", "/dev/full"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 1
    assert f"crystalflow train: error: config file {tmp_path / 'nope.yaml'} not found" in p.stderr, p.stderr
    assert "lost sys.stderr" not in p.stderr and "Traceback" not in p.stderr
    # a log file that can be written gets the same line
    log = tmp_path / "logs/train.log"
    p = subprocess.run([*cmd, "--run", "x", "--log", str(log)], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 1 and "not found" in p.stderr and "not found" in log.read_text()


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MiB tmpfs (root only; skipped elsewhere), unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_during_training_is_one_line_and_the_rerun_resumes(tmp_path, small_disk):
    need_data("mp_20/val.csv.gz", "mp_20/test.csv.gz")
    cfg = _tiny_cfg(small_disk, epochs=3)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "crystalflow_core.cli"]
    for split in ("val", "test"):
        prep = ["prepare", "--config", str(cfg), "--dataset", "mp_20", "--split", split, "--threads", "1"]
        subprocess.run([*cli, *prep], cwd=REPO, env=env, check=True, capture_output=True)
    free = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 200_000))  # 200 kB left: no checkpoint fits
    train = [*cli, "train", "--config", str(cfg), "--run", "mp20_csp", "--threads", "1"]
    log = small_disk / "train.log"
    p = subprocess.run([*train, "--log", str(log)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("crystalflow train: error: No space left on device") and "lightning" in last, last
    assert "Traceback" not in p.stderr and "lost sys.stderr" not in p.stderr
    filler.unlink()  # space freed: the same command finishes the run
    p = subprocess.run(train, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert safe_load.load_path(small_disk / "results/runs/mp20_csp/model.ckpt", "checkpoint")["epoch"] == 2
