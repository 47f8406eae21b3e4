"""DFT results read back: hand-written vasprun.xml files (checked against pymatgen's own parser),
truncated / missing output, OUTCAR fallback, MP2020 with +U, supplied energies, and DFT SUN counts on
five hand-made structures."""

from __future__ import annotations

import gzip
import os
import time

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crystalflow_core.evaluation.dft_summary import dft_stability_table, dft_summary
from crystalflow_core.materials.dft_outputs import mp2020_process, read_energies, read_job, rms_displacement


# ------------------------------------------------------------------------------ vasprun.xml by hand
def _vec(rows):
    return "".join(f"<v>{' '.join(f'{x:.8f}' for x in r)}</v>" for r in rows)


def _structure_xml(s, name=None):
    attr = f' name="{name}"' if name else ""
    return (
        f'<structure{attr}><crystal><varray name="basis">{_vec(s.lattice.matrix)}</varray>'
        f'<i name="volume">{s.volume:.8f}</i></crystal><varray name="positions">{_vec(s.frac_coords)}</varray>'
        "</structure>"
    )


def _energy_xml(e):
    return (
        f'<energy><i name="e_fr_energy">{e:.8f}</i><i name="e_wo_entrp">{e:.8f}</i>'
        f'<i name="e_0_energy">{e:.8f}</i></energy>'
    )


def vasprun_xml(structures, energies, n_scf, nelm=100, nsw=99, ldau=None, pstress=0.0):
    """A schema-valid vasprun.xml of a relaxation: one <calculation> per ionic step (structure,
    forces, stress, energy), n_scf[i] electronic steps in step i, INCAR/parameters as VASP writes
    them (NELM, NSW, IBRION, LDAU/LDAUU/LDAUJ/LDAUL, PSTRESS), PBE POTCAR titles."""
    s0 = structures[0]
    order = list(dict.fromkeys(site.specie.symbol for site in s0))
    incar = f'<i type="int" name="IBRION">2</i><i type="int" name="NSW">{nsw}</i><i type="int" name="NELM">{nelm}</i>'
    if pstress:
        incar += f'<i name="PSTRESS">{pstress}</i>'
    if ldau:
        incar += '<i type="logical" name="LDAU"> T  </i>'
        incar += '<v name="LDAUU">' + " ".join(str(ldau.get(el, 0.0)) for el in order) + "</v>"
        incar += '<v name="LDAUJ">' + " ".join("0.0" for _ in order) + "</v>"
        incar += '<v type="int" name="LDAUL">' + " ".join("2" if ldau.get(el) else "-1" for el in order) + "</v>"
    params = (
        f'<parameters><separator name="electronic"><i type="int" name="NELM">{nelm}</i></separator>'
        f'<separator name="ionic"><i type="int" name="NSW">{nsw}</i><i type="int" name="IBRION">2</i>'
        '<i name="EDIFFG">-0.05</i></separator><i type="string" name="GGA">--</i><i name="AEXX">0.0</i>'
        '<i name="HFSCREEN">0.0</i><i type="logical" name="LHFCALC"> F  </i>'
        f'<i type="logical" name="LDAU"> {"T" if ldau else "F"}  </i></parameters>'
    )
    atoms = "".join(f"<rc><c>{s.specie.symbol}</c><c>{order.index(s.specie.symbol) + 1}</c></rc>" for s in s0)
    pot = {"Fe": "Fe_pv", "Li": "Li_sv", "Na": "Na_pv"}
    types = "".join(
        f"<rc><c>{sum(1 for x in s0 if x.specie.symbol == el)}</c><c>{el}</c><c>1.0</c><c>1.0</c>"
        f"<c>  PAW_PBE {pot.get(el, el)} 06Sep2000</c></rc>"
        for el in order
    )
    calcs = ""
    for s, e, n in zip(structures, energies, n_scf):
        scf = "".join(f"<scstep>{_energy_xml(e + 0.1 * (n - k))}</scstep>" for k in range(1, n + 1))
        calcs += (
            f'<calculation>{scf}{_structure_xml(s)}<varray name="forces">{_vec(np.zeros((len(s), 3)))}</varray>'
            f'<varray name="stress">{_vec(np.zeros((3, 3)))}</varray>{_energy_xml(e)}</calculation>'
        )
    return (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<modeling><generator>'
        '<i name="program" type="string">vasp </i><i name="version" type="string">6.3.2 </i>'
        '<i name="date" type="string">2026 11 25 </i><i name="time" type="string">12:00:00 </i></generator>'
        f'<incar>{incar}</incar><kpoints><generation param="Gamma"><v type="int" name="divisions">4 4 4 </v>'
        '</generation><varray name="kpointlist"><v>0.0 0.0 0.0</v></varray><varray name="weights"><v>1.0</v>'
        f"</varray></kpoints>{params}<atominfo><atoms>{len(s0)}</atoms><types>{len(order)}</types>"
        f'<array name="atoms"><set>{atoms}</set></array><array name="atomtypes"><set>{types}</set></array>'
        f"</atominfo>{_structure_xml(s0, 'initialpos')}{calcs}{_structure_xml(structures[-1], 'finalpos')}"
        "</modeling>\n"
    )


def fe2o3_like():
    """Fe2O3 stoichiometry in a simple 5-atom cell (the parser and MP2020 need only the atoms)."""
    return Structure(
        Lattice.cubic(4.0),
        ["Fe", "Fe", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]],
    )


def _age(folder, minutes):
    t = time.time() - minutes * 60
    for p in folder.iterdir():
        os.utime(p, (t, t))


def test_vasprun_by_hand_agrees_with_pymatgen_and_gives_energy_steps_convergence(tmp_path):
    from pymatgen.io.vasp.outputs import Vasprun

    s = fe2o3_like()
    (tmp_path / "vasprun.xml").write_text(vasprun_xml([s, s, s], [-30.0, -30.8, -31.0], [12, 6, 4], ldau={"Fe": 5.3}))
    vr = Vasprun(str(tmp_path / "vasprun.xml"), parse_dos=False, parse_eigen=False, parse_potcar_file=False)
    assert vr.final_energy == pytest.approx(-31.0) and len(vr.ionic_steps) == 3 and vr.run_type == "GGA+U"
    rec, entry = read_job(tmp_path, running_minutes=30.0)
    assert rec["status"] == "converged" and rec["source"] == "vasprun.xml"
    assert rec["energy"] == pytest.approx(-31.0) and rec["ionic_steps"] == 3
    assert rec["electronic_converged"] and rec["ionic_converged"]
    assert entry.parameters["hubbards"]["Fe"] == 5.3
    # the same file gzipped reads the same
    gz = tmp_path / "gz"
    gz.mkdir()
    with gzip.open(gz / "vasprun.xml.gz", "wt") as fh:
        fh.write((tmp_path / "vasprun.xml").read_text())
    assert read_job(gz, running_minutes=30.0)[0]["energy"] == pytest.approx(-31.0)


def test_unconverged_electronic_or_ionic(tmp_path):
    s = fe2o3_like()
    scf = tmp_path / "scf"
    scf.mkdir()
    (scf / "vasprun.xml").write_text(vasprun_xml([s, s], [-30.0, -31.0], [3, 8], nelm=8))  # last SCF hit NELM
    rec, _ = read_job(scf, running_minutes=30.0)
    assert rec["status"] == "unconverged" and not rec["electronic_converged"] and rec["ionic_converged"]
    ion = tmp_path / "ion"
    ion.mkdir()
    (ion / "vasprun.xml").write_text(vasprun_xml([s, s], [-30.0, -31.0], [3, 3], nsw=2))  # ran out of NSW
    rec, _ = read_job(ion, running_minutes=30.0)
    assert rec["status"] == "unconverged" and rec["electronic_converged"] and not rec["ionic_converged"]


def test_truncated_vasprun_is_crashed_or_running_and_empty_folder_not_run(tmp_path):
    s = fe2o3_like()
    text = vasprun_xml([s, s, s], [-30.0, -30.5, -31.0], [5, 5, 5])
    job = tmp_path / "job"
    job.mkdir()
    (job / "vasprun.xml").write_text(text[: len(text) // 2])
    _age(job, 120)
    rec, entry = read_job(job, running_minutes=30)
    assert rec["status"] == "crashed" and entry is None and "unreadable" in rec["reason"]
    assert "energy" not in rec  # nothing guessed
    (job / "vasprun.xml").write_text(text[: len(text) // 2])  # still being written
    assert read_job(job, running_minutes=30)[0]["status"] == "running"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "INCAR").write_text("NSW = 99\n")
    assert read_job(empty, running_minutes=30.0)[0]["status"] == "not_run"
    assert read_job(tmp_path / "absent", running_minutes=30.0)[0]["status"] == "not_run"


OUTCAR_TAIL = """
  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)
  energy  without entropy=      -30.40000000  energy(sigma->0) =      -30.50000000
  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)
  energy  without entropy=      -31.10000000  energy(sigma->0) =      -31.20000000
 reached required accuracy - stopping structural energy minimisation
 General timing and accounting informations for this job:
"""


def test_outcar_contcar_used_where_vasprun_is_truncated(tmp_path):
    from pymatgen.io.vasp.inputs import Incar, Poscar

    s = fe2o3_like()
    text = vasprun_xml([s, s], [-30.5, -31.2], [5, 5])
    (tmp_path / "vasprun.xml").write_text(text[:200])
    (tmp_path / "OUTCAR").write_text(" vasp.6.3.2\n" + OUTCAR_TAIL)
    Poscar(s).write_file(tmp_path / "CONTCAR")
    Incar({"NSW": 99, "NELM": 100, "LDAU": True, "LDAUU": [5.3, 0.0], "LDAUL": [2, -1]}).write_file(tmp_path / "INCAR")
    (tmp_path / "POTCAR.spec").write_text("Fe_pv\nO\n")
    rec, entry = read_job(tmp_path, running_minutes=30.0)
    assert rec["status"] == "converged" and rec["source"] == "OUTCAR" and rec["ionic_steps"] == 2
    assert rec["energy"] == pytest.approx(-31.2)
    corrected, why = mp2020_process(entry)
    assert why == "" and corrected == pytest.approx(-31.2 + 2 * -2.256 + 3 * -0.687)


def test_mp2020_on_an_oxide_with_u_changes_the_energy_by_the_expected_amount(tmp_path):
    s = fe2o3_like()
    (tmp_path / "vasprun.xml").write_text(vasprun_xml([s], [-31.0], [4], ldau={"Fe": 5.3}))
    _, entry = read_job(tmp_path, running_minutes=30.0)
    corrected, why = mp2020_process(entry)
    # MP2020: -0.687 eV per oxide O, -2.256 eV per Fe in a +U oxide
    assert why == "" and corrected - (-31.0) == pytest.approx(2 * -2.256 + 3 * -0.687, abs=1e-6)
    plain = tmp_path / "noU"
    plain.mkdir()
    (plain / "vasprun.xml").write_text(vasprun_xml([s], [-31.0], [4]))  # an Fe oxide without U: not MP-compatible
    corrected, why = mp2020_process(read_job(plain, running_minutes=30.0)[1])
    assert np.isnan(corrected) and "incompatible" in why


def test_rms_displacement_hand_computed():
    a = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    b = a.copy()
    b.translate_sites([1], [0.02, 0, 0])  # 0.1 A along x; mean translation removed: +-0.05 A
    assert rms_displacement(a, b) == pytest.approx(0.05, abs=1e-9)
    c = a.copy()
    c.translate_sites([0, 1], [0.99, 0, 0])  # a rigid shift across the cell boundary is no displacement
    assert rms_displacement(a, c) == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------ tables and SUN
class ElementalHull:
    """A hull of the elements only: E_hull = formation energy."""

    source = "local"

    def __len__(self):
        return 0

    def e_hull(self, structure, corrected_total, e_form):
        return e_form

    def entries_in_system(self, comp):
        return 0


def test_dft_sun_counts_on_five_hand_made_structures():
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    zincblende = Structure.from_spacegroup("F-43m", Lattice.cubic(6.2), ["Na", "Cl"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    licl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.13), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    refs = {"Na": -1.0, "Cl": -2.0, "Li": -1.5}  # eV/atom; NaCl at -1.5 + e_form, LiCl at -1.75 + e_form
    e_hull = {"a": -0.05, "b": 0.05, "c": 0.2, "d": -0.02, "e": -0.1}
    structs = {"a": rocksalt, "b": cscl, "c": zincblende, "d": rocksalt.copy(), "e": licl}
    jobs = []
    for sid, s in structs.items():
        base = -1.75 if sid == "e" else -1.5
        rec = {"status": "converged", "energy": (base + e_hull[sid]) * len(s), "ionic_steps": 10 + len(sid)}
        jobs.append({"id": sid, "rec": rec, "entry": None, "structure": s, "correct": "none"})
    jobs.append({"id": "f", "rec": {"status": "crashed", "reason": "truncated", "ionic_steps": 0}, "entry": None})
    chg = pd.DataFrame({"id": list("abcdef"), "e_hull": [0.0, 0.1, 0.2, 0.0, -0.1, 0.3]})
    relaxed = {sid: s for sid, s in structs.items()}
    df = dft_stability_table(jobs, chg, relaxed, refs, ElementalHull(), novelty=[zincblende])
    t = df.set_index("id")
    assert t.loc["a", "e_hull_dft"] == pytest.approx(-0.05) and t.loc["e", "e_hull_dft"] == pytest.approx(-0.1)
    assert t["unique_dft"].to_dict() == {"a": True, "b": True, "c": True, "d": False, "e": True, "f": False}
    assert t.loc["c", "new_dft"] == np.False_ and t.loc["a", "new_dft"] == np.True_
    assert np.isnan(t.loc["f", "e_hull_dft"]) and t.loc["a", "rms_displacement"] == pytest.approx(0.0)
    row = dft_summary(df, 0.1)
    assert row["dft_jobs"] == 6 and row["dft_converged"] == 5 and row["dft_crashed"] == 1
    assert row["dft_convergence_pct"] == pytest.approx(500 / 6)
    assert row["n_dft_evaluated"] == 5
    assert row["dft_stable_pct"] == pytest.approx(60.0)  # a, d, e
    assert row["dft_metastable_pct"] == pytest.approx(80.0)  # and b
    assert row["dft_sun_pct"] == pytest.approx(40.0)  # a, e (d repeats a; c is known)
    assert row["dft_mean_ionic_steps"] == pytest.approx(11.0)
    assert row["dft_vs_chgnet_e_hull_mae"] == pytest.approx(np.mean([0.05, 0.05, 0.0, 0.02, 0.0]))


def test_supplied_energies_csv_and_extxyz(tmp_path, nacl):
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    csv = tmp_path / "dft.csv"
    pd.DataFrame({"id": ["s1", "s2"], "energy": [-6.5, np.nan], "energy_per_atom": [np.nan, -3.1]}).to_csv(
        csv, index=False
    )
    got = read_energies(csv)
    assert got["s1"]["energy"] == -6.5 and got["s2"]["energy_per_atom"] == -3.1 and got["s1"]["structure"] is None
    atoms = AseAtomsAdaptor.get_atoms(nacl)
    atoms.info["id"] = "s7"
    atoms.info["energy"] = -12.0
    write(tmp_path / "dft.extxyz", atoms, format="extxyz")
    got = read_energies(tmp_path / "dft.extxyz")
    assert got["s7"]["energy"] == -12.0 and len(got["s7"]["structure"]) == len(nacl)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["s1", "s1"], "energy": [-1.0, -2.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="row 3: id s1 appears twice"):
        read_energies(bad)
    pd.DataFrame({"name": ["s1"], "E": [-1.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="needs columns id and energy"):
        read_energies(bad)


# ------------------------------------------------------------------------------ outputs tied to their structure
def _rocksalt_8():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_outputs_of_another_structure_are_foreign_and_count_in_no_rate(tmp_path, caplog):
    from crystalflow_core.materials.dft_inputs import emit_vasp_inputs, poscar_structure, structure_sha256

    s = fe2o3_like()
    manifest = tmp_path / "manifest.csv"
    emit_vasp_inputs([("s42", s)], tmp_path / "vasp", manifest, 0.0)
    row = pd.read_csv(manifest, dtype=str).iloc[0].to_dict()
    folder = tmp_path / "vasp" / row["folder"]
    written = poscar_structure(folder)
    assert row["composition"] == "Fe2 O3" and int(row["nsites"]) == 5
    assert row["structure_sha256"] == structure_sha256(written)
    row["nsites"] = int(row["nsites"])
    # the job's own outputs: read as before
    (folder / "vasprun.xml").write_text(vasprun_xml([written, written], [-31.0, -31.2], [4, 4], ldau={"Fe": 5.3}))
    rec, entry = read_job(folder, expect=row, running_minutes=30.0)
    assert rec["status"] == "converged" and entry is not None
    # a real compound's outputs copied in (NaCl, 8 atoms): foreign, no energy, no entry
    nacl = _rocksalt_8()
    (folder / "vasprun.xml").write_text(vasprun_xml([nacl, nacl], [-27.0, -27.2], [4, 4]))
    rec, entry = read_job(folder, expect=row, running_minutes=30.0)
    assert rec["status"] == "foreign" and entry is None and "energy" not in rec
    assert "8 atoms, the sample has 5" in rec["reason"] and "composition Na4 Cl4" in rec["reason"]
    # the same composition, but the run started elsewhere (positions moved): foreign too
    moved = written.copy()
    moved.translate_sites([0], [0.1, 0.0, 0.0])
    (folder / "vasprun.xml").write_text(vasprun_xml([moved, moved], [-31.0, -31.2], [4, 4], ldau={"Fe": 5.3}))
    rec, _ = read_job(folder, expect=row, running_minutes=30.0)
    assert rec["status"] == "foreign" and "did not start from the POSCAR" in rec["reason"]
    # a POSCAR swapped together with its outputs: the hash says it is not the emitted one
    from pymatgen.io.vasp.inputs import Poscar

    Poscar(moved).write_file(folder / "POSCAR")
    rec, _ = read_job(folder, expect=row, running_minutes=30.0)
    assert rec["status"] == "foreign" and "POSCAR is not the one emitted" in rec["reason"]
    # the table and the metrics row: no energy, no E_hull, in no rate
    jobs = [{"id": "s42", "rec": rec, "entry": None, "structure": None}]
    df = dft_stability_table(jobs, pd.DataFrame({"id": ["s42"], "e_hull": [0.05]}), {}, {}, None, [])
    assert df.loc[0, "status"] == "foreign" and np.isnan(df.loc[0, "e_hull_dft"])
    summary = dft_summary(df, 0.1)
    assert summary["dft_foreign"] == 1 and summary["n_dft_evaluated"] == 0
    assert np.isnan(summary["dft_convergence_pct"]) and np.isnan(summary["dft_stable_pct"])


def test_outcar_fallback_checks_the_contcar_composition(tmp_path):
    from pymatgen.io.vasp.inputs import Poscar

    from crystalflow_core.materials.dft_inputs import emit_vasp_inputs

    emit_vasp_inputs([("a", fe2o3_like())], tmp_path / "vasp", tmp_path / "m.csv", 0.0)
    row = pd.read_csv(tmp_path / "m.csv", dtype={"composition": str}).iloc[0].to_dict()
    folder = tmp_path / "vasp" / row["folder"]
    (folder / "OUTCAR").write_text(" vasp.6.3.2\n   NIONS =       8\n" + OUTCAR_TAIL)
    Poscar(_rocksalt_8()).write_file(folder / "CONTCAR")  # another job's final structure
    rec, entry = read_job(folder, expect=row, running_minutes=30.0)
    assert rec["status"] == "foreign" and entry is None and "8 atoms, the sample has 5" in rec["reason"]


def test_re_emitting_another_structure_moves_old_outputs_aside(tmp_path, caplog):
    import logging

    from crystalflow_core.materials.dft_inputs import emit_vasp_inputs

    out, manifest = tmp_path / "vasp", tmp_path / "m.csv"
    emit_vasp_inputs([("s0", fe2o3_like())], out, manifest, 0.0)
    folder = out / pd.read_csv(manifest).loc[0, "folder"]
    (folder / "vasprun.xml").write_text("<modeling>old run</modeling>")
    (folder / "OUTCAR").write_text("old")
    emit_vasp_inputs([("s0", fe2o3_like())], out, manifest, 0.0)  # the same structure again: outputs stay
    assert (folder / "vasprun.xml").exists() and not list(folder.glob("replaced-*"))
    other = fe2o3_like()
    other.translate_sites([2], [0.05, 0.0, 0.0])  # a new sampling's s0
    with caplog.at_level(logging.WARNING):
        emit_vasp_inputs([("s0", other)], out, manifest, 0.0)
    assert not (folder / "vasprun.xml").exists() and not (folder / "OUTCAR").exists()
    assert (folder / "replaced-1" / "vasprun.xml").read_text() == "<modeling>old run</modeling>"
    assert (folder / "replaced-1" / "POSCAR").exists() and (folder / "POSCAR").exists()
    assert "moved them to" in caplog.text and "replaced-1" in caplog.text
