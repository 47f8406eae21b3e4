"""The ODE integrators of the sampler (the authors' Euler grid, midpoint, Heun, RK4) over the state (k, F, A)
with F on the torus, their time grids, and the velocity with classifier-free guidance."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from crystalflow_core.generative import precision as prec
from crystalflow_core.generative.flow import wrap
from crystalflow_core.generative.network import Graph
from crystalflow_core.points import METHODS

log = logging.getLogger(__name__)


VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], tuple]


def _shift(x, dx, scale):
    """x + scale dx for the state (k, F, A), F wrapped onto the torus."""
    k_, f_, a_ = x
    vk, vf, va = dx
    return (k_ + scale * vk, wrap(f_ + scale * vf), None if a_ is None else a_ + scale * va)


def _combine(ds, weights):
    return tuple(None if parts[0] is None else sum(w * p for w, p in zip(weights, parts)) for parts in zip(*ds))


def _euler(vel, x, t, dt):  # the authors' grid: the velocity at the end of the step
    return _shift(x, vel(t + dt, *x), dt)


def _midpoint(vel, x, t, dt):
    d1 = vel(t, *x)
    return _shift(x, vel(t + dt / 2, *_shift(x, d1, dt / 2)), dt)


def _heun(vel, x, t, dt):  # RK2 with the trapezoid: exact for velocities linear in t
    d1 = vel(t, *x)
    d2 = vel(t + dt, *_shift(x, d1, dt))
    return _shift(x, _combine((d1, d2), (0.5, 0.5)), dt)


def _rk4(vel, x, t, dt):
    d1 = vel(t, *x)
    d2 = vel(t + dt / 2, *_shift(x, d1, dt / 2))
    d3 = vel(t + dt / 2, *_shift(x, d2, dt / 2))
    d4 = vel(t + dt, *_shift(x, d3, dt))
    return _shift(x, _combine((d1, d2, d3, d4), (1 / 6, 1 / 3, 1 / 3, 1 / 6)), dt)


# The one table of integrators: name -> (one step from t to t + dt, network evaluations per step). The
# schema's `integrator` definition, the workflow's {point} wildcard and the benchmarks take the names
# from here (a test keeps the schema's list equal to it).
INTEGRATOR_TABLE = {"euler": (_euler, 1), "midpoint": (_midpoint, 2), "heun": (_heun, 2), "rk4": (_rk4, 4)}


INTEGRATORS = {name: step for name, (step, _) in INTEGRATOR_TABLE.items()}


EVALS_PER_STEP = {name: n for name, (_, n) in INTEGRATOR_TABLE.items()}


TIME_GRIDS = ("uniform", "dense_end")


def time_grid(steps: int, kind: str = "uniform", power: float = 2.0) -> np.ndarray:
    """steps + 1 times from 0 to 1: uniform, or dense_end (t_i = 1 - (1 - i/S)^power: smaller steps
    near t = 1, where the coordinates settle)."""
    u = np.linspace(0.0, 1.0, steps + 1)
    if kind == "uniform":
        return u
    if kind == "dense_end":
        return 1.0 - (1.0 - u) ** power
    raise ValueError(f"unknown time grid '{kind}' ({', '.join(TIME_GRIDS)})")


def integrate(  # noqa: PLR0913  (the integrator and every sampling setting, as the hot loop needs them)
    velocity: VelocityFn,
    k,
    f,
    a,
    steps: int,
    method: str,
    anneal: float,
    anneal_offset: float,
    anneal_vars: tuple,
    grid: str,
    grid_power: float,
    stats: dict | None = None,
    constraint=None,
):
    """Integrate from t = 0 to 1 in `steps` steps of the chosen time grid; returns (k, f, a).
    `stats`, when given, receives the number of velocity evaluations (NFE). `constraint` (a
    generative.symmetry.SymmetryConstraint): every velocity made symmetric before use (annealing included)
    and the state put back on its space group's lattices and orbits after every step."""
    if method not in INTEGRATORS:
        raise ValueError(f"unknown integrator '{method}' ({', '.join(METHODS)})")
    step = INTEGRATORS[method]
    b = k.shape[0]
    times = time_grid(steps, grid, grid_power)
    on = [v in anneal_vars for v in ("k", "f", "a")]
    nfe = 0

    def vel(t, k_, f_, a_):
        nonlocal nfe
        nfe += 1
        v = velocity(torch.full((b,), t, dtype=k.dtype, device=k.device), k_, f_, a_)
        if constraint is not None:
            v = constraint.project_velocity(v)
        factor = 1.0 + anneal * max(t - anneal_offset, 0.0)
        return tuple(x * factor if (x is not None and use) else x for x, use in zip(v, on))

    x = (k, f, a)
    for i in range(steps):
        new = step(vel, x, float(times[i]), float(times[i + 1] - times[i]))
        x = new if constraint is None else constraint.project_state(x, new)
    if stats is not None:
        stats["nfe"] = nfe
    return x


def guided_velocity(
    net, types_fixed, num_atoms, cond: dict | None, guidance: float, graph: Graph, precision: str
) -> VelocityFn:
    """v = w v(y) + (1 - w) v(no y) (classifier-free guidance); at w = 1 or without a condition only
    one pass. `types_fixed`: Z for CSP, None for DNG (the state's type vectors are used). `precision`
    (fp32 or bf16, resolved) is the network's arithmetic; its outputs, and so the state, stay fp32."""
    b = num_atoms.numel()
    device = num_atoms.device

    def velocity(t, k, f, a):
        types = a if types_fixed is None else types_fixed
        with prec.autocast(precision, device):
            v = net(t, types, f, k, num_atoms, cond or None, None, graph)
        if cond and guidance != 1.0:
            mask = torch.zeros(b, dtype=torch.bool, device=k.device)
            with prec.autocast(precision, device):
                vu = net(t, types, f, k, num_atoms, cond, mask, graph)
            v = tuple(None if x is None else guidance * x + (1 - guidance) * y for x, y in zip(v, vu))
        return v

    return velocity
