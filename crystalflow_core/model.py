"""CSPNet-style periodic-E(3)-invariant network used by CrystalFlow.

Every crystal is a fully connected graph (all ordered pairs i, j, self pairs included). Layer:
    h~ = LayerNorm(h + cond)
    m_ij = SiLU(W2 SiLU(W1 [h~_i, h~_j, k, phi(f_j - f_i)] + b1) + b2)
    h <- h + node_mlp([h~_i, mean_j m_ij])
with phi = Fourier features sin/cos(2 pi n d), n = 0..F-1 per coordinate, plus the reciprocal-space
terms cos/sin(2 pi h.d) for h in {0..R-1}^3 (R = 8 in the reference runs).

Two implementations share the same weights:
* ``plain``: builds the concatenated edge input for every ordered pair in every layer (reference).
* ``fast`` (default): phi is fixed for a given input, so
  - the W1 product is split into per-node projections (h_i, h_j), a per-crystal term (k) and a
    per-edge term W_phi phi(d);
  - cos features are even and sin features odd in d, so W_phi phi(d_ji) = C_ij - S_ij when
    W_phi phi(d_ij) = C_ij + S_ij: C and S are computed once per unordered pair i<j, and the
    self pairs (d = 0) reduce to a constant column sum;
  - phi for a pair comes from per-atom cos/sin tables through the angle-addition identities,
    the reciprocal terms as products of the per-axis terms, with no per-edge transcendentals;
  - the per-edge products of all layers run as one matrix product.
Both give the same outputs to float32 round-off (tests/test_model.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .elements import MAX_Z, TYPE_DIM

TWO_PI = 2.0 * math.pi


@dataclass
class ModelConfig:
    hidden: int = 512
    layers: int = 6
    fourier: int = 256  # frequencies per coordinate (n = 0..F-1)
    recip: int = 8  # reciprocal terms per axis (R^3 triples); 0 disables them
    time_dim: int = 256
    task: str = "csp"  # csp | dng
    conditions: list[str] = field(default_factory=list)
    cond_gaussians: int = 50
    fast: bool = True

    @property
    def phi_dim(self) -> int:
        return 6 * self.fourier + 2 * self.recip**3


def sinusoidal_time(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of t in [0, 1] (scaled by 1000 like discrete-time diffusion)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    arg = 1000.0 * t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class GaussianCondition(nn.Module):
    """Standardised scalar -> 50 Gaussians on [-2, 2] -> MLP -> hidden."""

    def __init__(self, hidden: int, n: int = 50):
        super().__init__()
        self.register_buffer("centers", torch.linspace(-2.0, 2.0, n))
        self.gamma = 1.0 / float(self.centers[1] - self.centers[0]) ** 2
        self.mlp = nn.Sequential(nn.Linear(n, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.exp(-self.gamma * (y[:, None] - self.centers[None, :]) ** 2))


# ----------------------------------------------------------------------------- graph helpers
@dataclass
class Graph:
    """Index tensors of a batch of crystals (built without Python loops over crystals)."""

    num_atoms: torch.Tensor  # (B,)
    node_crystal: torch.Tensor  # (N,)
    ei: torch.Tensor  # ordered pairs, all (i, j) incl. i == j
    ej: torch.Tensor
    pi: torch.Tensor  # unordered pairs i < j
    pj: torch.Tensor

    @staticmethod
    def build(num_atoms: torch.Tensor) -> "Graph":
        dev = num_atoms.device
        b = num_atoms.numel()
        offsets = torch.cumsum(num_atoms, 0) - num_atoms
        node_crystal = torch.repeat_interleave(torch.arange(b, device=dev), num_atoms)
        sq = num_atoms * num_atoms
        edge_crystal = torch.repeat_interleave(torch.arange(b, device=dev), sq)
        local = torch.arange(int(sq.sum()), device=dev) - torch.repeat_interleave(torch.cumsum(sq, 0) - sq, sq)
        n_e = num_atoms[edge_crystal]
        ei = offsets[edge_crystal] + local // n_e
        ej = offsets[edge_crystal] + local % n_e
        upper = ei < ej
        return Graph(num_atoms, node_crystal, ei, ej, ei[upper], ej[upper])


def fourier_recip_features_plain(d: torch.Tensor, n_fourier: int, n_recip: int) -> torch.Tensor:
    """phi(d) for edge displacements d (E, 3): [sin(3F), cos(3F), cos(R^3), sin(R^3)], direct."""
    n = torch.arange(n_fourier, device=d.device, dtype=d.dtype)
    arg = TWO_PI * d[:, :, None] * n  # (E, 3, F)
    feats = [torch.sin(arg).flatten(1), torch.cos(arg).flatten(1)]
    if n_recip:
        hkl = _hkl(n_recip, d.device, d.dtype)
        rarg = TWO_PI * d @ hkl.T
        feats += [torch.cos(rarg), torch.sin(rarg)]
    return torch.cat(feats, dim=1)


def _hkl(n: int, device, dtype) -> torch.Tensor:
    r = torch.arange(n, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)


def pair_features_fast(frac: torch.Tensor, pi: torch.Tensor, pj: torch.Tensor, n_fourier: int, n_recip: int):
    """(cos-part, sin-part) of phi(f_j - f_i) for pairs, from per-atom tables (angle addition).

    Column order matches the plain layout: cos part = [cos Fourier (3F), cos recip (R^3)],
    sin part = [sin Fourier (3F), sin recip (R^3)].
    """
    n = torch.arange(n_fourier, device=frac.device, dtype=frac.dtype)
    arg = TWO_PI * frac[:, :, None] * n  # (N, 3, F): per atom, cheap
    ca, sa = torch.cos(arg), torch.sin(arg)
    ci, si, cj, sj = ca[pi], sa[pi], ca[pj], sa[pj]
    cd = cj * ci + sj * si  # cos(a_j - a_i)
    sd = sj * ci - cj * si  # sin(a_j - a_i)
    cos_parts, sin_parts = [cd.flatten(1)], [sd.flatten(1)]
    if n_recip:
        r = n_recip
        c1, c2, c3 = cd[:, 0, :r], cd[:, 1, :r], cd[:, 2, :r]
        s1, s2, s3 = sd[:, 0, :r], sd[:, 1, :r], sd[:, 2, :r]
        c12 = c1[:, :, None] * c2[:, None, :] - s1[:, :, None] * s2[:, None, :]
        s12 = s1[:, :, None] * c2[:, None, :] + c1[:, :, None] * s2[:, None, :]
        c123 = c12[..., None] * c3[:, None, None, :] - s12[..., None] * s3[:, None, None, :]
        s123 = s12[..., None] * c3[:, None, None, :] + c12[..., None] * s3[:, None, None, :]
        cos_parts.append(c123.flatten(1))
        sin_parts.append(s123.flatten(1))
    return torch.cat(cos_parts, 1), torch.cat(sin_parts, 1)


# ----------------------------------------------------------------------------- layers
class CSPLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.ln = nn.LayerNorm(h)
        self.edge1 = nn.Linear(2 * h + 6 + cfg.phi_dim, h)
        self.edge2 = nn.Linear(h, h)
        self.node_mlp = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU())
        f3, r3 = 3 * cfg.fourier, cfg.recip**3
        base = 2 * h + 6
        sin_f = torch.arange(base, base + f3)
        cos_f = torch.arange(base + f3, base + 2 * f3)
        cos_r = torch.arange(base + 2 * f3, base + 2 * f3 + r3)
        sin_r = torch.arange(base + 2 * f3 + r3, base + 2 * f3 + 2 * r3)
        self.register_buffer("cos_cols", torch.cat([cos_f, cos_r]), persistent=False)
        self.register_buffer("sin_cols", torch.cat([sin_f, sin_r]), persistent=False)

    def _node_update(self, h, hn, agg):
        return h + self.node_mlp(torch.cat([hn, agg], dim=1))

    def forward_plain(self, h, cond, frac, k, g: Graph):
        hn = self.ln(h + cond)
        d = frac[g.ej] - frac[g.ei]
        phi = fourier_recip_features_plain(d, self.cfg.fourier, self.cfg.recip)
        x = torch.cat([hn[g.ei], hn[g.ej], k[g.node_crystal[g.ei]], phi], dim=1)
        m = F.silu(self.edge2(F.silu(self.edge1(x))))
        agg = torch.zeros_like(h).index_add_(0, g.ei, m) / g.num_atoms[g.node_crystal][:, None]
        return self._node_update(h, hn, agg)

    def phi_weights(self):
        w = self.edge1.weight
        return w[:, self.cos_cols], w[:, self.sin_cols]

    def forward_fast(self, h, cond, k, g: Graph, pc, ps, c0):
        """pc/ps: (P, H) cos/sin projections of phi for the pairs i<j; c0: (H,) self-pair term."""
        hid = self.cfg.hidden
        hn = self.ln(h + cond)
        w = self.edge1.weight
        # per-node terms; the per-crystal k term and the bias ride on the receiving node i
        u = hn @ w[:, :hid].T + (k @ w[:, 2 * hid : 2 * hid + 6].T + self.edge1.bias)[g.node_crystal]
        v = hn @ w[:, hid : 2 * hid].T
        pi, pj = g.pi, g.pj
        z = torch.cat([u[pi] + v[pj] + (pc + ps), u[pj] + v[pi] + (pc - ps), u + v + c0], 0)
        inplace = not torch.is_grad_enabled()  # sampling: no autograd graph, reuse the buffers
        m = F.silu(self.edge2(F.silu(z, inplace=inplace)), inplace=inplace)
        tgt = torch.cat([pi, pj, torch.arange(h.shape[0], device=h.device)])
        agg = torch.zeros_like(h).index_add_(0, tgt, m) / g.num_atoms[g.node_crystal][:, None]
        return self._node_update(h, hn, agg)


class CSPNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        if cfg.task == "csp":
            self.type_emb = nn.Embedding(MAX_Z + 1, h)
        else:
            self.type_emb = nn.Linear(TYPE_DIM, h)
        self.input = nn.Linear(h + cfg.time_dim, h)
        self.cond_emb = nn.ModuleDict({c: GaussianCondition(h, cfg.cond_gaussians) for c in cfg.conditions})
        self.layers = nn.ModuleList([CSPLayer(cfg) for _ in range(cfg.layers)])
        self.final_ln = nn.LayerNorm(h)
        self.head_k = nn.Linear(h, 6, bias=False)
        self.head_f = nn.Linear(h, 3, bias=False)
        self.head_a = nn.Linear(h, TYPE_DIM) if cfg.task == "dng" else None

    def forward(self, t, types, frac, k, num_atoms, cond=None, cond_mask=None, graph: Graph | None = None):
        """t (B,), types (N,) Z for CSP or (N, 28) for DNG, frac (N, 3), k (B, 6), num_atoms (B,).

        cond: {name: (B,) standardised values}; cond_mask (B,) bool, False = unconditional (CFG).
        Returns (v_k (B, 6), v_f (N, 3), v_a (N, 28) or None).
        """
        g = graph if graph is not None else Graph.build(num_atoms)
        nc = g.node_crystal
        h = self.type_emb(types)
        h = self.input(torch.cat([h, sinusoidal_time(t, self.cfg.time_dim)[nc]], dim=1))
        c = torch.zeros(num_atoms.numel(), h.shape[1], device=h.device, dtype=h.dtype)
        if self.cfg.conditions:
            if cond is None:
                cond = {}
            for name in self.cfg.conditions:
                if name in cond:
                    c = c + self.cond_emb[name](cond[name].to(h.dtype))
            if cond_mask is not None:
                c = c * cond_mask[:, None].to(h.dtype)
        c = c[nc]
        if self.cfg.fast:
            with torch.no_grad():
                fc, fs = pair_features_fast(frac, g.pi, g.pj, self.cfg.fourier, self.cfg.recip)
            wc, ws = zip(*[layer.phi_weights() for layer in self.layers])
            hid = self.cfg.hidden
            # (P, L*H): one product for all layers; split (not sliced) so that the backward pass
            # concatenates the per-layer gradients once instead of zero-filling a full copy per layer
            pc_all = (fc @ torch.cat(wc, 0).T).split(hid, dim=1)
            ps_all = (fs @ torch.cat(ws, 0).T).split(hid, dim=1)
            for li, layer in enumerate(self.layers):
                h = layer.forward_fast(h, c, k, g, pc_all[li], ps_all[li], wc[li].sum(1))
        else:
            for layer in self.layers:
                h = layer.forward_plain(h, c, frac, k, g)
        h = self.final_ln(h)
        pooled = torch.zeros(num_atoms.numel(), h.shape[1], device=h.device, dtype=h.dtype)
        pooled = pooled.index_add_(0, nc, h) / num_atoms[:, None]
        v_k = self.head_k(pooled)
        v_f = self.head_f(h)
        v_a = self.head_a(h) if self.head_a is not None else None
        return v_k, v_f, v_a
