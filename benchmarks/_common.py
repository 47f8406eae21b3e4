"""Shared helpers for the benchmark scripts: machine header and MP-20 test crystals."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CRYSTALFLOW_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO))


def header(title: str):
    import torch

    cpu, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    simd = " ".join(f for f in wanted if f in flags) or "none of " + "/".join(wanted)
    print(f"# {title}")
    print(
        f"# machine: {os.cpu_count()} cores ({cpu}), python {platform.python_version()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}"
    )
    print(f"# cpu flags: {simd}")


def mp20_test_rows(n: int | None = None):
    import pandas as pd

    df = pd.read_csv(DATA / "mp_20" / "test.csv.gz")
    return df if n is None else df.head(n)


def mp20_test_tensors(n: int):
    """(atom types, frac, k, num_atoms) of the first n MP-20 test crystals (Niggli-reduced)."""
    import numpy as np
    import torch

    from crystalflow_core.crystals.data import parse_cif
    from crystalflow_core.crystals.lattice import lattice_to_k

    zs, fs, ks = [], [], []
    for cif in mp20_test_rows(n)["cif"]:
        z, f, lat = parse_cif(cif, niggli=True)
        zs.append(z)
        fs.append(f)
        ks.append(lattice_to_k(lat))
    na = torch.tensor([len(z) for z in zs])
    return (
        torch.from_numpy(np.concatenate(zs)),
        torch.from_numpy(np.concatenate(fs)).float(),
        torch.from_numpy(np.stack(ks)).float(),
        na,
    )


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
