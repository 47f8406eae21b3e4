import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure
from scipy.spatial.transform import Rotation

from crystalflow_core import metrics as M
from crystalflow_core.hull import LocalHull


def _rotated_permuted_translated(s):
    rot = Rotation.from_euler("xyz", [20, 35, -50], degrees=True).as_matrix()
    lat = Lattice(s.lattice.matrix @ rot.T)
    order = np.random.default_rng(0).permutation(len(s))
    frac = (s.frac_coords[order] + np.array([0.13, 0.41, 0.77])) % 1.0
    return Structure(lat, [s[i].specie for i in order], frac)


def test_ground_truth_matches_itself_and_transformed_copies(nacl, silicon):
    gts = [nacl, silicon]
    table = M.csp_rms_table(gts, [[nacl], [silicon]], workers=1)
    s = M.csp_summary(table, 1)
    assert s["match_rate_pct"] == 100.0 and s["rmse_norm"] == pytest.approx(0.0, abs=1e-6)
    moved = [_rotated_permuted_translated(g) for g in gts]
    s2 = M.csp_summary(M.csp_rms_table(gts, [[m] for m in moved], workers=1), 1)
    assert s2["match_rate_pct"] == 100.0 and s2["rmse_norm"] < 1e-6


def test_other_polymorph_and_invalid_candidate_do_not_match(nacl):
    # CsCl-type NaCl is a different polymorph of the same composition
    cscl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    squashed = Structure(nacl.lattice, nacl.species, nacl.frac_coords * 0.02)  # atoms on top of each other
    table = M.csp_rms_table([nacl], [[cscl, squashed, None]], workers=1)
    assert table == [[None, None, None]]
    s = M.csp_summary(table, 3)
    assert s["match_rate_pct"] == 0.0 and s["rmse_all_norm"] == 0.5


def test_best_of_k_and_rmse_all_hand_computed():
    table = [[None, 0.2, 0.1], [0.3, None, None], [None, None, None], [None, None, 0.05]]
    s1 = M.csp_summary(table, 1)
    assert s1["match_rate_pct"] == 25.0 and s1["rmse_norm"] == pytest.approx(0.3)
    assert s1["rmse_all_norm"] == pytest.approx((0.5 + 0.3 + 0.5 + 0.5) / 4)
    s3 = M.csp_summary(table, 3)
    assert s3["match_rate_pct"] == 75.0 and s3["rmse_norm"] == pytest.approx((0.1 + 0.3 + 0.05) / 3)


def test_structural_validity(nacl):
    assert M.structure_valid(nacl)
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 A contact
    assert not M.structure_valid(close)
    assert not M.structure_valid(None)


def test_smact_validity():
    assert M.smact_valid(["Na", "Cl"], [1, 1])
    assert not M.smact_valid(["Na", "Cl"], [1, 2])
    assert M.smact_valid(["Fe", "O"], [2, 3])
    assert M.smact_valid(["Cu", "Zn"], [1, 1])  # all-metal alloy
    assert M.smact_valid(["C"], [8])
    assert M.composition_valid(Structure(Lattice.cubic(5), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0.5, 0]])) is False


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
    cov = M.coverage(gen_s, gen_c, ref_s, ref_c, 0.4, 10.0)
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
    s = M.sun_summary(e_hull, unique, new, 4)
    assert s["stable_pct"] == 50.0 and s["metastable_pct"] == 75.0
    assert s["sun_pct"] == 25.0 and s["msun_pct"] == 25.0
    assert M.target_errors(np.array([0.0, -1.0]), np.array([0.5, -2.0])) == {"mae": 0.75, "rmse": pytest.approx(np.sqrt(0.625)), "n": 2}


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
    pool = ["Li", "Na", "K", "Mg", "Ca", "Ba", "Al", "Ga", "Ti", "Fe", "Co", "Cu", "Zn", "Sn", "Pb", "Bi",
            "B", "C", "N", "O", "F", "S", "Cl", "Se", "Br", "I", "P", "Si", "H", "Te", "Sb", "Xe"]
    for _ in range(300):
        n = int(rng.integers(2, 5))
        syms = list(rng.choice(pool, n, replace=False))
        counts = [int(c) for c in rng.integers(1, 7, n)]
        assert M.smact_valid(syms, counts) == brute(syms, counts), (syms, counts)
    # eleven elements: the brute-force product has millions of combinations; the search answers
    assert M.smact_valid(["K", "Sr", "Ca", "Sm", "Y", "Cd", "Sn", "Ge", "H", "S", "O"], [1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 3]) in (True, False)
