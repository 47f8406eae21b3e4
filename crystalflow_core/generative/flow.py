"""Conditional flow matching (I-CFM / rectified flow, sigma = 0) on lattice k, torus F and types A."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from crystalflow_core.crystals.lattice import K_PRIOR_MEAN


def wrap(x: torch.Tensor) -> torch.Tensor:
    """w(x) = x - floor(x), into [0, 1). (x - floor(x) rounds to 1.0 for tiny negative x in
    float32; such values are folded back to 0.)"""
    r = x - torch.floor(x)
    return torch.where(r >= 1.0, r - 1.0, r)


def torus_velocity(f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
    """Shortest-way displacement on the unit torus: w(F1 - F0 - 0.5) - 0.5, in [-0.5, 0.5)."""
    return wrap(f1 - f0 - 0.5) - 0.5


def sample_k_prior(b: int, sigma: float, generator=None, device=None, dtype=torch.float32):
    mu = torch.tensor(K_PRIOR_MEAN, device=device, dtype=dtype)
    return mu + sigma * torch.randn(b, 6, generator=generator, device=device, dtype=dtype)


@dataclass
class FlowTargets:
    t: torch.Tensor  # (B,)
    k_t: torch.Tensor
    f_t: torch.Tensor
    a_t: torch.Tensor | None
    u_k: torch.Tensor
    u_f: torch.Tensor
    u_a: torch.Tensor | None


def ot_pairing(k0, k1, f0, f1, node_crystal) -> tuple[torch.Tensor, torch.Tensor]:
    """Minibatch optimal-transport pairing of prior and data (exact assignment, Hungarian): the batch's
    lattice draws k0 are re-assigned to its crystals to minimise sum |k0 - k1|^2, and within each
    crystal the coordinate draws F0 to its atoms to minimise the summed squared torus distance. The
    priors are i.i.d., so any permutation of them is an equally valid draw; shorter pairings give
    straighter paths. Returns the permuted (k0, f0)."""
    from scipy.optimize import linear_sum_assignment

    cost_k = torch.cdist(k1.double(), k0.double()).pow(2).cpu().numpy()
    _, col = linear_sum_assignment(cost_k)
    k0 = k0[torch.as_tensor(col, device=k0.device)]
    f0 = f0.clone()
    nc = node_crystal.cpu().numpy()
    bounds = np.flatnonzero(np.diff(np.r_[-1, nc, nc[-1] + 1 if len(nc) else 0]))
    for s, e in zip(bounds[:-1], bounds[1:]):
        if e - s < 2:
            continue
        d = torus_velocity(f0[s:e][None, :, :], f1[s:e][:, None, :])  # [atom, prior point, 3]
        _, col = linear_sum_assignment(d.double().pow(2).sum(-1).cpu().numpy())
        f0[s:e] = f0[s:e][torch.as_tensor(col, device=f0.device)]
    return k0, f0


def interpolate(
    k1: torch.Tensor,
    f1: torch.Tensor,
    node_crystal: torch.Tensor,
    a1: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    *,
    k_sigma: float,
    generator=None,
    ot: bool = False,
    sym=None,
) -> FlowTargets:
    """Draw priors and t, return the point on each path and its target velocity (`ot`: prior and data
    paired by minibatch optimal transport first; `sym`, a SymmetryConstraint: data and prior lattices
    projected onto each crystal's family, the coordinate prior tied to its orbits' anchors)."""
    b = k1.shape[0]
    dev, dt = k1.device, k1.dtype
    if t is None:
        t = torch.rand(b, generator=generator, device=dev, dtype=dt)
    k0 = sample_k_prior(b, k_sigma, generator, dev, dt)
    f0 = torch.rand(f1.shape, generator=generator, device=dev, dtype=f1.dtype)
    if ot and sym is not None:
        raise ValueError("OT pairing and the space-group constraint exclude each other (as in the authors' code)")
    if ot:
        k0, f0 = ot_pairing(k0, k1, f0, f1, node_crystal)
    if sym is not None:
        k1, k0, f0 = sym.k(k1), sym.k(k0), sym.prior_f(f0)
    tn = t[node_crystal][:, None]
    u_k = k1 - k0
    u_f = torus_velocity(f0, f1)
    k_t = k0 + t[:, None] * u_k
    f_t = wrap(f0 + tn * u_f)
    a_t = u_a = None
    if a1 is not None:
        a0 = torch.randn(a1.shape, generator=generator, device=dev, dtype=a1.dtype)
        u_a = a1 - a0
        a_t = a0 + tn * u_a
    return FlowTargets(t, k_t, f_t, a_t, u_k, u_f, u_a)


def flow_loss(pred, tgt: FlowTargets, weights, sym=None) -> dict[str, torch.Tensor]:
    """Mean squared velocity errors, weighted. With `sym` (the authors' post-symmetrisation): the predicted
    lattice velocity masked to the family, the coordinate velocities compared in the anchor frame
    (R_i^+ applied to both); with its `symmetrize_loss`, plus how far the raw prediction is from its
    symmetric part."""
    v_k, v_f, v_a = pred
    u_f, extra = tgt.u_f, {}
    if sym is not None:
        v_k_sym = sym.k_velocity(v_k)
        if sym.symmetrize_loss:
            extra["loss_sym_k"] = torch.mean((v_k - v_k_sym) ** 2)
            extra["loss_sym_f"] = torch.mean((v_f - sym.f_velocity(v_f)) ** 2)
        v_k, v_f, u_f = v_k_sym, sym.anchor_frame(v_f), sym.anchor_frame(u_f)
    out = {
        "loss_k": torch.mean((v_k - tgt.u_k) ** 2),
        "loss_f": torch.mean((v_f - u_f) ** 2),
    }
    total = weights[0] * out["loss_k"] + weights[1] * out["loss_f"]
    if extra:
        out.update(extra)
        total = total + weights[0] * extra["loss_sym_k"] + weights[1] * extra["loss_sym_f"]
    if v_a is not None and tgt.u_a is not None:
        out["loss_a"] = torch.mean((v_a - tgt.u_a) ** 2)
        total = total + weights[2] * out["loss_a"]
    out["loss"] = total
    return out
