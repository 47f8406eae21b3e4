"""The symmetry-aware model (model.symmetry: anchor): Wyckoff strings, the crystal-family projection of k, the
anchor construction, and samples that keep the space group they were given."""

import math

import numpy as np
import pytest
import torch
from conftest import DATA, module_settings, need_data

from crystalflow_core.config import defaults
from crystalflow_core.crystals.lattice import lattice_to_k
from crystalflow_core.crystals.wyckoff import (
    WyckoffError,
    k_mask_bias,
    parse_wyckoff,
    space_group,
    symmetric_coords,
    symmetry_info,
)

# one or two groups of every crystal family: triclinic, monoclinic, orthorhombic, tetragonal, trigonal,
# hexagonal, cubic
ACROSS_FAMILIES = [
    "2_Cu2x2i_O2x2i",
    "12_Ga2x4i_O3x4i",
    "14_Sn1x4e_S1x4e",
    "62_Fe1x4c_B1x4c",
    "61_Ag1x8c_N1x8c_O3x8c",
    "139_Ti1x2a_Al1x2b_Al1x4d",
    "166_Bi1x6c",
    "186_Zn1x2b_O1x2b",
    "194_Mg1x2c",
    "225_Na1x4a_Cl1x4b",
    "227_Si1x8a",
    "221_Cs1x1a_Cl1x1b",
]


def keeps_group(lattice, species, frac, spacegroup: int, tol: float = 1e-4) -> bool:
    """Every operation of the group's general position maps the crystal onto itself (same species, positions
    equal modulo 1): it has this space group or a supergroup, in the setting it was sampled in."""
    frac = np.asarray(frac, float)
    species = np.asarray(species)
    for op in space_group(spacegroup)[0].ops:
        img = frac @ op.rotation_matrix.T + op.translation_vector
        d = img[:, None, :] - frac[None, :, :]
        d = np.abs(d - np.round(d)).max(-1)
        same = species[:, None] == species[None, :]
        if not np.all(np.min(np.where(same, d, 1.0), axis=1) < tol):
            return False
    return True


# ----------------------------------------------------------------------------- Wyckoff strings
@pytest.mark.parametrize(
    "text,formula,words",
    [
        ("NaCl", None, "expected SPG_"),
        ("225_Na1x4a_Cl", None, "'Cl' is not El{count}"),
        ("231_Na1x4a", None, "not in 1..230"),
        ("225_Xx1x4a", None, "'Xx' is not an element"),
        ("225_Na1x4z", None, "no Wyckoff letter 'z'"),
        ("225_Na1x8a", None, "multiplicity 4"),
        ("225_Na1x4a_Cl1x4a", None, "holds one orbit only"),
        ("225_Na2x4a", None, "holds one orbit only"),
        ("225_Na1x4a_Cl1x4b", "NaCl2", "not NaCl2"),
    ],
)
def test_the_parser_refuses_what_cannot_be_a_crystal_in_one_line(text, formula, words):
    with pytest.raises(WyckoffError) as e:
        parse_wyckoff(text, formula)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_wyckoff_string_reads_back_and_stands_for_its_atoms():
    ws = parse_wyckoff("39_Li1x4a_Li1x4b_Li6x4c_Li7x8d")
    assert str(ws) == "39_Li1x4a_Li1x4b_Li6x4c_Li7x8d" and ws.spacegroup == 39
    assert ws.num_atoms == 4 + 4 + 6 * 4 + 7 * 8 == 88
    zs, ops, anchors = parse_wyckoff("225_Na1x4a_Cl1x4b", "NaCl").atoms()
    assert zs == [11] * 4 + [17] * 4 and ops.shape == (8, 4, 4)
    assert anchors.tolist() == [0, 0, 0, 0, 4, 4, 4, 4]  # each orbit anchored at its first atom


# ----------------------------------------------------------------------------- the lattice
def test_k_projection_by_hand():
    cubic = lattice_to_k(np.eye(3) * 5.0)
    assert np.allclose(cubic[:5], 0) and cubic[5] == pytest.approx(math.log(5.0))
    a, c = 3.0, 5.0
    hexagonal = np.array([[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, c]])
    k = lattice_to_k(hexagonal)
    assert k[0] == pytest.approx(-math.log(3) / 4) and np.allclose(k[[1, 2, 3]], 0, atol=1e-12)
    for spg, free in [(1, 6), (2, 6), (14, 4), (62, 3), (139, 2), (166, 2), (194, 2), (225, 1)]:
        mask, bias = k_mask_bias(spg)
        assert mask.sum() == free
    mask, bias = k_mask_bias(194)
    assert mask.tolist() == [0, 0, 0, 0, 1, 1] and bias[0] == pytest.approx(-math.log(3) / 4)
    assert np.allclose(k * mask + bias, k)  # a hexagonal cell is its own projection
    mask, _ = k_mask_bias(12)
    assert mask.tolist() == [0, 1, 0, 1, 1, 1]  # b unique: a.c free


# ----------------------------------------------------------------------------- crystals
def _known():
    from pymatgen.core import Lattice, Structure

    return [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]),
        Structure.from_spacegroup(
            "P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]
        ),
        Structure.from_spacegroup(
            "P2_1/c",
            Lattice.monoclinic(4.1, 5.3, 6.2, 97.0),
            ["Sn", "S"],
            [[0.12, 0.21, 0.33], [0.61, 0.43, 0.17]],
        ),
        Structure(Lattice.from_parameters(4, 5, 6, 80, 85, 95), ["Cu", "O"], [[0.1, 0.2, 0.3], [0.6, 0.1, 0.7]]),
    ]


def _symmetric_form_is_exact(s) -> None:
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from crystalflow_core.crystals.lattice import k_to_lattice

    info = symmetry_info(s)
    assert info["spacegroup"] == SpacegroupAnalyzer(s, symprec=0.01).get_space_group_number()
    mask, bias = k_mask_bias(info["spacegroup"])
    k = lattice_to_k(info["lattice"])
    assert np.allclose(k * mask + bias, k, atol=1e-6)  # the conventional cell lies on its family's lattices
    f = symmetric_coords(info["frac_coords"], info["ops"], info["anchors"])
    d = f - info["frac_coords"]
    assert np.abs(d - np.round(d)).max() < 1e-6  # the anchor construction maps the crystal onto itself
    projected = Structure(Lattice(k_to_lattice(k * mask + bias)), info["atom_types"].tolist(), f)
    assert SpacegroupAnalyzer(projected, symprec=0.01).get_space_group_number() == info["spacegroup"]
    ws = parse_wyckoff(info["wyckoff"], s.composition.reduced_formula)
    zs, ops, anchors = ws.atoms()
    assert zs == info["atom_types"].tolist() and np.allclose(ops, info["ops"])


def test_known_crystals_stay_exactly_symmetric_through_the_projection():
    for s in _known():
        _symmetric_form_is_exact(s)


def test_real_crystals_stay_exactly_symmetric_through_the_projection():
    import pandas as pd
    from pymatgen.core import Structure

    (val,) = need_data("mp_20/val.csv.gz")
    for cif in pd.read_csv(val, nrows=40)["cif"]:
        _symmetric_form_is_exact(Structure.from_str(cif, fmt="cif"))


# ----------------------------------------------------------------------------- the constraint
def _constraint(strings):
    from crystalflow_core.generative.sampling import wyckoff_item
    from crystalflow_core.generative.symmetry import batch_constraint

    items = [wyckoff_item({"id": str(i), "wyckoff": w}) for i, w in enumerate(strings)]
    return items, batch_constraint(items, "cpu")


def test_the_prior_the_velocities_and_a_step_keep_every_group():
    from crystalflow_core.crystals.crystal import atom_offsets

    items, c = _constraint(ACROSS_FAMILIES)
    n = sum(it["num_atoms"] for it in items)
    torch.manual_seed(0)
    f = c.prior_f(torch.rand(n, 3))
    v = c.f_velocity(torch.randn(n, 3))
    assert torch.allclose(c.f_velocity(v), v, atol=1e-5)  # a projection: symmetric stays symmetric
    f2 = c.step(f, f + 0.05 * torch.randn(n, 3))  # an arbitrary step, brought back onto the orbits
    offs = atom_offsets(np.array([it["num_atoms"] for it in items]))
    for i, it in enumerate(items):
        a, b = offs[i], offs[i + 1]
        for state in (f, f2):
            assert keeps_group(None, it["atom_types"], state[a:b].double().numpy(), it["spacegroup"], 1e-4), it[
                "wyckoff"
            ]
    k = c.k(torch.randn(len(items), 6))
    assert torch.all(k[:, :5][c.mask[:, :5] == 0] == c.bias[:, :5][c.mask[:, :5] == 0])


def _symmetric_sampler():
    from crystalflow_core.generative.training import CrystalFlowModule

    torch.manual_seed(0)
    m = CrystalFlowModule(
        model={
            **defaults("model"),
            **dict(hidden=16, layers=1, fourier=4, recip=2, time_dim=16, task="csp", conditions=[]),
            "symmetry": "anchor",
        },
        scalers={},
        atom_count_hist=[0, 1],
        **module_settings(),
    )
    return m.sampler()


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_every_sample_has_the_group_it_was_given_across_the_crystal_families(method):
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from crystalflow_core.generative.sampling import SampleSettings

    s = SampleSettings.from_section(defaults("sample"), "csp", 6, method=method, seed=3)
    recs = _symmetric_sampler().generate([{"id": w, "wyckoff": w} for w in ACROSS_FAMILIES], s, progress=False)
    for w, r in zip(ACROSS_FAMILIES, recs):
        spg = int(w.split("_")[0])
        assert r["spacegroup"] == spg and r["wyckoff"] == w and "ops" not in r
        assert keeps_group(r["lattice"], r["species"], r["frac_coords"], spg, 1e-4), w
        found = SpacegroupAnalyzer(
            Structure(Lattice(r["lattice"]), r["species"], r["frac_coords"]), symprec=0.01
        ).get_space_group_number()
        assert found == spg or space_group(found).order > space_group(spg).order, (w, found)


def test_a_symmetric_model_refuses_an_item_without_a_wyckoff_string():
    from crystalflow_core.generative.sampling import SampleSettings

    s = SampleSettings.from_section(defaults("sample"), "csp", 2)
    with pytest.raises(ValueError, match="samples from a Wyckoff string"):
        _symmetric_sampler().generate([{"id": "x", "num_atoms": 2, "atom_types": [11, 17]}], s, progress=False)


def test_the_symmetric_loss_reads_coordinates_in_the_anchor_frame():
    from crystalflow_core.generative.flow import FlowTargets, flow_loss

    items, c = _constraint(["225_Na1x4a_Cl1x4b", "221_Cs1x1a_Cl1x1b"])
    n = sum(it["num_atoms"] for it in items)
    u = torch.randn(n, 3)
    tgt = FlowTargets(torch.zeros(2), None, None, None, torch.zeros(2, 6), u, None)
    # atoms on fixed positions have no free coordinate: any predicted coordinate velocity costs nothing
    out = flow_loss((torch.zeros(2, 6), torch.randn(n, 3), None), tgt, (1.0, 1.0, 1.0), c)
    assert out["loss_f"].item() == pytest.approx(0.0, abs=1e-10)
    # a lattice velocity outside the family is masked before the loss: only k6 of a cubic cell counts
    vk = torch.zeros(2, 6)
    vk[:, 0] = 1.0
    assert flow_loss((vk, u, None), tgt, (1.0, 1.0, 1.0), c)["loss_k"].item() == pytest.approx(0.0)


# ----------------------------------------------------------------------------- data and settings
def test_prepare_caches_symmetric_forms_and_rejects_a_crystal_whose_symmetry_fails(tmp_path, monkeypatch, nacl):
    import pandas as pd
    from conftest import rejected_of

    import crystalflow_core.crystals.wyckoff as W
    from crystalflow_core.crystals.data import PrepareSettings, prepare_split

    rows = [{"material_id": f"m{i}", "cif": s.to(fmt="cif")} for i, s in enumerate([nacl, *_known()[1:3]])]
    csv = tmp_path / "s.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    ds = {**defaults("dataset"), "splits": {}, "symmetry": True}
    cache = prepare_split(csv, tmp_path / "s.pt", rejected_of(tmp_path / "s.pt"), PrepareSettings.from_dataset(ds, 1))
    sym = cache["symmetry"]
    assert sym["spacegroup"].tolist() == [225, 227, 186]
    assert sym["wyckoff"][0] in ("225_Na1x4a_Cl1x4b", "225_Cl1x4a_Na1x4b")
    assert sym["num_atoms"].tolist() == [8, 8, 4] and len(sym["ops"]) == 20 and sym["anchors"].max() < 8
    real = W.symmetry_info
    monkeypatch.setattr(
        W,
        "symmetry_info",
        lambda s, *a: (
            real(s)
            if "Na" not in s.composition
            else (_ for _ in ()).throw(ValueError("symmetry: pyxtal cannot read the refined structure (test)"))
        ),
    )
    cache = prepare_split(
        csv, tmp_path / "t.pt", rejected_of(tmp_path / "t.pt"), PrepareSettings.from_dataset(ds, 1), force=True
    )
    rejected = pd.read_csv(rejected_of(tmp_path / "t.pt"))
    assert cache["ids"] == ["m1", "m2"] and cache["symmetry"]["spacegroup"].tolist() == [227, 186]
    assert rejected["id"].tolist() == ["m0"] and rejected["reason"][0].startswith("symmetry: pyxtal cannot read")


@pytest.mark.parametrize(
    "change,words",
    [
        ({"task": "dng"}, "for CSP runs"),
        ({"train": {"recipe": "fast", "ot_pairing": True}}, "ot_pairing"),
        ({"dataset": "plain"}, "caches no symmetry"),
    ],
)
def test_settings_that_exclude_the_symmetric_model_are_refused(change, words):
    from crystalflow_core.config import ConfigError, validate

    splits = {"val": {"file": "x.csv"}, "test": {"file": "y.csv"}}
    run = {"dataset": "sym", "task": "csp", "train_split": "val", "val_split": None, "novelty_splits": ["val"]}
    run["model"] = {"symmetry": "anchor"}
    cfg = {
        "datasets": {"sym": {"symmetry": True, "splits": splits}, "plain": {"splits": splits}},
        "runs": {"r": {**run, **change}},
    }
    with pytest.raises(ConfigError, match=words):
        validate(cfg, mirror_check=False)


def test_prediction_jobs_ask_a_symmetric_model_for_space_groups_and_the_plain_one_for_none():
    from crystalflow_core.config import ConfigError, validate

    splits = {"val": {"file": "x.csv"}, "test": {"file": "y.csv"}}
    base = {"dataset": "d", "task": "csp", "train_split": "val", "val_split": None}
    cfg = {
        "datasets": {"d": {"symmetry": True, "splits": splits}},
        "runs": {"sym": {**base, "model": {"symmetry": "anchor"}}, "plain": dict(base)},
    }
    for job, words in [
        ({"run": "sym"}, "give spacegroups"),
        ({"run": "plain", "spacegroups": [225]}, "plain model"),
        ({"run": "sym", "spacegroups": ["225_NaCl"]}, "not a Wyckoff string"),
        ({"checkpoint": "m.ckpt", "symmetry": "auto"}, "templates from a run"),
    ]:
        with pytest.raises(ConfigError, match=words):
            validate({**cfg, "predict": {"j": {"formulas": ["NaCl"], **job}}}, mirror_check=False)
    ok = validate({**cfg, "predict": {"j": {"formulas": ["NaCl"], "run": "sym", "symmetry": "auto"}}}, False)
    assert ok["predict"]["j"]["spacegroups"] == []


# ----------------------------------------------------------------------------- assignments
def test_assignments_from_space_groups_templates_and_strings():
    from crystalflow_core.compositions import Search
    from crystalflow_core.materials.prediction.assignments import (
        group_assignments,
        relabelled,
        search_assignments,
        template_library,
        with_assignments,
    )

    assert sorted(group_assignments(225, {"Na": 1, "Cl": 1})) == ["225_Cl1x4a_Na1x4b", "225_Cl1x4b_Na1x4a"]
    assert sorted(group_assignments(227, {"Si": 2})) == ["227_Si1x8a", "227_Si1x8b"]
    assert group_assignments(227, {"Na": 1, "Cl": 1}) == []  # diamond's group has no 4-fold position
    # a KCl template serves NaCl, both ways round (equal counts swap); its own composition never enters
    assert sorted(relabelled(parse_wyckoff("225_K1x4a_Cl1x4b"), {"Na": 1, "Cl": 1})) == [
        "225_Cl1x4a_Na1x4b",
        "225_Na1x4a_Cl1x4b",
    ]
    assert relabelled(parse_wyckoff("225_K1x4a_Cl1x4b"), {"Na": 1, "Cl": 2}) == []
    lib = template_library(["225_K1x4a_Cl1x4b", "221_Cs1x1a_Cl1x1b", "225_K1x4a_Cl1x4b"], ["kcl", "cscl", "kcl2"])
    assert lib[((1, 1), 2)][0] == ("225_K1x4a_Cl1x4b", 2, "kcl")  # two training crystals: first
    t = Search("NaCl_z1_p0", "NaCl", 1, (11, 17), 0.0)
    found = search_assignments(t, {"spacegroups": [], "symmetry": "auto"}, lib)
    assert [w.split("_")[0] for w, _ in found] == ["225", "225", "221", "221"]
    assert found[0][1] == "template kcl (2 training crystals)"
    items = [{"id": f"NaCl_z1_p0#{c}", "search": t.key, "candidate": c} for c in range(5)]
    out = with_assignments(items, [t], {"spacegroups": ["221_Na1x1a_Cl1x1b"], "symmetry": "none"}, None, "j")
    assert {it["wyckoff"] for it in out} == {"221_Na1x1a_Cl1x1b"} and out[0]["assignment"] == "given"
    nothing = with_assignments(items[:1], [t], {"spacegroups": [230], "symmetry": "none"}, None, "j")
    assert nothing[0]["wyckoff"] == "1_Na1x1a_Cl1x1a" and nothing[0]["spacegroup_generated"] == 1


# ----------------------------------------------------------------------------- known answers
def test_rock_salt_and_diamond_from_their_wyckoff_strings_sampled_and_relaxed():
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure

    from crystalflow_core.generative.sampling import SampleSettings
    from crystalflow_core.materials.relax import RelaxSettings, relax_structure

    s = SampleSettings.from_section(defaults("sample"), "csp", 5, seed=1)
    wanted = {
        "225_Na1x4a_Cl1x4b": Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "227_Si1x8a": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]),
    }
    recs = _symmetric_sampler().generate([{"id": w, "wyckoff": w} for w in wanted], s, progress=False)
    settings = RelaxSettings.from_section({**defaults("relax"), "fmax": 0.05, "steps": 300, "timeout": 120})
    sm = StructureMatcher()
    for r, (w, known) in zip(recs, wanted.items()):
        sampled = Structure(Lattice(r["lattice"]), r["species"], r["frac_coords"])
        # an untrained network knows no volume: its cell is scaled 10 % above the known one; the positions and
        # the cell's shape are the constraint's alone
        sampled.scale_lattice(1.1 * known.volume / len(known) * len(sampled))
        rec = relax_structure(sampled, settings)
        final = Structure(Lattice(rec["final"]["lattice"]), rec["final"]["species"], rec["final"]["frac_coords"])
        assert sm.fit(final, known), (w, final)


def test_shared_test_split_has_wyckoff_strings_for_the_given_space_group_protocol():
    import pandas as pd
    from pymatgen.core import Structure

    need_data("mp_20/test.csv.gz")
    for cif in pd.read_csv(DATA / "mp_20/test.csv.gz", nrows=10)["cif"]:
        s = Structure.from_str(cif, fmt="cif")
        ws = parse_wyckoff(symmetry_info(s)["wyckoff"], s.composition.reduced_formula)
        assert ws.num_atoms % len(s.get_primitive_structure()) == 0
