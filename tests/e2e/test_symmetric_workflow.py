"""The symmetric model through Snakemake: a dataset that caches symmetric forms, a CSP run with
model.symmetry: anchor (the "given space group" protocol, its own rows in the metric table and Table 1), and a
prediction job whose candidates come from training-split templates (symmetry: auto) and a space group."""

import pandas as pd
import yaml
from conftest import DATA, REPO, need_data, smk


def test_symmetric_run_and_prediction_through_snakemake(tmp_path):
    need_data("mp_20/val.csv.gz", "mp_20/test.csv.gz", "hull/2023-02-07-mp-elemental-reference-entries.json.gz")
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["data_mirror"] = str(DATA)
    splits = {"val": {"file": "mp_20/val.csv.gz"}, "test": {"file": "mp_20/test.csv.gz"}}
    cfg["datasets"] = {"mp_20_sym": {"max_rows": 60, "symmetry": True, "splits": splits}}
    cfg["runs"] = {
        "sym_csp": {
            "dataset": "mp_20_sym",
            "task": "csp",
            "train_split": "val",
            "val_split": None,
            "model": {"hidden": 16, "layers": 1, "fourier": 8, "recip": 2, "time_dim": 16, "symmetry": "anchor"},
            "train": {"batch_size": 32, "max_epochs": 2, "progress_bar": False},
            "sample": {"steps": [3], "k": [1, 2], "test_limit": 8, "batch_size": 16, "shards": 1},
        }
    }
    cfg["build"] = ["sym_csp"]
    cfg["predict"] = {
        "salt": {
            "run": "sym_csp",
            "formulas": ["NaCl"],
            "z": 1,
            "spacegroups": [221],
            "symmetry": "auto",
            "n_candidates": 3,
            "steps": 3,
            "rank_unconverged": True,
            "relax": {"fmax": 0.2, "steps": 10, "timeout": 60},
            "top_n": 1,
        }
    }
    path = tmp_path / "sym.yaml"
    path.write_text(yaml.safe_dump(cfg))
    smk(["--cores", "2", "--configfile", str(path), "--directory", str(tmp_path)], cwd=tmp_path)
    res = tmp_path / "results"
    (table,) = res.glob("*_csp_metrics.csv")
    metrics = pd.read_csv(table)
    assert set(metrics["given"]) == {"space group"} and sorted(metrics["k"]) == [1, 2]
    table1 = (res / "tables/table1_csp.md").read_text()
    assert table1.count("| sym_csp | space group | mp_20_sym |") == 2  # k = 1 and 2, no paper number beside
    assert "| sym_csp | space group | mp_20_sym | 1 | euler S=3 (NFE 3) |" in table1
    cands = pd.read_csv(res / "predict/salt/candidates.csv")
    assert len(cands) == 3
    # candidate 0 takes the first assignment: space group 221's, then the templates of the training split
    assert cands["spacegroup_generated"].iloc[0] == 221 and cands["assignment"].iloc[0] == "space group 221"
    samples = pd.concat(pd.read_json(p, lines=True) for p in (res / "predict/salt/samples").glob("*.jsonl"))
    samples = samples.to_dict("records")
    assert all(r["wyckoff"].split("_")[0] == str(r["spacegroup_generated"]) for r in samples)
    report = (res / "predict/salt/report.md").read_text()
    assert "| 221 | space group 221 | " in report  # where each candidate's assignment came from
    ranked = pd.read_csv(res / "predict/salt/ranked.csv")
    assert "spacegroup_generated" in ranked.columns and len(ranked) >= 1
