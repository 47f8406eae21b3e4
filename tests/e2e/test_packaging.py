"""An installed (non-editable) package carries what it reads: the schema, the composition scaler."""

import shutil
import subprocess
import sys

from conftest import REPO


def test_wheel_installed_into_a_folder_validates_the_quick_config(tmp_path):
    wheels, target, src = tmp_path / "wheels", tmp_path / "site", tmp_path / "src"
    # a copy of the sources: setuptools' build/ folder in the checkout would carry files of earlier builds
    shutil.copytree(REPO / "crystalflow_core", src / "crystalflow_core", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("crystalflow_core-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    code = (
        "import yaml, crystalflow_core, crystalflow_core.config as c\n"
        f"assert crystalflow_core.__file__.startswith({str(target)!r}), crystalflow_core.__file__\n"
        f"raw = yaml.safe_load(open({str(REPO / 'config/quick.yaml')!r}))\n"
        f"raw['predict']['known']['compositions'] = {str(REPO / 'config/predict_known.csv')!r}\n"
        "cfg = c.validate(raw, mirror_check=False)\n"
        "print(sorted(cfg['runs']), cfg['runs']['mp20_csp']['sample']['method'])\n"
        "from crystalflow_core.evaluation.metrics import cdvae_comp_scaler\n"
        "print(len(cdvae_comp_scaler()[0]))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # not the checkout: the folder's copy is the one imported
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    runs, method = p.stdout.splitlines()[0].rsplit(" ", 1)
    assert "mp20_csp" in runs and method == "euler"
    assert int(p.stdout.splitlines()[1]) > 100  # the Magpie scaler's features, read from package data
