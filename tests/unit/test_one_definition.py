"""Facts with one definition (#41): the closest interatomic distance (periodic images counted) and the
enthalpy per atom, each pinned by hand-computed values and called from every place that needs it."""

import math
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalflow_core.crystals.crystal import closest_distance, min_interatomic_distance
from crystalflow_core.materials.relax import EV_PER_A3_PER_GPA, enthalpy_per_atom

PKG = Path(__file__).resolve().parents[2] / "crystalflow_core"


def test_an_atom_and_its_own_image_count():
    # one atom in a 1.5 A cube: its nearest neighbour is its own image 1.5 A away (not inf)
    assert min_interatomic_distance(Structure(Lattice.cubic(1.5), ["Si"], [[0, 0, 0]])) == pytest.approx(1.5)
    # a skewed cell whose face diagonal (a - b) is shorter than either axis: |a - b| = 2 sin(15 deg) * 4
    lat = Lattice.from_parameters(4, 4, 10, 90, 90, 30)
    assert min_interatomic_distance(Structure(lat, ["Si"], [[0, 0, 0]])) == pytest.approx(
        2 * 4 * math.sin(math.pi / 12)
    )


def test_pairs_are_measured_through_the_boundary():
    s = Structure(Lattice.cubic(10), ["Na", "Cl"], [[0.02, 0, 0], [0.98, 0, 0]])  # 0.4 A apart across the face
    assert min_interatomic_distance(s) == pytest.approx(0.4)
    assert closest_distance(s.lattice.matrix, s.frac_coords) == pytest.approx(0.4)
    assert closest_distance(np.eye(3), np.zeros((0, 3))) == math.inf


def test_the_relaxation_refuses_a_cell_whose_atom_meets_its_own_image():
    from pool_faults import relax_settings

    from crystalflow_core.materials.relax import relax_structure

    rec = relax_structure(Structure(Lattice.cubic(0.3), ["Si"], [[0, 0, 0]]), relax_settings(min_distance=0.5))
    assert not rec["converged"] and rec["error"] == "ValueError: atoms 0.30 A apart (< 0.5 A)"


def test_enthalpy_per_atom_by_hand():
    # 1 GPa = 1/160.2177 eV/A^3: E = -10 eV, V = 40 A^3, P = 10 GPa, 2 atoms -> (-10 + 400/160.2177) / 2
    assert pytest.approx(1 / 160.21766208) == EV_PER_A3_PER_GPA
    assert enthalpy_per_atom(-10.0, 40.0, 10.0, 2) == pytest.approx((-10 + 400 / 160.21766208) / 2)
    assert enthalpy_per_atom(-10.0, 40.0, None, 2) == -5.0


def test_no_second_copy_of_the_formulas():
    """No module writes E + PV or a masked distance matrix of its own (the protocol-specific validity of
    the authors' metrics in evaluation/validity.py is theirs, kept as they define it)."""
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        if path.name != "relax.py":
            assert "* EV_PER_A3_PER_GPA" not in text, path
        if path.name != "validity.py":
            assert "distance_matrix + np.eye" not in text and "get_all_distances(mic=True)" not in text, path


def test_a_finished_relaxation_has_a_final_structure_and_no_error():
    from crystalflow_core.materials.relax import finished, relaxed_structure

    final = {"lattice": np.eye(3).tolist(), "species": ["Si"], "frac_coords": [[0, 0, 0]]}
    assert finished({"final": final, "error": ""}) and relaxed_structure({"final": final}).num_sites == 1
    assert not finished({"final": final, "error": "unphysical: Si0-Si0 0.25 A"})  # the DFT stage took these before
    assert not finished({"error": "timeout after 60 s"}) and relaxed_structure({"error": "x"}) is None
    users = [p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py") if "finished(" in p.read_text()]
    assert {"stages/dft.py", "stages/relax.py", "stages/transport.py", "materials/prediction/candidates.py"} <= set(
        users
    )
    for path in PKG.rglob("*.py"):  # no stage writes its own rule
        assert 'get("final") and not' not in path.read_text(), path


def test_every_report_output_has_its_caption_file_and_nothing_writes_captions():
    from crystalflow_core.registry import CAPTIONS, STAGES, caption_file

    wanted = {caption_file(rule, key) for rule, st in STAGES.items() for key in st.report}
    assert wanted and all(p.is_file() and p.read_text().strip() for p in wanted)
    assert set(CAPTIONS.glob("*.rst")) == wanted  # no caption without its output
    smk = (PKG.parent / "workflow" / "rules" / "common.smk").read_text()
    assert "write_text" not in smk  # captions are files of the workflow, never written at parse time


def test_csv_tables_are_written_through_one_atomic_writer(tmp_path):
    import pandas as pd

    from crystalflow_core.io import write_csv_atomic

    out = tmp_path / "t.csv"
    write_csv_atomic(pd.DataFrame({"id": ["a"], "x": [1.5]}), out)
    assert out.read_text() == "id,x\na,1.5\n" and list(tmp_path.iterdir()) == [out]  # no temporary left
    writers = [p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py") if ".to_csv(" in p.read_text()]
    assert writers == ["io.py"], writers


def test_no_module_of_the_package_is_over_450_lines():
    long = {p.relative_to(PKG).as_posix(): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def test_wildcards_map_onto_a_job_in_one_place():
    from crystalflow_core import config as cfgmod
    from crystalflow_core.jobs import WILDCARDS, Job

    cfg = cfgmod.load(PKG.parent / "config" / "quick.yaml")
    job = Job.from_wildcards(cfg, "relax", {"run": "mp20_dng", "point": "heun_10", "shard": "1"}, threads=2)
    assert (job.run, job.point, job.shard, job.threads, job.dataset) == ("mp20_dng", "heun_10", 1, 2, None)
    pattern = Job.pattern(cfg, "relax")
    assert all(getattr(pattern, field) == "{" + wc + "}" for field, wc in WILDCARDS.items())
    smk = (PKG.parent / "workflow" / "rules" / "common.smk").read_text()
    assert "Job.from_wildcards(config, name, wildcards)" in smk and 'wc.get("' not in smk
