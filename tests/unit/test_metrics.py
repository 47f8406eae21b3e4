import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure
from scipy.spatial.transform import Rotation

from crystalflow_core.config import defaults
from crystalflow_core.evaluation import metrics as M
from crystalflow_core.evaluation import validity as V
from crystalflow_core.materials.hull import LocalHull

CSP_TOL = {"stol": 0.5, "ltol": 0.3, "angle_tol": 10.0}  # the CSP matcher tolerances (the schema's)


def _rotated_permuted_translated(s):
    rot = Rotation.from_euler("xyz", [20, 35, -50], degrees=True).as_matrix()
    lat = Lattice(s.lattice.matrix @ rot.T)
    order = np.random.default_rng(0).permutation(len(s))
    frac = (s.frac_coords[order] + np.array([0.13, 0.41, 0.77])) % 1.0
    return Structure(lat, [s[i].specie for i in order], frac)


def test_ground_truth_matches_itself_and_transformed_copies(nacl, silicon):
    gts = [nacl, silicon]
    table = M.csp_rms_table(gts, [[nacl], [silicon]], workers=1, protocol="crystalflow", **CSP_TOL)
    s = M.csp_summary(table, 1, stol=0.5)
    assert s["match_rate_pct"] == 100.0 and s["rmse_norm"] == pytest.approx(0.0, abs=1e-6)
    moved = [_rotated_permuted_translated(g) for g in gts]
    s2 = M.csp_summary(M.csp_rms_table(gts, [[m] for m in moved], workers=1, protocol="crystalflow", **CSP_TOL), 1, 0.5)
    assert s2["match_rate_pct"] == 100.0 and s2["rmse_norm"] < 1e-6


def test_other_polymorph_and_invalid_candidate_do_not_match(nacl):
    # CsCl-type NaCl is a different polymorph of the same composition
    cscl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    squashed = Structure(nacl.lattice, nacl.species, nacl.frac_coords * 0.02)  # atoms on top of each other
    table = M.csp_rms_table([nacl], [[cscl, squashed, None]], workers=1, protocol="crystalflow", **CSP_TOL)
    assert table == [[None, None, None]]
    s = M.csp_summary(table, 3, stol=0.5)
    assert s["match_rate_pct"] == 0.0 and s["rmse_all_norm"] == 0.5


def test_best_of_k_and_rmse_all_hand_computed():
    table = [[None, 0.2, 0.1], [0.3, None, None], [None, None, None], [None, None, 0.05]]
    s1 = M.csp_summary(table, 1, stol=0.5)
    assert s1["match_rate_pct"] == 25.0 and s1["rmse_norm"] == pytest.approx(0.3)
    assert s1["rmse_all_norm"] == pytest.approx((0.5 + 0.3 + 0.5 + 0.5) / 4)
    s3 = M.csp_summary(table, 3, stol=0.5)
    assert s3["match_rate_pct"] == 75.0 and s3["rmse_norm"] == pytest.approx((0.1 + 0.3 + 0.05) / 3)


def test_structural_validity(nacl):
    assert V.structure_valid(nacl, protocol="diffcsp")
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 A contact
    assert not V.structure_valid(close, protocol="diffcsp")
    assert not V.structure_valid(None, protocol="diffcsp")


def test_smact_validity():
    assert V.smact_valid(["Na", "Cl"], [1, 1], protocol="diffcsp")
    assert not V.smact_valid(["Na", "Cl"], [1, 2], protocol="diffcsp")
    assert V.smact_valid(["Fe", "O"], [2, 3], protocol="diffcsp")
    assert V.smact_valid(["Cu", "Zn"], [1, 1], protocol="diffcsp")  # all-metal alloy
    assert V.smact_valid(["C"], [8], protocol="diffcsp")
    assert (
        V.composition_valid(
            Structure(Lattice.cubic(5), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0.5, 0]]), "diffcsp"
        )
        is False
    )


def test_wasserstein_of_set_with_itself_is_zero(nacl, silicon):
    w = M.property_wdist([nacl, silicon], [nacl, silicon])
    assert w["wdist_density_g_cm3"] == 0.0 and w["wdist_num_elems"] == 0.0
    w2 = M.property_wdist([nacl], [silicon])
    assert w2["wdist_num_elems"] == 1.0
    assert w2["wdist_density_g_cm3"] == pytest.approx(abs(nacl.density - silicon.density))


def test_coverage_hand_made():
    ref_s = np.array([[0.0, 0.0], [1.0, 0.0]])
    ref_c = np.array([[0.0], [2.0]])
    gen_s = np.array([[0.1, 0.0], [5.0, 5.0]])
    gen_c = np.array([[0.0], [0.0]])
    cov = M.coverage(gen_s, gen_c, ref_s, ref_c, 0.4, 10.0, protocol="diffcsp")
    assert cov["cov_recall_pct"] == 50.0  # first reference covered, second has no structure within 0.4
    assert cov["cov_precision_pct"] == 50.0


def test_fingerprints_of_known_structures(nacl, silicon):
    sfp, cfp, ok = M.fingerprints([nacl, silicon], workers=1)
    assert ok.all() and sfp.shape[0] == 2 and cfp.shape == (2, 132)
    assert not np.allclose(sfp[0], sfp[1])


def test_e_hull_of_reference_entry_and_point_above():
    hull = LocalHull([("NaCl", -2.0), ("Na2Cl", -0.5), ("NaCl3", -0.9)])
    assert hull.e_above_hull(Composition("NaCl"), -2.0) == pytest.approx(0.0, abs=1e-9)
    assert hull.e_above_hull(Composition("NaCl"), -1.7) == pytest.approx(0.3)
    assert hull.e_above_hull(Composition("NaCl"), -2.2) == pytest.approx(-0.2)
    # Na2Cl: hull between Na (0) and NaCl (-2) at x_Cl = 1/3 -> -4/3; entry -0.5 is 0.8333 above
    assert hull.e_above_hull(Composition("Na2Cl"), -0.5) == pytest.approx(-0.5 + 4 / 3)
    with pytest.raises(KeyError, match="Xe"):
        hull.e_above_hull(Composition("XeF2"), -1.0)


def test_sun_counts_hand_made(nacl, silicon):
    cscl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    gen = [nacl, nacl.copy(), silicon, cscl]
    unique, new = M.unique_new_flags(gen, reference=[silicon])
    assert unique.tolist() == [True, False, True, True]
    assert new.tolist() == [True, True, False, True]
    e_hull = np.array([-0.01, 0.0, 0.05, np.nan])
    s = M.sun_summary(e_hull, unique, new, 4, defaults("metrics")["metastable_e_hull"])
    assert s["stable_pct"] == 50.0 and s["metastable_pct"] == 75.0
    assert s["sun_pct"] == 25.0 and s["msun_pct"] == 25.0
    tight = M.sun_summary(e_hull, unique, new, 4, 0.03)  # the schema's cut (0.1) set tighter: 0.05 no longer counts
    assert tight["metastable_pct"] == 50.0 and tight["msun_pct"] == 25.0 and tight["stable_pct"] == 50.0
    assert M.target_errors(np.array([0.0, -1.0]), np.array([0.5, -2.0])) == {
        "mae": 0.75,
        "rmse": pytest.approx(np.sqrt(0.625)),
        "n": 2,
    }


def test_smact_fast_search_equals_brute_force():
    """The cut-based search gives the reference answer (all oxidation-state combinations with
    smact's own neutrality and Pauling tests) on random compositions."""
    import itertools
    import math

    import smact
    from smact.screening import pauling_test

    def brute(symbols, counts):
        if len(set(symbols)) == 1 or all(s in smact.metals for s in symbols):
            return True
        g = math.gcd(*counts)
        counts = [c // g for c in counts]
        space = smact.element_dictionary(symbols)
        els = [space[s] for s in symbols]
        for states in itertools.product(*[e.oxidation_states or [0] for e in els]):
            if sum(o * c for o, c in zip(states, counts)) == 0 and pauling_test(states, [e.pauling_eneg for e in els]):
                return True
        return False

    rng = np.random.default_rng(0)
    pool = [
        "Li",
        "Na",
        "K",
        "Mg",
        "Ca",
        "Ba",
        "Al",
        "Ga",
        "Ti",
        "Fe",
        "Co",
        "Cu",
        "Zn",
        "Sn",
        "Pb",
        "Bi",
        "B",
        "C",
        "N",
        "O",
        "F",
        "S",
        "Cl",
        "Se",
        "Br",
        "I",
        "P",
        "Si",
        "H",
        "Te",
        "Sb",
        "Xe",
    ]
    for _ in range(300):
        n = int(rng.integers(2, 5))
        syms = list(rng.choice(pool, n, replace=False))
        counts = [int(c) for c in rng.integers(1, 7, n)]
        assert V.smact_valid(syms, counts, protocol="diffcsp") == brute(syms, counts), (syms, counts)
    # eleven elements: the brute-force product has millions of combinations; the search answers
    assert V.smact_valid(
        ["K", "Sr", "Ca", "Sm", "Y", "Cd", "Sn", "Ge", "H", "S", "O"],
        [1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 3],
        protocol="diffcsp",
    ) in (True, False)


def _matcher_cases():
    """(candidate, ground truth) pairs: 40 MP-20 test crystals (or hand-made ones without the
    shared data) rattled, moved, as 2x supercells, and paired with other crystals of the same
    composition; plus candidates that must not match."""
    from conftest import DATA

    path = DATA / "mp_20" / "test.csv.gz"
    if path.exists():
        import pandas as pd

        gts = [Structure.from_str(c, fmt="cif") for c in pd.read_csv(path, nrows=40)["cif"]]
    else:
        gts = [
            Structure.from_spacegroup(sg, Lattice.cubic(a), sp, co)
            for sg, a, sp, co in [
                ("Fm-3m", 5.69, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                ("Fd-3m", 5.6, ["Si"], [[0, 0, 0]]),
                ("Pm-3m", 3.9, ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
            ]
        ]
    cases = []
    for i, g in enumerate(gts):
        r = g.copy()
        r.perturb(0.1, seed=i)
        cases += [(r, g), (_rotated_permuted_translated(r), g), (g, g)]
        sc = r.copy()
        sc.make_supercell([2, 1, 1])
        cases.append((sc, g))  # same crystal in a doubled cell: primitive reduction needed
        for d in (0.45, 1.2):  # far off: a match or not, by the same rms
            big = g.copy()
            big.perturb(d, seed=100 + i)
            cases.append((big, g))
        strained = Structure(Lattice(g.lattice.matrix * [[1.7], [1.0], [1.0]]), g.species, g.frac_coords)
        cases.append((strained, g))  # a axis 1.7x: beyond ltol, no lattice mapping
    by_formula: dict = {}
    for g in gts:
        by_formula.setdefault(g.composition.reduced_formula, []).append(g)
    for same in by_formula.values():
        cases += [(a, b) for a in same for b in same if a is not b][:6]
    return cases


def test_vectorised_matcher_equals_pymatgen():
    """crystalflow_core.evaluation.matcher gives pymatgen's StructureMatcher.get_rms_dist, match or not."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystalflow_core.evaluation.matcher import reduce_structure, rms_dist

    sm = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    n_match = n_none = 0
    for cand, gt in _matcher_cases():
        ref = sm.get_rms_dist(cand, gt)
        got = rms_dist(reduce_structure(cand), reduce_structure(gt), 0.5, 0.3, 10)
        if ref is None:
            assert got is None
            n_none += 1
        elif ref[0] < 1e-5:  # near-exact: pymatgen stops at the first such mapping it meets
            assert got < 1e-5
            n_match += 1
        else:
            assert got == pytest.approx(ref[0], abs=1e-9)
            n_match += 1
    assert n_match > 20 and n_none > 20, (n_match, n_none)  # both branches exercised


def test_lll_port_equals_pymatgen():
    from crystalflow_core.evaluation.matcher import _calculate_lll

    rng = np.random.default_rng(0)
    for _ in range(300):
        lat = Lattice.from_parameters(*rng.uniform(2, 15, 3), *rng.uniform(60, 120, 3))
        mapping, inverse = _calculate_lll(lat.matrix)
        np.testing.assert_array_equal(mapping, lat.lll_mapping)
        np.testing.assert_allclose(mapping @ lat.matrix, lat.lll_matrix, atol=1e-9)
        np.testing.assert_allclose(inverse, lat.lll_inverse, atol=1e-12)


def test_primitive_search_is_skipped_only_where_pymatgen_finds_nothing(nacl):
    from crystalflow_core.evaluation.matcher import _may_have_smaller_cell, reduce_structure

    prim = nacl.get_primitive_structure()
    assert len(prim) == 2
    # 1 Na + 1 Cl: the gcd of the counts is 1, pymatgen has no supercell matrix to try
    assert not _may_have_smaller_cell(prim.lattice.matrix, prim.frac_coords, ("Na", "Cl"), 0.25)
    # the conventional cell holds 4 formula units and pymatgen reduces it
    species = tuple(s.species_string for s in nacl)
    assert _may_have_smaller_cell(nacl.lattice.matrix, nacl.frac_coords, species, 0.25)
    red = reduce_structure(nacl)
    assert len(red.frac) == 2 and red.volume == pytest.approx(prim.volume)
    # two Na and two Cl sites that are no lattice translation apart: kept as they are
    odd = Structure(
        Lattice.cubic(6.0), ["Na", "Na", "Cl", "Cl"], [[0, 0, 0], [0.31, 0.12, 0.5], [0.5, 0.5, 0.5], [0.77, 0.2, 0.05]]
    )
    assert not _may_have_smaller_cell(odd.lattice.matrix, odd.frac_coords, ("Na", "Na", "Cl", "Cl"), 0.25)
    assert len(odd.get_primitive_structure()) == 4
    # the Na sites are c/2 apart, the Cl sites are not: the half cell is no lattice of the crystal
    half = Structure(
        Lattice.cubic(6.0), ["Na", "Na", "Cl", "Cl"], [[0, 0, 0], [0, 0, 0.5], [0.5, 0.5, 0.1], [0.5, 0.5, 0.7]]
    )
    assert not _may_have_smaller_cell(half.lattice.matrix, half.frac_coords, ("Na", "Na", "Cl", "Cl"), 0.25)
    assert len(half.get_primitive_structure()) == 4
    half_ok = Structure(
        Lattice.cubic(6.0), ["Na", "Na", "Cl", "Cl"], [[0, 0, 0], [0, 0, 0.5], [0.5, 0.5, 0.1], [0.5, 0.5, 0.6]]
    )
    assert _may_have_smaller_cell(half_ok.lattice.matrix, half_ok.frac_coords, ("Na", "Na", "Cl", "Cl"), 0.25)
    assert len(half_ok.get_primitive_structure()) == 2


def test_matcher_blocks_give_the_same_rms(monkeypatch):
    """Splitting mappings and assignments into small blocks (as large cells do) changes nothing."""
    from crystalflow_core.evaluation import matcher

    cases = [(matcher.reduce_structure(c), matcher.reduce_structure(g)) for c, g in _matcher_cases()[:40]]
    whole = [matcher.rms_dist(c, g, 0.5, 0.3, 10.0) for c, g in cases]
    monkeypatch.setattr(matcher, "_CHUNK", 50)
    assert [matcher.rms_dist(c, g, 0.5, 0.3, 10.0) for c, g in cases] == whole
    assert sum(w is not None for w in whole) > 10


# ----------------------------------------------------------------------------- protocols
def test_odd_cell_fails_structural_validity_only_under_crystalflow():
    # a 2-atom cell with a 6 deg angle: atoms 2 A apart, volume fine, but "odd" for the authors
    odd = Structure(Lattice.from_parameters(6, 6, 6, 6, 90, 90), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert odd.distance_matrix[0, 1] > 0.5 and odd.volume > 0.1
    assert V.structure_valid(odd, protocol="diffcsp")
    assert V.is_odd(odd) and not V.structure_valid(odd, protocol="crystalflow")
    # a lattice length / N^(1/3) above 20 A and a volume per atom above 100 A^3 are odd too
    long = Structure(Lattice.orthorhombic(3, 3, 30), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert V.is_odd(long) and V.structure_valid(long, protocol="diffcsp")


def test_crystalflow_self_distance_is_the_shortest_lattice_length():
    # one atom in a cell whose shortest vector is 0.45 A: its periodic image is closer than 0.5 A
    s = Structure(Lattice.orthorhombic(0.45, 4.0, 4.0), ["Na"], [[0, 0, 0]])
    assert not V.structure_valid(s, protocol="crystalflow")
    assert V.structure_valid(
        Structure(Lattice.orthorhombic(2.0, 4.0, 4.0), ["Na"], [[0, 0, 0]]), protocol="crystalflow"
    )


def test_eight_elements_are_compositionally_invalid_under_crystalflow():
    metals = ["Cu", "Zn", "Ni", "Fe", "Co", "Mn", "Cr", "Ti"]  # an all-metal alloy: valid for diffcsp
    assert V.smact_valid(metals, [1] * 8, protocol="diffcsp")
    assert not V.smact_valid(metals, [1] * 8, protocol="crystalflow")
    assert V.smact_valid(metals[:7], [1] * 7, protocol="crystalflow")


def test_oxidation_state_sets_differ_between_protocols():
    # Mg(+1) exists in SMACT 1.4's list, not in SMACT 4's default (ICSD) set
    assert V.smact_valid(["Mg", "O"], [2, 1], protocol="crystalflow")
    assert not V.smact_valid(["Mg", "O"], [2, 1], protocol="diffcsp")
    # Li4N needs N(-4), which the default set has and SMACT 1.4 lacks
    assert V.smact_valid(["Li", "N"], [4, 1], protocol="diffcsp")
    assert not V.smact_valid(["Li", "N"], [4, 1], protocol="crystalflow")
    # both agree on the textbook cases
    for syms, counts, ok in ((["Na", "Cl"], [1, 1], True), (["Fe", "O"], [2, 3], True), (["Na", "Cl"], [1, 2], False)):
        assert V.smact_valid(syms, counts, protocol="crystalflow") is ok


def test_oxidation_combination_cap(monkeypatch):
    assert V.smact_valid(["Fe", "O"], [2, 3], protocol="crystalflow")
    monkeypatch.setattr(V, "MAX_OX_COMBINATIONS", 10)  # Fe has 8 states, O 4 in SMACT 1.4: 32 > 10
    assert not V.smact_valid(["Fe", "O"], [2, 3], protocol="crystalflow")


def test_coverage_of_a_set_against_itself_is_complete_under_both_protocols(nacl, silicon):
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    sfp, cfp, ok = M.fingerprints_all([nacl, silicon, cscl], workers=1)
    assert ok.all()
    for protocol in V.PROTOCOLS:
        cov = M.coverage(sfp, cfp, sfp, cfp, 0.4, 10.0, protocol=protocol, n_generated=3)
        assert cov["cov_recall_pct"] == 100.0 and cov["cov_precision_pct"] == 100.0
        assert cov["amsd_recall"] == 0.0 and cov["amcd_precision"] == 0.0


def test_crystalflow_coverage_counts_failed_fingerprints_in_the_precision_denominator():
    ref_s = np.zeros((2, M.STRUCT_FP_DIM))
    ref_c = np.tile(M.cdvae_comp_scaler()[0], (2, 1))
    gen_s = np.vstack([ref_s[:1], np.full((1, M.STRUCT_FP_DIM), np.nan)])  # the second: CrystalNN failed
    gen_c = ref_c.copy()
    cov = M.coverage(gen_s, gen_c, ref_s, ref_c, 0.4, 10.0, protocol="crystalflow", n_generated=4)
    assert cov["cov_recall_pct"] == 100.0 and cov["cov_precision_pct"] == 25.0  # 1 of 4 generated


def test_nan_magpie_feature_is_scaled_to_zero():
    mu, sd = M.cdvae_comp_scaler()
    assert mu.shape == sd.shape == (M.COMP_FP_DIM,)
    x = mu + 2.0 * sd
    x[5] = np.nan
    z = M.scale_comp_fixed(x[None])[0]
    assert z[5] == 0.0 and np.allclose(np.delete(z, 5), 2.0)


def test_csp_matching_protocols_differ_on_invalid_candidates():
    # a composition SMACT calls invalid (NaCl2): its own copy matches under crystalflow, which does not
    # gate on validity; under diffcsp neither the candidate nor the target may match
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0.5, 0]])
    assert not V.composition_valid(s, protocol="crystalflow")
    cf = M.csp_rms_table([s], [[s.copy()]], workers=1, protocol="crystalflow", **CSP_TOL)
    dc = M.csp_rms_table([s], [[s.copy()]], workers=1, protocol="diffcsp", **CSP_TOL)
    assert cf[0][0] == pytest.approx(0.0, abs=1e-6) and dc[0][0] is None


def test_wasserstein_draw_is_seeded_and_bounded():
    items = list(range(50))
    a, b = M.draw(items, 10, seed=3), M.draw(items, 10, seed=3)
    assert a == b and len(set(a)) == 10 and M.draw(items, 10, seed=4) != a
    assert M.draw(items[:5], 10, seed=3) == items[:5]


def test_thin_local_hull_flags_suspects_and_rates_are_given_without_them(nacl):
    import pandas as pd
    from conftest import need_data

    from crystalflow_core.evaluation.stability import stability_summary, stability_table
    from crystalflow_core.materials.hull import load_elemental_refs

    (refs_path,) = need_data("hull/2023-02-07-mp-elemental-reference-entries.json.gz")
    hull = LocalHull([("NaCl", -0.5), ("Na2Cl", -0.2)])  # a hull that knows two Na-Cl phases
    assert hull.entries_in_system(Composition("NaCl")) == 2 and hull.entries_in_system(Composition("KBr")) == 0
    prim = nacl.get_primitive_structure()
    final = {"lattice": prim.lattice.matrix.tolist(), "species": ["Na", "Cl"], "frac_coords": prim.frac_coords.tolist()}
    sample = {"lattice": final["lattice"], "species": [11, 17], "frac_coords": final["frac_coords"], "flag": ""}
    relaxed = [
        {"id": "deep", "converged": True, "final": final, "energy_per_atom": -9.0, "initial_energy_per_atom": -9.0},
        {"id": "near", "converged": True, "final": final, "energy_per_atom": -3.3, "initial_energy_per_atom": -3.3},
    ]
    st = stability_table({"deep": sample, "near": sample}, relaxed, load_elemental_refs(refs_path), hull, [])
    assert st["hull_entries"].tolist() == [2, 2] and st["hull"].iloc[0] == "local (2 entries)"
    assert st.loc[0, "e_hull"] < -0.1 and bool(st.loc[0, "hull_suspect"])  # far below a thin hull
    assert st.loc[1, "e_hull"] > st.loc[0, "e_hull"] + 5.0  # 5.7 eV/atom higher in energy
    # rates with and without the suspects (denominator: every relaxed sample)
    df = pd.DataFrame(
        {
            "e_hull": [-0.5, -0.05, 0.3, np.nan],
            "unique": [True] * 4,
            "new": [True] * 4,
            "hull_suspect": [True, False, False, False],
            "error": ["", "", "", "x"],
            "hull_missing": [""] * 4,
            "converged": [True] * 4,
            "hull": ["local (9 entries)"] * 4,
        }
    )
    row = stability_summary(df, False, 0.1)
    assert row["stable_pct"] == 50.0 and row["stable_pct_without_suspects"] == 25.0
    assert row["sun_pct_without_suspects"] == 25.0 and row["n_hull_suspect"] == 1 and row["hull"] == "local (9 entries)"


def test_missing_electronegativity_fails_the_pauling_test_as_smact_does():
    """SMACT's eneg_states_test returns False when an electronegativity is missing (Pm, He, Ne, Ar), so
    the authors' `except TypeError` never fires: such compositions are invalid under both protocols."""
    import smact
    from smact.screening import eneg_states_test

    # PmCl3: Pm(+3) + 3 Cl(-1) is neutral, but Pm has no Pauling electronegativity
    assert smact.Element("Pm").pauling_eneg is None
    assert eneg_states_test([3, -1], [None, 3.16]) is False  # SMACT itself, on the one neutral assignment
    for protocol in ("crystalflow", "diffcsp"):
        assert not V.smact_valid(["Pm", "Cl"], [1, 3], protocol=protocol), protocol
        assert V.smact_valid(["Nd", "Cl"], [1, 3], protocol=protocol), protocol  # its neighbour, with one
    # the quick run's sample s75: seven elements, one of them Pm
    syms, counts = ["Pm", "Al", "Zn", "Fe", "Sb", "Te", "As"], [2, 1, 1, 1, 1, 1, 1]
    assert not V.smact_valid(syms, counts, protocol="crystalflow")
    # noble gases: argon has neither states nor an electronegativity; krypton has both (KrF2 is real)
    assert not V.smact_valid(["Ar", "F"], [1, 2], protocol="crystalflow")
    assert not V.smact_valid(["Ar", "Na", "Cl"], [1, 1, 1], protocol="diffcsp")
    assert V.smact_valid(["Kr", "F"], [1, 2], protocol="crystalflow")


def test_energy_that_mp2020_refuses_gets_no_e_hull(monkeypatch):
    """A raw-scale energy MP2020 will not correct (here: a U value MP does not use) is not put on the
    corrected hull uncorrected: NaN, the reason recorded, counted in the summary, not stable. A CHGNet
    energy (corrected by training) never meets MP2020, so it is never refused."""
    from conftest import need_data

    import crystalflow_core.materials.hull as H
    from crystalflow_core.evaluation.stability import stability_summary, stability_table

    (refs_path,) = need_data("hull/2023-02-07-mp-elemental-reference-entries.json.gz")
    fe2o3 = Structure.from_spacegroup(
        "R-3c", Lattice.hexagonal(5.03, 13.75), ["Fe", "O"], [[0, 0, 0.355], [0.306, 0, 0.25]]
    )
    e = -6.9 * len(fe2o3)
    corrected, why = H.mp2020_corrected_energy(fe2o3, e)
    assert why == "" and corrected < e  # the Fe U correction and the oxide correction lower it
    monkeypatch.setitem(H.MP_HUBBARD_U, "Fe", 4.0)  # not MP's 5.3: pymatgen's MP2020 refuses the entry
    corrected, why = H.mp2020_corrected_energy(fe2o3, e)
    assert np.isnan(corrected) and "MP2020 refused" in why and "'Fe': 4.0" in why
    final = {"lattice": fe2o3.lattice.matrix.tolist(), "species": [s.specie.symbol for s in fe2o3]}
    final["frac_coords"] = fe2o3.frac_coords.tolist()
    rec = {"id": "a", "converged": True, "final": final, "energy_per_atom": -6.9}
    relaxed = [{**rec, "energy_scale": "raw"}, {**rec, "id": "b", "potential": "chgnet"}]
    hull = LocalHull([("Fe2O3", -1.7)])
    st = stability_table({}, relaxed, H.load_elemental_refs(refs_path), hull, [])
    assert (
        np.isnan(st.loc[0, "e_hull"])
        and np.isnan(st.loc[0, "e_form"])
        and "MP2020 refused" in st.loc[0, "mp2020_refused"]
    )
    assert np.isfinite(st.loc[1, "e_hull"]) and st.loc[1, "mp2020_refused"] == ""
    row = stability_summary(st, False, 0.1)
    assert row["n_mp2020_refused"] == 1
