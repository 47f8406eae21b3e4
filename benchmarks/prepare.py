"""Seconds to prepare MP-20 val + test (parse CIFs in parallel, Niggli-reduce, cache).

python benchmarks/prepare.py
"""

from __future__ import annotations

import os
import tempfile
import time

from _common import DATA, header

from crystalflow_core.config import defaults


def main():
    from crystalflow_core.crystals.data import PrepareSettings, prepare_split

    header("prepare MP-20 val + test")
    with tempfile.TemporaryDirectory() as tmp:
        total = 0.0
        for split in ("val", "test"):
            t0 = time.perf_counter()
            c = prepare_split(
                DATA / "mp_20" / f"{split}.csv.gz",
                f"{tmp}/{split}.pt",
                f"{tmp}/{split}_rejected.csv",
                PrepareSettings.from_dataset(
                    defaults("dataset"), conditions=["formation_energy_per_atom"], workers=os.cpu_count()
                ),
            )
            dt = time.perf_counter() - t0
            total += dt
            print(f"{split}: {len(c['ids'])} crystals, {c['n_rejected']} rejected, {dt:.1f} s")
    print(f"total {total:.1f} s on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
