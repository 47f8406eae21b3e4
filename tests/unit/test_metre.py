"""METRe and cRMSE with known answers: swapped polymorphs, one close match out of ten, multiples of a
composition, and the stage's numbers against a direct pymatgen computation."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crystalflow_core.evaluation import metrics as M
from crystalflow_core.evaluation.sample_metrics import MetricSettings, evaluate_csp

STOL = 0.5


def _settings(**kw) -> MetricSettings:
    base = dict(
        protocol="crystalflow",
        stol=0.5,
        ltol=0.3,
        angle_tol=10.0,
        coverage_cutoffs=(0.4, 10.0),
        n_property_samples=10,
        fingerprint_limit=None,
        seed=0,
        metre_tolerances="csp",
    )
    return MetricSettings(**{**base, **kw})


def _rocksalt(a=5.64, el=("Na", "Cl")):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(el), [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cscl(a=3.3, el=("Na", "Cl")):
    return Structure(Lattice.cubic(a), list(el), [[0, 0, 0], [0.5, 0.5, 0.5]])


def _records(cands: list[list]) -> dict:
    """Sample records per target index, as the sampler writes them."""
    out = {}
    for i, row in enumerate(cands):
        out[i] = {
            c: {
                "id": f"t{i}c{c}",
                "candidate": c,
                "lattice": s.lattice.matrix.tolist(),
                "species": [site.specie.Z for site in s],
                "frac_coords": s.frac_coords.tolist(),
                "flag": "",
            }
            for c, s in enumerate(row)
        }
    return out


def _row(gts, cands, k=1, **kw):
    (row,) = evaluate_csp(gts, _records(cands), [k], _settings(**kw), workers=1)
    return row


def test_swapped_polymorphs_match_no_index_but_every_reference():
    """Rock salt and CsCl-type NaCl in the reference set, each generated at the other's index."""
    gts = [_rocksalt(), _cscl()]
    row = _row(gts, [[_cscl(3.25)], [_rocksalt(5.60).get_primitive_structure()]])
    assert row["match_rate_pct"] == 0.0 and row["metre_pct"] == 100.0
    assert row["crmse_norm"] == pytest.approx(STOL) and row["rmse_all_norm"] == pytest.approx(STOL)
    assert row["metre_crmse_norm"] == pytest.approx(row["metre_rmse_norm"])  # both matched ...
    assert row["metre_rmse_norm"] < 0.05  # ... closely (volume-normalised rms of two ideal cells)


def test_one_close_match_out_of_ten_gives_small_rmse_and_crmse_near_stol():
    gts = [_rocksalt(5.0 + 0.1 * i, ("Na", h)) for i, h in enumerate(["Cl", "Br", "I", "F"])]
    gts += [_rocksalt(4.0 + 0.1 * i, ("Mg", x)) for i, x in enumerate(["O", "S", "Se"])]
    gts += [_rocksalt(4.5 + 0.1 * i, ("Ca", x)) for i, x in enumerate(["O", "S", "Se"])]
    close = gts[0].copy()
    close.translate_sites([1], [0.01, 0.0, 0.0])  # a small displacement: matches with a small rms
    cands = [[close]] + [[_cscl(3.0, tuple(str(e) for e in g.composition.elements))] for g in gts[1:]]
    row = _row(gts, cands)
    direct = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10).get_rms_dist(close, gts[0])[0]
    assert row["match_rate_pct"] == 10.0 and row["rmse_norm"] == pytest.approx(direct, abs=1e-6)
    assert row["rmse_norm"] < 0.05
    assert row["crmse_norm"] == pytest.approx((direct + 9 * STOL) / 10, abs=1e-6) and row["crmse_norm"] > 0.45
    assert row["metre_pct"] == 10.0 and row["metre_crmse_norm"] == pytest.approx(row["crmse_norm"], abs=1e-6)


def test_multiples_of_a_composition_match_only_the_same_structure():
    """A rock-salt supercell (Na4Cl4) matches rock salt (same reduced composition, same structure after
    primitive reduction); a CsCl-type cell of the same composition does not; Na2Cl is never compared."""
    gts = [_rocksalt().get_primitive_structure()]
    conventional = _rocksalt()  # 8 atoms: four formula units of the same structure
    na2cl = Structure(Lattice.cubic(4.0), ["Na", "Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0.5]])
    row = _row(gts, [[conventional]])
    assert row["match_rate_pct"] == 100.0 and row["metre_pct"] == 100.0
    assert _row(gts, [[_cscl()]])["metre_pct"] == 0.0
    metre = M.metre_rms_table(gts, [na2cl, _cscl(), conventional], M.METRE_TOLERANCES["csp"], 1, "crystalflow")
    ((js, rms),) = metre
    assert js == [1, 2] and rms[0] is None and rms[1] is not None  # Na2Cl is another reduced composition


def test_k_candidates_and_validity_and_tolerance_sets():
    """METRe at k counts the first k candidates of every target; the 'valid' variant drops invalid ones
    (atoms 0.3 A apart); OMatG's tighter tolerances reject a match the CSP protocol's accept."""
    gts = [_rocksalt(), _cscl(2.6, ("Mg", "O"))]
    bad = _rocksalt(5.64).get_primitive_structure()
    bad.replace(1, "Cl", [0.03, 0.0, 0.0])  # Cl 0.3 A from Na: invalid, and no rock salt
    # stretched by 45 % along a: after scaling to the same volume a is 28 % longer (ltol 0.3 passes, 0.2 not)
    off = Structure(Lattice.orthorhombic(2.6 * 1.45, 2.6, 2.6), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cands = [[bad, _rocksalt(5.5)], [off, off]]
    rows = evaluate_csp(gts, _records(cands), [1, 2], _settings(), workers=1)
    assert [r["metre_pct"] for r in rows] == [50.0, 100.0]
    assert rows[1]["metre_valid_pct"] == 100.0 and rows[0]["mr_valid_pct"] == 50.0
    strict = evaluate_csp(gts, _records(cands), [2], _settings(metre_tolerances="omatg"), workers=1)[0]
    assert strict["metre_pct"] < rows[1]["metre_pct"] and "omatg (stol 0.3" in strict["metre_tolerances"]


def test_stage_numbers_equal_a_direct_pymatgen_computation():
    """Twelve real MP-20 crystals, candidates a shuffle of rattled copies: METRe and cRMSE from the stage
    against pymatgen's StructureMatcher over every pair of the same reduced composition."""
    import pandas as pd
    from conftest import need_data

    (path,) = need_data("mp_20/test.csv.gz")
    rows = pd.read_csv(path).sample(12, random_state=3)
    gts = [Structure.from_str(c, fmt="cif") for c in rows["cif"]]
    rng = np.random.default_rng(0)
    rattled = []
    for s in gts:
        r = s.copy()
        r.perturb(0.05)
        rattled.append(r)
    order = rng.permutation(len(gts))
    cands = [[rattled[order[i]]] for i in range(len(gts))]
    row = _row(gts, cands)
    sm = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    best = []
    for g in gts:
        vals = [
            sm.get_rms_dist(c[0], g)
            for c in cands
            if c[0].composition.reduced_composition == g.composition.reduced_composition
        ]
        vals = [v[0] for v in vals if v is not None]
        best.append(min(vals) if vals else None)
    matched = [b for b in best if b is not None]
    assert row["metre_pct"] == pytest.approx(100.0 * len(matched) / len(gts))
    assert row["metre_rmse_norm"] == pytest.approx(np.mean(matched), abs=1e-4)
    assert row["metre_crmse_norm"] == pytest.approx(np.mean([b if b is not None else 0.5 for b in best]), abs=1e-4)
    index_wise = [sm.get_rms_dist(c[0], g) for g, c in zip(gts, cands)]
    assert row["match_rate_pct"] == pytest.approx(100.0 * sum(v is not None for v in index_wise) / len(gts))


@pytest.mark.parametrize("protocol,cell", [("crystalflow", "cif"), ("diffcsp", "niggli")])
def test_coverage_reference_fingerprints_use_the_protocols_cell(tmp_path, protocol, cell):
    """mp-1215208: its CIF cell and its Niggli cell differ, and so do CrystalNN fingerprints of the two
    (by 0.002). The crystalflow protocol fingerprints the CIF's cell as the authors' scripts do; diffcsp the
    Niggli-reduced cell it builds its references from."""
    import pandas as pd
    from conftest import need_data, rejected_of

    from crystalflow_core import crystals
    from crystalflow_core.config import defaults
    from crystalflow_core.stages.metrics import test_fingerprints

    (path,) = need_data("mp_20/test.csv.gz")
    df = pd.read_csv(path)
    row = df[df["material_id"] == "mp-1215208"]
    csv = tmp_path / "one.csv"
    row.to_csv(csv, index=False)
    D = crystals.data
    settings = D.PrepareSettings.from_dataset(defaults("dataset"), workers=1)
    pt = tmp_path / "one.pt"
    D.prepare_split(csv, pt, rejected_of(pt), settings)
    out = tmp_path / "fp.npz"
    test_fingerprints(str(pt), str(out), None, 1, protocol)
    as_cif = Structure.from_str(row["cif"].iloc[0], fmt="cif")
    niggli = as_cif.get_reduced_structure("niggli")
    assert not np.allclose(as_cif.lattice.matrix, niggli.lattice.matrix)
    fp = M.Fingerprinter()
    want = {"cif": fp(as_cif)[0], "niggli": fp(niggli)[0]}
    assert np.abs(want["cif"] - want["niggli"]).max() > 1e-3
    # the Niggli cell the cache holds: mp-1215208 sits on a Niggli tie (angles 103.92 / 103.92 / 90.00000002),
    # so which of the equivalent reduced cells comes out depends on float noise of the machine (on an AMX
    # machine the prepared cell is the CIF's own); the protocol must fingerprint the cell its references use
    cached = D.cache_structures(D.load_cache(pt), [0], cell="niggli")[0]
    assert np.allclose(sorted(cached.lattice.abc), sorted(niggli.lattice.abc), atol=1e-4)  # a Niggli cell
    want["niggli"] = fp(cached)[0]
    with np.load(out) as got:
        assert np.abs(got["struct"][0] - want[cell]).max() < 1e-5  # float noise of the tensor cache's round trip
        other = "niggli" if cell == "cif" else "cif"
        if np.abs(want["cif"] - want["niggli"]).max() > 1e-3:  # where the two cells differ, the other is not used
            assert np.abs(got["struct"][0] - want[other]).max() > 1e-3
