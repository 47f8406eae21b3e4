"""Stand-ins for the fault tests of the worker pools (importable by spawned workers: tests/ is on the path).

`python tests/pool_faults.py relax OUT N [WORKERS]` relaxes N small rattled crystals with CHGNet into OUT
(the real `relax_many`, under the command line's `guarded`), the victim of the termination tests.
`python tests/pool_faults.py sleep N` runs N one-second tasks on two spawned workers."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from crystalflow_core.materials.relax import RelaxWorker

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}


def group_alive(pgid: int) -> list[int]:
    """Processes of a process group still alive (zombies count as gone)."""
    alive = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(d.name))
    return alive


def wait_gone(pgid: int, seconds: float) -> list[int]:
    """The group's processes still alive after up to `seconds`."""
    deadline = time.time() + seconds
    while (left := group_alive(pgid)) and time.time() < deadline:
        time.sleep(0.2)
    return left


def cannot_start():
    """A worker factory that fails as a missing optional package does."""
    raise ImportError("relax.model sevennet needs the sevenn package: pip install -e '.[sevenn]'")


def small_crystals(n: int, seed: int = 0) -> list:
    """(id, Structure) of n rattled rock-salt and diamond cells (2 atoms each: fast to relax)."""
    import numpy as np
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        if k % 2:
            a, species, second = 2.72, ["Si", "Si"], [0.25] * 3
        else:
            a, species, second = 2.82, ["Na", "Cl"], [0.5] * 3
        s = Structure(Lattice([[0, a, a], [a, 0, a], [a, a, 0]]), species, [[0, 0, 0], second])
        s.perturb(0.15, min_distance=0.05)
        s.scale_lattice(s.volume * float(rng.uniform(0.9, 1.1)))
        out.append((f"s{k}", s))
    return out


def relax_settings(**override):
    from crystalflow_core.config import defaults
    from crystalflow_core.materials.relax import RelaxSettings

    section = defaults("relax")
    section.update({"fmax": 0.02, "steps": 60, "batch_size": 1, "record_energies": False})
    return RelaxSettings.from_section(section, **override)


class CannotLoad(RelaxWorker):
    """A worker whose potential cannot load (a model file that is gone)."""

    def __init__(self, settings: dict):
        raise FileNotFoundError("potential weights /nowhere/model.pt not found")


class AbortsOn(RelaxWorker):
    """A worker that crashes in native code (os.abort: SIGABRT) on the structure `abort_on` names."""

    ABORT_ON = "s5"

    def __call__(self, chunk):
        if any(item[0] == self.ABORT_ON for item in chunk):
            os.abort()
        return super().__call__(chunk)


def _sleeper():
    def f(x):
        time.sleep(1.0)
        return x

    return f


if __name__ == "__main__":
    from crystalflow_core.entry import guarded
    from crystalflow_core.logs import setup_logging

    setup_logging()
    if sys.argv[1] == "relax":
        from crystalflow_core.materials.relax import relax_many

        out, n = sys.argv[2], int(sys.argv[3])
        workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
        guarded("relax", lambda: relax_many(small_crystals(n), out, relax_settings(), workers, progress=False))
    else:
        from crystalflow_core.parallel import serve_map

        guarded("sleep", lambda: list(serve_map(_sleeper, (), range(int(sys.argv[2])), 2, desc="sleeping")))
