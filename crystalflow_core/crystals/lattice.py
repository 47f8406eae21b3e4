"""Lattice <-> rotation-invariant 6-vector k (polar decomposition), numpy and torch.

L (3x3, rows = lattice vectors) = exp(S) Q with S symmetric: exp(2S) = L L^T, the Gram matrix,
so S = 1/2 U log(Lambda) U^T from the eigendecomposition of L L^T and k does not change under a
rotation of the Cartesian frame (L -> L R^T).
k = [S01, S02, S12, (S00-S11)/2, (S00+S11-2 S22)/6, (S00+S11+S22)/3].
The inverse drops Q: L = matrix_exp(S) is symmetric and has the same Gram matrix (same cell).
"""

from __future__ import annotations

import numpy as np
import torch

K_PRIOR_MEAN = (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def s_to_k(s):
    """k from the symmetric S (numpy arrays or torch tensors of shape (..., 3, 3))."""
    parts = [
        s[..., 0, 1],
        s[..., 0, 2],
        s[..., 1, 2],
        (s[..., 0, 0] - s[..., 1, 1]) / 2.0,
        (s[..., 0, 0] + s[..., 1, 1] - 2.0 * s[..., 2, 2]) / 6.0,
        (s[..., 0, 0] + s[..., 1, 1] + s[..., 2, 2]) / 3.0,
    ]
    return torch.stack(parts, dim=-1) if isinstance(s, torch.Tensor) else np.stack(parts, axis=-1)


def lattice_to_k(lattice: np.ndarray) -> np.ndarray:
    """(..., 3, 3) lattice matrices -> (..., 6) k vectors (float64)."""
    lat = np.asarray(lattice, dtype=np.float64)
    gram = lat @ np.swapaxes(lat, -1, -2)
    evals, evecs = np.linalg.eigh(gram)
    if np.any(evals <= 0):
        raise ValueError("degenerate lattice (non-positive Gram eigenvalue)")
    s = 0.5 * (evecs * np.log(evals)[..., None, :]) @ np.swapaxes(evecs, -1, -2)
    return s_to_k(s)


def k_to_s(k):
    """Symmetric S from k; works for numpy arrays and torch tensors of shape (..., 6)."""
    k0, k1, k2, k3, k4, k5 = (k[..., i] for i in range(6))
    s00 = k5 + k4 + k3
    s11 = k5 + k4 - k3
    s22 = k5 - 2.0 * k4
    rows = [[s00, k0, k1], [k0, s11, k2], [k1, k2, s22]]
    if isinstance(k, torch.Tensor):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def k_to_lattice(k: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) symmetric lattice matrix exp(S) (float64)."""
    s = k_to_s(np.asarray(k, dtype=np.float64))
    evals, evecs = np.linalg.eigh(s)
    return (evecs * np.exp(evals)[..., None, :]) @ np.swapaxes(evecs, -1, -2)


def k_to_lattice_torch(k: torch.Tensor) -> torch.Tensor:
    """Batched torch version (matrix_exp), differentiable."""
    return torch.linalg.matrix_exp(k_to_s(k))


def lattice_to_k_torch(lattice: torch.Tensor) -> torch.Tensor:
    lat = lattice.to(torch.float64)
    evals, evecs = torch.linalg.eigh(lat @ lat.transpose(-1, -2))
    s = 0.5 * (evecs * torch.log(evals)[..., None, :]) @ evecs.transpose(-1, -2)
    k = s_to_k(s)
    return k.to(lattice.dtype)
