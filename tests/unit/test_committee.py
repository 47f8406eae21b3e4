"""A second potential: SevenNet-0 relaxes as CHGNet does (the relaxer chosen by `relax.model`), a committee
gives every E_hull and every prediction rank a second opinion, and records of two potentials never mix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import need_data
from pymatgen.core import Lattice, Structure

from crystalflow_core import config as cfgmod
from crystalflow_core.errors import ConfigError, StageError
from crystalflow_core.evaluation.committee import committee_columns, committee_summary
from crystalflow_core.evaluation.stability import stability_table
from crystalflow_core.materials.calculators import load_potential, potential_fields
from crystalflow_core.materials.hull import LocalHull, load_elemental_refs
from crystalflow_core.materials.potentials import POTENTIALS
from crystalflow_core.materials.prediction.ranking import committee_ranks
from crystalflow_core.materials.relax import RelaxSettings, calculation_key, relax_structure

pytest.importorskip("sevenn", reason="sevenn not installed (pip install -e '.[sevenn]')")


def _prim(sg, a, species, coords):
    return Structure.from_spacegroup(sg, Lattice.cubic(a), species, coords).get_primitive_structure()


@pytest.fixture(scope="module")
def calcs():
    return {name: load_potential(name)[1] for name in ("chgnet", "sevennet")}


@pytest.fixture(scope="module")
def hull_and_refs():
    from conftest import DATA

    h = cfgmod.defaults("hull")
    need_data(*h["local_sources"], h["elemental_refs"])
    return LocalHull.from_csvs([DATA / p for p in h["local_sources"]]), load_elemental_refs(DATA / h["elemental_refs"])


@pytest.mark.parametrize("name", ["chgnet", "sevennet"])
def test_known_ground_states_win_under_both_potentials(name, calcs):
    """Rock salt below CsCl-type NaCl, diamond below beta-tin Si, each relaxed by the potential, with its
    name, version and energy scale in every record."""
    settings = RelaxSettings.from_section(cfgmod.defaults("relax"), fmax=0.02, steps=300, model=name)
    pairs = {
        "NaCl": (
            _prim("Fm-3m", 5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            _prim("Pm-3m", 3.40, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        ),
        "Si": (
            _prim("Fd-3m", 5.43, ["Si"], [[0, 0, 0]]),
            Structure.from_spacegroup("I4_1/amd", Lattice.tetragonal(4.8, 2.65), ["Si"], [[0, 0, 0]]),
        ),
    }
    for formula, (ground, other) in pairs.items():
        r0, r1 = (relax_structure(s, settings, calc=calcs[name]) for s in (ground, other))
        assert r0["potential"] == name and r1["energy_scale"] == POTENTIALS[name].energy_scale
        assert r0["potential_version"] and r0["potential_model"] == POTENTIALS[name].model
        assert r0["converged"] and r1["converged"], (r0["error"], r1["error"])
        assert r0["energy_per_atom"] < r1["energy_per_atom"], f"{formula} under {name}"


def _record(sid, s, e, name):
    final = {
        "lattice": s.lattice.matrix.tolist(),
        "species": [x.specie.symbol for x in s],
        "frac_coords": s.frac_coords.tolist(),
    }
    return {
        "id": sid,
        "converged": True,
        "error": "",
        "steps": 1,
        "energy_per_atom": e,
        "final": final,
        **potential_fields(POTENTIALS[name]),
    }


def test_records_of_two_potentials_are_refused_in_one_table(hull_and_refs):
    hull, refs = hull_and_refs
    nacl = _prim("Fm-3m", 5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    recs = [_record("a", nacl, -3.666, "chgnet"), _record("b", nacl, -3.383, "sevennet")]
    with pytest.raises(StageError, match=r"mix potentials \(chgnet: 1, sevennet: 1\)"):
        stability_table({}, recs, refs, hull, novelty=[])
    st = stability_table({}, recs[1:], refs, hull, novelty=[])
    assert st["potential"].tolist() == ["sevennet"] and abs(st["e_hull"].iloc[0]) < 0.05


def test_committee_writes_both_columns_and_flags_a_planted_disagreement(calcs, hull_and_refs):
    """Six MP-20 crystals: CHGNet energies as the first opinion, SevenNet-0 statics as the second (each on
    its own scale): E_hull under both near 0 and close; one planted 0.3 eV/atom hole in the first potential
    is flagged, and the agreed rates count it out."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from crystalflow_core.materials.second_opinion import second_opinion

    hull, refs = hull_and_refs
    (path,) = need_data("mp_20/test.csv.gz")
    rows = pd.read_csv(path).sample(6, random_state=3)
    structures = [Structure.from_str(c, fmt="cif") for c in rows["cif"]]
    recs = []
    for i, s in enumerate(structures):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.calc = calcs["chgnet"]
        e = float(atoms.get_potential_energy()) / len(s) - (0.3 if i == 0 else 0.0)  # planted: a hole
        recs.append(_record(f"x{i}", s, e, "chgnet"))
    st = stability_table({}, recs, refs, hull, novelty=[])
    section = {**cfgmod.defaults("relax"), "committee": ["chgnet", "sevennet"]}
    second = second_opinion([(f"x{i}", s, 0.0) for i, s in enumerate(structures)], section, "sevennet", workers=1)
    assert {r["potential"] for r in second.values()} == {"sevennet"}
    out = committee_columns(st, "sevennet", second, refs, hull, threshold=0.05)
    empty = committee_columns(st, "sevennet", {}, refs, hull, threshold=0.05)  # nothing the second could take
    assert empty["e_hull_sevennet"].isna().all() and empty["committee_disagrees"].all()
    assert np.isfinite(out["e_hull_sevennet"]).all()
    assert (out["e_hull_sevennet"].abs() < 0.1).mean() >= 5 / 6  # known near-stable crystals, on its scale
    assert out.loc[0, "committee_disagrees"] and out.loc[0, "e_hull_spread"] > 0.2
    assert out.loc[0, "e_hull_agreed"] == pytest.approx(out.loc[0, "e_hull_sevennet"])  # the less stable
    row = committee_summary(out.assign(unique=True, new=True), "sevennet", 0.1)
    assert row["committee"] == "chgnet+sevennet" and row["n_committee_disagree"] >= 1
    assert committee_summary(out.assign(unique=True, new=True), None, 0.1) == {}  # no committee in the config
    assert row["stable_agreed_pct"] <= min(row["stable_sevennet_pct"], 100 * (st["e_hull"] <= 0).mean())


def test_prediction_ranks_are_re_ranked_and_flagged():
    """Two polymorphs whose order the second potential swaps: both flagged as changed, and as disagreeing
    when the delta-H differ by more than the threshold."""
    ranked = pd.DataFrame(
        {
            "group": ["X_p0", "X_p0", "X_p0"],
            "rank": [1, 2, 3],
            "best_id": ["a", "b", "c"],
            "delta_h_mev": [0.0, 10.0, 200.0],
        }
    )
    second = {
        "a": {"potential": "sevennet", "enthalpy_per_atom": -5.00},
        "b": {"potential": "sevennet", "enthalpy_per_atom": -5.02},
        "c": {"potential": "sevennet", "enthalpy_per_atom": -4.79},
    }
    out = committee_ranks(ranked, "sevennet", second, top_n=3, threshold_ev=0.025)
    assert out["rank_sevennet"].tolist() == [2, 1, 3]
    assert out["committee_rank_changed"].tolist() == [True, True, False]
    assert out["delta_h_sevennet_mev"].round(3).tolist() == [20.0, 0.0, 230.0]
    # delta-H differ by 20, 10 and 30 meV/atom: only the last is beyond 25
    assert out["committee_disagrees"].tolist() == [False, False, True]
    assert out["enthalpy_sevennet_per_atom"].tolist() == [-5.00, -5.02, -4.79]


def test_committee_is_the_relaxer_and_one_other():
    run = {"dataset": "mp_20", "task": "dng", "train_split": "val", "val_split": None, "test_split": "val"}
    run["novelty_splits"] = ["val"]
    run["relax"] = {"model": "chgnet", "committee": ["sevennet", "chgnet"]}
    cfg = {"datasets": {"mp_20": {"splits": {"val": {"file": "mp_20/val.csv.gz"}}}}, "runs": {"r": run}}
    with pytest.raises(ConfigError, match=r"runs/r/relax/committee.*give \[chgnet, the other potential\]"):
        cfgmod.validate(cfg, mirror_check=False)
    run["relax"]["committee"] = ["chgnet", "sevennet"]
    assert cfgmod.validate(cfg, mirror_check=False)["runs"]["r"]["relax"]["committee"] == ["chgnet", "sevennet"]


def test_second_opinions_are_kept_and_a_rerun_judges_only_what_changed(tmp_path, monkeypatch):
    """An interrupted committee stage resumes: each opinion is kept in the cache under its structure's key; a
    rerun computes none again, a changed structure (strained 2 %) once more, and a torn last line is dropped."""
    from crystalflow_core.materials import second_opinion as so

    computed = []

    def counting_pool(worker, settings, chunks, *args, **kwargs):
        computed.extend(sid for chunk in chunks for sid, _, _ in chunk)
        return pool(worker, settings, chunks, *args, **kwargs)

    pool = so.potential_pool
    monkeypatch.setattr(so, "potential_pool", counting_pool)
    section = {**cfgmod.defaults("relax"), "committee": ["sevennet", "chgnet"]}
    nacl = _prim("Fm-3m", 5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = _prim("Pm-3m", 4.12, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cache = tmp_path / "second_opinion.jsonl"
    first = so.second_opinion([("a", nacl, 0.0), ("b", cscl, 0.0)], section, "chgnet", 1, cache)
    static = [potential_fields(POTENTIALS["chgnet"]), "static"]  # how it judged: the potential's static energy
    assert computed == [f"a@{calculation_key(nacl, 0.0, static)}", f"b@{calculation_key(cscl, 0.0, static)}"]
    assert set(first) == {"a", "b"} and first["a"]["structure"] is nacl and first["a"]["potential"] == "chgnet"
    with open(cache, "a") as fh:
        fh.write('{"id": "c@0123", "energy_per')  # a stage killed mid-write
    computed.clear()
    again = so.second_opinion([("a", nacl, 0.0), ("b", cscl, 0.0)], section, "chgnet", 1, cache)
    assert computed == [] and {k: r["energy_per_atom"] for k, r in again.items()} == {
        k: r["energy_per_atom"] for k, r in first.items()
    }
    strained = cscl.copy()
    strained.scale_lattice(cscl.volume * 1.02**3)
    changed = so.second_opinion([("a", nacl, 0.0), ("b", strained, 0.0)], section, "chgnet", 1, cache)
    assert [c.split("@")[0] for c in computed] == ["b"]
    assert changed["a"]["energy_per_atom"] == first["a"]["energy_per_atom"]
    assert changed["b"]["energy_per_atom"] != pytest.approx(first["b"]["energy_per_atom"], abs=1e-4)
    assert len(so.read_jsonl(cache)) == 3  # a, b, and b strained
