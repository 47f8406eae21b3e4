"""Ion-transport screen: percolation dimensionality (hand-made periodic graphs, olivine LiFePO4,
layered LiCoO2), CHGNet MD (finite diffusivity, readable trajectory, blow-up recorded, resume), and the
stage files (screen -> MD -> transport.csv -> DNG metric columns)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crystalflow_core import config as cfgmod
from crystalflow_core.io import read_jsonl, write_jsonl_atomic
from crystalflow_core.materials.md import MDSettings, diffusion_from_trajectory, md_many, run_md, supercell_for
from crystalflow_core.materials.transport import (
    ScreenSettings,
    connecting_hops,
    migration_screen,
    percolation_dimension,
    transport_summary,
)
from crystalflow_core.stages import transport_md, transport_screen, transport_table
from crystalflow_core.stages.transport import _relaxed_structures, screen_key


def lifepo4():
    """Olivine LiFePO4, Pnma, a = 10.332, b = 6.010, c = 4.692 A (Streltsov et al., Acta Cryst. B 49,
    147 (1993)); Li on 4a: chains along b with hops of b/2 = 3.005 A."""
    return Structure.from_spacegroup(
        "Pnma",
        Lattice.orthorhombic(10.332, 6.010, 4.692),
        ["Li", "Fe", "P", "O", "O", "O"],
        [
            [0, 0, 0],
            [0.2822, 0.25, 0.9746],
            [0.0950, 0.25, 0.4182],
            [0.0968, 0.25, 0.7428],
            [0.4571, 0.25, 0.2060],
            [0.1656, 0.0465, 0.2848],
        ],
    )


def licoo2():
    """Layered LiCoO2, R-3m, a = 2.816, c = 14.05 A: Li planes with in-plane hops of a."""
    return Structure.from_spacegroup(
        "R-3m", Lattice.hexagonal(2.816, 14.05), ["Li", "Co", "O"], [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.2396]]
    )


def screen_settings(**kw):
    return ScreenSettings.from_section(cfgmod.defaults("transport"), **kw)


def md_settings(**kw):
    return MDSettings.from_section(cfgmod.defaults("transport")["md"], "chgnet", **kw)


# ------------------------------------------------------------------------------ graphs
def test_percolation_dimension_of_hand_made_periodic_graphs():
    assert percolation_dimension(1, []) == 0
    assert percolation_dimension(1, [(0, 0, (1, 0, 0))]) == 1  # a chain of one site per cell
    assert percolation_dimension(1, [(0, 0, (1, 0, 0)), (0, 0, (0, 1, 0))]) == 2
    assert percolation_dimension(1, [(0, 0, (1, 0, 0)), (0, 0, (0, 1, 0)), (0, 0, (1, 1, 0))]) == 2  # coplanar
    assert percolation_dimension(1, [(0, 0, (1, 0, 0)), (0, 0, (0, 1, 0)), (0, 0, (0, 0, 1))]) == 3
    # two sites joined inside the cell and across it along c: the loop 0 -> 1 -> 0' spans c only
    assert percolation_dimension(2, [(0, 1, (0, 0, 0)), (1, 0, (0, 0, 1))]) == 1
    # a closed pair inside the cell (no loop through a translation) does not percolate
    assert percolation_dimension(2, [(0, 1, (0, 0, 0)), (1, 0, (0, 0, 0))]) == 0
    # two separate components: the dimension is the largest one's
    assert percolation_dimension(3, [(0, 0, (1, 0, 0)), (1, 2, (0, 0, 0)), (2, 1, (0, 1, 1)), (1, 1, (1, 0, 0))]) == 2
    hops = [(0, 0, (1, 0, 0), 3.0), (0, 0, (0, 1, 0), 4.0), (0, 0, (0, 0, 1), 5.0)]
    assert connecting_hops(1, hops) == {1: 3.0, 2: 4.0, 3: 5.0}
    assert math.isnan(connecting_hops(1, hops[:2])[3])


def test_olivine_lifepo4_percolates_in_one_dimension_along_b():
    s = lifepo4()
    assert s.composition.reduced_formula == "LiFePO4" and len(s) == 28
    row = migration_screen(s, "Li", screen_settings(hop_cutoff=4.0, max_hop=6.0))
    assert row["status"] == "screened" and row["n_ion_sites"] == 4
    assert row["percolation_dim"] == 1  # the b channel, not 3D, at a 4 A cut
    assert row["shortest_hop"] == pytest.approx(6.010 / 2, abs=1e-3)
    assert row["hop_1d"] == pytest.approx(3.005, abs=1e-3)
    assert row["hop_2d"] == pytest.approx(4.692, abs=1e-3)  # the c translation joins the chains into planes
    assert row["hop_3d"] == pytest.approx(np.hypot(10.332 / 2, 4.692 / 2), abs=1e-3)  # 4a (0,0,0) -> (1/2,0,1/2)
    assert migration_screen(s, "Li", screen_settings(hop_cutoff=6.0))["percolation_dim"] == 3


def test_layered_licoo2_percolates_in_two_dimensions():
    row = migration_screen(licoo2(), "Li", screen_settings(hop_cutoff=4.0))
    assert row["percolation_dim"] == 2
    assert row["hop_2d"] == pytest.approx(2.816, abs=1e-3)
    assert row["hop_3d"] == pytest.approx(np.sqrt(2.816**2 / 3 + (14.05 / 3) ** 2), abs=1e-3)  # across the layers


def test_structure_without_the_ion_is_skipped_with_a_reason(nacl):
    row = migration_screen(nacl, "Li", screen_settings())
    assert row["status"] == "skipped" and "no Li in NaCl" in row["reason"]
    li = Structure(Lattice.cubic(3.5), ["Li"], [[0, 0, 0]])
    assert migration_screen(li, "Li", screen_settings())["status"] == "skipped"  # no host framework


def test_supercell_reaches_the_atom_count_growing_the_shortest_length():
    sc, reps = supercell_for(licoo2(), 40)
    assert len(sc) >= 40 and reps[2] == 1 and reps[0] == reps[1] == 2  # 12 * 4 = 48, c is already 14 A
    assert supercell_for(licoo2(), 1)[1] == [1, 1, 1]


# ------------------------------------------------------------------------------ MD
@pytest.fixture(scope="module")
def chgnet_calc():
    from chgnet.model import CHGNet

    from crystalflow_core.materials.calculators import make_calculator

    return make_calculator(CHGNet.load(verbose=False))


def test_short_md_gives_a_readable_trajectory_and_finite_diffusivity(tmp_path, chgnet_calc):
    from ase.io import read

    m = md_settings(picoseconds=0.04, timestep_fs=2.0, frame_every=2, equilibration_ps=0.004, seed=1)
    traj = tmp_path / "lco_1000K.extxyz"
    rec = run_md(licoo2(), 1000.0, m, chgnet_calc, traj)
    assert rec["ok"], rec["error"]
    assert rec["n_steps"] == 20 and rec["steps_done"] == 20
    frames = read(traj, index=":", format="extxyz")
    assert len(frames) == 11 and len(frames[0]) == 12  # step 0 and every 2nd of 20 steps
    assert not (tmp_path / "lco_1000K.extxyz.partial").exists()
    d = diffusion_from_trajectory(traj, "Li", 1000.0, m)
    assert np.isfinite(d["D"]) and d["D"] >= 0 and np.isfinite(d["D_err"])
    assert np.isfinite(d["sigma"]) and d["n_frames"] == 10  # the first frame (4 fs) is equilibration
    assert d["msd_smoothing"].startswith("none")  # 40 fs is far too short for "max", and says so


def test_blown_up_trajectory_is_recorded_as_failed(tmp_path, chgnet_calc):
    m = md_settings(picoseconds=2.0, timestep_fs=60.0, frame_every=1)  # 60 fs steps: Li flies into O
    rec = run_md(licoo2(), 1000.0, m, chgnet_calc, tmp_path / "boom.extxyz")
    assert not rec["ok"] and rec["error"].startswith("blew up"), rec
    assert rec["steps_done"] < rec["n_steps"]
    assert not (tmp_path / "boom.extxyz").exists() and (tmp_path / "boom.failed.extxyz").exists()


def test_md_resumes_without_running_finished_jobs_again(tmp_path):
    m = md_settings(picoseconds=0.02, timestep_fs=2.0, frame_every=2, equilibration_ps=0.0)
    out = tmp_path / "md.jsonl"
    s = licoo2()
    jobs = [(f"a|Li|{t}", s, "Li", float(t), str(tmp_path / f"a_{t}.extxyz")) for t in (800, 1000)]
    first = md_many(jobs[:1], out, m, workers=1, progress=False)
    assert len(first) == 1 and first[0]["ok"]
    with open(out, "a") as fh:  # a kill while the second job was being written
        fh.write('{"key": "a|Li|1000", "ok": tr')
    both = md_many(jobs, out, m, workers=1, progress=False)
    assert [r["key"] for r in both] == ["a|Li|800", "a|Li|1000"]
    assert both[0] == first[0]  # finished work kept as it was, not run again
    assert both[1]["ok"] and both[1]["temperature"] == 1000.0


# ------------------------------------------------------------------------------ stage files
def _write_run_files(tmp_path, structures: dict, e_hull: dict):
    """samples.jsonl, a relax shard and stability.csv for hand-made relaxed structures."""
    samples, relaxed, stab = [], [], []
    for sid, s in structures.items():
        frac = s.frac_coords.tolist()
        lat = s.lattice.matrix.tolist()
        species = [x.specie.symbol for x in s]
        samples.append({"id": sid, "lattice": lat, "species": species, "frac_coords": frac, "provenance": "p"})
        relaxed.append(
            {
                "id": sid,
                "converged": True,
                "error": "",
                "sample_provenance": "p",
                "final": {"lattice": lat, "species": species, "frac_coords": frac},
            }
        )
        stab.append({"id": sid, "e_hull": e_hull[sid], "unique": True, "new": sid != "known"})
    write_jsonl_atomic(tmp_path / "samples.jsonl", samples)
    write_jsonl_atomic(tmp_path / "relax.jsonl", relaxed)
    pd.DataFrame(stab).to_csv(tmp_path / "stability.csv", index=False)
    return str(tmp_path / "samples.jsonl"), [str(tmp_path / "relax.jsonl")], str(tmp_path / "stability.csv")


def test_stage_files_screen_md_table_and_metric_columns(tmp_path, nacl):
    junk = licoo2()
    junk.replace_species({"Co": "Cl", "O": "Cl"})  # LiCl3: no charge-neutral assignment
    squeezed = licoo2()
    squeezed.scale_lattice(squeezed.volume * 0.01)  # atoms 0.4 A apart
    structures = {"lfp": lifepo4(), "lco": licoo2(), "salt": nacl, "hot": licoo2(), "known": licoo2()}
    structures.update(junk=junk, squeezed=squeezed)
    e_hull = {"lfp": 0.0, "lco": 0.05, "salt": 0.0, "hot": 0.4, "known": 0.0, "junk": -0.5, "squeezed": -0.5}
    samples, relaxed, stab = _write_run_files(tmp_path, structures, e_hull)
    run = cfgmod.run_defaults({"dataset": "mp_20", "task": "dng"})
    run["transport"].update(enabled=True, hop_cutoff=4.0)
    run["transport"]["md"].update(
        max_structures=1, temperatures=[900], picoseconds=0.02, timestep_fs=2.0, frame_every=2, min_atoms=1
    )
    run["transport"]["md"]["equilibration_ps"] = 0.0
    screen = str(tmp_path / "transport" / "screen.csv")
    transport_screen(run, samples, relaxed, stab, screen, "crystalflow", workers=1)
    df = pd.read_csv(screen, dtype={"id": str}).set_index("id")
    assert "salt" not in df.index  # no Li: not a row
    assert df.loc["hot", "status"] == "above_hull_cut" and "0.400 > 0.1" in df.loc["hot", "reason"]
    # below the hull cut, new and unique, but not a valid crystal: a row saying so, never a candidate
    assert (
        df.loc["junk", "status"] == "invalid"
        and df.loc["junk", "reason"] == "compositionally invalid (crystalflow protocol)"
    )
    assert df.loc["squeezed", "status"] == "invalid" and df.loc["squeezed", "reason"].startswith("structurally invalid")
    assert df.loc["lfp", "percolation_dim"] == 1 and df.loc["lco", "percolation_dim"] == 2
    md = str(tmp_path / "transport" / "md_shard0.jsonl")
    transport_md(run, screen, relaxed, 0, 1, md, str(tmp_path / "transport" / "trajectories"), workers=1)
    recs = read_jsonl(md)
    assert len(recs) == 1 and recs[0]["key"].startswith("lco|Li|")  # 2D before 1D: LiCoO2 is the best
    assert (tmp_path / "transport" / "trajectories" / recs[0]["trajectory"]).exists()
    out = str(tmp_path / "transport.csv")
    transport_table(run, screen, [md], relaxed, out)
    t = pd.read_csv(out, dtype={"id": str}).set_index("id")
    assert np.isfinite(t.loc["lco", "D_900K"]) and t.loc["lco", "md_runs"] == 1
    assert math.isnan(t.loc["lco", "E_a"])  # one temperature: no Arrhenius fit
    assert t["conductor_candidate"].to_dict() == {
        "lfp": True,
        "lco": True,
        "hot": False,
        "known": False,
        "junk": False,
        "squeezed": False,
    }
    summary = transport_summary(pd.read_csv(out, dtype={"id": str}))
    assert summary["n_transport_screened"] == 3 and summary["n_conductor_candidates"] == 2
    assert summary["n_transport_invalid"] == 2


def test_screen_resumes_from_its_partial_and_restarts_when_settings_change(tmp_path, nacl):
    structures = {"lco": licoo2(), "lfp": lifepo4()}
    samples, relaxed, stab = _write_run_files(tmp_path, structures, {"lco": 0.0, "lfp": 0.0})
    run = cfgmod.run_defaults({"dataset": "mp_20", "task": "dng"})
    run["transport"]["enabled"] = True
    out = tmp_path / "screen.csv"
    transport_screen(run, samples, relaxed, stab, str(out), "crystalflow", workers=1)
    full = pd.read_csv(out)
    # a killed screen: the partial holds the LiCoO2 row (marked) and the key of these settings
    rows = full.to_dict("records")
    marked = [{**rows[0], "reason": "from the partial"}]
    partial = tmp_path / "screen.csv.partial"
    write_jsonl_atomic(partial, marked)
    key = screen_key(ScreenSettings.from_section(run["transport"]), _relaxed_structures(relaxed), stab, "crystalflow")
    (tmp_path / "screen.csv.partial.key").write_text(key + "\n")
    transport_screen(run, samples, relaxed, stab, str(out), "crystalflow", workers=1)
    again = pd.read_csv(out, keep_default_na=False)
    assert len(again) == 2 and (again["reason"] == "from the partial").sum() == 1  # not screened again
    write_jsonl_atomic(partial, marked)  # the same partial under other settings is not resumed
    run["transport"]["hop_cutoff"] = 3.0
    transport_screen(run, samples, relaxed, stab, str(out), "crystalflow", workers=1)
    assert (pd.read_csv(out, keep_default_na=False)["reason"] == "from the partial").sum() == 0
