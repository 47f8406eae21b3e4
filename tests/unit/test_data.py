import gzip
import hashlib
from dataclasses import replace

import pandas as pd
import pytest
from conftest import rejected_of

from crystalflow_core import sources
from crystalflow_core.config import defaults
from crystalflow_core.crystals import data as D
from crystalflow_core.io import git_blob_id, sha256_file


def _cif(nacl):
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(nacl))


def _broken_csv(tmp_path, nacl):
    from pymatgen.core import Lattice, Structure

    good = _cif(nacl)
    partial = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    from pymatgen.io.cif import CifWriter

    rf = Structure(Lattice.cubic(4.0), ["Rf"], [[0, 0, 0]])
    rows = [
        {"material_id": "good-1", "cif": good, "formation_energy_per_atom": -2.0},
        {"material_id": "bad-cif", "cif": "data_x\n_cell_length_a nonsense\n", "formation_energy_per_atom": -1.0},
        {"material_id": "partial", "cif": str(CifWriter(partial)), "formation_energy_per_atom": -1.0},
        {"material_id": "rf", "cif": str(CifWriter(rf)), "formation_energy_per_atom": -1.0},
        {"material_id": "good-1", "cif": good, "formation_energy_per_atom": -2.0},
        {"material_id": "nan-e", "cif": good, "formation_energy_per_atom": float("nan")},
        {"material_id": "good-2", "cif": good, "formation_energy_per_atom": -3.0},
    ]
    p = tmp_path / "broken.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_rejected_rows_for_hand_made_broken_csv(tmp_path, nacl):
    p = _broken_csv(tmp_path, nacl)
    settings = D.PrepareSettings.from_dataset(defaults("dataset"), conditions=["formation_energy_per_atom"], workers=1)
    cache = D.prepare_split(p, tmp_path / "out" / "split.pt", rejected_of(tmp_path / "out" / "split.pt"), settings)
    assert cache["ids"] == ["good-1", "good-2"]
    rej = pd.read_csv(tmp_path / "out" / "split_rejected.csv").set_index("id")["reason"].to_dict()
    assert "unparseable" in rej["bad-cif"]
    assert "disordered" in rej["partial"]
    assert "not in the type encoding" in rej["rf"]
    assert rej["good-1"].startswith("duplicate id")
    assert "condition" in rej["nan-e"]
    # the conventional NaCl cell (8 atoms) stays 8 atoms: Niggli reduction keeps the cell content
    assert cache["num_atoms"].tolist() == [8, 8]
    assert cache["conditions"]["formation_energy_per_atom"].tolist() == [-2.0, -3.0]
    assert cache["condition_scalers"]["formation_energy_per_atom"] == pytest.approx((-2.5, 0.5))
    assert cache["atom_count_hist"].tolist() == [0] * 8 + [2]


def test_missing_column_empty_and_bad_compression(tmp_path, nacl):
    p = tmp_path / "nocif.csv"
    pd.DataFrame({"material_id": ["a"], "x": [1]}).to_csv(p, index=False)
    with pytest.raises(D.DataError, match="missing column 'cif'"):
        D.prepare_split(
            p, tmp_path / "a.pt", rejected_of(tmp_path / "a.pt"), D.PrepareSettings.from_dataset(defaults("dataset"))
        )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(D.DataError, match="empty"):
        D.prepare_split(
            empty,
            tmp_path / "b.pt",
            rejected_of(tmp_path / "b.pt"),
            D.PrepareSettings.from_dataset(defaults("dataset")),
        )
    fake_gz = tmp_path / "fake.csv.gz"
    fake_gz.write_text("material_id,cif\na,b\n")
    with pytest.raises(D.DataError, match="cannot be read"):
        D.prepare_split(
            fake_gz,
            tmp_path / "c.pt",
            rejected_of(tmp_path / "c.pt"),
            D.PrepareSettings.from_dataset(defaults("dataset")),
        )
    only_bad = tmp_path / "bad.csv"
    pd.DataFrame({"material_id": ["a"], "cif": ["garbage"]}).to_csv(only_bad, index=False)
    with pytest.raises(D.DataError, match="no usable rows"):
        D.prepare_split(
            only_bad,
            tmp_path / "d.pt",
            rejected_of(tmp_path / "d.pt"),
            D.PrepareSettings.from_dataset(defaults("dataset")),
        )
    assert not (tmp_path / "d.pt").exists()


def test_cache_reused_without_parsing(tmp_path, nacl, monkeypatch):
    p = _broken_csv(tmp_path, nacl)
    out = tmp_path / "c.pt"
    D.prepare_split(p, out, rejected_of(out), D.PrepareSettings.from_dataset(defaults("dataset"), workers=1))
    monkeypatch.setattr(D, "_parse_row", lambda job: (_ for _ in ()).throw(AssertionError("parsed again")))
    again = D.prepare_split(p, out, rejected_of(out), D.PrepareSettings.from_dataset(defaults("dataset"), workers=1))
    assert again["ids"] == ["good-1", "nan-e", "good-2"]
    with pytest.raises(AssertionError, match="parsed again"):
        D.prepare_split(
            p, out, rejected_of(out), D.PrepareSettings.from_dataset(defaults("dataset"), workers=1), force=True
        )


def test_checksums_mirror_and_download(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "ds").mkdir(parents=True)
    f = mirror / "ds" / "val.csv.gz"
    f.write_bytes(gzip.compress(b"material_id,cif\n"))
    good = sha256_file(f)
    src = sources.SplitSource("ds", "val", "ds/val.csv.gz", sha256=good)
    assert sources.resolve_source(src, str(mirror), tmp_path / "dl") == f
    bad = sources.SplitSource("ds", "val", "ds/val.csv.gz", sha256="0" * 64)
    with pytest.raises(D.DataError) as exc:
        sources.resolve_source(bad, str(mirror), tmp_path / "dl")
    assert "0" * 64 in str(exc.value) and good in str(exc.value)
    # download path: a file:// URL stands in for the network; the git blob id is verified
    up = tmp_path / "upstream.csv"
    up.write_bytes(b"material_id,cif\n")
    blob = git_blob_id(up.read_bytes())
    assert blob == hashlib.sha1(b"blob 16\0material_id,cif\n").hexdigest()
    src = sources.SplitSource("ds", "train", "ds/train.csv", url=up.as_uri(), git_blob=blob)
    got = sources.resolve_source(src, str(mirror), tmp_path / "dl")
    assert got.read_bytes() == up.read_bytes()
    src_bad = sources.SplitSource("ds", "test", "ds/test.csv", url=up.as_uri(), git_blob="f" * 40)
    (tmp_path / "dl" / "ds" / "upstream.csv").unlink()
    with pytest.raises(D.DataError, match="f" * 40):
        sources.resolve_source(src_bad, str(mirror), tmp_path / "dl")


def test_real_mp20_rows(tmp_path):
    from conftest import need_data

    (path,) = need_data("mp_20/test.csv.gz")
    df = pd.read_csv(path).head(40)
    small = tmp_path / "mp20_small.csv"
    df.to_csv(small, index=False)
    cache = D.prepare_split(
        small,
        tmp_path / "t.pt",
        rejected_of(tmp_path / "t.pt"),
        D.PrepareSettings.from_dataset(defaults("dataset"), conditions=["formation_energy_per_atom"], workers=1),
    )
    assert len(cache["ids"]) == 40 and cache["n_rejected"] == 0
    assert cache["num_atoms"].tolist() == df["num_atoms"].tolist()
    assert float(cache["frac_coords"].min()) >= 0 and float(cache["frac_coords"].max()) < 1
    s = D.cache_structures(cache, [0])[0]
    from pymatgen.core import Structure

    assert s.matches(Structure.from_str(df["cif"][0], fmt="cif"))


def test_matbench_hull_download_path(tmp_path):
    """hull.source: matbench with no mirror copy: downloaded over HTTP (a local server stands in
    for figshare), checksum-verified, loaded, and E_hull computed from the patched phase diagram."""
    import http.server
    import pickle
    import threading
    from functools import partial

    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    from crystalflow_core.materials.hull import build_hull

    entries = [PDEntry(Composition("Li"), -1.9), PDEntry(Composition("O2"), -9.8), PDEntry(Composition("Li2O"), -14.3)]
    served = tmp_path / "srv" / "ndownloader" / "files"
    served.mkdir(parents=True)
    with gzip.open(served / "48241624", "wb") as fh:
        pickle.dump(PhaseDiagram(entries), fh)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "srv"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ndownloader/files/48241624"
        cfg = {
            "data_mirror": str(tmp_path / "empty_mirror"),
            "download_dir": str(tmp_path / "dl"),
            "hull": {
                "source": "matbench",
                "matbench_url": url,
                "matbench_path": None,
                "matbench_sha256": sha256_file(served / "48241624"),
            },
        }
        hull = build_hull(cfg)
        assert (tmp_path / "dl/hull/2023-02-07-ppd-mp.pkl.gz").exists()
        with pytest.raises(ValueError, match="not among the stage's inputs"):  # another file declared
            build_hull(cfg, [str(tmp_path / "elsewhere.pkl.gz")])
        assert hull.e_above_hull_total(entries[2]) == pytest.approx(0.0, abs=1e-9)
        above = PDEntry(Composition("Li2O"), -14.3 + 3 * 0.25)  # 0.25 eV/atom above the hull
        assert hull.e_above_hull_total(above) == pytest.approx(0.25, abs=1e-9)
        # a wrong pinned checksum stops with both sums and moves the file aside for a fresh download
        cfg["hull"]["matbench_sha256"] = "0" * 64
        with pytest.raises(D.DataError, match="0" * 64):
            build_hull(cfg)
        assert (tmp_path / "dl/hull/2023-02-07-ppd-mp.pkl.gz.bad").exists()
        # no checksum configured: the first download's sum is recorded and later runs held to it
        cfg["hull"]["matbench_sha256"] = None
        build_hull(cfg)
        side = tmp_path / "dl/hull/2023-02-07-ppd-mp.pkl.gz.sha256"
        assert side.read_text().split()[0] == sha256_file(served / "48241624")
        with gzip.open(tmp_path / "dl/hull/2023-02-07-ppd-mp.pkl.gz", "ab") as fh:
            fh.write(b"tampered")
        with pytest.raises(D.DataError, match="recorded"):
            build_hull(cfg)
    finally:
        server.shutdown()


def test_the_hull_is_built_from_the_files_the_stage_declared(tmp_path):
    """A stage reads the hull's declared files (jobs.hull_of), not the config's copy of their paths; a
    prediction declares them only where they exist (it ranks without E_hull otherwise)."""
    from types import SimpleNamespace

    from pymatgen.core import Composition

    from crystalflow_core.jobs import hull_inputs, hull_of
    from crystalflow_core.materials.hull import build_hull

    mirror = tmp_path / "mirror"
    (mirror / "a").mkdir(parents=True)
    pd.DataFrame({"formula": ["LiO", "Li2O"], "formation_energy_per_atom": [-0.5, -2.0]}).to_csv(
        mirror / "a/one.csv", index=False
    )
    pd.DataFrame({"formula": ["Li2O"], "formation_energy_per_atom": [-1.0]}).to_csv(mirror / "a/two.csv", index=False)
    hull = {"source": "local", "local_sources": ["a/one.csv", "a/two.csv"], "elemental_refs": "hull/refs.json.gz"}
    cfg = {"data_mirror": str(mirror), "download_dir": str(tmp_path / "dl"), "hull": hull}
    files = sources.hull_files(cfg)
    assert files["hull"] == [str(mirror / "a/one.csv"), str(mirror / "a/two.csv")]
    assert files["refs"] == str(mirror / hull["elemental_refs"])
    # Li2O at -1.0 eV/atom: on the hull of two.csv alone, 1.0 above it with one.csv's -2.0 declared too
    both, only_two = build_hull(cfg), build_hull(cfg, [str(mirror / "a/two.csv")])
    assert len(both) == 3 and len(only_two) == 1
    assert only_two.e_above_hull(Composition("Li2O"), -1.0) == pytest.approx(0.0, abs=1e-9)
    assert both.e_above_hull(Composition("Li2O"), -1.0) == pytest.approx(1.0, abs=1e-9)
    job = SimpleNamespace(cfg=cfg)
    assert hull_of(job) == {"hull_refs": files["refs"], "hull": files["hull"]}  # the stability stage: always
    assert hull_of(job, optional=True) == {}  # no elemental references in this mirror: a prediction goes without
    (mirror / hull["elemental_refs"]).parent.mkdir(parents=True)
    (mirror / hull["elemental_refs"]).write_bytes(b"")
    assert hull_of(job, optional=True) == hull_of(job)
    assert hull_inputs(hull_of(job)) == files and hull_inputs({}) is None


def test_physically_meaningless_cells_are_rejected_with_the_reason(tmp_path, nacl):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    sliver = Structure(
        Lattice.orthorhombic(5.0, 5.0, 0.01),
        ["Na"] * 4 + ["Cl"] * 4,
        [[x, y, 0] for x in (0, 0.5) for y in (0, 0.25, 0.5, 0.75)],
    )
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.04, 0, 0]])
    rows = [
        {"material_id": "ok", "cif": str(CifWriter(nacl))},
        {"material_id": "sliver", "cif": str(CifWriter(sliver))},
        {"material_id": "close", "cif": str(CifWriter(close))},
    ]
    p = tmp_path / "phys.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    cache = D.prepare_split(
        p,
        tmp_path / "phys.pt",
        rejected_of(tmp_path / "phys.pt"),
        D.PrepareSettings.from_dataset(defaults("dataset"), workers=1),
    )
    assert cache["ids"] == ["ok"]
    rej = pd.read_csv(tmp_path / "phys_rejected.csv").set_index("id")["reason"].to_dict()
    assert "volume per atom" in rej["sliver"] and "unparseable" not in rej["sliver"]
    assert "apart" in rej["close"]


def test_duplicates_are_decided_among_rows_that_parse(tmp_path, nacl):
    from pymatgen.io.cif import CifWriter

    rows = [
        {"material_id": "x", "cif": "data_broken\n_cell_length_a 1"},
        {"material_id": "x", "cif": str(CifWriter(nacl))},
        {"material_id": "x", "cif": str(CifWriter(nacl))},
    ]
    p = tmp_path / "dup.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    cache = D.prepare_split(
        p,
        tmp_path / "dup.pt",
        rejected_of(tmp_path / "dup.pt"),
        D.PrepareSettings.from_dataset(defaults("dataset"), workers=1),
    )
    assert cache["ids"] == ["x"] and cache["rows"].tolist() == [1]  # the good second copy is kept
    rej = pd.read_csv(tmp_path / "dup_rejected.csv")
    assert rej["reason"].tolist()[0].startswith("unparseable") and rej["reason"].tolist()[1].startswith("duplicate id")


def test_cache_key_ignores_the_worker_count(tmp_path, nacl, caplog):
    import logging

    from pymatgen.io.cif import CifWriter

    p = tmp_path / "w.csv"
    pd.DataFrame([{"material_id": "a", "cif": str(CifWriter(nacl))}]).to_csv(p, index=False)
    D.prepare_split(
        p,
        tmp_path / "w.pt",
        rejected_of(tmp_path / "w.pt"),
        D.PrepareSettings.from_dataset(defaults("dataset"), workers=1),
    )
    mtime = (tmp_path / "w.pt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        D.prepare_split(
            p,
            tmp_path / "w.pt",
            rejected_of(tmp_path / "w.pt"),
            D.PrepareSettings.from_dataset(defaults("dataset"), workers=2),
        )
    assert (tmp_path / "w.pt").stat().st_mtime_ns == mtime and "up to date" in caplog.text
    D.prepare_split(
        p,
        tmp_path / "w.pt",
        rejected_of(tmp_path / "w.pt"),
        D.PrepareSettings.from_dataset(
            defaults("dataset"),
            workers=1,
            bounds=replace(D.PhysicalBounds.from_dataset(defaults("dataset")), min_distance=0.4),
        ),
    )
    assert (tmp_path / "w.pt").stat().st_mtime_ns != mtime  # a setting that changes results rebuilds
