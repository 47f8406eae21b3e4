"""VASP folders named from any id, and the SLURM array script that finds each (run through bash with a
stand-in for sbatch)."""

import pandas as pd


def test_ids_become_safe_unique_folders_and_the_array_script_finds_each(tmp_path, nacl):
    import os
    import stat
    import subprocess

    from crystalflow_core.crystals.crystal import safe_names
    from crystalflow_core.materials.dft_inputs import emit_vasp_inputs

    ids = ["..", ".", "a/b", "a#b", "x" * 300, "p,q", "r\ns", "mp-1"]
    names = safe_names(ids)
    assert len(set(names.values())) == len(ids) and names["mp-1"] == "mp-1"
    for n in names.values():
        assert n not in (".", "..") and not n.startswith(".") and len(n) <= 64 and "/" not in n
    out = tmp_path / "vasp"
    assert emit_vasp_inputs([(i, nacl) for i in ids], out, out / "manifest.csv", 0.0) == len(ids)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        names.values()
    )  # nothing outside, nothing lost
    man = pd.read_csv(out / "manifest.csv")
    assert dict(zip(man["id"], man["folder"])) == names  # ids with commas and newlines round-trip
    lines = (out / "folders.txt").read_text().splitlines()
    assert lines == [names[i] for i in ids]
    # run the array script for every task with stand-ins for srun/vasp: each lands in its own folder
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text("#!/bin/bash\npwd > ran_here\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    moved = tmp_path / "moved"
    out.rename(moved)  # relative paths: the folder still works after a move
    for task in range(len(ids)):
        env = dict(
            os.environ,
            SLURM_ARRAY_TASK_ID=str(task),
            SLURM_SUBMIT_DIR=str(moved),
            PATH=f"{bin_dir}:{os.environ['PATH']}",
        )
        subprocess.run(["bash", str(moved / "submit_slurm.sh")], env=env, check=True, cwd=tmp_path)
    for i in ids:
        assert (moved / names[i] / "ran_here").read_text().strip() == str(moved / names[i])
