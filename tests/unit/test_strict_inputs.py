"""Nothing a user wrote is silently ignored (#49) and names stay names (#42): unknown table columns and
values with units are refused naming file, row and column; names that would leave results/ are refused;
a missing optional package is refused at validation; every project error is one line at the command line."""

import ast
import logging
from pathlib import Path

import pandas as pd
import pytest
from conftest import rejected_of

from crystalflow_core import config as cfgmod
from crystalflow_core import errors, extras
from crystalflow_core.cli import main
from crystalflow_core.compositions import read_compositions_csv
from crystalflow_core.config import defaults
from crystalflow_core.crystals import data as D
from crystalflow_core.entry import guarded
from crystalflow_core.errors import PROJECT_ERRORS, ConfigError, DataError
from crystalflow_core.layout import check_name
from crystalflow_core.materials.dft_outputs import read_energies

REPO = Path(__file__).resolve().parents[2]


def _csv(tmp_path, text, name="my.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_pressure_column_is_refused_with_its_suggestion(tmp_path):
    p = _csv(tmp_path, "formula,z,pressure\nNaCl,1,5\n")
    with pytest.raises(ConfigError) as err:
        read_compositions_csv(p)
    assert str(err.value).startswith(f"{p}: unknown column 'pressure'; did you mean 'pressure_gpa' (pressure in GPa)?")


@pytest.mark.parametrize("value", ["5GPa", "five", "5 kbar"])
def test_a_value_with_a_unit_is_refused_with_its_row_and_column(tmp_path, value):
    p = _csv(tmp_path, f"formula,z,pressure_gpa\nSi,2,0\nNaCl,1,{value}\n")
    with pytest.raises(ConfigError, match=rf"{p}, row 3, column 'pressure_gpa': '{value}' is not a number"):
        read_compositions_csv(p)


def test_the_known_columns_are_read_as_numbers(tmp_path):
    p = _csv(tmp_path, "formula,z,atoms,pressure_gpa\nNaCl,auto,,5\nSi,,8,12.5\n")
    rows = read_compositions_csv(p)
    assert rows == [
        {"formula": "NaCl", "row": 2, "z": "auto", "pressure_gpa": 5.0},
        {"formula": "Si", "row": 3, "atoms": 8, "pressure_gpa": 12.5},
    ]
    with pytest.raises(ConfigError, match="row 2, column 'z': '1.5' is not a whole number"):
        read_compositions_csv(_csv(tmp_path, "formula,z\nNaCl,1.5\n", "z.csv"))


def test_the_command_line_refuses_the_pressure_column_before_any_work(tmp_path, capsys):
    p = _csv(tmp_path, "formula,z,pressure\nNaCl,1,5\n")
    with pytest.raises(SystemExit) as ex:
        main(["predict", "--config", "config/quick.yaml", "--run", "mp20_csp", "--compositions", str(p)])
    assert ex.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown column 'pressure'; did you mean 'pressure_gpa'" in err[0]


def test_dft_energy_tables_are_checked_like_the_config(tmp_path):
    p = _csv(tmp_path, "id,energy,Energy_per_atom\ns1,-6.5,\n", "dft.csv")
    with pytest.raises(ConfigError, match=r"unknown column 'Energy_per_atom'; did you mean 'energy_per_atom'"):
        read_energies(p)
    p = _csv(tmp_path, "id,energy\ns1,-6.5\ns2,-6.5eV\n", "dft.csv")
    with pytest.raises(ConfigError, match=r"row 3, column 'energy': '-6.5eV' is not a number"):
        read_energies(p)
    p = _csv(tmp_path, "id,energy,converged,ionic_steps\ns1,-6.5,True,12\ns2,-3.0,no,\n", "dft.csv")
    got = read_energies(p)
    assert got["s1"]["energy"] == -6.5 and got["s1"]["converged"] is True and got["s1"]["ionic_steps"] == 12
    assert got["s2"]["converged"] is False and "ionic_steps" not in got["s2"]


def _dataset(tmp_path, nacl, columns: dict):
    from pymatgen.io.cif import CifWriter

    p = tmp_path / "set.csv"
    pd.DataFrame([{"material_id": "a", "cif": str(CifWriter(nacl)), **columns}]).to_csv(p, index=False)
    return p


def test_dataset_columns_unused_are_logged_once_and_a_misspelt_condition_is_refused(tmp_path, nacl, caplog):
    settings = D.PrepareSettings.from_dataset(defaults("dataset"), conditions=["pressure"], workers=1)
    out = tmp_path / "out" / "split.pt"
    p = _dataset(tmp_path, nacl, {"pressure_gpa": 5.0, "band_gap": 1.0})  # the project's name is read
    with caplog.at_level(logging.INFO):
        cache = D.prepare_split(p, out, rejected_of(out), settings)
    assert cache["conditions"]["pressure"].tolist() == [5.0]
    unused = [r.message for r in caplog.records if "does not use" in r.message]
    assert len(unused) == 1 and unused[0].endswith("columns this run does not use: band_gap")
    p = _dataset(tmp_path, nacl, {"presure": 5.0})
    with pytest.raises(DataError, match=r"missing column 'pressure'; did you mean 'presure'\?"):
        D.prepare_split(p, tmp_path / "o2" / "split.pt", rejected_of(tmp_path / "o2" / "split.pt"), settings)


BAD_NAMES = ["../x", "/abs", "a/b", "..", ".", "", "a\nb", "a b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_would_leave_results_are_refused(name):
    with pytest.raises(ConfigError, match="cannot name a folder under results/"):
        check_name(name, "--name")


@pytest.mark.parametrize("section", ["runs", "predict"])
def test_config_names_are_checked_before_any_job(section):
    import yaml

    raw = yaml.safe_load((REPO / "config/quick.yaml").read_text())
    first = next(iter(raw[section]))
    raw[section]["../escaped"] = raw[section].pop(first)
    with pytest.raises(ConfigError, match=rf"config error at '{section}': '../escaped' cannot name a folder"):
        cfgmod.validate(raw, mirror_check=False)


def test_keys_renamed_in_0_11_are_refused_with_their_new_name():
    """`targets` (the runs `all` builds) is now `build`, a run's `sample.targets` (the values a conditional
    run samples at) `condition_values`: an old config is one line naming the key and its new name."""
    import yaml

    raw = yaml.safe_load((REPO / "config/quick.yaml").read_text())
    old = {**raw, "targets": raw.pop("build")}
    with pytest.raises(ConfigError, match=r"at '<top level>'.*\('targets' is now 'build'\); allowed keys: .*build"):
        cfgmod.validate(old, mirror_check=False)
    raw["runs"]["mp20_dng"]["sample"]["targets"] = [-1.0]
    with pytest.raises(ConfigError, match=r"at 'runs/mp20_dng/sample'.*\('targets' is now 'condition_values'\)"):
        cfgmod.validate(raw, mirror_check=False)
    raw["runs"]["mp20_dng"]["sample"]["stepz"] = [1]  # a plain unknown key gets no rename hint
    del raw["runs"]["mp20_dng"]["sample"]["targets"]
    with pytest.raises(ConfigError, match=r"'stepz' was unexpected\); allowed keys") as e:
        cfgmod.validate(raw, mirror_check=False)
    assert "is now" not in str(e.value)


def test_predict_name_escaping_results_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(
            ["predict", "--config", "config/quick.yaml", "--run", "mp20_csp", "--formula", "NaCl", "--name", "../../x"]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "crystalflow predict: error: --name: '../../x' cannot name a folder under results/: use letters, digits, "
        "'_', '-' and '.' (no '/', no '..', not empty)"
    ]
    assert not (REPO.parent / "x").exists()


def test_a_potential_whose_package_is_missing_is_refused_at_validation(monkeypatch):
    import yaml

    raw = yaml.safe_load((REPO / "config/quick.yaml").read_text())
    run = next(iter(raw["runs"]))
    raw["runs"][run].setdefault("relax", {})["model"] = "sevennet"
    monkeypatch.setattr(extras, "installed", lambda package: package != "sevenn")
    with pytest.raises(ConfigError) as err:
        cfgmod.validate(raw, mirror_check=False)
    assert str(err.value) == (
        f"config error at 'runs/{run}/relax': relax.model/committee sevennet needs the sevenn package: "
        "pip install -e '.[sevenn]'"
    )


def _exception_classes() -> dict[str, str]:
    """Every exception class the package defines: name -> module."""
    out = {}
    for path in (REPO / "crystalflow_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id in out) for b in node.bases
            ):
                out[node.name] = path.relative_to(REPO).as_posix()
    return out


# raised and caught inside the package, never reaching a user: deliberately not one-line errors
INTERNAL = {
    "_Timeout": "a relaxation's time limit, caught where it is set",
    "_Abandoned": "a hopeless candidate's relaxation stopped early: recorded as abandoned where it is raised",
    "MDBlowUp": "an MD trajectory that blew up: recorded as failed with the step and reason, the shard goes on",
    "Interrupted": "a signal, one line through entry.guarded's interruption branch (tested in test_pools)",
}


def test_every_exception_class_of_the_project_is_a_one_line_error_or_deliberately_not():
    import importlib

    found = _exception_classes()
    assert {"ConfigError", "StageError", "UnsafeFileError", "WorkerError", "CheckpointImportError"} <= set(found)
    for name, module in found.items():
        if name in INTERNAL:
            continue
        mod = importlib.import_module(module.removesuffix(".py").replace("/", "."))
        cls = getattr(mod, name)
        assert issubclass(cls, PROJECT_ERRORS), f"{module}: {name} is neither a project error nor listed as internal"


def test_an_unsafe_file_is_one_line_at_the_command_line(capsys):
    def refuse():
        raise errors.UnsafeFileError("hull.pkl.gz: refused: this file holds builtins.exec")

    with pytest.raises(SystemExit) as ex:
        guarded("crystalflow stability", refuse)
    assert ex.value.code == 1
    assert (
        capsys.readouterr().err == "crystalflow stability: error: hull.pkl.gz: refused: this file holds builtins.exec\n"
    )
    with pytest.raises(errors.UnsafeFileError):  # the traceback with --debug
        guarded("crystalflow stability", refuse, debug=True)
