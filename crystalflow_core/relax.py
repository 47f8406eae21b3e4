"""CHGNet pre-relaxation: cell + positions under an external pressure, sharded and resumable.

One worker process per core, each with one intra-op thread (OMP_NUM_THREADS=1): torch and numpy
threads otherwise fight over the cores. Results are appended to a JSON-lines file one structure at
a time, so a killed job resumes where it stopped. A structure that makes CHGNet raise, or that runs
past the per-structure time limit, is recorded as failed with the reason.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from .io import append_jsonl, read_jsonl, write_jsonl_atomic

log = logging.getLogger(__name__)
EV_PER_A3_PER_GPA = 1.0 / 160.21766208  # 1 GPa in eV/A^3


@dataclass
class RelaxSettings:
    fmax: float = 0.1
    steps: int = 500
    pressure: float = 0.0  # GPa
    optimizer: str = "FIRE"
    timeout: float = 300.0
    relax_cell: bool = True
    min_distance: float = 0.5  # A; closer atoms are recorded as failed before CHGNet runs


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


_STATE: dict = {}


def _init_worker(settings: dict):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from chgnet.model import CHGNet

    from chgnet.model.dynamics import CHGNetCalculator

    _STATE["model"] = CHGNet.load(verbose=False)
    # one calculator per worker, reused for every structure (ASE recomputes for new atoms)
    _STATE["calc"] = CHGNetCalculator(model=_STATE["model"], use_device="cpu", on_isolated_atoms="ignore")
    _STATE["settings"] = RelaxSettings(**settings)


def relax_structure(structure, settings: RelaxSettings, model=None, calc=None) -> dict:
    """Relax one pymatgen Structure; returns the record (never raises for CHGNet errors)."""
    import numpy as np
    from ase import optimize
    from ase.filters import FrechetCellFilter
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    t0 = time.time()
    rec = {"converged": False, "error": "", "steps": 0}
    use_alarm = settings.timeout and hasattr(signal, "SIGALRM")
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    try:
        if len(structure) > 1:
            dm = structure.distance_matrix + np.eye(len(structure)) * 1e6
            if dm.min() < settings.min_distance:
                raise ValueError(f"atoms {dm.min():.2f} A apart (< {settings.min_distance} A)")
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calc or CHGNetCalculator(model=model or _STATE["model"], use_device="cpu", on_isolated_atoms="ignore")
        n = len(atoms)
        rec["initial_energy_per_atom"] = float(atoms.get_potential_energy()) / n
        p = settings.pressure * EV_PER_A3_PER_GPA
        target = FrechetCellFilter(atoms, scalar_pressure=p) if settings.relax_cell else atoms
        opt = getattr(optimize, settings.optimizer)(target, logfile=None)
        rec["converged"] = bool(opt.run(fmax=settings.fmax, steps=settings.steps))
        rec["steps"] = int(opt.nsteps)
        e = float(atoms.get_potential_energy())
        vol = float(atoms.get_volume())
        rec["energy_per_atom"] = e / n
        rec["enthalpy_per_atom"] = (e + p * vol) / n
        rec["volume"] = vol
        rec["pressure_gpa"] = settings.pressure
        stress = atoms.get_stress(voigt=True)  # eV/A^3, positive = tensile (ASE convention)
        rec["stress_pressure_gpa"] = float(-np.mean(stress[:3]) / EV_PER_A3_PER_GPA)
        final = AseAtomsAdaptor.get_structure(atoms)
        if not all(np.isfinite([e, vol])):
            raise FloatingPointError("non-finite energy or volume")
        rec["final"] = {"lattice": final.lattice.matrix.tolist(), "species": [s.specie.symbol for s in final],
                        "frac_coords": final.frac_coords.tolist()}
    except _Timeout:
        rec["error"] = f"timeout after {settings.timeout:.0f} s"
        rec["converged"] = False
    except Exception as exc:  # CHGNet/ASE raise many kinds; record and go on
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        rec["converged"] = False
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    rec["wall_s"] = time.time() - t0
    return rec


def _work(item):
    sid, structure = item
    rec = relax_structure(structure, _STATE["settings"], calc=_STATE["calc"])
    rec["id"] = sid
    return rec


def relax_many(items: list[tuple[str, object]], out_path, settings: RelaxSettings, workers: int = 1,
               progress: bool = True) -> list[dict]:
    """Relax (id, Structure|None) items, appending one record per structure to `out_path`.

    Ids already in `out_path` are skipped (resume). A None structure (flagged sample) is recorded
    as failed without running CHGNet.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out_path.exists():  # drop a possibly truncated tail line before appending again
        recs = read_jsonl(out_path)
        write_jsonl_atomic(out_path, recs)
        done = {r["id"] for r in recs}
    todo = []
    for sid, s in items:
        if sid in done:
            continue
        if s is None:
            append_jsonl(out_path, {"id": sid, "converged": False, "error": "invalid sample (flagged or unbuildable)", "steps": 0, "wall_s": 0.0})
            continue
        todo.append((sid, s))
    if done:
        log.info("resuming: %d structures already relaxed, %d to go", len(done), len(todo))
    if todo:
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        workers = max(1, min(workers, len(todo)))
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(asdict(settings),)) as pool:
            for rec in tqdm(pool.imap_unordered(_work, todo), total=len(todo), desc="relaxing",
                            disable=not progress, mininterval=5):
                append_jsonl(out_path, rec)
    return read_jsonl(out_path)
