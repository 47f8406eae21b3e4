"""Sampling points: a run samples at its `steps` with its `method` and at every `extra` setting, one folder
s{point} each ('100', or 'heun_10' for another integrator). Torch-free: the workflow's wildcards and
targets are built from these without the model's libraries."""

from __future__ import annotations

import re

METHODS = ("euler", "midpoint", "heun", "rk4")  # the integrators of generative/sampling.py, in its order
BASELINES = ("random", "prototype")  # a DNG run's baselines (materials/baselines.py): points without the model

# a sampling point: 100, heun_10, or a baseline (random, prototype)
POINT_PATTERN = rf"(?:(?:{'|'.join(METHODS)})_)?\d+|{'|'.join(BASELINES)}"
POINT = re.compile(rf"^(?:({'|'.join(METHODS)})_)?(\d+)$")


def is_baseline(point) -> bool:
    return str(point) in BASELINES


def parse_point(point) -> tuple[str | None, int]:
    """A sampling point: '100' (the run's method, 100 steps) or 'heun_10' (Heun, 10 steps); a baseline
    ('random') has no integrator: (None, 0)."""
    if is_baseline(point):
        return None, 0
    m = POINT.match(str(point))
    if not m:
        raise ValueError(f"sampling point {point!r}: steps, or an integrator name and steps (e.g. 100, heun_10)")
    return m.group(1), int(m.group(2))


def sampling_points(run: dict) -> list[str]:
    """Every sampling point of a run: its `steps` with its `method`, then each `extra` setting (one
    folder s{point} each, from the same checkpoint)."""
    s = run["sample"]
    return [str(n) for n in s["steps"]] + [f"{e['method']}_{e['steps']}" for e in s["extra"]]


def baseline_points(run: dict) -> list[str]:
    """The baselines of a DNG run (`baselines`), each a point of its own folder s{name} beside the model's."""
    return [str(b) for b in run.get("baselines") or []]


def metric_points(run: dict) -> list[str]:
    """Every point with a metric row: the model's sampling points, then the baselines."""
    return sampling_points(run) + baseline_points(run)


def point_of(run: dict, method: str, steps: int) -> str:
    return str(steps) if method == run["sample"]["method"] else f"{method}_{steps}"
