"""The abandon rule replayed on relaxations that recorded their enthalpy traces (a prediction's
`relax/shard*.jsonl`, benchmarks/relax.py's variant files, benchmarks/predict.py's searches): for each rule,
the optimiser steps it would spend, the candidates it stops, and in how many compositions it loses the best
polymorph or changes the top-3 enthalpies (distinct to 1 meV/atom) against the records as they are.

Candidates of one composition and pressure (the rule's group) are replayed in the order of their candidate
number; the first `--probe` of a group relax in full while it has no best; the best so far is the lowest
converged, physical enthalpy per atom before them. A record cut short by the rule it was made under is
replayed up to where it stopped, so a rule looser than that one is not measured beyond it (use records made
with `abandon: null` for those). Asserts nothing; prints a markdown table.

  python benchmarks/abandon_rules.py RELAXED.jsonl [RELAXED.jsonl ...] [--probe 4]
"""

from __future__ import annotations

import argparse
import math
import re
from collections import defaultdict

from _common import header

from crystalflow_core.io import read_jsonl

# (label, check every n steps, margin in eV/atom at optimiser step s)
RULES = [
    ("2.0 every 50 (the default)", 50, lambda s: 2.0),
    ("0.5 every 50", 50, lambda s: 0.5),
    ("0.2 every 50", 50, lambda s: 0.2),
    ("2.0 every 25", 25, lambda s: 2.0),
    ("2.0 at step 25, halved every 25 steps, at least 0.25", 25, lambda s: max(0.25, 2.0 * 0.5 ** (s / 25 - 1))),
    ("2.0 at step 25, halved every 25 steps, at least 0.1", 25, lambda s: max(0.1, 2.0 * 0.5 ** (s / 25 - 1))),
    ("1.0 at step 25, halved every 25 steps, at least 0.05", 25, lambda s: max(0.05, 1.0 * 0.5 ** (s / 25 - 1))),
]


def group_of(rec_id: str) -> tuple[str, int]:
    """(composition and pressure, candidate number) of a prediction record id: SiO2_z3_p0#7 -> (SiO2_p0, 7)."""
    key, c = rec_id.rsplit("#", 1)
    return re.sub(r"_z\d+_", "_", key), int(c)


def finished(rec: dict) -> bool:
    return bool(rec.get("converged")) and not rec.get("error")


def top3(recs: list[dict]) -> list[float]:
    """The three lowest distinct (to 1 meV/atom) final enthalpies per atom of converged, physical records."""
    top: list[float] = []
    for h in sorted(r["enthalpy_trace"][-1] for r in recs if finished(r)):
        if all(abs(h - t) > 1e-3 for t in top):
            top.append(h)
        if len(top) == 3:
            break
    return top


def replay(groups: dict, every: int, margin, probe: int) -> dict:
    steps = stopped = lost_best = changed = 0
    for recs in groups.values():
        best, kept = math.inf, []
        for i, r in enumerate(recs):
            trace = r["enthalpy_trace"]
            n = len(trace) - 1
            stop = None
            if best < math.inf or i >= probe:
                stop = next((s for s in range(every, n + 1, every) if trace[s] > best + margin(s)), None)
            if stop is None:
                steps += n
                kept.append(r)
                if finished(r):
                    best = min(best, trace[-1])
            else:
                steps, stopped = steps + stop, stopped + 1
        want, got = top3(recs), top3(kept)
        if want:
            lost_best += not got or abs(got[0] - want[0]) > 1e-3
            changed += not all(any(abs(a - b) <= 1e-3 for b in got) for a in want)
    return {"steps": steps, "stopped": stopped, "lost_best": lost_best, "changed": changed}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("relaxed", nargs="+", help="relaxation records (jsonl) with enthalpy_trace")
    ap.add_argument("--probe", type=int, default=4)
    a = ap.parse_args()
    header("the abandon rule replayed on recorded enthalpy traces")
    recs = [r for p in a.relaxed for r in read_jsonl(p) if r.get("enthalpy_trace")]
    groups: dict = defaultdict(list)
    for r in sorted(recs, key=lambda r: group_of(r["id"])):
        groups[group_of(r["id"])[0]].append(r)
    as_run = sum(len(r["enthalpy_trace"]) - 1 for r in recs)
    with_best = sum(bool(top3(g)) for g in groups.values())
    print(
        f"# {len(recs)} relaxations with traces in {len(groups)} compositions ({with_best} with a converged one), "
        f"{as_run} optimiser steps as recorded, {sum(bool(r.get('abandoned')) for r in recs)} abandoned as recorded"
    )
    print("| rule | steps | fewer steps than recorded | stopped | best lost | top-3 changed |")
    print("|---|---|---|---|---|---|")
    for label, every, margin in RULES:
        r = replay(groups, every, margin, a.probe)
        print(
            f"| {label} | {r['steps']} | {as_run / max(r['steps'], 1):.2f}x | {r['stopped']} | "
            f"{r['lost_best']}/{with_best} | {r['changed']}/{with_best} |"
        )


if __name__ == "__main__":
    main()
