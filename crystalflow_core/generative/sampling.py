"""Sampling: fixed-step ODE integration with anti-annealing, as the authors' sampler does it.

State: lattice k (B, 6), fractional coordinates F (N, 3) on the torus, and for de novo generation
types A (N, 28). Euler follows the authors' time grid: from the prior at t = 0, step i = 1..S
evaluates the velocity at t = i / S and moves X <- X + v / S (midpoint and RK4 use the usual
stage times t_i, t_i + h/2, t_i + h). Anti-annealing multiplies the velocity of the chosen
variables (coordinates by default) by 1 + s' relu(t - offset) at the evaluation time.
F is wrapped into [0, 1) after every (sub)step.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from crystalflow_core import safe_load
from crystalflow_core.crystals.crystal import atom_offsets
from crystalflow_core.crystals.elements import TABLE_Z, TYPE_DIM, decode_types
from crystalflow_core.crystals.lattice import k_to_lattice_torch
from crystalflow_core.errors import CheckpointError
from crystalflow_core.generative import precision as prec
from crystalflow_core.generative.flow import sample_k_prior
from crystalflow_core.generative.integrators import INTEGRATOR_TABLE, guided_velocity, integrate
from crystalflow_core.generative.network import CSPNet, Graph, ModelConfig
from crystalflow_core.generative.symmetry import batch_constraint
from crystalflow_core.points import METHODS, parse_point

log = logging.getLogger(__name__)


assert tuple(INTEGRATOR_TABLE) == METHODS  # the sampling points' names (points.py, torch-free)


ANNEAL_VARIABLES = {"lattice": "k", "coords": "f", "types": "a"}


@dataclass(frozen=True)
class SampleSettings:
    """How a run samples (from its validated `sample` section; defaults live in the schema only)."""

    steps: int
    method: str
    anneal: float
    anneal_offset: float
    anneal_vars: tuple  # of "k", "f", "a"
    time_grid: str
    time_grid_power: float
    batch_size: int
    pair_budget: int | None  # pack batches by the sum of N^2 (atom pairs) instead of batch_size crystals
    guidance: float
    seed: int
    min_volume_per_atom: float
    max_volume_per_atom: float
    precision: str  # as asked (fp32, bf16, auto); each record stores what ran on its device

    @classmethod
    def from_section(cls, s: dict, task: str, steps: int, **override) -> SampleSettings:
        anneal = override.pop("anneal", s["anneal"])
        if anneal is None:  # validation and config.defaults(section, task) fill it
            raise ValueError(f"sample section without anneal (the {task} default comes from config.validate)")
        out = cls(
            steps=int(steps),
            method=s["method"],
            anneal=float(anneal),
            anneal_offset=s["anneal_offset"],
            anneal_vars=tuple(ANNEAL_VARIABLES[v] for v in s["anneal_vars"]),
            time_grid=s["time_grid"],
            time_grid_power=s["time_grid_power"],
            batch_size=s["batch_size"],
            pair_budget=s["pair_budget"],
            guidance=s["guidance"],
            seed=s["seed"],
            min_volume_per_atom=s["min_volume_per_atom"],
            max_volume_per_atom=s["max_volume_per_atom"],
            precision=s["precision"],
        )
        return replace(out, **override)


def item_seed(seed: int, key: str) -> int:
    """The prior draw of one item depends on the run seed and the item's id only: the same structure
    whatever the batching, the batch order or the number of shards."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


def sampling_batches(items: list[dict], batch_size: int, pair_budget: int | None = None) -> list[list[int]]:
    """Indices of `items` per batch: `batch_size` crystals in item order, or, with `pair_budget`, items
    sorted by atom count and packed while the sum of N^2 (the fully connected graph's edges, which set a
    step's time and memory) stays within the budget (a larger crystal gets a batch of its own)."""
    n = len(items)
    if not pair_budget:
        return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    out, cur, cost = [], [], 0
    for i in sorted(range(n), key=lambda j: items[j]["num_atoms"]):
        c = items[i]["num_atoms"] ** 2
        if cur and cost + c > pair_budget:
            out.append(cur)
            cur, cost = [], 0
        cur.append(i)
        cost += c
    return out + ([cur] if cur else [])


def _flag(lat: np.ndarray, frac: np.ndarray, n: int, s: SampleSettings) -> str:
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(frac))):
        return "nan"
    vpa = abs(np.linalg.det(lat)) / max(n, 1)
    if vpa < s.min_volume_per_atom:
        return "collapsed_lattice"
    if vpa > s.max_volume_per_atom:
        return "exploded_lattice"
    return ""


class FlowSampler(nn.Module):
    """Everything sampling needs, without Lightning: the network, the priors (lattice sigma, atom-count
    histogram), the condition scalers and the guided velocity. The Lightning module only trains the
    network; `from_checkpoint` reads a model.ckpt directly."""

    def __init__(self, net: CSPNet, k_sigma: float, scalers: dict, atom_count_hist, train_precision: str):
        super().__init__()
        self.net = net
        self.train_precision = train_precision  # as the checkpoint records it ("unrecorded" in older ones)
        self.k_sigma = float(k_sigma)
        self.scalers = {c: (float(m), float(sd)) for c, (m, sd) in (scalers or {}).items()}
        self.atom_count_hist = list(atom_count_hist or [])

    @property
    def task(self) -> str:
        return self.net.cfg.task

    @property
    def conditions(self) -> list[str]:
        return list(self.net.cfg.conditions)

    @property
    def symmetric(self) -> bool:
        """A space-group-constrained model (model.symmetry: anchor): it samples from Wyckoff strings."""
        return self.net.cfg.symmetry != "none"

    @classmethod
    def from_checkpoint(cls, path, map_location="cpu") -> FlowSampler:
        try:
            ck = safe_load.load_path(path, "checkpoint", map_location=map_location)
            hp = ck["hyper_parameters"]
            net = CSPNet(ModelConfig.from_saved(hp["model"]))
            sd = ck["state_dict"]
            prefix = "ema_net." if any(k.startswith("ema_net.") for k in sd) else "net."  # EMA weights sample
            net.load_state_dict({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from exc
        return cls(
            net,
            hp["k_sigma"],
            hp.get("scalers") or {},
            hp.get("atom_count_hist"),
            ck.get("train_precision", "unrecorded"),
        ).to(map_location)

    def standardised(self, batch: list[dict], device) -> dict:
        cond = {}
        for name in self.conditions:
            mu, sd = self.scalers[name]
            vals = [float(it.get("condition", {}).get(name, float("nan"))) for it in batch]
            if any(math.isnan(v) for v in vals):
                raise ValueError(f"condition '{name}' missing for some items of a conditional model")
            cond[name] = (torch.tensor(vals, dtype=torch.float32, device=device) - mu) / sd
        return cond

    def prior(self, num_atoms: torch.Tensor, generators, device):
        """(k0, F0, A0): k ~ N(mu, sigma^2), F ~ U[0, 1)^3 per atom, A ~ N(0, I) in R^28 (DNG); each
        crystal drawn from its own generator (one per item), or all from one generator."""
        dtype = torch.float32
        if isinstance(generators, torch.Generator):
            generators = [generators] * num_atoms.numel()
        ks, fs, as_ = [], [], []
        for n, g in zip(num_atoms.tolist(), generators):
            ks.append(sample_k_prior(1, self.k_sigma, g, "cpu", dtype))
            fs.append(torch.rand(n, 3, generator=g, dtype=dtype))
            if self.task == "dng":
                as_.append(torch.randn(n, TYPE_DIM, generator=g, dtype=dtype))
        a0 = torch.cat(as_).to(device) if as_ else None
        return torch.cat(ks).to(device), torch.cat(fs).to(device), a0

    @torch.inference_mode()
    def generate(
        self, items: list[dict], settings: SampleSettings, shard: int = 0, progress: bool = True
    ) -> list[dict]:
        """One structure per item (see `generate`)."""
        device = next(self.net.parameters()).device
        self.net.eval()
        precision = prec.resolve(settings.precision, device, f"sampling shard {shard}")
        keys = [str(it.get("id", f"#{pos}")) for pos, it in enumerate(items)]
        symmetric = self.symmetric
        if symmetric:
            items = [wyckoff_item(it) for it in items]
        out: list = [None] * len(items)
        groups = sampling_batches(items, settings.batch_size, settings.pair_budget)
        for idx in tqdm(groups, desc=f"sampling shard {shard}", disable=not progress, mininterval=5):
            batch = [items[i] for i in idx]
            na = torch.tensor([it["num_atoms"] for it in batch], dtype=torch.long)
            g = Graph.build(na.to(device))  # the graph and its index tensors, once per batch
            gens = [torch.Generator(device="cpu").manual_seed(item_seed(settings.seed, keys[i])) for i in idx]
            k0, f0, a0 = self.prior(na, gens, device)
            constraint = batch_constraint(batch, device) if symmetric else None
            if constraint is not None:
                k0, f0 = constraint.k(k0), constraint.prior_f(f0)
            types_fixed = None
            if self.task == "csp":
                types_fixed = torch.tensor(
                    [z for it in batch for z in it["atom_types"]], dtype=torch.long, device=device
                )
            velocity = guided_velocity(
                self.net, types_fixed, na.to(device), self.standardised(batch, device), settings.guidance, g, precision
            )
            stats: dict = {}
            k, f, a = integrate(
                velocity,
                k0,
                f0,
                a0,
                settings.steps,
                settings.method,
                settings.anneal,
                settings.anneal_offset,
                settings.anneal_vars,
                settings.time_grid,
                settings.time_grid_power,
                stats,
                constraint,
            )
            recs = _records(batch, k, f, decode_types(a) if self.task == "dng" else types_fixed, na, settings, shard)
            for i, r in zip(idx, recs):  # velocity evaluations per sample (guidance w != 1: two passes per NFE)
                r["nfe"] = stats["nfe"]
                r["precision"], r["train_precision"] = precision, self.train_precision
                out[i] = r
        return out


def _records(batch, k, f, z, na, settings: SampleSettings, shard: int) -> list[dict]:
    lat = k_to_lattice_torch(k.double()).cpu().numpy()
    f = f.double().cpu().numpy()
    z = z.cpu().numpy()
    offs = atom_offsets(na.numpy())
    out = []
    for i, it in enumerate(batch):
        fr = f[offs[i] : offs[i + 1]]
        rec = {key: val for key, val in it.items() if key not in ("atom_types", "ops", "anchors")}
        rec.update(
            lattice=lat[i].tolist(),
            species=z[offs[i] : offs[i + 1]].tolist(),
            frac_coords=fr.tolist(),
            flag=_flag(lat[i], fr, len(fr), settings),
            seed=settings.seed,
            shard=shard,
            steps=settings.steps,
            method=settings.method,
        )
        out.append(rec)
    return out


def wyckoff_item(item: dict) -> dict:
    """A symmetric model's item: its Wyckoff string (`wyckoff`) read into the atoms it stands for (types and
    count of the conventional cell, each atom's operation and anchor) and its space group. The string's atoms
    replace the item's own; an item without one is refused (a symmetric model samples from a space group)."""
    from crystalflow_core.crystals.wyckoff import parse_wyckoff

    if not item.get("wyckoff"):
        raise ValueError(
            f"item {item.get('id', '?')}: a symmetric model (model.symmetry: anchor) samples from a Wyckoff "
            "string (e.g. 225_Na1x4a_Cl1x4b); this item has none"
        )
    ws = parse_wyckoff(item["wyckoff"])
    zs, ops, anchors = ws.atoms()
    return {
        **item,
        "wyckoff": str(ws),
        "spacegroup": ws.spacegroup,
        "num_atoms": len(zs),
        "atom_types": zs,
        "ops": ops,
        "anchors": anchors,
    }


def generate(
    model, items: list[dict], settings: SampleSettings, shard: int = 0, device=None, progress: bool = True
) -> list[dict]:
    """Generate one structure per item with a FlowSampler (or a trained Lightning module's).

    items: dicts with "num_atoms" and, for CSP, "atom_types" (list of Z); optional "condition"
    {name: raw value}; any other keys are copied into the record (ids, candidate index...).
    Returns records with lattice, species, fractional coordinates and a flag ("" when fine).
    """
    sampler = model if isinstance(model, FlowSampler) else model.sampler()
    if device is not None:
        sampler = sampler.to(device)
    return sampler.generate(items, settings, shard, progress)


def record_problem(rec: dict) -> tuple[str, str]:
    """("unreadable" | "flagged" | "", reason) for one sample record: unreadable when its fields are
    missing or malformed, flagged when it is present but physically impossible (non-finite lattice or
    coordinates, no atoms, atomic numbers outside 1..118) or flagged by the sampler."""
    try:
        lat = np.asarray(rec["lattice"], dtype=float)
        frac = np.asarray(rec["frac_coords"], dtype=float)
        species = [int(z) for z in rec["species"]]
    except (KeyError, TypeError, ValueError) as exc:
        return "unreadable", f"malformed record ({type(exc).__name__}: {exc})"
    if not species and frac.size == 0 and lat.shape == (3, 3):
        return "flagged", "no atoms"
    if lat.shape != (3, 3) or frac.ndim != 2 or frac.shape[1] != 3 or len(frac) != len(species):
        return "unreadable", f"shapes: lattice {lat.shape}, frac_coords {frac.shape}, {len(species)} species"
    if any(z < 1 or z > TABLE_Z for z in species):
        return "flagged", "atomic number outside 1..118"
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(frac))):
        return "flagged", "non-finite lattice or coordinates"
    if rec.get("flag"):
        return "flagged", str(rec["flag"])
    return "", ""


def record_to_structure(rec: dict, strict: bool = True):
    """Sample record -> pymatgen Structure, or None when the sample is unusable (non-finite) or, with
    `strict`, flagged (collapsed or exploded lattice). strict=False builds every finite record, as
    the authors' metric scripts do (their own checks then judge it)."""
    from pymatgen.core import Lattice, Structure

    kind, reason = record_problem(rec)
    # record_problem names a physical impossibility before the sampler's own flag: only the latter is built
    only_sampler_flag = kind == "flagged" and reason == str(rec.get("flag") or "")
    if kind == "unreadable" or (kind == "flagged" and (strict or not only_sampler_flag)):
        return None
    try:
        return Structure(Lattice(rec["lattice"]), rec["species"], rec["frac_coords"])
    except Exception:
        return None


def csp_items(cache: dict, n_candidates: int, limit: int | None = None) -> list[dict]:
    offs = atom_offsets(cache["num_atoms"].numpy())
    n = len(cache["ids"]) if not limit else min(limit, len(cache["ids"]))
    items = []
    for i in range(n):
        types = cache["atom_types"][offs[i] : offs[i + 1]].tolist()
        for c in range(n_candidates):
            items.append(
                {
                    "target_id": cache["ids"][i],
                    "target_index": i,
                    "candidate": c,
                    "num_atoms": len(types),
                    "atom_types": types,
                }
            )
    return items


def dng_items(hist: list[int], n: int, seed: int, conditions: dict | None = None) -> list[dict]:
    """n items with atom counts drawn from the training histogram; `conditions`: {name: value}."""
    p = np.asarray(hist, dtype=np.float64)
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    counts = rng.choice(len(p), size=n, p=p)
    items = []
    for i, c in enumerate(counts):
        it = {"sample_index": i, "num_atoms": int(c)}
        if conditions:
            it["condition"] = dict(conditions)
        items.append(it)
    return items


# ----------------------------------------------------------------------------- what a run samples


def settings_for_run(run: dict, point) -> SampleSettings:
    """Sampler settings of a run's (validated) `sample` section at a sampling point (see parse_point)."""
    method, steps = parse_point(point)
    return SampleSettings.from_section(run["sample"], run["task"], steps, **({"method": method} if method else {}))


def items_for_run(run: dict, test_cache: dict | None, atom_count_hist) -> list[dict]:
    """Everything a run samples: CSP, every test composition x candidates (each at its own condition
    values for conditional CSP); DNG, atom counts drawn from the training histogram per condition value."""
    s = run["sample"]
    conds = run["conditions"]
    if run["task"] == "csp":
        items = csp_items(test_cache, max(s["k"]), s["test_limit"])
        symmetric = run["model"].get("symmetry", "none") != "none"
        if symmetric and not test_cache.get("symmetry"):
            raise ValueError("a symmetric run samples from its test crystals' Wyckoff strings: prepare with symmetry")
        for it in items:
            it["id"] = f"{it['target_id']}#{it['candidate']}"
            if symmetric:  # the "given space group" protocol: each test crystal's group and Wyckoff letters
                it["wyckoff"] = test_cache["symmetry"]["wyckoff"][it["target_index"]]
            if conds:  # conditional CSP (e.g. pressure): each test crystal at its own value
                it["condition"] = {c: float(test_cache["conditions"][c][it["target_index"]]) for c in conds}
                it["condition_value"] = it["condition"][conds[0]]
        return items
    values = s["condition_values"] if conds else [None]
    items = []
    for vi, value in enumerate(values):
        cond = {conds[0]: float(value)} if conds else None
        for it in dng_items(atom_count_hist, s["num_samples"], s["seed"] + vi, cond):
            it["id"] = f"t{vi}-{it['sample_index']}" if conds else f"s{it['sample_index']}"
            if conds:
                it["condition_value"] = float(value)
            items.append(it)
    return items
