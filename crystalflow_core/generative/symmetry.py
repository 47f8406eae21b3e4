"""The space-group constraint of the symmetry-aware model (`model.symmetry: anchor`; shared/docs/method.md,
"The authors' symmetry-aware variant") on a batch: k projected onto each crystal's family (mask and bias),
fractional coordinates tied to their orbit's anchor, velocities made symmetric, the coordinate loss read in
the anchor frame.

Every atom i of an orbit with anchor a sits at f_i = R_i x + t_i for the orbit's free parameter x
(R_i, t_i: the rotation and translation of its Wyckoff operation). A velocity field is symmetric when
v_i = R_i m for one m per orbit; m is estimated as the orbit's mean of R_j^+ v_j (the authors' average).
A step keeps the state symmetric by moving every atom by R_i m, m from the step's own displacements (on
the torus), so the state never passes through a wrapped coordinate that the pseudo-inverse would misread.
"""

from __future__ import annotations

import numpy as np
import torch

from crystalflow_core.crystals.wyckoff import k_mask_bias
from crystalflow_core.generative.flow import torus_velocity, wrap

_MASKS = torch.tensor(np.stack([k_mask_bias(g)[0] for g in range(1, 231)]), dtype=torch.float32)
_BIASES = torch.tensor(np.stack([k_mask_bias(g)[1] for g in range(1, 231)]), dtype=torch.float32)


class SymmetryConstraint:
    """The constraint of one batch. `spacegroups` (B,), `ops` (N, 4, 4) per atom, `anchors` (N,) the index
    of each atom's anchor in the batch (not within its crystal); `symmetrize_loss`: the model's setting (the
    loss adds the distance of the raw prediction from its symmetric part)."""

    def __init__(self, spacegroups: torch.Tensor, ops: torch.Tensor, anchors: torch.Tensor, symmetrize_loss: bool):
        self.symmetrize_loss = bool(symmetrize_loss)
        dev = ops.device
        g = spacegroups.long().cpu() - 1
        self.mask = _MASKS[g].to(dev)
        self.bias = _BIASES[g].to(dev)
        self.rot = ops[:, :3, :3].float()
        self.trans = ops[:, :3, 3].float()
        self.rot_inv = torch.linalg.pinv(self.rot.double()).float()
        self.anchors = anchors.long().to(dev)
        self.orbit_size = torch.bincount(self.anchors, minlength=len(self.anchors)).clamp(min=1).float()

    # -- lattice
    def k(self, k: torch.Tensor) -> torch.Tensor:
        return k * self.mask.to(k) + self.bias.to(k)

    def k_velocity(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.mask.to(v)

    # -- coordinates
    def anchor_frame(self, v: torch.Tensor) -> torch.Tensor:
        """R_i^+ v_i per atom (the loss compares target and prediction here)."""
        return torch.einsum("nij,nj->ni", self.rot_inv.to(v), v)

    def f_velocity(self, v: torch.Tensor) -> torch.Tensor:
        """The symmetric part of a per-atom vector field: R_i m_a, m_a the orbit's mean of R_j^+ v_j."""
        m = torch.zeros_like(v).index_add_(0, self.anchors, self.anchor_frame(v)) / self.orbit_size.to(v)[:, None]
        return torch.einsum("nij,nj->ni", self.rot.to(v), m[self.anchors])

    def prior_f(self, f0: torch.Tensor) -> torch.Tensor:
        """A uniform coordinate draw made symmetric: f_i = R_i R_a^+ (f_a - t_a) + t_i (the anchor keeps its
        draw on its position's subspace)."""
        fa = torch.einsum("nij,nj->ni", self.rot_inv.to(f0), f0 - self.trans.to(f0))[self.anchors]
        return wrap(torch.einsum("nij,nj->ni", self.rot.to(f0), fa) + self.trans.to(f0))

    def step(self, f_old: torch.Tensor, f_new: torch.Tensor) -> torch.Tensor:
        """f_new brought back onto the orbits: every atom moved from the (symmetric) f_old by the symmetric
        part of the step's displacements."""
        return wrap(f_old + self.f_velocity(torus_velocity(f_old, f_new)))

    def project_state(self, x_old: tuple, x_new: tuple) -> tuple:
        k, f, a = x_new
        return self.k(k), self.step(x_old[1], f), a

    def project_velocity(self, v: tuple) -> tuple:
        vk, vf, va = v
        return self.k_velocity(vk), self.f_velocity(vf), va


def batch_constraint(items: list[dict], device) -> SymmetryConstraint:
    """The constraint of sampler items that carry `spacegroup`, `ops` and `anchors` (within their crystal)."""
    offset, anchors, ops = 0, [], []
    for it in items:
        anchors.append(torch.as_tensor(it["anchors"], dtype=torch.long) + offset)
        ops.append(torch.as_tensor(np.asarray(it["ops"]), dtype=torch.float32))
        offset += int(it["num_atoms"])
    spg = torch.tensor([int(it["spacegroup"]) for it in items], dtype=torch.long)
    return SymmetryConstraint(spg, torch.cat(ops).to(device), torch.cat(anchors).to(device), symmetrize_loss=False)
