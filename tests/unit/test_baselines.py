"""A DNG run's baselines (materials/baselines.py): random structures of training compositions and random
charge-balanced substitutions into training crystals, as many as the model's samples, through the same stages."""

import pandas as pd
import pytest
from conftest import rejected_of
from pymatgen.core import Composition, Lattice, Structure

from crystalflow_core.config import ConfigError, defaults, validate
from crystalflow_core.jobs import shard_of
from crystalflow_core.materials.baselines import baseline_items, baseline_records
from crystalflow_core.points import POINT_PATTERN, metric_points, parse_point, sampling_points


def _rocksalt(a, b, lat):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _training():
    structs = [
        _rocksalt("Na", "Cl", 5.69).get_primitive_structure(),
        _rocksalt("Mg", "O", 4.21).get_primitive_structure(),
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.46), ["Ca", "F"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        _rocksalt("K", "Br", 6.6).get_primitive_structure(),
    ]
    return structs, ["nacl", "mgo", "caf2", "kbr"]


def _symbols(label: str) -> dict:
    return dict(pair.split("->") for pair in label.split(", "))


def test_prototype_baseline_substitutes_ions_of_the_same_charge_into_a_training_crystal():
    structs, ids = _training()
    by_id = dict(zip(ids, structs))
    recs = baseline_records("prototype", baseline_items(12, 3), structs, ids)
    assert [r["id"] for r in recs] == [f"s{i}" for i in range(12)]
    elements = {str(el) for s in structs for el in s.composition.elements}
    charge = {"Na": 1, "K": 1, "Cl": -1, "Br": -1, "Mg": 2, "Ca": 2, "O": -2, "F": -1}  # these crystals' ions
    for r in recs:
        assert r["flag"] == "" and r["generator"] == "prototype"
        proto = by_id[r["prototype"]]
        new = Structure(r["lattice"], r["species"], r["frac_coords"])
        swaps = _symbols(r["substitution"])
        assert swaps and all(o != n for o, n in swaps.items())  # at least one element changed
        for old, el in swaps.items():
            assert el in elements and charge[el] == charge[old]  # an ion of the same charge from the split
        # site by site: the prototype's sites with the swaps applied; no two elements merged
        assert [swaps.get(str(s.specie), str(s.specie)) for s in proto] == [str(s.specie) for s in new]
        assert len(new.composition.elements) == len(proto.composition.elements)
        assert Composition(new.composition).oxi_state_guesses()  # charge-balanced
        assert new.volume > 0 and r["num_atoms"] == len(proto)


def test_random_baseline_places_a_training_crystals_content_and_each_sample_is_its_own_draw():
    structs, ids = _training()
    by_id = dict(zip(ids, structs))
    items = baseline_items(6, 0)
    recs = baseline_records("random", items, structs, ids)
    for r in recs:
        s = Structure(r["lattice"], r["species"], r["frac_coords"])
        assert s.composition == by_id[r["composition_of"]].composition
        assert 1 <= r["spacegroup_generated"] <= 230
        assert min(s.distance_matrix[i, j] for i in range(len(s)) for j in range(len(s)) if i != j) > 0.5 or len(s) == 1
    # sample i depends on (seed, i) only: two shards make the same records as one job
    halves = [baseline_records("random", shard_of(items, k, 2), structs, ids) for k in range(2)]
    assert sorted((r["id"], r["lattice"]) for h in halves for r in h) == sorted((r["id"], r["lattice"]) for r in recs)
    other = baseline_records("random", baseline_items(6, 1), structs, ids)
    assert [r["lattice"] for r in other] != [r["lattice"] for r in recs]  # another seed, other draws
    with pytest.raises(ValueError, match="no crystals"):
        baseline_records("random", items, [], [])


def _config(**run):
    base = {"dataset": "d", "task": "dng", "train_split": "val", "novelty_splits": ["val"], **run}
    splits = {"val": {"file": "v.csv"}, "test": {"file": "t.csv"}}
    return {"datasets": {"d": {"splits": splits, "conditions": ["formation_energy_per_atom"]}}, "runs": {"r": base}}


@pytest.mark.parametrize(
    "run, words",
    [
        ({"task": "csp", "baselines": ["random"]}, r"unconditional DNG run \(this run is csp\)"),
        (
            {
                "conditions": ["formation_energy_per_atom"],
                "sample": {"condition_values": [-1]},
                "baselines": ["prototype"],
            },
            "this run is conditional dng",
        ),
        ({"baselines": ["random"], "relax": {"enabled": False}}, "relax.enabled"),
        ({"baselines": ["airss"]}, "airss"),
    ],
)
def test_baselines_a_run_cannot_have_are_one_line(run, words):
    with pytest.raises(ConfigError, match=words):
        validate(_config(**run), mirror_check=False)


def test_baselines_are_points_of_their_own_beside_the_models():
    run = validate(_config(baselines=["random", "prototype"]), mirror_check=False)["runs"]["r"]
    assert sampling_points(run) == ["100"]  # what the model samples (and DFT, transport follow)
    assert metric_points(run) == ["100", "random", "prototype"]  # what gets a metric row
    assert parse_point("random") == (None, 0) and parse_point("heun_10") == ("heun", 10)
    import re

    point = re.compile(rf"^(?:{POINT_PATTERN})$")
    assert all(point.match(p) for p in ("100", "heun_10", "random", "prototype"))
    assert not any(point.match(p) for p in ("randomx", "heun_", "prototype_10", "rk5_3"))


def test_table_3_names_a_baseline_row():
    from crystalflow_core.evaluation.paper_tables import dng_table

    row = {"run": "r", "method": "prototype", "steps": 0, "n_samples": 40, "nfe": float("nan")}
    model = {**row, "method": "euler", "steps": 10, "nfe": 10}
    text = dng_table(pd.DataFrame([model, row]))
    assert "| r | euler S=10 (NFE 10" in text and "| r | prototype baseline | 40 |" in text


def test_the_baseline_stage_draws_from_the_training_split_and_a_rerun_keeps_it(tmp_path):
    from crystalflow_core.crystals.data import PrepareSettings, prepare_split
    from crystalflow_core.io import read_jsonl
    from crystalflow_core.stages import baseline_sample

    structs, ids = _training()
    pd.DataFrame([{"material_id": i, "cif": s.to(fmt="cif")} for i, s in zip(ids, structs)]).to_csv(
        tmp_path / "train.csv", index=False
    )
    settings = PrepareSettings.from_dataset({**defaults("dataset"), "splits": {}}, 1)
    prepare_split(tmp_path / "train.csv", tmp_path / "train.pt", rejected_of(tmp_path / "train.pt"), settings)
    run = validate(_config(baselines=["prototype"], sample={"num_samples": 5}), mirror_check=False)["runs"]["r"]
    out = tmp_path / "s0.jsonl"
    baseline_sample(run, str(tmp_path / "train.pt"), "prototype", 0, 1, str(out))
    recs = read_jsonl(out)
    assert len(recs) == 5 and {r["method"] for r in recs} == {"prototype"}
    assert {r["prototype"] for r in recs} <= set(ids)
    stamp = out.stat().st_mtime_ns
    baseline_sample(run, str(tmp_path / "train.pt"), "prototype", 0, 1, str(out))
    assert out.stat().st_mtime_ns == stamp  # the same split and settings: kept
    run["sample"]["seed"] = 1
    baseline_sample(run, str(tmp_path / "train.pt"), "prototype", 0, 1, str(out))
    assert out.stat().st_mtime_ns != stamp and [r["id"] for r in read_jsonl(out)] == [f"s{i}" for i in range(5)]
