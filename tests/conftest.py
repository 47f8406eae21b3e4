import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CRYSTALFLOW_DATA", REPO.parent / "shared" / "data"))


def need_data(*rel):
    missing = [r for r in rel if not (DATA / r).exists()]
    if missing:
        pytest.skip(f"shared data not found: {', '.join(str(DATA / m) for m in missing)}")
    return [DATA / r for r in rel]


def module_settings(**override) -> dict:
    """The training settings a CrystalFlowModule takes, from the schema's train defaults (tests that build
    a module by hand)."""
    from crystalflow_core.config import defaults
    from crystalflow_core.generative.training import MODULE_TRAIN_KEYS

    train = defaults("train")
    return {**{k: train[k] for k in MODULE_TRAIN_KEYS}, **override}


def rejected_of(cache_path) -> Path:
    """Where the tests keep a split's rejected rows: beside its cache, as the workflow's Layout does."""
    p = Path(cache_path)
    return p.with_name(f"{p.stem}_rejected.csv")


@pytest.fixture
def nacl():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def silicon():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.6), ["Si"], [[0, 0, 0]])


# ----------------------------------------------------------------------------- the workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def smk(args, cwd, check=True, timeout=1200, env=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **(env or {}))
    p = subprocess.run(
        SNAKEMAKE + ["-s", str(REPO / "Snakefile")] + args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}")
    return p


def tiny_config(tmp, **changes):
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["data_mirror"] = str(DATA)
    for path, value in changes.items():
        node = cfg
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    p = Path(tmp) / f"tiny_{len(changes)}_{abs(hash(tuple(changes))) % 1000}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def jobs_of(dry_run_stdout: str) -> dict:
    out, on = {}, False
    for line in dry_run_stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
            continue
        if on:
            parts = line.split()
            if not parts or parts[0].startswith("-"):
                continue
            if parts[0] == "total":
                break
            out[parts[0]] = int(parts[1])
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    need_data("mp_20/val.csv.gz", "mp_20/test.csv.gz", "hull/2023-02-07-mp-elemental-reference-entries.json.gz")
    work = tmp_path_factory.mktemp("tiny")
    cfg = tiny_config(work)
    smk(["--cores", "2", "--configfile", str(cfg), "--directory", str(work)], cwd=work)
    return work, cfg
