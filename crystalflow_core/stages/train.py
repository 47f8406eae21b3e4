"""Stage: a model checkpoint, trained (resumably) or imported from the authors' release."""

from __future__ import annotations

import logging
from pathlib import Path

from crystalflow_core.crystals.data import load_cache
from crystalflow_core.errors import StageError
from crystalflow_core.generative.reference import (
    build_module,
    hparams_from_yaml,
    load_reference,
    read_scalers,
    save_module,
)
from crystalflow_core.generative.training import train as train_model
from crystalflow_core.io import sha256_file
from crystalflow_core.sources import SplitSource, resolve_source
from crystalflow_core.stages.common import disk_full, ensure_writable, require, use_threads

log = logging.getLogger("crystalflow")


def train(run: dict, train_pt: str, val_pt: str | None, out_ckpt: str, workdir: str, threads: int = 0):
    require(train_pt, val_pt)
    ensure_writable(out_ckpt, Path(workdir) / "last.ckpt")
    use_threads(threads)
    try:
        return train_model(run, train_pt, val_pt, out_ckpt, workdir)
    except (OSError, RuntimeError) as exc:
        if not disk_full(exc, workdir):
            raise
        raise StageError(
            f"No space left on device while writing under {workdir} ({type(exc).__name__}: {str(exc)[:160]}); "
            f"free some space and run again: training resumes from {Path(workdir) / 'last.ckpt'}"
        ) from exc


def import_checkpoint(
    cfg: dict,
    run_name: str,
    ckpt: str,
    out: str,
    hparams: str | None = None,
    scalers: str | None = None,
    sha256: str | None = None,
    url: str | None = None,
    train_pt: str | None = None,
):
    """The authors' checkpoint -> this project's model.ckpt (the workflow then samples and evaluates it)."""
    run = cfg["runs"][run_name]
    ensure_writable(out)
    path = Path(ckpt)
    if url and not path.exists():
        path = resolve_source(SplitSource("checkpoints", run_name, path.name, url, sha256), None, cfg["download_dir"])
    ref = load_reference(path, sha256)
    hp = hparams_from_yaml(hparams) if hparams else (ref.get("hyper_parameters") or {})
    sc = read_scalers(scalers) if scalers else None
    # the atom-count histogram of the training split (DNG sampling draws from it)
    hist = load_cache(train_pt)["atom_count_hist"].tolist() if train_pt and Path(train_pt).exists() else None
    prov = {"reference_checkpoint": str(path), "sha256": sha256_file(path)}
    module = build_module(ref, hp, run, run_name, sc, hist, prov)
    save_module(module, out)
    log.info(
        "imported %s (%s, H=%d, L=%d, conditions %s) -> %s",
        path,
        module.mcfg.task,
        module.mcfg.hidden,
        module.mcfg.layers,
        module.mcfg.conditions or "none",
        out,
    )
    return out
