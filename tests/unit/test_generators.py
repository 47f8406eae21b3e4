"""The generators beside the model in a prediction: shares of the budget, random symmetric structures,
prototype substitution from the training split (never the composition's own structure)."""

import pandas as pd
import pytest
from conftest import rejected_of
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crystalflow_core.compositions import job_searches
from crystalflow_core.config import ConfigError, defaults, validate
from crystalflow_core.materials.prediction.generators import (
    generator_sequence,
    prototype_library,
    random_structure,
    substituted,
    substitutions,
)


def _rocksalt(a, b, lat):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cscl(a, b, lat):
    return Structure(Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_shares_by_hand_and_every_prefix_holds_them_as_nearly_as_it_can():
    seq = generator_sequence({"model": 0.5, "random": 0.25, "prototype": 0.25}, 8)
    assert seq == ["model", "random", "prototype", "model", "model", "random", "prototype", "model"]
    for n in range(1, 9):
        for g, share in (("model", 0.5), ("random", 0.25), ("prototype", 0.25)):
            assert abs(seq[:n].count(g) - share * n) < 1.0
    assert generator_sequence({"model": 1.0}, 3) == ["model"] * 3
    assert generator_sequence({"prototype": 1.0, "model": 0.0}, 2) == ["prototype"] * 2


def test_nacl_from_a_kcl_type_library_is_rock_salt_and_its_own_structure_is_never_looked_up():
    known = _rocksalt("Na", "Cl", 5.69).get_primitive_structure()
    lib_structs = [
        _rocksalt("K", "Cl", 6.29).get_primitive_structure(),
        _cscl("Cs", "Br", 4.29),
        known,  # NaCl itself is in the training split: it must not be the answer
    ]
    lib = prototype_library(lib_structs, ["kcl", "csbr", "nacl"])
    subs = substitutions({"Na": 1, "Cl": 1}, lib, limit=10)
    assert "nacl" not in {pid for _, pid, _ in subs}
    score, pid, mapping = subs[0]
    assert pid == "kcl" and mapping == {"K": "Na", "Cl": "Cl"}  # Na for K outranks Na for Cl, and CsBr's two swaps
    s = substituted(dict(zip(["kcl", "csbr", "nacl"], lib_structs))["kcl"], mapping)
    assert s.composition.reduced_formula == "NaCl"
    assert 0.7 < s.volume / known.volume < 1.3  # the volume follows the new elements (KCl's is 1.35x NaCl's)
    assert StructureMatcher().fit(s, known)
    assert substitutions({"Na": 1, "Cl": 2}, lib, limit=10) == []  # no AB2 prototype of 3 atoms


def test_random_structures_have_the_content_and_repeat_with_their_seed():
    types = [14, 14, 8, 8, 8, 8]
    s1, g1 = random_structure(types, 7)
    s2, g2 = random_structure(types, 7)
    assert s1.composition.reduced_formula == "SiO2" and len(s1) == 6 and 1 <= g1 <= 230
    assert g1 == g2 and s1 == s2


def _job_config(**job):
    splits = {"val": {"file": "x.csv"}, "test": {"file": "y.csv"}}
    return {
        "datasets": {"d": {"splits": splits}},
        "runs": {"r": {"dataset": "d", "task": "csp", "train_split": "val", "val_split": None}},
        "predict": {"j": {"formulas": ["NaCl"], **job}},
    }


@pytest.mark.parametrize(
    "job,words",
    [
        ({"run": "r", "generators": {"model": 0.5, "random": 0.2}}, "sum to 0.7, not 1"),
        ({"run": "r", "generators": {"model": 0.5, "airss": 0.5}}, "airss"),
        ({"checkpoint": "m.ckpt", "generators": {"prototype": 1.0}}, "give run:"),
    ],
)
def test_generator_settings_that_cannot_work_are_one_line_before_any_work(job, words):
    with pytest.raises(ConfigError, match=words) as e:
        validate(_job_config(**job), mirror_check=False)
    assert "\n" not in str(e.value)


def test_a_mixture_through_the_sample_stage_records_each_candidates_generator(tmp_path, monkeypatch):
    import crystalflow_core.stages.predict as P
    from crystalflow_core.crystals.data import PrepareSettings, prepare_split
    from crystalflow_core.io import read_jsonl
    from crystalflow_core.materials.prediction.candidates import candidate_record

    class Stub:  # stands in for the model: a CsCl-type cell for every candidate it is asked for
        task, conditions, atom_count_hist, symmetric = "csp", [], [0] * 9, False

        def generate(self, items, settings, shard=0, progress=False):
            self.asked = [it["id"] for it in items]
            return [candidate_record(it, _cscl("Na", "Cl", 3.3)) for it in items]

    rows = [
        {"material_id": "kcl", "cif": _rocksalt("K", "Cl", 6.29).get_primitive_structure().to(fmt="cif")},
        {"material_id": "nacl", "cif": _rocksalt("Na", "Cl", 5.69).get_primitive_structure().to(fmt="cif")},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    settings = PrepareSettings.from_dataset({**defaults("dataset"), "splits": {}}, 1)
    prepare_split(tmp_path / "train.csv", tmp_path / "train.pt", rejected_of(tmp_path / "train.pt"), settings)
    shares = {"model": 0.5, "random": 0.25, "prototype": 0.25}
    cfg = validate(_job_config(run="r", z=1, n_candidates=8, generators=shares, steps=2), mirror_check=False)
    job = cfg["predict"]["j"]
    stub = Stub()
    monkeypatch.setattr(P, "_job_sampler", lambda c, n, j, k, t: (stub, job_searches(c, n, j, largest=8), False))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"stands in for a model")
    out = tmp_path / "samples.jsonl"
    P.predict_sample(cfg, "j", job, str(ckpt), 0, 1, str(out), threads=1, training=str(tmp_path / "train.pt"))
    recs = {r["id"]: r for r in read_jsonl(out)}
    gens = [recs[f"NaCl_z1_p0#{c}"]["generator"] for c in range(8)]
    assert gens == generator_sequence(shares, 8) and len(stub.asked) == 4  # the model made its four only
    protos = [r for r in recs.values() if r["generator"] == "prototype"]
    # the best substitution first (Na for K), then the next (the swap); NaCl's own structure never
    assert [r["prototype"] for r in protos] == ["kcl", "kcl"]
    assert [r["substitution"] for r in protos] == ["K->Na", "Cl->Na, K->Cl"]
    assert all(r["spacegroup_generated"] == 225 for r in protos)
    randoms = [r for r in recs.values() if r["generator"] == "random"]
    assert len(randoms) == 2 and all(len(r["species"]) == 2 for r in randoms)
    assert len({r["provenance"] for r in recs.values()}) == 8
    # a rerun with the same settings makes nothing again
    stub.asked = []
    P.predict_sample(cfg, "j", job, str(ckpt), 0, 1, str(out), threads=1, training=str(tmp_path / "train.pt"))
    assert stub.asked == [] and {r["id"]: r for r in read_jsonl(out)} == recs


def test_the_report_counts_what_each_generator_made_and_found_and_advises_prototypes_to_a_model_alone():
    from crystalflow_core.evaluation.prediction_report import _generator_lines

    cands = pd.DataFrame(
        {
            "id": ["A#0", "A#1", "A#2", "B#0", "B#1"],
            "generator": ["model", "prototype", "random", "prototype", "model"],
            "status": ["ranked", "ranked", "not converged", "ranked", "abandoned"],
        }
    )
    # two compositions: A's best made by the prototype and found again by the model, B's by a prototype alone
    ranked = pd.DataFrame(
        {
            "group": ["A_p0", "A_p0", "B_p0"],
            "enthalpy_per_atom": [-5.0, -4.0, -3.0],
            "generator": ["prototype", "model", "prototype"],
            "found_by": ["prototype,model", "model", "prototype"],
        }
    )
    job = {"generators": {"model": 0.5, "random": 0.25, "prototype": 0.25}}
    rows = [line for line in _generator_lines(job, cands, ranked) if line.startswith("| ") and "---" not in line]
    assert rows[1:] == [
        "| model | 2 | 1 | 1 of 2 | 0 of 2 |",
        "| prototype | 2 | 2 | 2 of 2 | 2 of 2 |",
        "| random | 1 | 0 | 0 of 2 | 0 of 2 |",
    ]
    advice = " ".join(_generator_lines({"generators": {"model": 1.0}}, cands, ranked))
    assert "model alone" in advice and "`generators: {prototype: 1.0}`" in advice
