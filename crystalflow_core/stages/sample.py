"""Stage: sample shards from a checkpoint, their provenance, and the gathered samples (+ CIF/extxyz)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from pymatgen.io.ase import AseAtomsAdaptor

from crystalflow_core import __version__
from crystalflow_core.crystals.crystal import safe_names
from crystalflow_core.crystals.data import cache_structures, load_cache
from crystalflow_core.errors import StageError
from crystalflow_core.generative.sampling import (
    FlowSampler,
    items_for_run,
    record_to_structure,
    settings_for_run,
)
from crystalflow_core.io import atomic_path, content_key, read_jsonl, sha256_file, write_jsonl_atomic
from crystalflow_core.jobs import shard_of
from crystalflow_core.points import point_of
from crystalflow_core.stages.common import ensure_writable, open_sampler, records_made_as, require

log = logging.getLogger("crystalflow")


def sample(
    run: dict, ckpt: str, test_pt: str | None, steps: int | str, shard: int, shards: int, out: str, threads: int = 0
):
    """One sample shard; `steps` is a sampling point (100, or heun_10: see sampling.parse_point)."""
    require(ckpt, test_pt if run["task"] == "csp" else None)
    ensure_writable(out)
    sampler = open_sampler(ckpt, threads)
    check_model_fits_run(sampler, run, ckpt)
    test_cache = load_cache(test_pt) if run["task"] == "csp" else None
    items = shard_of(items_for_run(run, test_cache, sampler.atom_count_hist), shard, shards)
    prov = sample_provenance(run, sha256_file(ckpt), steps, shard, shards)
    t0 = time.time()
    recs = sampler.generate(items, settings_for_run(run, steps), shard=shard)
    for r in recs:
        r["provenance"], r["model_sha256"] = prov["key"], prov["model_sha256"][:16]
    dt = time.time() - t0
    n_flag = sum(1 for r in recs if r["flag"])
    log.info(
        "shard %d/%d: %d structures in %.1f s (%.2f min per 10,000), %d flagged",
        shard,
        shards,
        len(recs),
        dt,
        dt / 60 * 1e4 / max(len(recs), 1),
        n_flag,
    )
    write_jsonl_atomic(out, recs)


def baseline_sample(run: dict, train_pt: str, point: str, shard: int, shards: int, out: str):
    """One shard of a DNG run's baseline `point` (random | prototype: materials.baselines): as many structures
    as the model samples, drawn from the run's training split; kept where the shard was made from the same
    split and settings."""
    from crystalflow_core.materials.baselines import baseline_items, baseline_records

    require(train_pt)
    ensure_writable(out)
    s = run["sample"]
    what = {"baseline": point, "num_samples": s["num_samples"], "seed": s["seed"], "shard": [shard, shards]}
    key = content_key({**what, "train_sha256": sha256_file(train_pt), "code": __version__})
    if records_made_as(out, key):
        log.info("%s is current (same training split and settings): kept", out)
        return
    cache = load_cache(train_pt)
    items = shard_of(baseline_items(s["num_samples"], s["seed"]), shard, shards)
    t0 = time.time()
    recs = baseline_records(point, items, cache_structures(cache), list(cache["ids"]), progress=True)
    for r in recs:
        r.update(provenance=key, method=point, steps=0, shard=shard)
    log.info(
        "%s baseline shard %d/%d: %d structures in %.1f s, %d flagged",
        point,
        shard,
        shards,
        len(recs),
        time.time() - t0,
        sum(bool(r["flag"]) for r in recs),
    )
    write_jsonl_atomic(out, recs)


BATCHING = ("batch_size", "pair_budget")


def sample_provenance(run: dict, model_sha256: str, steps: int | str, shard: int, shards: int) -> dict:
    """What a sample shard is made from: the checkpoint's bytes, the settings that change the samples,
    the shard, and the code version; `key` is a short hash of all of it, stored in every record."""
    s = run["sample"]
    what = {
        "model_sha256": model_sha256,
        "task": run["task"],
        "conditions": run["conditions"],
        # batching changes how, not what: each item's prior draw depends on the seed and its id only
        "settings": {k: v for k, v in asdict(settings_for_run(run, steps)).items() if k not in BATCHING},
        "shard": [shard, shards],
        "items": {k: s[k] for k in ("k", "num_samples", "test_limit", "condition_values")},
        "test_split": run["test_split"],
        "code": __version__,
    }
    what["key"] = content_key(what)
    return what


def check_model_fits_run(sampler: FlowSampler, run: dict, ckpt) -> None:
    """A checkpoint of another task or other conditions is an error, never sampled."""
    mc = sampler.net.cfg
    if mc.task != run["task"] or sorted(mc.conditions) != sorted(run["conditions"]):
        raise StageError(
            f"{ckpt} is a {mc.task} model conditioned on {mc.conditions or 'nothing'}; the run "
            f"asks for {run['task']} on {run['conditions'] or 'nothing'}: a checkpoint of another run"
        )


def shard_is_current(path, run: dict, ckpt: str, steps: int | str, shard: int, shards: int) -> bool:
    """True when an existing shard was made from this checkpoint with these settings (else rebuild it)."""
    if not Path(path).exists() or not Path(ckpt).exists():
        return False
    return records_made_as(path, sample_provenance(run, sha256_file(ckpt), steps, shard, shards)["key"])


def check_samples_current(recs: list[dict], samples: str, ckpt: str | None, run: dict, run_name: str) -> None:
    """Samples must come from the run's current checkpoint and settings."""
    keys = {r.get("provenance") for r in recs}
    if not recs or ckpt is None or not Path(ckpt).exists():
        return
    if None in keys:
        raise StageError(
            f"{samples}: records without provenance (made by an older version): delete the file to rebuild"
        )
    steps = point_of(run, recs[0].get("method", run["sample"]["method"]), recs[0].get("steps"))
    shards = run["sample"]["shards"]
    sha = sha256_file(ckpt)
    want = {sample_provenance(run, sha, steps, i, shards)["key"] for i in range(shards)}
    if not keys <= want:
        raise StageError(
            f"{samples}: made from another checkpoint or other sampling settings than run {run_name} "
            f"has now ({Path(ckpt).name}): delete it to rebuild"
        )


def gather(inputs: list[str], out: str, export_dir: str, export: list[str]):
    """Concatenate shard files; export CIFs (cif/) and extxyz into `export_dir` as `export` asks (the
    folder is made either way: it is a declared output)."""
    recs = [r for p in inputs for r in read_jsonl(p)]
    Path(export_dir).mkdir(parents=True, exist_ok=True)
    if export:
        export_samples(recs, Path(export_dir), export)
    write_jsonl_atomic(out, recs)


def export_samples(recs: list[dict], folder: Path, formats) -> None:
    structs = [(r["id"], record_to_structure(r)) for r in recs]
    structs = [(i, s) for i, s in structs if s is not None]
    if "cif" in formats:
        d = folder / "cif"
        d.mkdir(parents=True, exist_ok=True)
        names = safe_names(sid for sid, _ in structs)
        for sid, s in structs:
            s.to(filename=str(d / f"{names[sid]}.cif"))
    if "extxyz" in formats:
        from ase.io import write

        atoms = []
        for sid, s in structs:
            a = AseAtomsAdaptor.get_atoms(s)
            a.info["sample_id"] = sid
            atoms.append(a)
        with atomic_path(folder / "samples.extxyz") as tmp:
            write(str(tmp), atoms, format="extxyz")
