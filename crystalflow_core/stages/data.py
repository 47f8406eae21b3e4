"""Stage: a dataset split (CSV of CIFs) -> cached tensors and the rejected rows."""

from __future__ import annotations

from ..data import PrepareSettings, SplitSource, prepare_split, resolve_source


def prepare(cfg: dict, dataset: str, split: str, out: str, workers: int = 0) -> dict:
    ds = cfg["datasets"][dataset]
    sp = ds["splits"][split]
    src = SplitSource(dataset, split, sp["file"], sp["url"], sp["sha256"], sp["git_blob"])
    path = resolve_source(src, cfg["data_mirror"], cfg["download_dir"])
    return prepare_split(path, out, PrepareSettings.from_dataset(ds, workers))
