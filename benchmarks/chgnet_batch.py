"""Does evaluating CHGNet on a batch of structures pay on this machine? Energy, forces and stress of the same
structures one at a time and in batches (`predict_structure(..., batch_size=b)`), and the graph construction
alone, per structure, in one run (the order repeated `--repeats` times, each figure the fastest). A batched
relaxation (torch-sim style) gains at most what one batched evaluation gains over single ones.

  OMP_NUM_THREADS=1 python benchmarks/chgnet_batch.py RELAXED.jsonl [-n 32] [--batches 4 8 16 32] [--repeats 3]

RELAXED.jsonl: relaxation records with a `final` structure (a prediction's relax shard, benchmarks/relax.py's
variant files).
"""

from __future__ import annotations

import argparse
import time

from _common import header

from crystalflow_core.crystals.crystal import structure_from
from crystalflow_core.io import read_jsonl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("relaxed")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    header("CHGNet one structure at a time against batches")
    import torch
    from chgnet.model import CHGNet

    structures = [structure_from(r["final"]) for r in read_jsonl(a.relaxed) if r.get("final")][: a.n]
    sizes = sorted(len(s) for s in structures)
    print(f"# {len(structures)} structures of {sizes[0]}-{sizes[-1]} atoms; torch threads {torch.get_num_threads()}")
    model = CHGNet.load(verbose=False)
    model.predict_structure(structures[:2], task="efs")  # warm-up

    def one_by_one():
        for s in structures:
            model.predict_structure(s, task="efs")

    def graphs():
        for s in structures:
            model.graph_converter(s)

    ways = {"one at a time": one_by_one, "graph construction alone": graphs}
    for b in a.batches:
        ways[f"batches of {b}"] = lambda b=b: model.predict_structure(structures, task="efs", batch_size=b)
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(a.repeats):
        for name, fn in ways.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    print("| evaluation | ms per structure |")
    print("|---|---|")
    for name, t in best.items():
        print(f"| {name} | {1000 * t / len(structures):.1f} |")


if __name__ == "__main__":
    main()
