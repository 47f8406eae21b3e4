"""The workflow itself: the tiny config end to end, no-op rerun, rerun scope, lint, dry runs,
cluster submission through the cluster-generic profile, and config errors before any job starts."""

import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DATA, REPO, SNAKEMAKE, jobs_of, need_data, smk, tiny_config


def test_tiny_config_end_to_end(tiny_run):
    from crystalflow_core.layout import Layout

    work, _ = tiny_run
    r = work / "results"
    L = Layout(str(r))
    for f in [
        L.table("mp20", "csp"),
        L.table("mp20", "dng"),
        L.conditions_table("mp20"),
        L.report(),
        L.paper_table("table1_csp"),
        L.paper_table("table3_dng"),
        L.vasp_manifest("mp20_dng", 3),
        L.stability("mp20_dng", 3),
        L.dft_stability("mp20_dng", 3),
        L.transport_screen("mp20_dng", 3),
        L.transport("mp20_dng", 3),
        L.paper_table("table2_dft"),
        L.model("mp20_csp"),
        f"{L.lightning('mp20_csp')}/last.ckpt",
        L.split("mp_20", "val"),
        L.rejected("mp_20", "val"),
        L.samples("mp20_csp", 3),
        f"{L.plots()}/e_hull_hist.png",
        L.log("train", "mp20_csp"),
        L.benchmark("train", "mp20_csp"),
        L.predict_ranked("salt"),
        L.predict_candidates("salt"),
        L.predict_dft("salt"),
        L.predict_report("salt"),
    ]:
        assert Path(f).exists(), f
    ranked = pd.read_csv(L.predict_ranked("salt"))
    assert set(ranked["group"]) == {"NaCl_p0", "NaCl_p5"}
    for _, g in ranked.groupby("group"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
    assert len(list(Path(L.predict_cifs("salt")).glob("NaCl_p0_r01_*.cif"))) == 1
    phase = pd.read_csv(L.predict_phase_diagram("salt"))  # every polymorph found at every pressure
    assert len(phase) and set(phase["pressure_gpa"]) == {0.0, 5.0}
    assert phase.groupby("polymorph").size().eq(2).all()
    searched = pd.read_csv(L.predict_candidates("search"))  # rounds of 2 until the best was found twice
    assert len(searched) in (2, 4) and Path(L.predict_search_relaxed("search")).exists()
    # generators by the weighted round robin: model, random, then prototype (random where no prototype fits)
    order = searched.assign(c=searched["id"].str.split("#").str[1].astype(int)).sort_values("c")
    assert order["generator"].tolist()[:2] == ["model", "random"]
    assert "stopping rule" in (r / "predict/search/report.md").read_text()
    assert "## Structure prediction: salt" in (r / "report.md").read_text()
    csp_all = pd.read_csv(r / "mp20_csp_metrics.csv")
    # the extra sampling point (Heun, 2 steps = 4 network evaluations) from the same checkpoint
    heun = csp_all[csp_all["method"] == "heun"]
    assert heun["steps"].tolist() == [2, 2] and heun["nfe"].astype(str).tolist() == ["4", "4"]
    assert Path(L.samples("mp20_csp", "heun_2")).exists()
    assert "heun S=2 (NFE 4)" in (r / "tables/table1_csp.md").read_text()
    csp = csp_all[csp_all["method"] == "euler"]
    assert csp["k"].tolist() == [1, 2]
    assert csp["n_targets"].tolist() == [10, 10]
    assert ((csp["match_rate_pct"] >= 0) & (csp["match_rate_pct"] <= 100)).all()
    assert (csp["match_rate_pct"].diff().fillna(0) >= 0).all()  # best of k never decreases with k
    assert ((csp["rmse_all_norm"] > 0) & (csp["rmse_all_norm"] <= 0.5)).all()
    dng = pd.read_csv(r / "mp20_dng_metrics.csv")
    assert len(dng) == 1 and "condition_value" not in dng  # the summary; per-value rows have a file of their own
    # precision: the CSP run asks for auto (bf16 on a CPU with native bf16), the DNG run for the default
    from crystalflow_core.generative.precision import resolve

    here = resolve("auto", "cpu")
    assert set(csp_all["precision"]) == {here} and set(csp_all["train_precision"]) == {here}
    assert dng["precision"].tolist() == ["fp32"] and dng["train_precision"].tolist() == ["fp32"]
    assert f"precision auto -> {here} on cpu" in Path(L.log("train", "mp20_csp")).read_text()
    main = dng.iloc[0]
    assert main["n_samples"] == 12 and main["n_relaxed"] == 12
    for c in [
        "struct_valid_pct",
        "comp_valid_pct",
        "cov_recall_pct",
        "cov_precision_pct",
        "stable_pct",
        "sun_pct",
        "unique_pct",
    ]:
        assert 0 <= main[c] <= 100, c
    assert main["wdist_num_elems"] >= 0
    # the committee (chgnet relaxes, sevennet gives a second opinion): both columns, the potential named
    st = pd.read_csv(L.stability("mp20_dng", 3))
    assert (
        set(st["potential"]) == {"chgnet"} and main["potential"] == "chgnet" and main["committee"] == "chgnet+sevennet"
    )
    assert {"e_hull_sevennet", "e_hull_spread", "committee_disagrees", "e_hull_agreed"} <= set(st.columns)
    assert st["e_hull_sevennet"].notna().sum() == st["e_hull"].notna().sum()
    assert 0 <= main["stable_agreed_pct"] <= min(main["stable_pct"], main["stable_sevennet_pct"])
    assert "committee chgnet + sevennet" in (r / "tables/table3_dng.md").read_text()
    ranked = pd.read_csv(L.predict_ranked("salt"))
    assert {"rank_sevennet", "delta_h_sevennet_mev", "committee_rank_changed"} <= set(ranked.columns)
    # DFT read back: the VASP folders were written, none has run, so nothing is guessed
    manifest = pd.read_csv(L.vasp_manifest("mp20_dng", 3))
    dft = pd.read_csv(L.dft_stability("mp20_dng", 3))
    assert len(dft) == len(manifest) == main["dft_jobs"] == main["dft_not_run"]
    assert dft["e_hull_dft"].isna().all() and main["n_dft_evaluated"] == 0 and pd.isna(main["dft_stable_pct"])
    assert "Table 2" in (r / "tables/table2_dft.md").read_text()
    # transport: every relaxed sample holding one of the ions has a row; the counts reach the metrics
    tr = pd.read_csv(L.transport("mp20_dng", 3))
    assert main["n_transport_screened"] == int((tr["status"] == "screened").sum())
    assert main["n_conductor_candidates"] == int(tr[tr["conductor_candidate"].astype(bool)]["id"].nunique())
    cond = pd.read_csv(r / "mp20_dng_conditions.csv")
    assert sorted(cond["condition_value"]) == [-2.0, -1.0] and (cond["n_samples"] == 6).all()
    assert "Formation-energy conditioning" in (r / "tables/table3_dng.md").read_text()
    samples = [ln for ln in (r / "runs/mp20_csp/s3/samples.jsonl").read_text().splitlines() if ln]
    assert len(samples) == 20  # 10 targets x k=2
    assert "Table 1" in (r / "tables/table1_csp.md").read_text()
    from ase.io import read

    export = Path(L.sample_export("mp20_csp", 3))
    exported = read(export / "samples.extxyz", index=":")
    cifs = list((export / "cif").glob("*.cif"))
    assert len(exported) == len(cifs) == sum(1 for line in samples if '"flag": ""' in line)


def test_every_file_written_is_declared(tiny_run, monkeypatch):
    """Every file the run left in the results folder is an output the stage table declares (a file, or
    inside a declared folder), a log or benchmark, a download, or what a stage keeps (resumable work, VASP folders)."""
    from crystalflow_core.config import load
    from crystalflow_core.layout import Layout
    from crystalflow_core.points import sampling_points
    from crystalflow_core.registry import STAGES, Job

    work, cfg_path = tiny_run
    monkeypatch.chdir(work)  # the config's paths are the workflow's, relative to its folder
    cfg = load(cfg_path)
    L = Layout(cfg["results"])
    wildcards = [dict(tag=t, task=k) for t in ("mp20",) for k in ("csp", "dng")]
    wildcards += [
        dict(dataset=d, split=s, limit=str(cfg["metrics"]["fingerprint_limit"] or "all"))
        for d, ds in cfg["datasets"].items()
        for s in ds["splits"]
    ]
    wildcards += [
        dict(run=r, point=p, shard=i) for r in cfg["runs"] for p in sampling_points(cfg["runs"][r]) for i in range(4)
    ]
    wildcards += [dict(job=j, shard=i) for j in cfg["predict"] for i in range(4)]
    declared, work_paths = set(), set()
    for name, st in STAGES.items():
        for wc in wildcards + [{}]:
            j = Job(cfg, name, **wc)
            try:
                declared |= {str(p) for p in st.outputs(j).values()}
                work_paths |= set(st.kept(j))
            except (KeyError, TypeError):
                continue  # a stage whose wildcards these are not
    root = Path(cfg["results"])
    assert len(declared) > 50 and (root / "report.md").exists()
    undeclared = []
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        s = str(f)
        ok = any(s == d or s.startswith(d + "/") for d in declared | work_paths)
        ok = ok or s.startswith((L.log("", "")[:-5], str(root / "benchmarks"), str(root / "downloads")))
        if not ok:
            undeclared.append(str(f.relative_to(root)))
    assert not undeclared, f"written but declared by no stage: {undeclared[:20]}"


def _html_report(tiny_run):
    """`snakemake --report` of the tiny run (built once per session)."""
    work, cfg = tiny_run
    html = work / "report.html"
    if not html.exists():
        smk(["--report", str(html), "--configfile", str(cfg), "--directory", str(work)], cwd=work)
    return html


def test_snakemake_html_report_holds_the_results(tiny_run):
    """Snakemake's own report: the metric tables, Tables 1-3, the prediction tables and every plot,
    each with its category and caption."""
    work, _ = tiny_run
    text = _html_report(tiny_run).read_text(errors="replace")
    tables = ["mp20_csp_metrics.csv", "mp20_dng_metrics.csv", "table1_csp.md", "table2_dft.md", "table3_dng.md"]
    predict = ["ranked.csv", "candidates.csv", "phase_diagram.csv"]
    plots = [p.name for p in (work / "results/plots").glob("*.png")]
    plots += [p.name for p in (work / "results/predict/salt/plots").glob("*.png")]
    assert len(plots) >= 4
    assert any(name.startswith("structure_NaCl_p") for name in plots)  # the best polymorphs drawn
    missing = [name for name in tables + predict + plots if name not in text]
    assert not missing, f"not in the HTML report: {missing}"
    for words in ("Paper tables", "Structure prediction", "Stability", "Match rate against integration steps"):
        assert words in text


@pytest.mark.slow
def test_html_report_renders_in_a_browser(tiny_run, tmp_path):
    """The report opened in headless Chromium: its script runs and shows the categories and a table."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    html = _html_report(tiny_run)
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    dom = subprocess.run(args + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    for words in ("Paper tables", "Structure prediction", "Metrics", "Plots"):
        assert words in dom, f"'{words}' not rendered"
    shot = tmp_path / "report.png"
    subprocess.run(args + [f"--screenshot={shot}", "--window-size=1400,900", html.as_uri()], timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_second_run_is_a_no_op(tiny_run):
    work, cfg = tiny_run
    p = smk(["-n", "--configfile", str(cfg), "--directory", str(work)], cwd=work)
    assert "Nothing to be done" in p.stdout + p.stderr


def reorder(value):
    """Every mapping of `value` with its keys in reverse order (lists as they are)."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


def test_same_config_in_another_key_order_is_a_no_op(tiny_run):
    work, cfg = tiny_run
    original = yaml.safe_load(cfg.read_text())
    shuffled = work / "tiny_reordered.yaml"
    shuffled.write_text(yaml.safe_dump(reorder(original), sort_keys=False))
    assert list(yaml.safe_load(shuffled.read_text())) == list(reversed(list(original)))
    p = smk(["-n", "--configfile", str(shuffled), "--directory", str(work)], cwd=work)
    assert "Nothing to be done" in p.stdout + p.stderr, jobs_of(p.stdout)


def test_workflow_metrics_refuse_samples_of_another_checkpoint(tiny_run, tmp_path):
    """Samples whose provenance is not the run's current checkpoint are refused by the metrics rule (the
    check the CLI made), in a copy of the finished tiny run."""
    import json
    import shutil

    work, cfg = tiny_run
    copy = tmp_path / "copy"
    for d in ("results", ".snakemake"):
        shutil.copytree(work / d, copy / d, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
    samples = copy / "results/runs/mp20_csp/s3/samples.jsonl"
    stat = samples.stat()
    recs = [json.loads(line) for line in samples.read_text().splitlines()]
    recs[0]["provenance"] = "0" * 16  # one record made by another checkpoint or other settings
    samples.write_text("".join(json.dumps(r) + "\n" for r in recs))
    os.utime(samples, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    target = "results/runs/mp20_csp/s3/metrics.csv"
    p = smk(["--cores", "1", "--configfile", str(cfg), "--directory", str(copy), "--force", target], copy, False)
    assert p.returncode != 0
    log = (copy / "results/logs/metrics/mp20_csp_s3.log").read_text()
    assert "made from another checkpoint or other sampling settings" in log, log[-2000:]


def test_sampling_change_reruns_only_sampling_and_downstream(tiny_run):
    work, _ = tiny_run
    cfg = tiny_config(work, **{"runs.mp20_csp.sample.seed": 3})
    jobs = jobs_of(smk(["-n", "--configfile", str(cfg), "--directory", str(work)], cwd=work).stdout)
    assert jobs.get("sample") == 4 and "metrics" in jobs  # 2 shards x 2 sampling points (3, heun_2)
    assert "train" not in jobs and "prepare" not in jobs and "relax" not in jobs
    cfg2 = tiny_config(work, **{"runs.mp20_csp.sample.steps": [4]})
    jobs2 = jobs_of(smk(["-n", "--configfile", str(cfg2), "--directory", str(work)], cwd=work).stdout)
    assert jobs2.get("sample") == 2 and "train" not in jobs2


@pytest.mark.slow  # minutes: kept out of the default set (pytest -m slow)
def test_kill_of_whole_workflow_then_rerun_incomplete_gives_same_tables(tiny_run, tmp_path):
    """SIGKILL the whole snakemake process group mid-run (one training done, others running),
    then `--unlock` + `--rerun-incomplete`: the final tables equal the uninterrupted run's."""
    import signal
    import time

    work, _ = tiny_run
    cfg = tiny_config(tmp_path)
    cmd = SNAKEMAKE + [
        "-s",
        str(REPO / "Snakefile"),
        "--cores",
        "2",
        "--configfile",
        str(cfg),
        "--directory",
        str(tmp_path),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    first_model = [tmp_path / "results/runs" / r / "model.ckpt" for r in ("mp20_csp", "mp20_dng")]
    deadline = time.time() + 600
    while not any(p.exists() for p in first_model) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the workflow ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results/report.md").exists()
    smk(["--unlock", "--configfile", str(cfg), "--directory", str(tmp_path)], cwd=tmp_path)
    smk(["--cores", "2", "--rerun-incomplete", "--configfile", str(cfg), "--directory", str(tmp_path)], cwd=tmp_path)
    # every number equal; the checkpoint's sha256 differs (the file records its own folder's paths)
    for f in ["mp20_csp_metrics.csv", "mp20_dng_metrics.csv", "mp20_dng_conditions.csv"]:
        read = lambda root, f=f: pd.read_csv(root / "results" / f).drop(columns="model_sha256", errors="ignore")  # noqa: E731
        pd.testing.assert_frame_equal(read(tmp_path), read(work))
    for f in ["tables/table1_csp.md", "tables/table3_dng.md"]:
        assert (tmp_path / "results" / f).read_text() == (work / "results" / f).read_text(), f


def test_split_missing_from_the_mirror_is_downloaded_by_one_local_job(tmp_path):
    """A split the mirror lacks comes from its URL (here a file:// URL with its sha256) through the local
    download rule; the prepare job reads the downloaded file and downloads nothing itself."""
    import shutil

    from crystalflow_core.io import sha256_file

    src, _ = need_data("mp_20/val.csv.gz", "mp_20/test.csv.gz")
    mirror = tmp_path / "mirror"
    (mirror / "mp_20").mkdir(parents=True)
    shutil.copy(DATA / "mp_20/test.csv.gz", mirror / "mp_20/test.csv.gz")  # the mirror lacks only val
    cfg = tiny_config(
        tmp_path,
        **{
            "data_mirror": str(mirror),
            "hull": {"source": "local", "local_sources": []},
            "build": ["mp20_csp"],
            "predict": {},
            "datasets.mp_20.splits.val": {"file": "mp_20/val.csv.gz", "url": src.as_uri(), "sha256": sha256_file(src)},
        },
    )
    target = "results/data/mp_20/val.pt"
    p = smk(["--cores", "1", "--configfile", str(cfg), "--directory", str(tmp_path), target], tmp_path)
    assert "localrule download:" in p.stdout + p.stderr
    assert (tmp_path / "results/downloads/mp_20/val.csv.gz").read_bytes() == src.read_bytes()
    assert "downloading" in (tmp_path / "results/logs/download/mp_20_val.csv.gz.log").read_text()
    assert "downloading" not in (tmp_path / "results/logs/prepare/mp_20_val.log").read_text()
    assert (tmp_path / target).exists()


def test_lint_is_clean(tmp_path):
    p = smk(["--lint", "--directory", str(REPO)], cwd=REPO)
    assert "Congratulations" in p.stdout + p.stderr


def test_dry_run_paper_config_and_slurm_profile(tmp_path):
    paper = [
        "-n",
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config/config.yaml"),
        "--config",
        f"data_mirror={DATA}",
    ]
    jobs = jobs_of(smk(paper, cwd=tmp_path).stdout)
    # sample shards: CSP 4 + 4 at S = 100 and again at S = 10, DNG 4 + 10; relaxation shards 20 + 20
    # (10,000 samples per formation-energy value); MD shards 5 (mp20_dng transport)
    assert jobs["train"] == 4 and jobs["sample"] == 30 and jobs["relax"] == 40 and jobs["report"] == 1
    assert jobs["transport_md"] == 5 and jobs["dft_results"] == 2
    p2 = smk([*paper, "--workflow-profile", str(REPO / "workflow/profiles/slurm")], cwd=tmp_path)
    assert jobs_of(p2.stdout) == jobs
    p3 = smk(
        [
            "-n",
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config/quick.yaml"),
            "--config",
            f"data_mirror={DATA}",
        ],
        cwd=tmp_path,
    )
    assert jobs_of(p3.stdout)["train"] == 2


@pytest.mark.slow  # minutes: kept out of the default set (pytest -m slow)
def test_cluster_generic_submission(tmp_path):
    need_data("mp_20/val.csv.gz", "mp_20/test.csv.gz")
    cfg = tiny_config(tmp_path)
    profile = tmp_path / "profile"
    profile.mkdir()
    prof = yaml.safe_load((REPO / "workflow/profiles/cluster-generic/config.yaml").read_text())
    prof["cluster-generic-submit-cmd"] = str(REPO / "tests/stand_in_submit.sh")
    prof["latency-wait"] = 5
    (profile / "config.yaml").write_text(yaml.safe_dump(prof))
    target = "results/runs/mp20_csp/s3/samples.jsonl"
    smk(
        [
            "--workflow-profile",
            str(profile),
            "--configfile",
            str(cfg),
            "--directory",
            str(tmp_path),
            target,
            "--jobs",
            "2",
        ],
        cwd=tmp_path,
        env={"STANDIN_LEDGER": str(tmp_path / "submitted")},
    )
    lines = (tmp_path / target).read_text().splitlines()
    assert len(lines) == 20
    # every job but the local ones went through the submit command: prepare val + test, train, 2 sample
    # shards (gathering the shards runs on the submitting node)
    scripts = [p.read_text() for p in (tmp_path / "submitted").iterdir()]
    rules = sorted(re.search(r"\"rule\": \"(\w+)\"", s).group(1) for s in scripts)
    assert rules == ["prepare", "prepare", "sample", "sample", "train"], rules


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"runs.mp20_csp.model.hiden": 3}, "allowed keys"),
        ({"runs.mp20_csp.sample.steps": [-5]}, "sample/steps"),
        ({"runs.mp20_csp.train.lr": "fast"}, "train/lr"),
        ({"runs.mp20_csp.task": "xyz"}, "csp"),
        ({"datasets.mp_20.splits.val.file": "mp_20/nope.csv.gz"}, "nope.csv.gz"),
        ({"runs.mp20_dng.conditions": ["band_gap"]}, "formation_energy_per_atom"),
        ({"predict.salt.formulas": ["NaXx"]}, "predict/salt/formulas/0': 'NaXx' holds an unknown element"),
        ({"predict.salt.formulas": ["Si2O4"]}, "'Si2O4' is 2 x SiO2: give SiO2 with z 2, or atoms 6"),
    ],
)
def test_config_errors_stop_before_any_job(tmp_path, change, needle):
    cfg = tiny_config(tmp_path, **change)
    p = smk(["-n", "--configfile", str(cfg), "--directory", str(tmp_path)], cwd=tmp_path, check=False)
    assert p.returncode != 0
    err = (p.stderr + p.stdout).strip().splitlines()
    line = [ln for ln in err if "config error" in ln]
    assert line and needle in line[0], err[-5:]
    assert not (tmp_path / "results").exists()
