"""Does evaluating CHGNet on a batch of structures pay on this machine, and what does taking forces and stress
in one backward pass save? Energy, forces and stress of the same structures one at a time and in batches
(`predict_structure(..., batch_size=b)`) with CHGNet's own two backward passes, one at a time also with 0.11.0's
(the two without their second-order graph), and each with the package's one pass
(`calculators._fast_derivatives`), and the graph construction alone, per structure, in one run (the
order repeated `--repeats` times, each figure the fastest). A batched relaxation (torch-sim style) gains at
most what one batched evaluation gains over single ones.

  OMP_NUM_THREADS=1 python benchmarks/chgnet_batch.py RELAXED.jsonl [-n 32] [--batches 4 8 16 32] [--repeats 3]

RELAXED.jsonl: relaxation records with a `final` structure (a prediction's relax shard, benchmarks/relax.py's
variant files).

With --relax SAMPLES.jsonl (generated candidates: a prediction's samples), the first -k of them are relaxed
one after another in this process (L-BFGS, Frechet cell filter, fmax 0.1, at most --steps steps: a predict
job's relaxation without the abandon rule) with three calculators, each candidate by all three before the
next: CHGNet's own, 0.11.0's (first derivatives only: CHGNet's two backward passes without create_graph),
and the package's (one backward pass, weights frozen); per calculator candidates per minute, ms per force
call, and how far the final enthalpies and step counts agree with 0.11.0's.

  OMP_NUM_THREADS=1 python benchmarks/chgnet_batch.py --relax SAMPLES.jsonl [-k 40] [--steps 150]

With --profile, the package's one-pass evaluation of the RELAXED structures one at a time is also run under
torch.profiler: the operators by their share of the time, and how many run per structure (where the time of a
call goes: arithmetic or per-operator overhead).

  OMP_NUM_THREADS=1 python benchmarks/chgnet_batch.py RELAXED.jsonl --profile [--batches]
"""

from __future__ import annotations

import argparse
import contextlib
import time

from _common import header

from crystalflow_core.crystals.crystal import structure_from
from crystalflow_core.io import read_jsonl
from crystalflow_core.materials.calculators import _fast_derivatives, make_calculator


@contextlib.contextmanager
def first_derivatives_only(model=None):
    """0.11.0's CHGNet calculator: CHGNet's two backward passes without their second-order graph (any model)."""
    import torch

    grad = torch.autograd.grad
    torch.autograd.grad = lambda *args, **kw: grad(*args, **{**kw, "create_graph": False})
    try:
        yield
    finally:
        torch.autograd.grad = grad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("relaxed", nargs="?")
    ap.add_argument("--relax", metavar="SAMPLES", help="relax generated candidates with each calculator")
    ap.add_argument("-k", type=int, default=40)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="the one-pass evaluation under torch.profiler too")
    a = ap.parse_args()
    if a.relax:
        return relax_side_by_side(a.relax, a.k, a.steps)
    if not a.relaxed:
        ap.error("RELAXED.jsonl (or --relax SAMPLES.jsonl) is needed")
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

    def within(context, fn):
        def run():
            with context(model):
                fn()

        return run

    def one_pass(fn):
        return within(_fast_derivatives, fn)

    ways = {
        "one at a time (CHGNet's own: two backward passes, second order)": one_by_one,
        "one at a time, 0.11.0 (two backward passes, first order)": within(first_derivatives_only, one_by_one),
        "one at a time, one backward pass, weights frozen (this version)": one_pass(one_by_one),
    }
    ways["graph construction alone"] = graphs
    for b in a.batches:
        ways[f"batches of {b}"] = lambda b=b: model.predict_structure(structures, task="efs", batch_size=b)
        ways[f"batches of {b}, one backward pass"] = one_pass(ways[f"batches of {b}"])
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
    if a.profile:
        operator_shares(ways["one at a time, one backward pass, weights frozen (this version)"], len(structures))


def operator_shares(fn, n: int, rows: int = 12) -> None:
    """`fn` (n structures' energy, forces and stress) under torch.profiler: the operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    print(f"# profiled: {sum(e.count for e in ops) / n:.0f} operator calls per structure, {total / 1000 / n:.1f} ms")
    print("| operator | share of self time | calls per structure | us per call |")
    print("|---|---|---|---|")
    for e in ops[:rows]:
        share, per_call = 100 * e.self_cpu_time_total / total, e.self_cpu_time_total / e.count
        print(f"| {e.key} | {share:.1f} % | {e.count / n:.0f} | {per_call:.0f} |")


def relax_side_by_side(samples: str, k: int, steps: int) -> None:
    """Relax the first k candidates of SAMPLES with each calculator, interleaved (see the module doc)."""
    import numpy as np
    import torch
    from chgnet.model import CHGNet

    from crystalflow_core.config import defaults
    from crystalflow_core.materials.relax import RelaxSettings, relax_structure

    header("CHGNet relaxations of generated candidates with each calculator")
    structures = [structure_from(r) for r in read_jsonl(samples)][:k]
    print(f"# {len(structures)} candidates of {samples}; torch threads {torch.get_num_threads()}; <= {steps} steps")
    model = CHGNet.load(verbose=False)

    calcs = {
        "CHGNet's own (two backward passes, second-order graph)": make_calculator(
            model, lambda m: contextlib.nullcontext()
        ),
        "0.11.0 (two backward passes, first order)": make_calculator(model, first_derivatives_only),
        "this version (one backward pass, weights frozen)": make_calculator(model),
    }
    settings = RelaxSettings.from_section(defaults("relax"), steps=steps, fmax=0.1, record_energies=False)
    recs = {name: [] for name in calcs}
    for s in structures:
        for name, calc in calcs.items():
            recs[name].append(relax_structure(s, settings, calc=calc))
    ref = recs["0.11.0 (two backward passes, first order)"]
    print(
        "| calculator | candidates/min | ms per force call | converged | against 0.11.0: same steps | same "
        "converged | |dH| of both converged, max (median) meV/atom |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rs in recs.items():
        wall = sum(r["wall_s"] for r in rs)
        calls = sum(r.get("force_calls", 0) for r in rs)
        both = [(r, q) for r, q in zip(rs, ref) if r["converged"] and q["converged"]]
        dh = [1000 * abs(r["enthalpy_per_atom"] - q["enthalpy_per_atom"]) for r, q in both]
        same_steps = sum(r["steps"] == q["steps"] for r, q in zip(rs, ref))
        same_conv = sum(r["converged"] == q["converged"] for r, q in zip(rs, ref))
        print(
            f"| {name} | {60 * len(rs) / wall:.1f} | {1000 * wall / max(1, calls):.1f} | "
            f"{sum(bool(r['converged']) for r in rs)}/{len(rs)} | {same_steps}/{len(rs)} | {same_conv}/{len(rs)} | "
            f"{max(dh, default=0):.3f} ({np.median(dh) if dh else 0:.3f}) |"
        )


if __name__ == "__main__":
    main()
