"""One function per workflow stage. Snakemake scripts and the CLI both call these."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from . import config as cfgmod
from .crystal import safe_names, structure_from
from .io import DamagedFileError, atomic_path, read_jsonl, sha256_file, write_jsonl_atomic

log = logging.getLogger("crystalflow")


class StageError(RuntimeError):
    """A stage asked to work on inputs that do not fit (missing, foreign, stale, unwritable)."""


def require(*paths) -> None:
    """Every input of a stage exists; else one line naming it (`snakemake TARGET` builds what is missing)."""
    for p in paths:
        if p and not Path(p).exists():
            raise StageError(f"input {p} not found: build it first (for example with snakemake {p})")


def ensure_writable(*outputs) -> None:
    """Check before expensive work that every output can be written where it is to go."""
    for out in outputs:
        folder = Path(out).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise StageError(f"cannot write {out} ({exc.strerror or exc}); fix the folder's permissions first") from exc


def setup_logging(log_file: str | None = None, level=logging.INFO):
    """Log to stderr; with `log_file` (Snakemake rules), stderr itself (progress bars, warnings,
    tracebacks) goes to that file too."""
    import sys

    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(log_file, "a", buffering=1)
    handlers = [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


# ----------------------------------------------------------------------------- data
def prepare(cfg: dict, dataset: str, split: str, out: str, workers: int = 0) -> dict:
    from .data import PhysicalBounds, PrepareSettings, SplitSource, prepare_split, resolve_source

    ds = cfg["datasets"][dataset]
    sp = ds["splits"][split]
    src = SplitSource(dataset, split, sp["file"], sp.get("url"), sp.get("sha256"), sp.get("git_blob"))
    path = resolve_source(src, cfg.get("data_mirror"), cfg.get("download_dir", "results/downloads"))
    bounds = PhysicalBounds(ds["min_volume_per_atom"], ds["max_volume_per_atom"], ds["min_distance"])
    settings = PrepareSettings(ds["id_column"], ds["cif_column"], list(ds["conditions"]), True,
                               ds["max_rows"], workers, bounds)
    return prepare_split(path, out, settings)


# ----------------------------------------------------------------------------- train
def use_threads(threads: int = 0) -> int:
    """torch intra-op threads for a training or sampling job: the job's threads (all cores when 0),
    whatever OMP_NUM_THREADS says (it is 1 wherever CHGNet worker processes are set up, and a
    training step on 1 thread takes much longer than on all cores)."""
    import torch

    avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = min(int(threads) or avail, avail)  # never more threads than cores this process may use
    torch.set_num_threads(n)
    return n


def train(run: dict, train_pt: str, val_pt: str | None, out_ckpt: str, workdir: str, threads: int = 0):
    from .training import train as _train

    require(train_pt, val_pt)
    ensure_writable(out_ckpt, Path(workdir) / "last.ckpt")
    use_threads(threads)
    return _train(run, train_pt, val_pt, out_ckpt, workdir)


# ----------------------------------------------------------------------------- sample
def sample_items(run: dict, module, test_pt: str | None) -> list[dict]:
    from .data import load_cache
    from .sampling import csp_items, dng_items

    s = run["sample"]
    if run["task"] == "csp":
        cache = load_cache(test_pt)
        items = csp_items(cache, max(s["k"]), s["test_limit"])
        for it in items:
            it["id"] = f"{it['target_id']}#{it['candidate']}"
            if run["conditions"]:  # conditional CSP (e.g. pressure): each target at its own value
                it["condition"] = {c: float(cache["conditions"][c][it["target_index"]]) for c in run["conditions"]}
                it["target"] = it["condition"][run["conditions"][0]]
        return items
    hist = module.hparams.atom_count_hist
    conds = run["conditions"]
    targets = s["targets"] if conds else [None]
    items = []
    for ti, target in enumerate(targets):
        cond = {conds[0]: float(target)} if conds else None
        for it in dng_items(hist, s["num_samples"], s["seed"] + ti, cond):
            it["id"] = f"t{ti}-{it['sample_index']}" if conds else f"s{it['sample_index']}"
            if conds:
                it["target"] = float(target)
            items.append(it)
    return items


def sample(run: dict, ckpt: str, test_pt: str | None, steps: int, shard: int, shards: int, out: str,
           threads: int = 0):
    import torch

    from .sampling import SampleSettings, generate, shard_slice
    from .training import load_module

    require(ckpt, test_pt if run["task"] == "csp" else None)
    ensure_writable(out)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    use_threads(threads)
    module = load_module(ckpt, map_location=dev)
    check_model_fits_run(module, run, ckpt)
    s = run["sample"]
    items = shard_slice(sample_items(run, module, test_pt), shard, shards)
    settings = sample_settings(run, steps)
    prov = sample_provenance(run, sha256_file(ckpt), steps, shard, shards)
    t0 = time.time()
    recs = generate(module, items, settings, shard=shard, device=dev)
    for r in recs:
        r["provenance"], r["model_sha256"] = prov["key"], prov["model_sha256"][:16]
    dt = time.time() - t0
    n_flag = sum(1 for r in recs if r["flag"])
    log.info("shard %d/%d: %d structures in %.1f s (%.2f min per 10,000), %d flagged", shard, shards,
             len(recs), dt, dt / 60 * 1e4 / max(len(recs), 1), n_flag)
    write_jsonl_atomic(out, recs)


def sample_settings(run: dict, steps: int):
    from .sampling import SampleSettings

    s = run["sample"]
    var = {"lattice": "k", "coords": "f", "types": "a"}
    return SampleSettings(steps=int(steps), method=s["method"], anneal=cfgmod.anneal_for(run),
                          anneal_offset=s["anneal_offset"], anneal_vars=tuple(var[v] for v in s["anneal_vars"]),
                          batch_size=s["batch_size"], guidance=s["guidance"], seed=s["seed"])


def sample_provenance(run: dict, model_sha256: str, steps: int, shard: int, shards: int) -> dict:
    """What a sample shard is made from: the checkpoint's bytes, the settings that change the samples,
    the shard, and the code version; `key` is a short hash of all of it, stored in every record."""
    from . import __version__

    s = run["sample"]
    what = {"model_sha256": model_sha256, "task": run["task"], "conditions": run["conditions"],
            "settings": asdict(sample_settings(run, steps)), "shard": [shard, shards],
            "items": {k: s[k] for k in ("k", "num_samples", "test_limit", "targets")}, "test_split": run["test_split"],
            "code": __version__}
    what["key"] = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return what


def check_model_fits_run(module, run: dict, ckpt) -> None:
    """A checkpoint of another task or other conditions is an error, never sampled."""
    mc = module.mcfg
    if mc.task != run["task"] or sorted(mc.conditions) != sorted(run["conditions"]):
        raise StageError(f"{ckpt} is a {mc.task} model conditioned on {mc.conditions or 'nothing'}; the run "
                         f"asks for {run['task']} on {run['conditions'] or 'nothing'}: a checkpoint of another run")


def shard_is_current(path, run: dict, ckpt: str, steps: int, shard: int, shards: int) -> bool:
    """True when an existing shard was made from this checkpoint with these settings (else rebuild it)."""
    if not Path(path).exists() or not Path(ckpt).exists():
        return False
    key = sample_provenance(run, sha256_file(ckpt), steps, shard, shards)["key"]
    try:
        recs = read_jsonl(path)
    except DamagedFileError:
        return False
    return bool(recs) and all(r.get("provenance") == key for r in recs)


def check_samples_current(recs: list[dict], samples: str, ckpt: str | None, run: dict, run_name: str) -> None:
    """Samples must come from the run's current checkpoint and settings."""
    keys = {r.get("provenance") for r in recs}
    if not recs or ckpt is None or not Path(ckpt).exists():
        return
    if None in keys:
        raise StageError(f"{samples}: records without provenance (made by an older version): delete the file to rebuild")
    steps = recs[0].get("steps")
    shards = run["sample"]["shards"]
    sha = sha256_file(ckpt)
    want = {sample_provenance(run, sha, steps, i, shards)["key"] for i in range(shards)}
    if not keys <= want:
        raise StageError(f"{samples}: made from another checkpoint or other sampling settings than run {run_name} "
                         f"has now ({Path(ckpt).name}): delete it to rebuild")


def _made_from(recs: list[dict]) -> dict:
    """Provenance columns of a metrics row: the checkpoint(s) the samples came from and the code version."""
    from . import __version__

    models = sorted({str(r.get("model_sha256", "unrecorded")) for r in recs})
    return {"model_sha256": ";".join(models) or "none", "code_version": __version__}


def gather(inputs: list[str], out: str, export: list[str] = ()):
    """Concatenate shard files; optionally export CIFs (a folder) and extxyz beside `out`."""
    recs = [r for p in inputs for r in read_jsonl(p)]
    if export:
        export_samples(recs, Path(out).parent, export)
    write_jsonl_atomic(out, recs)


def export_samples(recs: list[dict], folder: Path, formats) -> None:
    from pymatgen.io.ase import AseAtomsAdaptor

    from .sampling import record_to_structure

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


# ----------------------------------------------------------------------------- relax
def relax(run: dict, samples: str, shard: int, shards: int, out: str, workers: int = 1):
    from .relax import RelaxSettings, relax_many
    from .sampling import record_to_structure, shard_slice

    r = run["relax"]
    require(samples)
    ensure_writable(out)
    recs = read_jsonl(samples)
    if r["limit"]:
        recs = recs[: r["limit"]]
    recs = shard_slice(recs, shard, shards)
    settings = RelaxSettings(fmax=r["fmax"], steps=r["steps"], pressure=r["pressure"],
                             optimizer=r["optimizer"], timeout=r["timeout"], batch_size=r["batch_size"],
                             max_vacuum_gap=r["max_vacuum_gap"])
    partial = Path(str(out) + ".partial")
    # what this shard relaxes: finished work in a .partial of other samples or settings is not resumed
    prov_of = {rec["id"]: rec.get("provenance", "") for rec in recs}
    key = hashlib.sha256(json.dumps([sorted(prov_of.items()), asdict(settings)], default=str).encode()).hexdigest()[:16]
    side = Path(str(partial) + ".key")
    if partial.exists() and (not side.exists() or side.read_text().strip() != key):
        log.warning("%s holds relaxations of other samples or settings; starting the shard again", partial)
        partial.unlink()
    side.write_text(key + "\n")
    per_item = "pressure" in run["conditions"]  # pressure-conditioned run: relax at each sample's target
    items = [(rec["id"], record_to_structure(rec), rec["condition"]["pressure"] if per_item else None)
             for rec in recs]
    t0 = time.time()
    done = relax_many(items, partial, settings, workers=workers or r["workers"] or 1)
    n_fail = sum(1 for d in done if d.get("error"))
    log.info("relaxed %d structures in %.1f s (%d failed)", len(done), time.time() - t0, n_fail)
    if done and n_fail == len(done):
        log.warning("every structure of this shard failed to relax")
    for d in done:
        d["sample_provenance"] = prov_of.get(d["id"], "")
    write_jsonl_atomic(out, done)
    partial.unlink(missing_ok=True)
    side.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- stability
def build_hull(cfg: dict):
    from .hull import LocalHull, MatbenchHull

    h = cfg["hull"]
    mirror = Path(cfg["data_mirror"] or ".")
    if h["source"] == "matbench":
        path = h["matbench_path"]
        if not path:
            from .data import SplitSource, resolve_source

            src = SplitSource("hull", "ppd", "hull/2023-02-07-ppd-mp.pkl.gz", h["matbench_url"], sha256=h["matbench_sha256"])
            path = resolve_source(src, str(mirror), cfg["download_dir"])
        return MatbenchHull(path)
    return LocalHull.from_csvs([mirror / p for p in h["local_sources"]])


def stability(cfg: dict, run: dict, samples: str, relaxed: list[str], novelty_pts: list[str], out: str):
    """Per-structure table: formation energies (before/after relaxation), E_hull, unique, new."""
    from .data import cache_structures, load_cache
    from .hull import LocalHull, formation_energy_per_atom, load_elemental_refs, mp2020_corrected_energy
    from .metrics import unique_new_flags
    from .sampling import record_to_structure

    require(samples, *relaxed, *novelty_pts)
    ensure_writable(out)
    samples_by_id = {r["id"]: r for r in read_jsonl(samples)}
    rel = [r for p in relaxed for r in read_jsonl(p)]
    for r in rel:  # relaxations of other samples (an older sampling of the run) are never mixed in
        smp = samples_by_id.get(r["id"])
        if smp is None or r.get("sample_provenance", smp.get("provenance")) != smp.get("provenance"):
            raise StageError(f"relaxation of {r['id']!r} does not belong to {samples} (other samples, or none with "
                             "that id): delete the relax shards to rebuild them")
    refs = load_elemental_refs(Path(cfg["data_mirror"]) / cfg["hull"]["elemental_refs"])
    hull = build_hull(cfg)
    rows, final_structs = [], []
    for r in rel:
        smp = samples_by_id.get(r["id"], {})
        row = {"id": r["id"], "converged": r.get("converged", False), "error": r.get("error", ""),
               "target": smp.get("target", np.nan), "e_form_initial": np.nan, "e_form": np.nan,
               "e_hull": np.nan, "hull_missing": "", "pressure_gpa": r.get("pressure_gpa", np.nan),
               "stress_pressure_gpa": r.get("stress_pressure_gpa", np.nan)}
        s0 = record_to_structure(smp) if smp else None
        s1 = structure_from(r["final"]) if r.get("final") and not r.get("error") else None  # unphysical: no energy
        try:
            if s0 is not None and "initial_energy_per_atom" in r:
                e0 = mp2020_corrected_energy(s0, r["initial_energy_per_atom"] * len(s0))
                row["e_form_initial"] = formation_energy_per_atom(s0, e0, refs)
            if s1 is not None:
                e1 = mp2020_corrected_energy(s1, r["energy_per_atom"] * len(s1))
                row["e_form"] = formation_energy_per_atom(s1, e1, refs)
                if isinstance(hull, LocalHull):
                    row["e_hull"] = hull.e_above_hull(s1.composition, row["e_form"])
                else:
                    from pymatgen.entries.computed_entries import ComputedStructureEntry

                    row["e_hull"] = hull.e_above_hull_total(ComputedStructureEntry(s1, e1))
        except KeyError as exc:
            row["hull_missing"] = str(exc).strip("'\"")
        rows.append(row)
        final_structs.append(s1 if s1 is not None else s0)
    ok = [i for i, s in enumerate(final_structs) if s is not None]
    ref = []
    for p in novelty_pts:
        ref += cache_structures(load_cache(p))
    uniq, new = unique_new_flags([final_structs[i] for i in ok], ref)
    df = pd.DataFrame(rows)
    df["unique"] = False
    df["new"] = False
    df.loc[ok, "unique"] = uniq
    df.loc[ok, "new"] = new
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)


# ----------------------------------------------------------------------------- metrics
def test_fingerprints(test_pt: str, out: str, limit: int | None, workers: int = 0):
    from .data import cache_structures, load_cache
    from .metrics import fingerprints_all

    cache = load_cache(test_pt)
    n = len(cache["ids"]) if not limit else min(limit, len(cache["ids"]))
    structs = cache_structures(cache, range(n))
    sfp, cfp, ok = fingerprints_all(structs, workers, progress=True)  # rows kept; protocols filter
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, struct=sfp, comp=cfp, ok=ok)


def csp_metrics(cfg: dict, run_name: str, run: dict, samples: str, test_pt: str, steps: int, out: str,
                workers: int = 0, relaxed: list[str] = (), ckpt: str | None = None):
    """Match rate / RMSE for every k; with `relaxed` (pressure-conditioned runs) also the CHGNet
    stress of the relaxed candidates against their target pressure."""
    from .data import cache_structures, load_cache
    from .metrics import csp_rms_table, csp_summary
    from .sampling import record_problem, record_to_structure

    m = cfg["metrics"]
    require(samples, test_pt, *relaxed)
    ensure_writable(out)
    cache = load_cache(test_pt)
    recs = read_jsonl(samples)
    check_samples_current(recs, samples, ckpt, run, run_name)
    kmax = max(run["sample"]["k"])
    limit = run["sample"].get("test_limit")
    n_targets = min(limit, len(cache["ids"])) if limit else len(cache["ids"])
    by_target: dict = {}
    for n, r in enumerate(recs):
        ti, c = r.get("target_index"), r.get("candidate")
        if not isinstance(ti, int) or not isinstance(c, int) or not 0 <= ti < n_targets or not 0 <= c < kmax:
            raise DamagedFileError(f"{samples}: record {n + 1} (id {r.get('id')!r}) is for target {ti}, candidate {c}, "
                                   f"outside the {n_targets} targets x {kmax} candidates of run {run_name}: "
                                   "samples of another run or test split")
        if cache["ids"][ti] != r.get("target_id", cache["ids"][ti]):
            raise DamagedFileError(f"{samples}: record {n + 1} targets {r.get('target_id')!r}, but test crystal {ti} "
                                   f"is {cache['ids'][ti]!r}: samples made for another test split")
        by_target.setdefault(ti, {})[c] = r
    idx = list(range(n_targets))  # the denominator is every target asked for, present in the file or not
    by_target = {i: by_target.get(i, {}) for i in idx}
    gts = cache_structures(cache, idx)
    protocol = m["protocol"]
    strict = protocol != "crystalflow"  # the authors' script matches every candidate it can build
    cands = [[record_to_structure(by_target[i][c], strict=strict) if c in by_target[i] else None for c in range(kmax)]
             for i in idx]
    rel = [r for p in relaxed for r in read_jsonl(p)]
    cand_of = {r["id"]: r["candidate"] for r in recs}
    t0 = time.time()
    table = csp_rms_table(gts, cands, m["stol"], m["ltol"], m["angle_tol"], workers, protocol)
    log.info("matched %d targets x %d candidates in %.1f s", len(gts), kmax, time.time() - t0)
    rows = []
    for k in sorted(run["sample"]["k"]):
        row = {"run": run_name, "dataset": run["dataset"], "task": "csp", "steps": steps, "protocol": protocol,
               **csp_summary(table, k, m["stol"]), **_made_from(recs)}
        mine = [r for r in recs if r["candidate"] < k]
        kinds = [record_problem(r)[0] for r in mine]
        row["n_candidates"] = len(mine)
        row["n_missing_candidates"] = n_targets * k - len(mine)
        row["n_unreadable"] = kinds.count("unreadable")
        row["n_flagged"] = kinds.count("flagged")
        if relaxed:
            row.update(_pressure_proxy(rel, cand_of, k))
        rows.append(row)
    with atomic_path(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def _pressure_proxy(relaxed: list[dict], cand_of: dict, k: int) -> dict:
    """DFT-free check of a pressure-conditioned run over the first k candidates: CHGNet stress of
    the relaxed cells vs their target pressures (converged relaxations only)."""
    from .metrics import target_errors

    sel = [r for r in relaxed if cand_of.get(r["id"], k) < k]
    conv = [r for r in sel if r.get("converged")]
    err = target_errors(np.array([r["pressure_gpa"] for r in conv], float),
                        np.array([r["stress_pressure_gpa"] for r in conv], float))
    return {"n_relaxed": len(sel), "n_relax_failed": sum(1 for r in sel if r.get("error")),
            "n_relax_converged": len(conv), "stress_vs_target_mae_gpa": err["mae"],
            "mean_enthalpy_ev_atom": float(np.mean([r["enthalpy_per_atom"] for r in conv])) if conv else float("nan")}


def dng_metrics(cfg: dict, run_name: str, run: dict, samples: str, test_pt: str, test_fp: str,
                stab_csv: str | None, steps: int, out: str, workers: int = 0, ckpt: str | None = None):
    from .data import cache_structures, load_cache
    from .metrics import (composition_valid, coverage, draw, fingerprints, fingerprints_all, property_wdist,
                          structure_valid, sun_summary, target_errors)
    from .sampling import record_problem, record_to_structure

    m = cfg["metrics"]
    protocol = m["protocol"]
    cf = protocol == "crystalflow"
    require(samples, test_pt, test_fp, stab_csv)
    ensure_writable(out)
    recs = read_jsonl(samples)
    check_samples_current(recs, samples, ckpt, run, run_name)
    n = len(recs)
    structs = [record_to_structure(r, strict=not cf) for r in recs]
    sv = np.array([structure_valid(s, protocol=protocol) for s in structs], bool)
    cv = np.array([composition_valid(s, protocol=protocol) if s is not None else False for s in structs], bool)
    fp = np.load(test_fp)
    lim = m["fingerprint_limit"]
    if cf:  # fingerprints of every generated crystal; a failed CrystalNN also makes a crystal invalid
        gs, gc, fp_ok = fingerprints_all(structs, workers, progress=True)
        valid_mask = sv & cv & fp_ok
        cov = coverage(gs, gc, fp["struct"], fp["comp"], *m["coverage_cutoffs"], protocol=protocol, n_generated=n)
    else:
        valid_mask = sv & cv
        valid = [s for s, ok in zip(structs, valid_mask) if ok]
        gen_for_cov = valid[:lim] if lim else valid
        gs, gc, _ = fingerprints(gen_for_cov, workers, progress=True)
        ok_ref = fp["ok"] & np.all(np.isfinite(fp["comp"]), axis=1)
        cov = coverage(gs, gc, fp["struct"][ok_ref], fp["comp"][ok_ref], *m["coverage_cutoffs"], protocol=protocol)
    valid = [s for s, ok in zip(structs, valid_mask) if ok]
    kinds = [record_problem(r)[0] for r in recs]
    row = {"run": run_name, "dataset": run["dataset"], "task": "dng", "steps": steps, "protocol": protocol,
           **_made_from(recs), "n_samples": n, "n_unreadable": kinds.count("unreadable"), "n_flagged": kinds.count("flagged"),
           "n_coverage_reference": int(np.all(np.isfinite(fp["struct"]), axis=1).sum()),
           "struct_valid_pct": 100.0 * sv.mean() if n else 0.0,
           "comp_valid_pct": 100.0 * cv.mean() if n else 0.0,
           "valid_pct": 100.0 * valid_mask.mean() if n else 0.0, "n_valid": len(valid)}
    row.update(cov)
    cache = load_cache(test_pt)
    ntest = len(cache["ids"])
    if cf:  # a seeded random draw of the valid samples against the whole test split
        test_structs = cache_structures(cache, range(ntest))
        gen = draw(valid, m["n_property_samples"], m["seed"])
    else:
        test_structs = cache_structures(cache, range(min(ntest, max(m["n_property_samples"] * 5, 5000))))
        gen = valid[: m["n_property_samples"]]
    row["n_property_samples"] = len(gen)
    row.update(property_wdist(gen, test_structs))
    rows = [row]
    if stab_csv:
        st = pd.read_csv(stab_csv)
        row["n_relaxed"] = int(len(st))
        row["n_relax_failed"] = int((st["error"].fillna("") != "").sum())
        row["n_hull_missing_elements"] = int((st["hull_missing"].fillna("") != "").sum())
        row.update(sun_summary(st["e_hull"].to_numpy(float), st["unique"].to_numpy(bool),
                               st["new"].to_numpy(bool), len(st)))
        row["mean_e_hull_ev_atom"] = float(np.nanmean(st["e_hull"])) if st["e_hull"].notna().any() else float("nan")
        if run["relax"]["pressure"] or "pressure" in run["conditions"]:  # run-wide or per-sample pressure
            # DFT-free proxy for pressure runs: CHGNet stress of the relaxed cell vs the target pressure
            ok = st[st["converged"].astype(bool)]
            err = target_errors(ok["pressure_gpa"].to_numpy(float), ok["stress_pressure_gpa"].to_numpy(float))
            row["stress_vs_target_mae_gpa"] = err["mae"]
        if run["conditions"]:
            for tgt, grp in st.groupby("target"):
                t = np.full(len(grp), tgt)
                before = target_errors(t, grp["e_form_initial"].to_numpy(float))
                after = target_errors(t, grp["e_form"].to_numpy(float))
                rows.append({"run": run_name, "dataset": run["dataset"], "task": "dng", "steps": steps,
                             "condition": run["conditions"][0], "target": tgt,
                             "mae_before_ev_atom": before["mae"], "rmse_before_ev_atom": before["rmse"],
                             "mae_after_ev_atom": after["mae"], "rmse_after_ev_atom": after["rmse"],
                             "n_samples": int(len(grp))})
    with atomic_path(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def collect(inputs: list[str], out: str):
    df = pd.concat([pd.read_csv(p) for p in inputs], ignore_index=True)
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)


# ----------------------------------------------------------------------------- DFT
def dft(run: dict, relaxed: list[str], stab_csv: str, outdir: str, manifest: str):
    from .dft import emit_vasp_inputs

    st = pd.read_csv(stab_csv)
    rel = {r["id"]: r for p in relaxed for r in read_jsonl(p)}
    d = run["dft"]
    sel = st[(st["converged"]) & (st["e_hull"] < d["max_e_hull"])].sort_values("e_hull").head(d["max_structures"])
    items = [(sid, structure_from(rel[sid]["final"])) for sid in sel["id"] if rel.get(sid, {}).get("final")]
    emit_vasp_inputs(items, outdir, manifest, pressure=run["relax"]["pressure"],
                     extra={sid: {"e_hull": float(e)} for sid, e in zip(sel["id"], sel["e_hull"])})


# ----------------------------------------------------------------------------- reference checkpoints
def import_checkpoint(cfg: dict, run_name: str, ckpt: str, out: str, hparams: str | None = None,
                      scalers: str | None = None, sha256: str | None = None, url: str | None = None,
                      train_pt: str | None = None):
    """The authors' checkpoint -> this project's model.ckpt (the workflow then samples and evaluates it)."""
    from .data import SplitSource, load_cache, resolve_source
    from .reference import build_module, hparams_from_yaml, load_reference, read_scalers, save_module

    run = cfg["runs"][run_name]
    path = Path(ckpt)
    if url and not path.exists():
        path = resolve_source(SplitSource("checkpoints", run_name, path.name, url, sha256), None,
                              cfg["download_dir"])
    ref = load_reference(path, sha256)
    hp = hparams_from_yaml(hparams) if hparams else (ref.get("hyper_parameters") or {})
    sc = read_scalers(scalers) if scalers else None
    hist = load_cache(train_pt)["atom_count_hist"].tolist() if train_pt else None
    prov = {"reference_checkpoint": str(path), "sha256": sha256_file(path)}
    module = build_module(ref, hp, run, run_name, sc, hist, prov)
    save_module(module, out)
    log.info("imported %s (%s, H=%d, L=%d, conditions %s) -> %s", path, module.mcfg.task, module.mcfg.hidden,
             module.mcfg.layers, module.mcfg.conditions or "none", out)
    return out

