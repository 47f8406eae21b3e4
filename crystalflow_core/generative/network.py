"""CSPNet-style periodic-E(3)-invariant network of CrystalFlow, the same function as the authors'
decoder (ixsluo/CrystalFlow, ``diffcsp.pl_modules.cspnet.CSPNet`` with lattice_dim 6, ip false,
ln true, dis_emb sin, rec_emb sin|none, na_emb 0, edge_style fc); their checkpoints load into it
(``crystalflow_core.generative.reference``) and reproduce their outputs (tests/unit/test_reference.py).

Every crystal is a fully connected graph (all ordered pairs i, j, self pairs included). Layer l:
    h <- h + mixin_l(adapter_l(c)) * g        (conditional models; g = 0 for the unconditional pass)
    x = LayerNorm(h)
    m_ij = SiLU(W2 SiLU(W1 [x_i, x_j, rec(d), fourier(d), k] + b1) + b2),  d = f_j - f_i
    h <- h + SiLU(U2 SiLU(U1 [x_i, mean_j m_ij] + c1) + c2)
with rec(d) = [cos(2 pi m.d), sin(2 pi m.d)] for m in {0..R-1}^3 (itertools.product order) and
fourier(d) = [sin(2 pi n d), cos(2 pi n d)], n = 0..F-1, coordinate-major. This is the column order of
the authors' first edge layer, so their weights are used as they are.

Two implementations share the same weights:
* ``plain``: builds the concatenated edge input for every ordered pair in every layer (reference).
* ``fast`` (default): the edge features are fixed for a given input, so
  - the W1 product is split into per-node projections (x_i, x_j), a per-crystal term (k) and a
    per-edge term W_phi phi(d);
  - cos features are even and sin features odd in d, so W_phi phi(d_ji) = C_ij - S_ij when
    W_phi phi(d_ij) = C_ij + S_ij: C and S are computed once per unordered pair i<j, and the
    self pairs (d = 0) reduce to a constant column sum;
  - phi for a pair comes from per-atom cos/sin tables through the angle-addition identities,
    the reciprocal terms as products of the per-axis terms, with no per-edge transcendentals;
  - the per-edge products of all layers run as one matrix product.
Both give the same outputs to float32 round-off (tests/unit/test_model.py).

Under bf16 autocast (`precision.py`) the matrix products and the per-edge messages run in bf16 while
what bf16 would spoil stays fp32: the Fourier/reciprocal and time-embedding arguments and their
sin/cos (`fp32_region`), the residual stream h and its LayerNorms, the sums of messages over
neighbours, and the outputs (so the ODE state and the loss see fp32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from crystalflow_core.crystals.elements import MAX_Z, TYPE_DIM

TWO_PI = 2.0 * math.pi


# what a checkpoint of a version before the symmetric variant lacks: it is the plain model
SAVED_BEFORE_SYMMETRY = {"symmetry": "none", "symmetrize_loss": False}


@dataclass
class ModelConfig:
    """The network's sizes (a run's validated `model` section, its task and conditions; defaults live
    in the schema only)."""

    hidden: int
    layers: int
    fourier: int  # frequencies per coordinate (n = 0..F-1)
    recip: int  # reciprocal terms per axis (R^3 triples); 0 disables them
    time_dim: int
    task: str  # csp | dng
    conditions: list[str]
    cond_gaussians: int  # Gaussians per condition (centres linspace(-2, 2), width = spacing)
    fast: bool
    symmetry: str  # none | anchor: the space-group-constrained variant (generative.symmetry)
    symmetrize_loss: bool

    @classmethod
    def from_saved(cls, saved: dict) -> ModelConfig:
        """The config a checkpoint saved; one written before the symmetric variant (0.8) is the plain model."""
        return cls(**{**SAVED_BEFORE_SYMMETRY, **saved})

    @classmethod
    def from_run(cls, run: dict) -> ModelConfig:
        return cls(**run["model"], task=run["task"], conditions=list(run["conditions"]))

    @property
    def phi_dim(self) -> int:
        return 6 * self.fourier + 2 * self.recip**3


def fp32_region(x: torch.Tensor):
    """Autocast off: arguments of sin/cos (up to 2 pi (F - 1) for the Fourier features) lose their
    fractional part in bf16, so they and their features are computed in fp32."""
    return torch.autocast(x.device.type, enabled=False)


def sinusoidal_time(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The authors' time embedding: t in [0, 1] as it is, half = dim // 2 frequencies
    exp(-ln(10000) i / (half - 1)), i = 0..half-1, embedding [sin(t f), cos(t f)] (fp32 always)."""
    with fp32_region(t):
        return _sinusoidal_time(t.to(torch.promote_types(t.dtype, torch.float32)), dim)


def _sinusoidal_time(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / (half - 1))
    arg = t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class ConditionExpansion(nn.Module):
    """Standardised scalar -> n fixed Gaussians exp(-(y - mu)^2 / (2 w^2)), centres linspace(-2, 2, n),
    w = centre spacing (the authors' ScalarEmbedding with no_mlp: the expansion is all there is;
    the per-layer adapters of CSPNet learn from it)."""

    def __init__(self, n: int = 50):
        super().__init__()
        offsets = torch.linspace(-2.0, 2.0, n)
        self.register_buffer("offsets", offsets)
        self.register_buffer("widths", torch.full((n,), float(offsets[1] - offsets[0])))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((y[:, None] - self.offsets[None, :]) ** 2) / (2.0 * self.widths[None, :] ** 2))


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
    def build(num_atoms: torch.Tensor) -> Graph:
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
    """phi(d) for edge displacements d (E, 3) in the authors' order: [cos(R^3), sin(R^3), sin(3F), cos(3F)]."""
    n = torch.arange(n_fourier, device=d.device, dtype=d.dtype)
    arg = TWO_PI * d[:, :, None] * n  # (E, 3, F)
    feats = []
    if n_recip:
        hkl = _hkl(n_recip, d.device, d.dtype)
        rarg = TWO_PI * d @ hkl.T
        feats += [torch.cos(rarg), torch.sin(rarg)]
    feats += [torch.sin(arg).flatten(1), torch.cos(arg).flatten(1)]
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
        self.edge1 = nn.Linear(2 * h + cfg.phi_dim + 6, h)
        self.edge2 = nn.Linear(h, h)
        self.node_mlp = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU())
        # edge1 columns: [x_i (H), x_j (H), cos rec (R^3), sin rec (R^3), sin F (3F), cos F (3F), k (6)]
        f3, r3 = 3 * cfg.fourier, cfg.recip**3
        base = 2 * h
        cos_r = torch.arange(base, base + r3)
        sin_r = torch.arange(base + r3, base + 2 * r3)
        sin_f = torch.arange(base + 2 * r3, base + 2 * r3 + f3)
        cos_f = torch.arange(base + 2 * r3 + f3, base + 2 * r3 + 2 * f3)
        self.k_start = base + 2 * r3 + 2 * f3
        # order of pair_features_fast: [Fourier part (3F), reciprocal part (R^3)]
        self.register_buffer("cos_cols", torch.cat([cos_f, cos_r]), persistent=False)
        self.register_buffer("sin_cols", torch.cat([sin_f, sin_r]), persistent=False)

    def _node_update(self, h, hn, agg):
        return h + self.node_mlp(torch.cat([hn, agg], dim=1))

    def forward_plain(self, h, frac, k, g: Graph):
        hn = self.ln(h)
        d = frac[g.ej] - frac[g.ei]
        with fp32_region(d):
            phi = fourier_recip_features_plain(d, self.cfg.fourier, self.cfg.recip)
        x = torch.cat([hn[g.ei], hn[g.ej], phi, k[g.node_crystal[g.ei]]], dim=1)
        m = F.silu(self.edge2(F.silu(self.edge1(x))))
        agg = torch.zeros_like(h).index_add_(0, g.ei, m.to(h.dtype)) / g.num_atoms[g.node_crystal][:, None]
        return self._node_update(h, hn, agg)

    def phi_weights(self):
        w = self.edge1.weight
        return w[:, self.cos_cols], w[:, self.sin_cols]

    def forward_fast(self, h, k, g: Graph, pc, ps, c0):
        """pc/ps: (P, H) cos/sin projections of phi for the pairs i<j; c0: (H,) self-pair term."""
        hid = self.cfg.hidden
        hn = self.ln(h)
        w = self.edge1.weight
        # per-node terms; the per-crystal k term and the bias ride on the receiving node i
        u = hn @ w[:, :hid].T + (k @ w[:, self.k_start : self.k_start + 6].T + self.edge1.bias)[g.node_crystal]
        v = hn @ w[:, hid : 2 * hid].T
        pi, pj = g.pi, g.pj
        z = torch.cat([u[pi] + v[pj] + (pc + ps), u[pj] + v[pi] + (pc - ps), u + v + c0.to(u.dtype)], 0)
        inplace = not torch.is_grad_enabled()  # sampling: no autograd graph, reuse the buffers
        m = F.silu(self.edge2(F.silu(z, inplace=inplace)), inplace=inplace)
        tgt = torch.cat([pi, pj, torch.arange(h.shape[0], device=h.device)])
        agg = torch.zeros_like(h).index_add_(0, tgt, m.to(h.dtype)) / g.num_atoms[g.node_crystal][:, None]
        return self._node_update(h, hn, agg)


class CSPNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        if cfg.task == "csp":
            self.type_emb = nn.Embedding(MAX_Z, h)  # indexed by Z - 1
        else:
            self.type_emb = nn.Linear(TYPE_DIM, h)
        self.input = nn.Linear(h + cfg.time_dim, h)
        self.cond_emb = nn.ModuleDict({c: ConditionExpansion(cfg.cond_gaussians) for c in cfg.conditions})
        c_dim = cfg.cond_gaussians * len(cfg.conditions)
        if cfg.conditions:  # per layer: adapter(c) -> bias-free mixin, added to h before the layer
            self.cond_adapters = nn.ModuleList(
                [nn.Sequential(nn.Linear(c_dim, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU()) for _ in range(cfg.layers)]
            )
            self.cond_mixins = nn.ModuleList([nn.Linear(h, h, bias=False) for _ in range(cfg.layers)])
        self.layers = nn.ModuleList([CSPLayer(cfg) for _ in range(cfg.layers)])
        self.final_ln = nn.LayerNorm(h)
        self.head_k = nn.Linear(h, 6, bias=False)
        self.head_f = nn.Linear(h, 3, bias=False)
        self.head_a = nn.Linear(h, TYPE_DIM) if cfg.task == "dng" else None

    def condition_vector(self, cond: dict | None, b: int, dtype) -> torch.Tensor | None:
        """Concatenated Gaussian expansions of the run's conditions, in the run's order (B, 50 n)."""
        if not self.cfg.conditions or not cond:
            return None
        missing = [c for c in self.cfg.conditions if c not in cond]
        if missing:
            raise KeyError(f"condition(s) {missing} missing; the model is conditioned on {self.cfg.conditions}")
        return torch.cat([self.cond_emb[c](cond[c].to(dtype).reshape(b)) for c in self.cfg.conditions], dim=1)

    def forward(self, t, types, frac, k, num_atoms, cond=None, cond_mask=None, graph: Graph | None = None):
        """t (B,), types (N,) Z for CSP or (N, 28) for DNG, frac (N, 3), k (B, 6), num_atoms (B,).

        cond: {name: (B,) standardised values}; cond_mask (B,) bool, False = unconditional (CFG).
        Returns (v_k (B, 6), v_f (N, 3), v_a (N, 28) or None).
        """
        g = graph if graph is not None else Graph.build(num_atoms)
        nc = g.node_crystal
        b = num_atoms.numel()
        h = self.type_emb(types - 1) if self.cfg.task == "csp" else self.type_emb(types)
        # the residual stream stays fp32 (bf16 products add into it)
        wide = self.input.weight.dtype  # the weights' dtype: fp32 under autocast too
        h = self.input(torch.cat([h, sinusoidal_time(t, self.cfg.time_dim)[nc]], dim=1)).to(wide)
        c = self.condition_vector(cond, b, h.dtype)
        gate = None
        if c is not None and cond_mask is not None:
            gate = cond_mask.to(h.dtype)[:, None]

        def add_condition(h, li):
            if c is None:
                return h
            e = self.cond_mixins[li](self.cond_adapters[li](c))
            return h + (e if gate is None else e * gate)[nc]

        if self.cfg.fast:
            with torch.no_grad(), fp32_region(frac):
                fc, fs = pair_features_fast(frac.to(wide), g.pi, g.pj, self.cfg.fourier, self.cfg.recip)
            wc, ws = zip(*[layer.phi_weights() for layer in self.layers])
            hid = self.cfg.hidden
            # (P, L*H): one product for all layers; split (not sliced) so that the backward pass
            # concatenates the per-layer gradients once instead of zero-filling a full copy per layer
            pc_all = (fc @ torch.cat(wc, 0).T).split(hid, dim=1)
            ps_all = (fs @ torch.cat(ws, 0).T).split(hid, dim=1)
            for li, layer in enumerate(self.layers):
                h = layer.forward_fast(add_condition(h, li), k, g, pc_all[li], ps_all[li], wc[li].sum(1))
        else:
            for li, layer in enumerate(self.layers):
                h = layer.forward_plain(add_condition(h, li), frac, k, g)
        h = self.final_ln(h)
        pooled = torch.zeros(b, h.shape[1], device=h.device, dtype=h.dtype)
        pooled = pooled.index_add_(0, nc, h) / num_atoms[:, None]
        v_k = self.head_k(pooled).to(wide)
        v_f = self.head_f(h).to(wide)
        v_a = self.head_a(h).to(wide) if self.head_a is not None else None
        return v_k, v_f, v_a
