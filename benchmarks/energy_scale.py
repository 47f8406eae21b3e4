"""The energy scale on known answers: CHGNet static energies of MP-20 test crystals (DFT structures, all
within 0.08 eV/atom of MP's hull) put on the local hull as the pipeline does (the potential's declared
scale: CHGNet's energies are MP2020-corrected by training) and, beside it, with a second MP2020
correction (what versions before 0.5 did). Per group (compounds MP2020 corrects: anions, GGA+U metals;
the rest): median and mean E_hull, share below -0.1 eV/atom. Prints, asserts nothing.

  python benchmarks/energy_scale.py [--n 80] [--seed 0]
"""

from __future__ import annotations

import argparse
import warnings

from _common import DATA, header, mp20_test_rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")  # pymatgen's and CHGNet's deprecation notes, per structure
    header(f"energy scale: CHGNet E_hull of {a.n} MP-20 test crystals (seed {a.seed}) on the local hull")
    import numpy as np
    import pandas as pd
    from chgnet.model import CHGNet
    from pymatgen.core import Structure

    from crystalflow_core.config import defaults
    from crystalflow_core.materials.hull import (
        LocalHull,
        hull_columns,
        load_elemental_refs,
        mp2020_corrected_energy,
        on_hull_scale,
    )
    from crystalflow_core.materials.potentials import potential

    h = defaults("hull")
    hull = LocalHull.from_csvs([DATA / p for p in h["local_sources"]])
    refs = load_elemental_refs(DATA / h["elemental_refs"])
    rows = mp20_test_rows().sample(a.n, random_state=a.seed)
    structs = [Structure.from_str(c, fmt="cif") for c in rows["cif"]]
    preds = CHGNet.load(verbose=False).predict_structure(structs, task="e", batch_size=16)
    scale = potential("chgnet").energy_scale
    out = []
    for s, p in zip(structs, preds):
        e = float(p["e"]) * len(s)
        twice, _ = mp2020_corrected_energy(s, e)
        now = hull_columns(s, on_hull_scale(s, e, scale)[0], refs, hull)["e_hull"]
        old = hull_columns(s, twice, refs, hull)["e_hull"] if np.isfinite(twice) else np.nan
        out.append((abs(twice - e) > 1e-6, now, old))
    df = pd.DataFrame(out, columns=["corrected", "now", "twice"])
    print("| group | n | median E_hull now / corrected twice | mean now / twice | below -0.1 eV/atom now / twice |")
    print("|---|---|---|---|---|")
    for flag, g in df.groupby("corrected"):
        name = "MP2020 corrects (anion or GGA+U)" if flag else "MP2020 leaves alone"
        print(
            f"| {name} | {len(g)} | {g.now.median():+.3f} / {g.twice.median():+.3f} | "
            f"{g.now.mean():+.3f} / {g.twice.mean():+.3f} | {(g.now < -0.1).sum()} / {(g.twice < -0.1).sum()} |"
        )


if __name__ == "__main__":
    main()
