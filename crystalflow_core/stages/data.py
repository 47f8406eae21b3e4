"""Stage: a dataset split (CSV of CIFs) -> cached tensors and the rejected rows."""

from __future__ import annotations

from pathlib import Path

from crystalflow_core.crystals.data import PrepareSettings, prepare_split
from crystalflow_core.errors import DataError
from crystalflow_core.sources import SplitSource, resolve_source, split_source


def download(src: SplitSource, download_dir: str) -> str:
    """Fetch one source into the download folder and verify it (checksum or git blob id); the workflow
    runs this in one local job per file, so compute jobs only read."""
    return str(resolve_source(src, None, download_dir))


def prepare(
    cfg: dict, dataset: str, split: str, out: str, rejected: str, workers: int = 0, csv: str | None = None
) -> dict:
    """One split's CSV -> its cache. `csv`: the file the workflow resolved (the mirror's copy or the download);
    it must be the configured source's, whose checksum is checked here (None: the source's file)."""
    ds = cfg["datasets"][dataset]
    path = resolve_source(split_source(cfg, dataset, split), cfg["data_mirror"], cfg["download_dir"])
    if csv is not None and Path(csv).resolve() != path.resolve():
        raise DataError(f"{dataset}/{split}: input {csv} is not the configured source {path}")
    return prepare_split(path, out, rejected, PrepareSettings.from_dataset(ds, workers))
