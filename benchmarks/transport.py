"""Ion-transport screen costs and one known fast conductor (prints, asserts nothing).

1. Migration graph (MigrationGraph.with_distance, percolation dimensionality) on the first N
   Li-containing MP-20 test crystals: seconds per structure, and how many percolate in 0/1/2/3 D.
2. CHGNet NVT MD on this CPU: seconds per picosecond for a ~100-atom LiCoO2 supercell (one worker,
   OMP_NUM_THREADS=1, as the transport_md rule runs it).
3. Li10GeP2S12 (LGPS): an ordered 50-atom cell built from the sites of Kamaya et al., Nature Mater. 10,
   682 (2011) (P4_2/nmc, a = 8.71771, c = 12.6361 A; the partly occupied Li 16h/8f sites filled
   farthest-point first, Ge/P on 4d alternating in z), CHGNet MD at the given temperatures, D per T and
   the Arrhenius E_a / sigma(300 K) beside the AIMD values of Mo, Ong and Ceder, Chem. Mater. 24, 15
   (2012): E_a = 0.21 eV, sigma(300 K) = 13 mS/cm (experiment, Kamaya et al.: 12 mS/cm at 27 C).

  python benchmarks/transport.py [--n 50] [--md-steps 40] [--lgps-ps 2] [--lgps-temps 800 1000 1200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _common import header, mp20_test_rows

from crystalflow_core.config import defaults
from crystalflow_core.materials.md import MDSettings, arrhenius, diffusion_from_trajectory, run_md, supercell_for
from crystalflow_core.materials.transport import ScreenSettings, migration_screen

PUBLISHED = "Mo, Ong, Ceder, Chem. Mater. 24, 15 (2012), AIMD: E_a 0.21 eV, sigma(300 K) 13 mS/cm"


def lgps():
    """Ordered Li10GeP2S12 (Z = 2, 50 atoms) from Kamaya et al.'s sites."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice.tetragonal(8.71771, 12.6361)
    host = Structure.from_spacegroup(
        "P4_2/nmc",
        lat,
        ["Ge", "P", "S", "S", "S"],
        [[0, 0.5, 0.6903], [0, 0, 0.5], [0, 0.1893, 0.4085], [0, 0.2933, 0.0993], [0, 0.6960, 0.7912]],
    )
    # 4d holds Ge and P half and half: alternate them along z
    four_d = sorted([i for i, s in enumerate(host) if s.specie.symbol == "Ge"], key=lambda i: host[i].frac_coords[2])
    for n, i in enumerate(four_d):
        if n % 2:
            host.replace(i, "P")
    li = Structure.from_spacegroup(
        "P4_2/nmc", lat, ["Li", "Na", "K"], [[0, 0.5, 0.9428], [0.2487, 0.2694, 0.1909], [0.2499, 0.2499, 0]]
    )
    full = [s.frac_coords for s in li if s.specie.symbol == "Li"]  # 4d, occupied
    part = [s.frac_coords for s in li if s.specie.symbol != "Li"]  # 16h + 8f, 16 of 24 taken
    chosen = list(full)
    while len(chosen) < 20:  # farthest-point: the partial site furthest from every Li placed so far
        d = [min(lat.get_distance_and_image(p, c)[0] for c in chosen) for p in part]
        chosen.append(part.pop(int(np.argmax(d))))
    s = host.copy()
    for f in chosen:
        s.append("Li", f)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="Li-containing MP-20 test crystals for the graph timing")
    ap.add_argument("--md-steps", type=int, default=40, help="MD steps timed on the ~100-atom supercell")
    ap.add_argument("--lgps-ps", type=float, default=2.0, help="picoseconds of LGPS MD per temperature (0: skip)")
    ap.add_argument("--lgps-temps", type=float, nargs="+", default=[800, 1000, 1200])
    a = ap.parse_args()
    import torch
    from pymatgen.core import Lattice, Structure

    torch.set_num_threads(1)
    header("ion transport: migration graph and CHGNet MD")
    t = defaults("transport")
    screen = ScreenSettings.from_section(t)

    # 1. migration graphs
    rows = mp20_test_rows()
    structs = []
    for cif in rows["cif"]:
        if "Li" in cif:
            s = Structure.from_str(cif, fmt="cif")
            if "Li" in {e.symbol for e in s.composition}:
                structs.append(s)
        if len(structs) >= a.n:
            break
    times, dims, failed = [], [0, 0, 0, 0], 0
    for s in structs:
        t0 = time.time()
        r = migration_screen(s, "Li", screen)
        times.append(time.time() - t0)
        if r["status"] == "screened":
            dims[r["percolation_dim"]] += 1
        else:
            failed += 1
    ts = np.array(times or [np.nan])
    print(
        f"migration graph, {len(structs)} Li-containing MP-20 test crystals (max_hop {screen.max_hop} A, cut "
        f"{screen.hop_cutoff} A): {ts.mean():.2f} s/structure (median {np.median(ts):.2f}, max {ts.max():.2f}); "
        f"percolating 0/1/2/3 D: {'/'.join(map(str, dims))}; not built: {failed}"
    )

    # 2. CHGNet MD cost
    from chgnet.model import CHGNet

    from crystalflow_core.materials.calculators import make_calculator

    calc = make_calculator(CHGNet.load(verbose=False))
    lco = Structure.from_spacegroup(
        "R-3m", Lattice.hexagonal(2.816, 14.05), ["Li", "Co", "O"], [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.2396]]
    )
    sc, reps = supercell_for(lco, 100)
    md = MDSettings.from_section(
        t["md"], "chgnet", picoseconds=a.md_steps * 2.0 / 1000, timestep_fs=2.0, frame_every=10
    )
    if a.md_steps:
        with tempfile.TemporaryDirectory() as tmp:
            rec = run_md(sc, 1000.0, md, calc, os.path.join(tmp, "lco.extxyz"))
        per_step = rec["wall_s"] / a.md_steps
        print(
            f"CHGNet MD, LiCoO2 {reps} supercell, {len(sc)} atoms, {a.md_steps} steps of 2 fs at 1000 K: "
            f"{per_step:.2f} s/step = {per_step * 500 / 60:.1f} min per ps (ok={rec['ok']})"
        )

    # 3. LGPS
    if a.lgps_ps <= 0:
        return
    s = lgps()
    dmin = float((s.distance_matrix + np.eye(len(s)) * 9).min())
    print(f"LGPS model: {s.composition.reduced_formula}, {len(s)} atoms, shortest distance {dmin:.2f} A")
    md = MDSettings.from_section(
        t["md"],
        "chgnet",
        picoseconds=a.lgps_ps,
        timestep_fs=2.0,
        frame_every=10,
        equilibration_ps=min(0.5, a.lgps_ps / 4),
    )
    ds = []
    with tempfile.TemporaryDirectory() as tmp:
        for temp in a.lgps_temps:
            traj = os.path.join(tmp, f"lgps_{temp:g}.extxyz")
            rec = run_md(s, temp, md, calc, traj)
            if not rec["ok"]:
                print(f"  {temp:g} K: failed ({rec['error']})")
                ds.append(np.nan)
                continue
            d = diffusion_from_trajectory(traj, "Li", temp, md)
            ds.append(d["D"])
            print(
                f"  {temp:g} K, {a.lgps_ps:g} ps ({rec['wall_s'] / 60:.1f} min): D = {d['D']:.2e} +- {d['D_err']:.1e} "
                f"cm^2/s, sigma = {d['sigma']:.0f} mS/cm (MSD smoothing {d['msd_smoothing']})"
            )
    fit = arrhenius(a.lgps_temps, ds, s, "Li")
    print(
        f"LGPS Arrhenius ({len(a.lgps_temps)} T): E_a = {fit['E_a']:.3f} +- {fit['E_a_err']:.3f} eV, "
        f"sigma(300 K) = {fit['sigma_300K']:.1f} mS/cm; published: {PUBLISHED}"
    )


if __name__ == "__main__":
    main()
