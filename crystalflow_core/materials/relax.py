"""CHGNet pre-relaxation: cell + positions under an external pressure, sharded and resumable.

One worker process per core, each with one intra-op thread (OMP_NUM_THREADS=1): torch and numpy
threads otherwise fight over the cores. Each worker takes the structures in chunks of
`batch_size`: the static energies, forces and stresses of a chunk are evaluated in one batched
CHGNet call (on a GPU this is where batching pays; on one CPU thread it costs the same as one at a
time) and seed the first optimiser step, then every structure is relaxed on its own. L-BFGS is
the default optimiser because it needs far fewer force calls than FIRE for the same fmax
(`python benchmarks/relax.py --optimizer FIRE` compares them; figures in the README). Results are
appended to a JSON-lines file as chunks finish, so a killed job resumes where it stopped. A
structure that makes CHGNet raise, or that runs past the per-structure time limit, is recorded as
failed with the reason. Items may carry their own
pressure (pressure-conditioned runs relax each structure at its target).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from crystalflow_core.crystals.crystal import min_interatomic_distance, unphysical_reason
from crystalflow_core.io import append_jsonl, content_key, read_jsonl, resume_jsonl
from crystalflow_core.materials.calculators import (
    PotentialWorker,
    make_calculator,
    potential_fields,
    potential_pool,
    seed_prediction,
    static_predictions,
)
from crystalflow_core.materials.potentials import potential

log = logging.getLogger(__name__)
CHGNET = potential("chgnet")  # the paper's relaxer and the default (`relax.model`)
EV_PER_A3_PER_GPA = 1.0 / 160.21766208  # 1 GPa in eV/A^3


def finished(rec: dict) -> bool:
    """A relaxation that finished: it has a final structure and no error (an unphysical result, a time-out
    or a crash keeps its error). The one rule of every stage that reads relaxation records."""
    return bool(rec.get("final")) and not rec.get("error")


def relaxed_structure(rec: dict):
    """The final pymatgen Structure of a finished relaxation, None for any other record."""
    from crystalflow_core.crystals.crystal import structure_from

    return structure_from(rec["final"]) if finished(rec) else None


def enthalpy_per_atom(energy: float, volume: float, pressure_gpa: float | None, n: int) -> float:
    """H / N = (E + PV) / N in eV/atom: total energy E (eV), cell volume V (A^3), pressure P (GPa)."""
    return (energy + (pressure_gpa or 0.0) * EV_PER_A3_PER_GPA * volume) / n


@dataclass
class RelaxSettings:
    """How structures are relaxed (a run's validated `relax` section; defaults live in the schema only)."""

    fmax: float
    steps: int
    pressure: float  # GPa
    optimizer: str
    timeout: float
    batch_size: int  # structures per batched static evaluation (and per resumable chunk)
    relax_cell: bool
    min_distance: float  # A; closer atoms are recorded as failed before CHGNet runs
    max_vacuum_gap: float  # A; a relaxed cell with a wider empty slab is recorded as unphysical
    min_bond_fraction: float  # relaxed atoms closer than this fraction of their covalent bond: unphysical
    volume_bounds: tuple  # relaxed volume per atom outside these multiples of the van der Waals volume: unphysical
    record_energies: bool  # keep the energy per atom at every optimiser step (`energy_trace`)
    model: str  # the potential: chgnet | sevennet (materials.potentials)

    @classmethod
    def from_section(cls, r: dict, **override) -> RelaxSettings:
        out = cls(**{f: tuple(r[f]) if isinstance(r[f], list) else r[f] for f in cls.__dataclass_fields__})
        return replace(out, **override)


def calculation_key(structure, pressure: float, how) -> str:
    """A short key of a calculation on a structure: what it starts from (the structure to 1e-6, its pressure)
    and how it runs (`how`: the settings, any JSON). A result kept under another key is not this one's."""
    start = [
        np.round(structure.lattice.matrix, 6).tolist(),
        [site.specie.Z for site in structure],
        np.round(structure.frac_coords, 6).tolist(),
        float(pressure),
    ]
    return content_key([start, how])


def keyed(items: list[tuple], how) -> list[tuple]:
    """(id, Structure, pressure) `items` with each id tagged `id@calculation_key`, so that a result kept under
    the tagged id (a relaxation or static file a stage resumes from) is this calculation's and no other's."""
    return [(f"{sid}@{calculation_key(s, p, how)}", s, p) for sid, s, p in items]


def untagged(tagged_id: str) -> str:
    """The id `keyed` tagged."""
    return tagged_id.rsplit("@", 1)[0]


class _Timeout(Exception):
    pass


class _Abandoned(Exception):
    """A relaxation stopped early: its enthalpy per atom at the check step lay above its ceiling."""

    def __init__(self, enthalpy: float, ceiling: float, step: int):
        super().__init__(enthalpy, ceiling, step)
        self.enthalpy, self.ceiling, self.step = enthalpy, ceiling, step


def make_optimizer(name: str, target):
    """The ASE optimiser `name` on `target` (atoms or a cell filter): LBFGS, BFGS, FIRE, BFGSLineSearch,
    MDMin, or PreconLBFGS (ASE's preconditioned L-BFGS with the Exp preconditioner, A = 3, and an Armijo
    line search: fewer force calls on crystals, whose stiff bonds and soft cell make L-BFGS zig-zag)."""
    from ase import optimize

    if name == "PreconLBFGS":
        from ase.optimize.precon import Exp, PreconLBFGS

        return PreconLBFGS(target, precon=Exp(A=3), use_armijo=True, logfile=None)
    return getattr(optimize, name)(target, logfile=None)


@contextlib.contextmanager
def _counting(calc):
    """calc's `calculate` counted while the block runs: yields a one-element list holding the count of
    force calls (energy, forces and stress evaluated together; a line search's trial points count)."""
    calls = [0]
    orig = calc.calculate

    def calculate(*args, **kwargs):
        calls[0] += 1
        return orig(*args, **kwargs)

    calc.calculate = calculate
    try:
        yield calls
    finally:
        del calc.calculate  # the class's method again


def _alarm(signum, frame):
    raise _Timeout()


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise _Timeout inside the block after `seconds` (SIGALRM); no limit for 0 or where the
    platform has no SIGALRM."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _pressure_gpa(stress_voigt) -> float:
    """Hydrostatic pressure (GPa, positive = compressed) of an ASE stress (eV/A^3, positive = tensile)."""
    return float(-np.mean(stress_voigt[:3]) / EV_PER_A3_PER_GPA)


def _record_final(rec: dict, atoms, settings: RelaxSettings) -> None:
    """The relaxed state into `rec`: energy and enthalpy per atom, volume, pressure, the final structure;
    fragments in vacuum are recorded as unphysical (not converged), whatever the optimiser said."""
    from pymatgen.io.ase import AseAtomsAdaptor

    n = len(atoms)
    e, vol = float(atoms.get_potential_energy()), float(atoms.get_volume())
    rec["energy_per_atom"] = e / n
    rec["enthalpy_per_atom"] = enthalpy_per_atom(e, vol, settings.pressure, n)
    rec["volume"] = vol
    rec["pressure_gpa"] = settings.pressure
    rec["stress_pressure_gpa"] = _pressure_gpa(atoms.get_stress(voigt=True))
    final = AseAtomsAdaptor.get_structure(atoms)
    finite = [np.isfinite([e, vol]), np.isfinite(atoms.get_stress()), np.isfinite(final.cart_coords)]
    if not all(f.all() for f in finite):
        raise FloatingPointError("non-finite energy, stress, volume or positions")
    # collapsed atoms (a hole of the potential), a collapsed or exploded cell, fragments in vacuum: converged
    # or not, no crystal to rank
    why = unphysical_reason(final, settings.min_bond_fraction, settings.volume_bounds, settings.max_vacuum_gap)
    if why:
        rec["converged"] = False
        rec["error"] = why
    rec["final"] = {
        "lattice": final.lattice.matrix.tolist(),
        "species": [s.specie.symbol for s in final],
        "frac_coords": final.frac_coords.tolist(),
    }


def relax_structure(  # noqa: PLR0913
    structure,
    settings: RelaxSettings,
    model=None,
    calc=None,
    initial: dict | None = None,
    fix_symmetry: float = 0.0,
    abandon: tuple[int, float] | None = None,
) -> dict:
    """Relax one pymatgen Structure; returns the record (never raises for CHGNet errors).

    initial: a CHGNet prediction for the unrelaxed structure (from `static_predictions`), used
    instead of evaluating it again. fix_symmetry: keep the space group the structure has at this
    tolerance (A) while relaxing (ASE's FixSymmetry symmetrises forces and stress). abandon: (step,
    ceiling): stop at a multiple of that many optimiser steps where the enthalpy per atom lies above the
    ceiling (eV/atom), recorded with `abandoned` and the enthalpy it had (a hopeless candidate of a prediction)."""
    from ase.filters import FrechetCellFilter
    from pymatgen.io.ase import AseAtomsAdaptor

    t0 = time.time()
    rec = {"converged": False, "error": "", "steps": 0, **potential_fields(potential(settings.model))}
    calc = calc or make_calculator(model)
    calls = [0]
    try:
        with _time_limit(settings.timeout), _counting(calc) as calls:
            d = min_interatomic_distance(structure)
            if d < settings.min_distance:
                raise ValueError(f"atoms {d:.2f} A apart (< {settings.min_distance} A)")
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.calc = calc
            if fix_symmetry:
                from ase.constraints import FixSymmetry

                atoms.set_constraint(FixSymmetry(atoms, symprec=fix_symmetry))
            if isinstance(initial, str):
                raise RuntimeError(initial)
            if initial is not None:
                seed_prediction(atoms.calc, atoms, initial)
            n = len(atoms)
            p = settings.pressure * EV_PER_A3_PER_GPA
            e0 = float(atoms.get_potential_energy())
            rec["initial_energy_per_atom"] = e0 / n
            rec["initial_enthalpy_per_atom"] = enthalpy_per_atom(e0, float(atoms.get_volume()), settings.pressure, n)
            # the generated cell's own pressure, before any relaxation (the paper's Fig. 2a measure)
            rec["initial_stress_pressure_gpa"] = _pressure_gpa(atoms.get_stress(voigt=True))
            target = FrechetCellFilter(atoms, scalar_pressure=p) if settings.relax_cell else atoms
            opt = make_optimizer(settings.optimizer, target)
            if settings.record_energies:  # observers run after each step's forces: the energy is cached
                trace, h_trace = rec["energy_trace"], rec["enthalpy_trace"] = [], []

                def observe():
                    e = float(atoms.get_potential_energy())
                    trace.append(e / n)
                    # what the optimiser minimises
                    h_trace.append(enthalpy_per_atom(e, float(atoms.get_volume()), settings.pressure, n))

                opt.attach(observe)
            if abandon is not None:
                check_step, ceiling = abandon

                def give_up():  # after each step's forces (the energy is cached): every check_step steps
                    if opt.nsteps and opt.nsteps % check_step == 0:
                        e = float(atoms.get_potential_energy())
                        h = enthalpy_per_atom(e, float(atoms.get_volume()), settings.pressure, n)
                        if h > ceiling:
                            raise _Abandoned(h, ceiling, opt.nsteps)

                opt.attach(give_up)
            rec["converged"] = bool(opt.run(fmax=settings.fmax, steps=settings.steps))
            rec["steps"] = int(opt.nsteps)
            _record_final(rec, atoms, settings)
    except _Timeout:
        rec["error"] = f"timeout after {settings.timeout:.0f} s"
        rec["converged"] = False
    except _Abandoned as why:
        rec.update(abandoned=True, abandoned_enthalpy_per_atom=why.enthalpy, steps=why.step, converged=False)
        rec["error"] = (
            f"abandoned: {why.enthalpy:.4f} eV/atom after {why.step} steps, above the ceiling {why.ceiling:.4f} "
            "(the best so far plus the margin)"
        )
    except Exception as exc:  # CHGNet/ASE raise many kinds; record and go on
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        rec["converged"] = False
    rec["force_calls"] = calls[0] + (initial is not None and not isinstance(initial, str))
    rec["wall_s"] = time.time() - t0
    return rec


class RelaxWorker(PotentialWorker):
    """Called with a chunk of (id, Structure, pressure, group, best): relaxes them (CHGNet after one batched
    static evaluation of the chunk). With `abandon` ({after, margin}) in the settings, a structure whose
    enthalpy per atom after `after` steps lies more than `margin` above the best of its group so far (`best`,
    from the relaxations before this chunk, or an earlier structure of the chunk) stops there."""

    def __init__(self, settings: dict):
        settings = dict(settings)
        self.abandon = settings.pop("abandon", None)
        super().__init__(settings["model"])
        self.settings = RelaxSettings(**settings)

    def __call__(self, chunk) -> list[dict]:
        base = self.settings
        preds = [None] * len(chunk)
        ok = [i for i, (_, s, *_) in enumerate(chunk) if min_interatomic_distance(s) >= base.min_distance]
        ok = ok if self.model is not None else []  # a batched static evaluation: CHGNet's
        try:  # the batched step gets one structure's time budget ...
            with _time_limit(base.timeout):
                for i, p in zip(ok, static_predictions([chunk[i][1] for i in ok], self.model, base.batch_size)):
                    preds[i] = p
        except _Timeout:  # ... past it, every structure is evaluated on its own, under its own limit
            preds = [None] * len(chunk)
        out = []
        best: dict = {}  # group -> lowest finished enthalpy per atom (the chunk's order: deterministic)
        for (sid, structure, pressure, group, known), pred in zip(chunk, preds):
            settings = base if pressure is None else replace(base, pressure=float(pressure))
            floor = min((h for h in (known, best.get(group)) if h is not None), default=None)
            abandon = None
            if self.abandon and group is not None and floor is not None:
                abandon = (self.abandon["after"], floor + self.abandon["margin"])
            rec = relax_structure(structure, settings, calc=self.calc, initial=pred, abandon=abandon)
            rec["id"] = sid
            _count_best(best, group, rec)
            out.append(rec)
        return out


def _count_best(best: dict, group, rec: dict) -> None:
    """A converged, physical relaxation lowers its group's best enthalpy per atom (the abandon rule's floor)."""
    if group is not None and finished(rec) and rec.get("converged"):
        best[group] = min(best.get(group, math.inf), rec["enthalpy_per_atom"])


def _best_by_group(records: list[dict], group_of: dict) -> dict:
    """group -> the lowest enthalpy per atom of the converged, physical records of its structures."""
    best: dict = {}
    for r in records:
        _count_best(best, group_of.get(r["id"]), r)
    return best


def relax_many(  # noqa: PLR0913
    items: list[tuple],
    out_path,
    settings: RelaxSettings,
    workers: int = 1,
    progress: bool = True,
    worker=None,
    abandon: dict | None = None,
) -> list[dict]:
    """Relax (id, Structure|None[, pressure GPa[, group]]) items, appending one record per structure to `out_path`.

    Ids already in `out_path` are skipped (resume). A None structure (flagged sample) is recorded
    as failed without running CHGNet. A pressure given with an item overrides `settings.pressure`.
    `worker`: the pool's worker class (RelaxWorker; the fault tests' stand-ins). `abandon` ({after, margin,
    probe}, structure prediction only): a structure of a group whose enthalpy per atom, every `after` steps,
    lies more than `margin` eV/atom above the best converged one of its group so far (those already in
    `out_path`, and earlier ones of its chunk) stops there, recorded as abandoned; the first `probe`
    structures of a group without such a best relax in full first (a pass of their own, so that every later
    one has a ceiling). None relaxes every structure to the end.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    earlier = resume_jsonl(out_path)
    done = {r["id"] for r in earlier}
    group_of = {item[0]: item[3] for item in items if len(item) > 3}
    todo = []
    for item in items:
        sid, s, pressure, group = (*item, None, None)[:4]
        if sid in done:
            continue
        if s is None:
            append_jsonl(
                out_path,
                {
                    "id": sid,
                    "converged": False,
                    "error": "invalid sample (flagged or unbuildable)",
                    **potential_fields(potential(settings.model)),
                    "steps": 0,
                    "wall_s": 0.0,
                },
            )
            continue
        todo.append((sid, s, pressure, group))
    if done:
        log.info("resuming: %d structures already relaxed, %d to go", len(done), len(todo))
    passes = [todo]
    if abandon and abandon.get("probe"):  # groups without a best yet: their first candidates relax in full first
        known = _best_by_group(earlier, group_of)
        seen: dict = {}
        probe = []
        for it in todo:
            if it[3] is not None and it[3] not in known and seen.get(it[3], 0) < abandon["probe"]:
                seen[it[3]] = seen.get(it[3], 0) + 1
                probe.append(it)
        first = {it[0] for it in probe}
        rest = [it for it in todo if it[0] not in first]
        passes = [p for p in (probe, rest) if p]
    setup = {**asdict(settings), **({"abandon": dict(abandon)} if abandon else {})}
    for batch in passes:
        known = {}
        if abandon and out_path.exists():  # the best of each group so far: earlier records, the probe pass
            known = _best_by_group(read_jsonl(out_path, tolerate_truncated_tail=True), group_of)
        batch = [(*it, known.get(it[3])) for it in batch]
        n_workers = max(1, min(workers, len(batch)))
        # chunks of at most batch_size, and small enough (>= 4 per worker) to keep every core busy
        b = max(1, min(settings.batch_size, math.ceil(len(batch) / (4 * n_workers))))
        chunks = [batch[i : i + b] for i in range(0, len(batch), b)]
        potential_pool(
            worker or RelaxWorker, setup, chunks, n_workers, out_path, f"relaxing ({settings.model})", progress
        )
    return read_jsonl(out_path, tolerate_truncated_tail=True)
