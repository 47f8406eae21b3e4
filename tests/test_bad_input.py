"""Bad input never yields a wrong number: strict reading, stated denominators, safe names, schema
bounds, early one-line errors (issue classes beyond the fault table of tests/test_faults.py)."""
import json

import pandas as pd
import pytest

from crystalflow_core import stages
from crystalflow_core.io import DamagedFileError, read_jsonl


def _csp_setup(tmp_path, nacl, n=3):
    from pymatgen.io.cif import CifWriter

    from crystalflow_core.data import PrepareSettings, prepare_split

    csv = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": [f"m{i}" for i in range(n)], "cif": [str(CifWriter(nacl))] * n}).to_csv(csv, index=False)
    test_pt = tmp_path / "test.pt"
    cache = prepare_split(csv, test_pt, PrepareSettings(workers=1))
    cfg = {"metrics": {"fingerprint_limit": None, "n_property_samples": 10, "coverage_cutoffs": [0.4, 10.0],
                       "stol": 0.5, "ltol": 0.3, "angle_tol": 10, "protocol": "crystalflow", "seed": 0}}
    run = {"dataset": "x", "task": "csp", "conditions": [], "sample": {"k": [1], "test_limit": None}}
    good = []
    for i in range(n):
        st = nacl.get_reduced_structure("niggli")
        good.append({"id": f"m{i}#0", "target_id": f"m{i}", "target_index": i, "candidate": 0,
                     "lattice": st.lattice.matrix.tolist(), "species": [s.specie.Z for s in st],
                     "frac_coords": st.frac_coords.tolist(), "flag": ""})
    return cache, test_pt, cfg, run, good


def _write(path, recs, cut=0):
    text = "".join(json.dumps(r) + "\n" for r in recs)
    path.write_text(text[: len(text) - cut] if cut else text)


def test_truncated_samples_file_is_an_error_naming_file_and_line(tmp_path, nacl):
    _, test_pt, cfg, run, good = _csp_setup(tmp_path, nacl)
    samples = tmp_path / "samples.jsonl"
    _write(samples, good, cut=20)
    with pytest.raises(DamagedFileError, match=r"samples.jsonl: line 3 is damaged"):
        stages.csp_metrics(cfg, "r", run, str(samples), str(test_pt), 10, str(tmp_path / "m.csv"), workers=1)
    _write(samples, good, cut=1)  # only the final newline missing: still a cut file
    with pytest.raises(DamagedFileError, match="line 3"):
        read_jsonl(samples)
    # the append-as-you-go files of resumable stages may end in a half line, dropped on resume
    _write(tmp_path / "x.partial", good, cut=20)
    assert len(read_jsonl(tmp_path / "x.partial", tolerate_truncated_tail=True)) == 2


def test_impossible_records_are_counted_and_the_denominator_stays(tmp_path, nacl):
    _, test_pt, cfg, run, good = _csp_setup(tmp_path, nacl, n=4)
    recs = [good[0], dict(good[1], lattice=[[float("nan")] * 3] * 3), dict(good[2], species=[], frac_coords=[])]
    # the fourth target has no record at all: missing, counted as unmatched
    samples = tmp_path / "samples.jsonl"
    _write(samples, recs)
    out = tmp_path / "m.csv"
    stages.csp_metrics(cfg, "r", run, str(samples), str(test_pt), 10, str(out), workers=1)
    row = pd.read_csv(out).iloc[0]
    assert row["n_targets"] == 4 and row["n_matched"] == 1 and row["match_rate_pct"] == 25.0
    assert row["n_flagged"] == 2 and row["n_missing_candidates"] == 1 and row["n_unreadable"] == 0
    # a record for a target outside the test split is a foreign file, not a sample
    _write(samples, [dict(good[0], target_index=7)])
    with pytest.raises(DamagedFileError, match="another run or test split"):
        stages.csp_metrics(cfg, "r", run, str(samples), str(test_pt), 10, str(out), workers=1)
    _write(samples, [dict(good[0], target_id="mp-999")])
    with pytest.raises(DamagedFileError, match="another test split"):
        stages.csp_metrics(cfg, "r", run, str(samples), str(test_pt), 10, str(out), workers=1)


def test_impossible_atomic_numbers_do_not_count_as_structures():
    from crystalflow_core.sampling import record_problem, record_to_structure

    rec = {"lattice": [[4, 0, 0], [0, 4, 0], [0, 0, 4]], "species": [11, 200], "frac_coords": [[0, 0, 0], [0.5, 0.5, 0.5]], "flag": ""}
    assert record_problem(rec) == ("flagged", "atomic number outside 1..118")
    assert record_to_structure(rec) is None and record_to_structure(rec, strict=False) is None
    assert record_problem(dict(rec, species=[11]))[0] == "unreadable"  # 1 species for 2 positions
    ok = dict(rec, species=[11, 17], flag="exploded_lattice")
    assert record_to_structure(ok) is None and record_to_structure(ok, strict=False) is not None
