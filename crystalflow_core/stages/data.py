"""Stage: a dataset split (CSV of CIFs) -> cached tensors and the rejected rows."""

from __future__ import annotations

from crystalflow_core.crystals.data import PrepareSettings, SplitSource, prepare_split, resolve_source


def split_source(cfg: dict, dataset: str, split: str) -> SplitSource:
    sp = cfg["datasets"][dataset]["splits"][split]
    return SplitSource(dataset, split, sp["file"], sp["url"], sp["sha256"], sp["git_blob"])


def download(src: SplitSource, download_dir: str) -> str:
    """Fetch one source into the download folder and verify it (checksum or git blob id); the workflow
    runs this in one local job per file, so compute jobs only read."""
    return str(resolve_source(src, None, download_dir))


def prepare(cfg: dict, dataset: str, split: str, out: str, rejected: str, workers: int = 0) -> dict:
    ds = cfg["datasets"][dataset]
    path = resolve_source(split_source(cfg, dataset, split), cfg["data_mirror"], cfg["download_dir"])
    return prepare_split(path, out, rejected, PrepareSettings.from_dataset(ds, workers))
