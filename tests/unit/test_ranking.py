"""A ranking a scientist can trust (#48): polymorphs within the tie window of the best share rank 1 as the lead
group, and the whole lead group goes to the CIFs and DFT inputs whatever top_n says; refinement reorders and
merges; a committee ranks by the mean of its delta-H; rank.by refuses what the job does not compute."""

import pandas as pd
import pytest
import yaml
from conftest import REPO
from pymatgen.core import Lattice, Structure

from crystalflow_core import config as cfgmod
from crystalflow_core.compositions import job_searches
from crystalflow_core.materials.prediction.candidates import candidate_table
from crystalflow_core.materials.prediction.ranking import rank_polymorphs


def _job(**over):
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["predict"] = {"mine": {"run": "mp20_csp", "formulas": ["NaCl"], "z": [1], **over}}
    cfg = cfgmod.validate(cfg, mirror_check=False)
    return cfg, cfg["predict"]["mine"]


def _three_polymorphs():
    """Rock salt, caesium chloride and zinc blende NaCl (2 atoms each), with hand-set enthalpies 0, 3 and
    10 meV/atom apart."""
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    zincblende = Structure.from_spacegroup("F-43m", Lattice.cubic(6.1), ["Na", "Cl"], [[0, 0, 0], [0.25] * 3])
    cscl = Structure(Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    return {
        "NaCl_z1_p0#0": (zincblende.get_primitive_structure(), -2.990),
        "NaCl_z1_p0#1": (cscl, -2.997),
        "NaCl_z1_p0#2": (rocksalt.get_primitive_structure(), -3.000),
    }


def _table(job, cfg):
    smp, rel = [], []
    for sid, (s, h) in _three_polymorphs().items():
        lattice, coords = s.lattice.matrix.tolist(), s.frac_coords.tolist()
        species = [site.specie.Z for site in s]
        smp.append(
            {
                "id": sid,
                "search": "NaCl_z1_p0",
                "lattice": lattice,
                "species": species,
                "frac_coords": coords,
                "flag": "",
                "pressure_gpa": 0.0,
            }
        )
        final = {"lattice": lattice, "species": [site.specie.symbol for site in s], "frac_coords": coords}
        rel.append(
            {
                "id": sid,
                "final": final,
                "converged": True,
                "error": "",
                "steps": 5,
                "enthalpy_per_atom": h,
                "energy_per_atom": h,
            }
        )
    return candidate_table(job_searches(cfg, "mine", job), smp, rel, job["symprec"])


def test_polymorphs_within_the_tie_window_share_rank_one():
    cfg, job = _job()
    cands, finals = _table(job, cfg)
    expected = {
        5.0: ([1, 1, 3], [True, True, False]),
        2.9: ([1, 2, 3], [True, False, False]),
        0.0: ([1, 2, 3], [True, False, False]),
        10.0: ([1, 1, 1], [True, True, True]),
    }
    for tie, (ranks, lead) in expected.items():
        c, ranked = rank_polymorphs(cands, finals, job["dedupe"], False, tie)
        assert list(ranked["best_id"]) == ["NaCl_z1_p0#2", "NaCl_z1_p0#1", "NaCl_z1_p0#0"]
        assert list(ranked["rank"]) == ranks and list(ranked["lead"]) == lead, tie
        assert list(ranked["delta_h_mev"].round(3)) == [0.0, 3.0, 10.0]
        # the candidates' cluster numbers stay distinct: the enthalpy order
        assert dict(zip(c["id"], c["cluster"])) == {"NaCl_z1_p0#2": 1, "NaCl_z1_p0#1": 2, "NaCl_z1_p0#0": 3}
    assert job["rank"]["tie_mev"] == 5.0  # the default


def test_the_whole_lead_group_goes_to_dft_at_top_n_1(tmp_path):
    from crystalflow_core.stages.predict_dft import predict_dft

    cfg, job = _job(top_n=1)
    cands, finals = _table(job, cfg)
    _, ranked = rank_polymorphs(cands, finals, job["dedupe"], False, job["rank"]["tie_mev"])
    (tmp_path / "cif").mkdir()
    names = []
    for _, r in ranked.iterrows():
        names.append(f"{r['best_id'].replace('#', '_')}.cif")
        finals[r["best_id"]].to(filename=str(tmp_path / "cif" / names[-1]))
    ranked["cif"] = names
    ranked.to_csv(tmp_path / "ranked.csv", index=False)
    predict_dft(
        job,
        str(tmp_path / "ranked.csv"),
        str(tmp_path / "cif"),
        str(tmp_path / "vasp"),
        str(tmp_path / "vasp" / "manifest.csv"),
    )
    manifest = pd.read_csv(tmp_path / "vasp" / "manifest.csv")
    assert sorted(manifest["id"]) == ["NaCl_z1_p0#1", "NaCl_z1_p0#2"]  # rank 1 and 1; not the rank 3


def _relaxed(s, h):
    return {
        "final": {
            "lattice": s.lattice.matrix.tolist(),
            "species": [site.specie.symbol for site in s],
            "frac_coords": s.frac_coords.tolist(),
        },
        "converged": True,
        "error": "",
        "enthalpy_per_atom": h,
        "energy_per_atom": h,
    }


def test_refinement_reorders_merges_and_renumbers():
    """Refined enthalpies that put zinc blende first reorder the polymorphs (ranks, delta-H, lead group, the
    candidates' cluster numbers); a refined structure that now matches another merges with it."""
    from crystalflow_core.materials.prediction.refine import apply_refinement, refine_items

    cfg, job = _job()
    cands, finals = _table(job, cfg)
    cands, ranked = rank_polymorphs(cands, finals, job["dedupe"], False, 5.0)
    assert [i for i, *_ in refine_items(ranked, finals, 1)] == ["NaCl_z1_p0#2", "NaCl_z1_p0#1"]  # the lead group
    three = _three_polymorphs()
    refined = {sid: _relaxed(s, h) for sid, (s, h) in three.items()}
    refined["NaCl_z1_p0#0"]["enthalpy_per_atom"] = -3.020  # zinc blende now 20 meV below rock salt
    refined["NaCl_z1_p0#1"]["converged"] = False  # not converged: caesium chloride stays as it was
    c, r = apply_refinement(cands, ranked, dict(finals), refined, job)
    assert list(r["best_id"]) == ["NaCl_z1_p0#0", "NaCl_z1_p0#2", "NaCl_z1_p0#1"]
    assert list(r["rank"]) == [1, 2, 3] and list(r["lead"]) == [True, False, False]
    assert list(r["delta_h_mev"].round(3)) == [0.0, 20.0, 23.0]
    assert list(r["refined"]) == [True, True, False] and list(r["rank_before_refinement"]) == [3, 1, 1]
    assert dict(zip(c["id"], c["cluster"])) == {"NaCl_z1_p0#0": 1, "NaCl_z1_p0#2": 2, "NaCl_z1_p0#1": 3}
    # caesium chloride refined into rock salt's structure: one polymorph, found by both candidates
    rocksalt = three["NaCl_z1_p0#2"][0]
    refined = {"NaCl_z1_p0#2": _relaxed(rocksalt, -3.001), "NaCl_z1_p0#1": _relaxed(rocksalt, -3.0005)}
    c, r = apply_refinement(cands, ranked, dict(finals), refined, job)
    assert list(r["best_id"]) == ["NaCl_z1_p0#2", "NaCl_z1_p0#0"] and list(r["n_candidates"]) == [2, 1]
    assert list(r["rank"]) == [1, 2] and r.iloc[1]["delta_h_mev"] == pytest.approx(11.0)
    assert dict(zip(c["id"], c["cluster"])) == {"NaCl_z1_p0#0": 2, "NaCl_z1_p0#1": 1, "NaCl_z1_p0#2": 1}


def test_a_committee_ranks_by_the_mean_of_its_delta_h():
    """Hand-set delta-H of three polymorphs under the first potential (0, 10, 20 meV/atom) and the second
    (30, 0, 5): their means 15, 5, 12.5 put b first, c 7.5 above it (outside the 5 meV window), a last;
    by the second alone c ties with b."""
    from crystalflow_core.materials.prediction.ranking import order_by

    ranked = pd.DataFrame(
        {
            "group": ["X_p0"] * 3,
            "rank": [1, 2, 3],
            "lead": [True, False, False],
            "best_id": ["a", "b", "c"],
            "delta_h_mev": [0.0, 10.0, 20.0],
            "delta_h_sevennet_mev": [30.0, 0.0, 5.0],
        }
    )
    mean = order_by(ranked, "committee_mean", "sevennet", 5.0)
    assert list(mean["best_id"]) == ["b", "c", "a"] and list(mean["rank"]) == [1, 2, 3]
    assert list(mean["delta_h_ranked_mev"]) == [0.0, 7.5, 10.0] and list(mean["lead"]) == [True, False, False]
    assert list(mean["rank_first"]) == [2, 3, 1] and set(mean["rank_by"]) == {"committee_mean"}
    second = order_by(ranked, "sevennet", "sevennet", 5.0)
    assert list(second["best_id"]) == ["b", "c", "a"] and list(second["rank"]) == [1, 1, 3]
    # the first potential's order where the basis is the first (no committee)
    first = order_by(ranked, "first", None, 5.0)
    assert list(first["best_id"]) == ["a", "b", "c"] and list(first["rank"]) == [1, 2, 3]


def test_rank_by_resolves_and_refuses_what_the_job_does_not_compute():
    from crystalflow_core.materials.prediction.ranking import ranking_basis

    _, job = _job()
    assert ranking_basis(job) == "first" and job["rank"]["by"] == "auto"
    _, job = _job(relax={"committee": ["chgnet", "sevennet"]})
    assert ranking_basis(job) == "committee_mean"
    _, job = _job(relax={"committee": ["chgnet", "sevennet"]}, rank={"by": "sevennet"})
    assert ranking_basis(job) == "sevennet"
    _, job = _job(rank={"by": "chgnet"})
    assert ranking_basis(job) == "first"
    for by, needle in (
        ("sevennet", "rank/by': sevennet is not a potential of this job (it has chgnet)"),
        ("committee_mean", "rank/by': committee_mean needs relax.committee"),
    ):
        with pytest.raises(cfgmod.ConfigError) as err:
            _job(rank={"by": by})
        assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_lowest_known_polymorph_of_a_hand_made_formation_energy_table():
    from crystalflow_core.evaluation.csp_search import is_lowest, lowest_polymorphs

    train = pd.DataFrame({"formula": ["Zn1O1", "Na1Cl1"], "formation_energy_per_atom": [-1.80, float("nan")]})
    test = pd.DataFrame({"pretty_formula": ["ZnO", "ZnO", "NaCl"], "formation_energy_per_atom": [-1.70, -1.75, -2.1]})
    lowest = lowest_polymorphs([train, test])
    assert lowest == {"ZnO": -1.80, "NaCl": -2.1}  # the train split's ZnO is lower than both test ones
    assert not is_lowest("ZnO", -1.75, lowest) and is_lowest("Zn2O2", -1.80, lowest)
    assert is_lowest("NaCl", -2.1, lowest) and not is_lowest("KCl", -2.0, lowest)


def test_a_miss_is_classified_with_its_gap():
    """Rock salt, caesium chloride and zinc blende NaCl ranked 1, 1 (lead, 3 meV) and 3 (10 meV): each known
    structure's outcome; a matching candidate that was abandoned is 'not ranked'; one absent is not generated."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystalflow_core.evaluation.csp_search import classify

    cfg, job = _job()
    cands, finals = _table(job, cfg)
    cands, ranked = rank_polymorphs(cands, finals, job["dedupe"], False, 5.0)
    sm = StructureMatcher()  # pymatgen's defaults tell zinc blende from rock salt (the CSP metric's loose ones do not)
    three = {sid: s for sid, (s, _) in _three_polymorphs().items()}
    rocksalt, cscl, zincblende = three["NaCl_z1_p0#2"], three["NaCl_z1_p0#1"], three["NaCl_z1_p0#0"]
    assert classify(rocksalt, "NaCl_p0", cands, ranked, finals, sm)["outcome"] == "first"
    lead = classify(cscl, "NaCl_p0", cands, ranked, finals, sm)
    assert lead["outcome"] == "lead" and lead["rank"] == 1 and lead["gap_first_mev"] == pytest.approx(3.0)
    below = classify(zincblende, "NaCl_p0", cands, ranked, finals, sm)
    assert below["outcome"] == "below" and below["rank"] == 3 and below["gap_first_mev"] == pytest.approx(10.0)
    abandoned = cands.assign(status=["abandoned", "ranked", "ranked"])
    assert classify(zincblende, "NaCl_p0", abandoned, ranked, finals, sm)["outcome"] == "not ranked (abandoned)"
    gone = {k: v for k, v in finals.items() if k != "NaCl_z1_p0#0"}
    assert classify(zincblende, "NaCl_p0", cands, ranked, gone, sm)["outcome"] == "not generated"


def test_refinements_are_kept_so_a_rerank_refines_nothing_again(tmp_path, monkeypatch):
    """Refinements live in the job's refined.jsonl under a key of their start and settings: ranking again with
    another rank.by reuses them, a changed structure or refine_fmax refines again."""
    import crystalflow_core.stages.predict as P
    from crystalflow_core.io import append_jsonl, read_jsonl

    asked = []

    def relax_many(items, out, settings, workers=1, progress=True):  # stands in for CHGNet: -3.1 eV/atom each
        have = {r["id"] for r in read_jsonl(out)} if (tmp_path / "refined.jsonl").exists() else set()
        for sid, s, _ in items:
            if sid not in have:
                asked.append(sid)
                append_jsonl(out, {**_relaxed(s, -3.1), "id": sid, "fmax": settings.fmax})
        return read_jsonl(out)

    monkeypatch.setattr(P, "relax_many", relax_many)
    cfg, job = _job()
    cands, finals = _table(job, cfg)
    cands, ranked = rank_polymorphs(cands, finals, job["dedupe"], False, 5.0)
    cache = str(tmp_path / "refined.jsonl")
    _, r1 = P._refined(job, cands, ranked, finals, cache, 1)
    assert len(asked) == 3 and all("@" in a for a in asked) and r1["refined"].all()
    _, job_by = _job(rank={"by": "first", "disagree_mev": 20.0})
    P._refined(job_by, cands, ranked, finals, cache, 1)
    assert len(asked) == 3  # reordering settings: every refinement kept
    _, tighter = _job(rank={"refine_fmax": 0.01})
    P._refined(tighter, cands, ranked, finals, cache, 1)
    assert len(asked) == 6 and {r["fmax"] for r in read_jsonl(cache)} == {0.02, 0.01}
    moved = dict(finals)
    moved["NaCl_z1_p0#1"] = finals["NaCl_z1_p0#1"].copy()
    moved["NaCl_z1_p0#1"].translate_sites([0], [0.01, 0, 0])
    P._refined(job, cands, ranked, moved, cache, 1)
    assert len(asked) == 7 and asked[-1].startswith("NaCl_z1_p0#1@")  # only the polymorph whose start changed
