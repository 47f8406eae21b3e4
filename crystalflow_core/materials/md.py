"""Molecular dynamics of a mobile ion with a universal potential: NVT trajectories that stop when they blow up,
diffusion coefficients from the mean square displacement, Arrhenius fits; run on the potential's pool."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from crystalflow_core.crystals.crystal import closest_distance
from crystalflow_core.io import read_jsonl, resume_jsonl
from crystalflow_core.materials.calculators import PotentialWorker, potential_pool


@dataclass
class MDSettings:
    """Molecular dynamics of the best candidates (the `transport.md` section) with the run's potential."""

    max_structures: int
    temperatures: list  # K
    picoseconds: float
    timestep_fs: float
    equilibration_ps: float  # discarded before the diffusion analysis
    min_atoms: int  # supercell of at least this many atoms
    thermostat: str  # bussi | langevin | berendsen
    taut_fs: float  # thermostat time constant (friction 1/taut for Langevin)
    frame_every: int  # MD steps between stored frames
    min_distance: float  # A; two atoms closer than this: the trajectory blew up
    max_drift: float  # eV/atom; total energy further than this from its start: blew up
    smoothed: str  # DiffusionAnalyzer smoothing: max | constant | none
    seed: int
    model: str  # the potential (the run's relax.model)

    @classmethod
    def from_section(cls, m: dict, model: str, **override) -> MDSettings:
        out = cls(**{f: m[f] for f in cls.__dataclass_fields__ if f != "model"}, model=model)
        return replace(out, **override)


def supercell_for(structure, min_atoms: int):
    """The structure repeated along a, b, c (the shortest repeated length grown first) until it holds
    at least `min_atoms` atoms."""
    reps = np.ones(3, dtype=int)
    abc = np.array(structure.lattice.abc)
    while len(structure) * reps.prod() < min_atoms:
        reps[int(np.argmin(abc * reps))] += 1
    return structure * reps.tolist(), reps.tolist()


class MDBlowUp(Exception):
    pass


def _thermostat(atoms, settings: MDSettings, temperature: float, rng):
    from ase import units
    from ase.md.bussi import Bussi
    from ase.md.langevin import Langevin
    from ase.md.nvtberendsen import NVTBerendsen

    dt = settings.timestep_fs * units.fs
    taut = settings.taut_fs * units.fs
    if settings.thermostat == "bussi":
        return Bussi(atoms, dt, temperature_K=temperature, taut=taut, rng=rng)
    if settings.thermostat == "langevin":
        return Langevin(atoms, dt, temperature_K=temperature, friction=1.0 / taut, rng=rng)
    if settings.thermostat == "berendsen":
        return NVTBerendsen(atoms, dt, temperature_K=temperature, taut=taut)
    raise ValueError(f"unknown thermostat {settings.thermostat!r} (bussi, langevin, berendsen)")


def run_md(structure, temperature: float, settings: MDSettings, calc, traj_path) -> dict:
    """NVT MD of `structure` at `temperature` with the CHGNet calculator `calc`; frames every
    `frame_every` steps go to `traj_path` (extxyz, written to a .partial first). Never raises: a
    trajectory that blows up (atoms closer than `min_distance`, total energy drifting more than
    `max_drift` eV/atom, non-finite energy) is recorded as failed with the step and the reason."""
    from ase.io import write
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from pymatgen.io.ase import AseAtomsAdaptor

    t0 = time.time()
    traj_path = Path(traj_path)
    partial = traj_path.with_name(traj_path.name + ".partial")
    partial.unlink(missing_ok=True)
    n_steps = int(round(settings.picoseconds * 1000 / settings.timestep_fs))
    rec = {"temperature": float(temperature), "n_steps": n_steps, "ok": False, "error": "", "steps_done": 0}
    rng = np.random.default_rng(settings.seed)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calc
    n = len(atoms)
    try:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
        dyn = _thermostat(atoms, settings, temperature, rng)
        e0 = atoms.get_potential_energy() + atoms.get_kinetic_energy()
        if not np.isfinite(e0):
            raise MDBlowUp("non-finite energy at the start")
        temps = []

        def check():
            step = dyn.nsteps
            e = atoms.get_potential_energy() + atoms.get_kinetic_energy()
            if not np.isfinite(e):
                raise MDBlowUp(f"non-finite energy at step {step}")
            if abs(e - e0) / n > settings.max_drift:
                raise MDBlowUp(
                    f"total energy drifted {(e - e0) / n:+.2f} eV/atom by step {step} (bound {settings.max_drift})"
                )
            d = closest_distance(atoms.cell.array, atoms.get_scaled_positions())
            if d < settings.min_distance:
                raise MDBlowUp(f"atoms {d:.2f} A apart at step {step} (< {settings.min_distance} A)")
            temps.append(atoms.get_temperature())
            write(partial, atoms, format="extxyz", append=True)
            rec["steps_done"] = step

        dyn.attach(check, interval=settings.frame_every)
        dyn.run(n_steps)
        partial.replace(traj_path)
        rec.update(ok=True, mean_temperature=float(np.mean(temps)) if temps else math.nan)
    except MDBlowUp as exc:
        rec["error"] = f"blew up: {exc}"
    except Exception as exc:  # CHGNet/ASE raise many kinds: record and go on
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if not rec["ok"] and partial.exists():  # kept for inspection beside the finished ones
        partial.replace(traj_path.with_name(traj_path.stem + ".failed.extxyz"))
    rec["wall_s"] = time.time() - t0
    return rec


def diffusion_from_trajectory(traj_path, ion: str, temperature: float, settings: MDSettings) -> dict:
    """Diffusivity (cm^2/s) and conductivity (mS/cm) of `ion`, with standard errors, from a stored
    trajectory (DiffusionAnalyzer.from_structures), the equilibration frames left out."""
    from ase.io import read
    from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = read(traj_path, index=":", format="extxyz")
    skip = int(round(settings.equilibration_ps * 1000 / (settings.timestep_fs * settings.frame_every)))
    structures = [AseAtomsAdaptor.get_structure(a) for a in frames[skip:]]
    if len(structures) < 3:
        raise ValueError(f"{traj_path}: {len(structures)} frames after equilibration (need >= 3)")
    smoothed = False if settings.smoothed == "none" else settings.smoothed
    kw = {"time_step": settings.timestep_fs, "step_skip": settings.frame_every, "min_obs": min(30, len(structures))}
    try:
        da = DiffusionAnalyzer.from_structures(structures, ion, temperature, smoothed=smoothed, **kw)
        used = settings.smoothed
    except ValueError as exc:  # "max" needs > 1 ps of frames, "constant" more than avg_nsteps
        if "Not enough data" not in str(exc) or not smoothed:
            raise
        da = DiffusionAnalyzer.from_structures(structures, ion, temperature, smoothed=False, **kw)
        used = f"none ({settings.smoothed} needs a longer trajectory)"
    return {
        "D": float(da.diffusivity),
        "D_err": float(da.diffusivity_std_dev),
        "sigma": float(da.conductivity),
        "sigma_err": float(da.conductivity_std_dev),
        "n_frames": len(structures),
        "msd_smoothing": used,
    }


def arrhenius(temperatures, diffusivities, structure, ion: str, at: float = 300.0) -> dict:
    """Activation energy (eV, with its standard error) and conductivity extrapolated to `at` K (mS/cm)
    from D at >= 3 temperatures; NaN with fewer, or where a D is not positive."""
    from pymatgen.analysis.diffusion.analyzer import fit_arrhenius, get_extrapolated_conductivity

    t = np.asarray(temperatures, dtype=float)
    d = np.asarray(diffusivities, dtype=float)
    ok = np.isfinite(d) & (d > 0)
    if ok.sum() < 3:
        return {"E_a": math.nan, "E_a_err": math.nan, "sigma_300K": math.nan}
    ea, _, err = fit_arrhenius(t[ok], d[ok])
    sigma = get_extrapolated_conductivity(t[ok], d[ok], at, structure, ion)
    return {"E_a": float(ea), "E_a_err": float(err) if err is not None else math.nan, "sigma_300K": float(sigma)}


class MDWorker(PotentialWorker):
    """Called with (key, structure, ion, T, traj path): runs the MD and its diffusion analysis and returns
    the record."""

    def __init__(self, settings: dict):
        super().__init__(settings["model"])
        self.settings = MDSettings(**settings)

    def __call__(self, job) -> dict:
        key, structure, ion, temperature, traj = job
        rec = {"key": key, "ion": ion, **run_md(structure, temperature, self.settings, self.calc, traj)}
        rec["trajectory"] = Path(traj).name if rec["ok"] else ""
        if rec["ok"]:
            try:
                rec.update(diffusion_from_trajectory(traj, ion, temperature, self.settings))
            except Exception as exc:
                rec.update(ok=False, error=f"diffusion analysis: {type(exc).__name__}: {str(exc)[:200]}")
        return rec


def md_many(jobs: list[tuple], out_path, settings: MDSettings, workers: int = 1, progress: bool = True) -> list[dict]:
    """Run (key, structure, ion, T, traj) MD jobs, appending one record per job to `out_path`; keys
    already there are skipped (resume after a kill: finished trajectories are not run again)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = {r["key"] for r in resume_jsonl(out_path)}
    todo = [j for j in jobs if j[0] not in done]
    potential_pool(MDWorker, asdict(settings), todo, workers, out_path, f"MD ({settings.model})", progress)
    return read_jsonl(out_path, tolerate_truncated_tail=True) if out_path.exists() else []
