"""House style: ruff (lint and format) and snakefmt are clean (settings in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["snakefmt", "--check", "."]]
)
def test_style_is_clean(cmd):
    exe = BIN / cmd[0]
    if not exe.exists():
        pytest.skip(f"{cmd[0]} not installed (pip install -e '.[test]')")
    p = subprocess.run([str(exe), *cmd[1:]], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
