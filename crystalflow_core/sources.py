"""Where every input file comes from: a dataset split, the Matbench Discovery hull, a checkpoint, the
elemental references: the mirror's copy, else a download checked against its published checksum.
Torch-free, so that the workflow's DAG is built without the model's libraries."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from crystalflow_core.errors import DataError
from crystalflow_core.io import atomic_path, git_blob_id, sha256_file

log = logging.getLogger(__name__)


@dataclass
class SplitSource:
    dataset: str
    split: str
    file: str  # path relative to the mirror folder, e.g. "mp_20/val.csv.gz"
    url: str | None = None
    sha256: str | None = None  # of the mirror/downloaded file as stored
    git_blob: str | None = None  # upstream git blob id of the uncompressed CSV


def download_path(src: SplitSource, download_dir: str | Path) -> Path:
    """Where a source is downloaded to (and found again): {download_dir}/{dataset}/{the URL's file name}."""
    name = Path(src.url or src.file).name
    return Path(download_dir) / src.dataset / (name if Path(name).suffix else Path(src.file).name)


def local_source(src: SplitSource, mirror: str | None, download_dir: str | Path) -> Path:
    """The file a source is read from: the mirror's copy when it has one, else the download location
    (which the workflow's local `download` rule fills, so compute jobs never download)."""
    if mirror and (Path(mirror) / src.file).exists():
        return Path(mirror) / src.file
    return download_path(src, download_dir)


def resolve_source(src: SplitSource, mirror: str | None, download_dir: str | Path) -> Path:
    """Return a verified local path for one split: the mirror first, else download from `url`."""
    if mirror:
        cand = Path(mirror) / src.file
        if cand.exists():
            if src.sha256:
                got = sha256_file(cand)
                if got != src.sha256:
                    raise DataError(f"checksum mismatch for {cand}: expected sha256 {src.sha256}, got {got}")
            return cand
    if not src.url:
        raise DataError(f"{src.dataset}/{src.split}: not in the mirror ({mirror}/{src.file}) and no url configured")
    dest = download_path(src, download_dir)
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s -> %s", src.url, dest)
        try:
            with urllib.request.urlopen(src.url, timeout=120) as resp, atomic_path(dest) as tmp, open(tmp, "wb") as fh:
                shutil.copyfileobj(resp, fh)
        except OSError as exc:
            raise DataError(f"{src.dataset}/{src.split}: download of {src.url} failed: {exc}") from exc
    if src.git_blob:
        data = dest.read_bytes()
        if dest.suffix == ".gz":
            data = gzip.decompress(data)
        got = git_blob_id(data)
        if got != src.git_blob:
            _reject_download(dest, f"expected git blob {src.git_blob}, got {got}")
    elif src.sha256:
        got = sha256_file(dest)
        if got != src.sha256:
            _reject_download(dest, f"expected sha256 {src.sha256}, got {got}")
    else:  # no published checksum: record the first download's sha256 and hold later runs to it
        side = dest.with_name(dest.name + ".sha256")
        got = sha256_file(dest)
        if side.exists():
            want = side.read_text().split()[0]
            if got != want:
                _reject_download(dest, f"expected sha256 {want} (recorded in {side} at download), got {got}")
        else:
            side.write_text(f"{got}  {src.url}\n")
            log.warning("%s: no checksum configured; recorded sha256 %s in %s (pin it in the config)", dest, got, side)
    return dest


def _reject_download(dest: Path, why: str):
    """Move a download that fails its checksum aside (the next run downloads again) and stop."""
    bad = dest.with_name(dest.name + ".bad")
    os.replace(dest, bad)
    raise DataError(f"checksum mismatch for {dest} ({why}); moved to {bad}")


def split_source(cfg: dict, dataset: str, split: str) -> SplitSource:
    sp = cfg["datasets"][dataset]["splits"][split]
    return SplitSource(dataset, split, sp["file"], sp["url"], sp["sha256"], sp["git_blob"])


def hull_source(cfg: dict) -> SplitSource | None:
    """The Matbench Discovery hull file to fetch (mirror or download), None where none is needed (a
    local hull, or `hull.matbench_path` given)."""
    h = cfg["hull"]
    if h["source"] != "matbench" or h["matbench_path"]:
        return None
    return SplitSource("hull", "ppd", "hull/2023-02-07-ppd-mp.pkl.gz", h["matbench_url"], sha256=h["matbench_sha256"])


def elemental_refs_path(cfg: dict) -> Path:
    """The elemental reference energies of the hull (MP's, in the data mirror; the working folder when
    no mirror is set)."""
    return Path(cfg["data_mirror"] or ".") / cfg["hull"]["elemental_refs"]


def hull_paths(cfg: dict) -> list[str]:
    """The files the run's hull is built from: the Matbench Discovery PPD (the mirror's copy or where the
    download rule puts it, or `matbench_path`), or the local hull's CSVs in the mirror."""
    h = cfg["hull"]
    if h["source"] == "matbench":
        src = hull_source(cfg)
        return [str(local_source(src, cfg["data_mirror"], cfg["download_dir"])) if src else h["matbench_path"]]
    return [str(Path(cfg["data_mirror"] or ".") / p) for p in h["local_sources"]]


def hull_files(cfg: dict) -> dict:
    """Every file of the run's hull, as a stage declares them: {"refs": the elemental references, "hull":
    hull_paths}."""
    return {"refs": str(elemental_refs_path(cfg)), "hull": hull_paths(cfg)}
