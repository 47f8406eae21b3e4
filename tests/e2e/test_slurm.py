"""The workflow on a real SLURM: a single-node cluster started on this machine (tests/cluster/slurm_up.sh)
runs the tiny configuration through the SLURM profile, every non-local rule as a SLURM job, with the
local run's outputs; and the sbatch options the profile gives the paper configuration's jobs."""

import re
import subprocess
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from conftest import DATA, REPO, smk, tiny_config

pytestmark = pytest.mark.slurm
CLUSTER = REPO / "tests/cluster"


@pytest.fixture(scope="module")
def slurm():
    p = subprocess.run(["bash", str(CLUSTER / "slurm_up.sh")], capture_output=True, text=True, timeout=900)
    if p.returncode == 3:
        pytest.skip(p.stdout.strip() or p.stderr.strip())
    assert p.returncode == 0, p.stdout + p.stderr
    yield
    subprocess.run(["bash", str(CLUSTER / "slurm_down.sh")], capture_output=True)


def test_profile_runs_the_tiny_workflow_on_slurm(slurm, tiny_run, tmp_path):
    """Every rule but the local ones runs as a SLURM job (a job id in the plugin's log of each), and the
    tables equal those of the local run of the same configuration."""
    work, _ = tiny_run
    cfg = tiny_config(tmp_path, **{"cluster": {"partition": "cpu"}})
    profile = tmp_path / "profile"
    profile.mkdir()
    prof = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    # this 2-core node without a GPU, without accounting: small requests, squeue for the status
    for key in ("set-resources", "set-threads"):  # the paper-size requests do not fit this node
        prof.pop(key)
    prof.update(
        {
            "jobs": 2,
            "latency-wait": 10,
            "retries": 0,
            "default-resources": {"runtime": 30, "mem_mb": 1000},
            "slurm-status-command": "squeue",
            "slurm-no-account": True,
            "slurm-keep-successful-logs": True,
            "slurm-init-seconds-before-status-checks": 2,
        }
    )
    (profile / "config.yaml").write_text(yaml.safe_dump(prof))
    t0 = time.time()
    smk(["--workflow-profile", str(profile), "--configfile", str(cfg), "--directory", str(tmp_path)], tmp_path)
    print(f"SLURM run of the tiny workflow: {time.time() - t0:.0f} s")
    logs = list((tmp_path / ".snakemake/slurm_logs").rglob("*.log"))
    ran = {}
    for log in logs:
        rule = next(p for p in log.parts if p.startswith("rule_"))[len("rule_") :]
        ran.setdefault(rule, []).append(int(log.stem))  # the SLURM job id names the log
    local = {"gather_samples", "metric_table", "conditions_table", "report", "dft", "dft_results", "predict_dft"}
    local |= {"predict_dft_results", "predict_report", "download", "import_reference", "all"}
    assert not local & set(ran), local & set(ran)
    want = {"prepare", "train", "sample", "relax", "stability", "metrics", "test_fingerprints", "transport_screen"}
    want |= {"transport_md", "transport", "predict_sample", "predict_relax", "predict_rank"}
    assert want <= set(ran), want - set(ran)
    # CSP: 2 shards x 2 sampling points, DNG: 1 shard; prepare val + test
    assert len(ran["sample"]) == 5 and len(ran["prepare"]) == 2
    ids = [i for v in ran.values() for i in v]
    assert len(ids) == len(set(ids))
    # the same numbers as the local run
    for f in ["mp20_csp_metrics.csv", "mp20_dng_metrics.csv", "mp20_dng_conditions.csv", "predict/salt/ranked.csv"]:
        read = lambda root, f=f: pd.read_csv(root / "results" / f).drop(columns="model_sha256", errors="ignore")  # noqa: E731
        pd.testing.assert_frame_equal(read(tmp_path), read(work))
    for f in ["tables/table1_csp.md", "tables/table3_dng.md"]:
        assert (tmp_path / "results" / f).read_text() == (work / "results" / f).read_text(), f


def _planned(stdout: str) -> list[dict]:
    """Jobs of a dry run: rule, local or not, wildcards, threads and resources."""
    jobs, cur = [], None
    for line in stdout.splitlines():
        m = re.match(r"^(local)?rule (\w+):$", line.strip())
        if m:
            cur = {"rule": m.group(2), "local": bool(m.group(1)), "wildcards": {}, "resources": {}, "threads": 1}
            jobs.append(cur)
        elif cur and ":" in line:
            key, _, val = line.strip().partition(": ")
            if key in ("wildcards", "resources"):
                for kv in val.split(", "):
                    k, _, v = kv.partition("=")
                    cur[key][k] = int(v) if v.isdigit() else v
            elif key == "threads":
                cur["threads"] = int(val)
    return jobs


class _Resources(dict):
    __getattr__ = dict.get


def sbatch_call(job: dict) -> str:
    """The sbatch command the SLURM plugin builds for a planned job (its own functions)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    res = _Resources({k: v for k, v in job["resources"].items() if not k.startswith(("disk", "mem_mib", "tmpdir"))})
    mock = SimpleNamespace(resources=res, threads=job["threads"], name=job["rule"], is_group=lambda: False)
    part = res.get("slurm_partition")
    account = res.get("slurm_account")
    params = {
        "run_uuid": "uuid",
        "slurm_logfile": "log",
        "comment_str": job["rule"],
        "account": f"-A '{account}'" if account else "",
        "partition": f"-p '{part}'" if part else "",
        "workdir": ".",
    }
    return get_submit_command(mock, params) + set_gres_string(mock)


def test_dry_run_of_the_paper_config_gives_the_expected_sbatch_options(tmp_path):
    over = tmp_path / "cluster.yaml"
    over.write_text(yaml.safe_dump({"cluster": {"partition": "cpu", "gpu_partition": "gpu", "account": "chem"}}))
    # as on a submit host: jobs may use up to 64 cores each (the profile's set-threads apply)
    args = ["-n", "--cores", "64", "--directory", str(tmp_path)]
    args += ["--configfile", str(REPO / "config/config.yaml"), str(over)]
    args += ["--config", f"data_mirror={DATA}", "--workflow-profile", str(REPO / "workflow/profiles/slurm")]
    jobs = _planned(smk(args, tmp_path).stdout)

    def one(rule, **wc):
        return next(j for j in jobs if j["rule"] == rule and all(j["wildcards"].get(k) == v for k, v in wc.items()))

    gpu = sbatch_call(one("train", run="mp20_csp"))  # a GPU run, one device
    assert "-p 'gpu'" in gpu and "--gpus=1" in gpu and "--gres" not in gpu and "-A 'chem'" in gpu
    assert "-t 1440" in gpu and "--mem 64000" in gpu and "--cpus-per-task=8" in gpu
    ddp = sbatch_call(one("train", run="mp20_dng"))  # DDP on 4 GPUs
    assert "-p 'gpu'" in ddp and "--gpus=4" in ddp and "--gres" not in ddp
    cpu = sbatch_call(one("relax", run="mp20_dng", shard=0))  # CHGNet: CPU partition, no GPU
    assert "-p 'cpu'" in cpu and "--gpu" not in cpu and "--gres" not in cpu and "--cpus-per-task=16" in cpu
    relax = one("relax", run="mp20_dng", shard=0)["resources"]
    # 10,000 samples / 20 shards x 300 s / 16 workers + 15 min; 3000 MB per worker + 2000
    assert relax["runtime"] == 10000 // 20 * 300 // 16 // 60 + 1 + 15 and relax["mem_mb"] == 16 * 3000 + 2000
    sample = sbatch_call(one("sample", run="mp20_csp"))
    assert "-p 'gpu'" in sample and "--gpus=1" in sample  # sample.gpu: true, one device
