"""Import of the authors' CrystalFlow checkpoints (ixsluo/CrystalFlow, Lightning module ``CSPFlow``).

A checkpoint holds ``state_dict`` (parameter names ``decoder.csp_layer_{i}.edge_mlp.0.weight``, ...)
and ``hyper_parameters`` (``decoder`` {hidden_dim, num_layers, num_freqs, num_millers, ...},
``time_dim``, ``lattice_polar``, ``cost_*``, ``conditions`` ...). The network sizes come from the
checkpoint; the variants this network does not implement stop with one line naming the key.
Both are read with `crystalflow_core.safe_load` (weights only, an allow-list of classes): nothing in them
runs. The condition scalers (``prop_scalers.pt``) pickle objects of the authors' package: they come back
as data-only stand-ins, keeping only ``means``/``stds``.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

from crystalflow_core import safe_load
from crystalflow_core.config import defaults
from crystalflow_core.crystals.elements import GRID, MAX_Z, TABLE_Z, TYPE_DIM
from crystalflow_core.errors import CheckpointImportError
from crystalflow_core.generative.network import ModelConfig
from crystalflow_core.generative.training import MODULE_TRAIN_KEYS, CrystalFlowModule
from crystalflow_core.io import atomic_path, sha256_file

# keys of the reference module that carry no weights of the network (diffusion schedules kept by
# the authors' class, the lattice-constraint tables, the type table checked separately)
_IGNORED_PREFIXES = (
    "beta_scheduler.",
    "sigma_scheduler.",
    "latticedecompnn.",
    "type_encoding.",
    "decoder.type_encoding.",
)


def _get(d, key, default=None):
    """A key of a dict-like (dict, OmegaConf) or an attribute of an object."""
    return d.get(key, default) if hasattr(d, "get") else getattr(d, key, default)


def _bad(key, value, why):
    raise CheckpointImportError(f"reference checkpoint: {key} = {value!r} is not supported ({why})")


def check_variant(hp: dict) -> None:
    """Stop with one line on every variant the network does not implement."""
    dec = _get(hp, "decoder") or {}
    if not _get(hp, "lattice_polar", False):
        _bad(
            "lattice_polar",
            _get(hp, "lattice_polar"),
            "only the polar 6-vector k is implemented, not the lattice matrix",
        )
    checks = [
        (
            "decoder.lattice_dim",
            _get(dec, "lattice_dim", 6),
            lambda v: v == 6,
            "the lattice feature must be the 6-vector k",
        ),
        ("decoder.ip", _get(dec, "ip", False), lambda v: not v, "inner-product lattice features are not implemented"),
        ("decoder.ln", _get(dec, "ln", True), lambda v: bool(v), "the network has LayerNorm before every layer"),
        ("decoder.na_emb", _get(dec, "na_emb", 0), lambda v: not v, "no atom-count embedding in this network"),
        (
            "decoder.edge_style",
            _get(dec, "edge_style", "fc"),
            lambda v: v == "fc",
            "only the fully connected graph is implemented",
        ),
        (
            "decoder.dis_emb",
            _get(dec, "dis_emb", "sin"),
            lambda v: v == "sin",
            "only the sinusoidal distance embedding is implemented",
        ),
        ("decoder.rec_emb", _get(dec, "rec_emb", "none"), lambda v: v in ("sin", "none"), "only 'sin' or 'none'"),
        ("decoder.act_fn", _get(dec, "act_fn", "silu"), lambda v: v == "silu", "only SiLU"),
        ("decoder.pred_scalar", _get(dec, "pred_scalar", False), lambda v: not v, "a property predictor, not a flow"),
        ("decoder.periodic_norm", _get(dec, "periodic_norm", False), lambda v: not v, "not implemented"),
        ("periodic_norm", _get(hp, "periodic_norm", False), lambda v: not v, "not implemented"),
        ("decoder.use_angles", _get(dec, "use_angles", False), lambda v: not v, "not implemented"),
        ("use_angles", _get(hp, "use_angles", False), lambda v: not v, "not implemented"),
    ]
    for key in ("symmetrize", "symmetrize_anchor", "symmetrize_rotavg"):
        checks.append((key, _get(hp, key, False), lambda v: not v, "symmetrized models are not implemented"))
    for key, value, ok, why in checks:
        if not ok(value):
            _bad(key, value, why)
    if _get(dec, "pred_type", False):
        enc = _get(hp, "type_encoding", "onehot")
        if enc != "table":
            _bad("type_encoding", enc, "only the 28-dim periodic-table encoding ('table') is implemented")


def reference_conditions(hp: dict, state_dict: dict) -> list[str]:
    """Conditions the checkpoint was trained with: the ones with an expansion in the state_dict, in
    the order of ``conditions.cond_keys`` (the order their embeddings are concatenated)."""
    prefix = "cond_emb.sub_emb_dict."
    present = []
    for key in state_dict:
        if key.startswith(prefix):
            name = key[len(prefix) :].split(".")[0]
            if name not in present:
                present.append(name)
    order = list(_get(_get(hp, "conditions") or {}, "cond_keys", []) or [])
    return [c for c in order if c in present] + [c for c in present if c not in order]


def reference_model_config(hp: dict, state_dict: dict) -> ModelConfig:
    """ModelConfig of a reference checkpoint (sizes from its hyper-parameters, checked against the weights)."""
    check_variant(hp)
    dec = _get(hp, "decoder") or {}
    task = "dng" if _get(dec, "pred_type", False) else "csp"
    conditions = reference_conditions(hp, state_dict)
    n_gauss = 50
    if conditions:
        n_gauss = int(state_dict[f"cond_emb.sub_emb_dict.{conditions[0]}.expansion_net.offsets"].numel())
    rec = _get(dec, "num_millers", 0) if _get(dec, "rec_emb", "none") == "sin" else 0
    cfg = ModelConfig(
        hidden=int(_get(dec, "hidden_dim")),
        layers=int(_get(dec, "num_layers")),
        fourier=int(_get(dec, "num_freqs")),
        recip=int(rec),
        time_dim=int(_get(hp, "time_dim", 256)),
        task=task,
        conditions=conditions,
        cond_gaussians=n_gauss,
        fast=True,
        symmetry="none",  # the authors' released checkpoints are the plain model
        symmetrize_loss=False,
    )
    w = state_dict.get("decoder.csp_layer_0.edge_mlp.0.weight")
    if w is None:
        raise CheckpointImportError(
            "reference checkpoint: state_dict has no decoder.csp_layer_0.edge_mlp.0.weight (not a CrystalFlow CSPNet)"
        )
    expected = 2 * cfg.hidden + cfg.phi_dim + 6
    if tuple(w.shape) != (cfg.hidden, expected):
        raise CheckpointImportError(
            f"reference checkpoint: first edge layer has shape {tuple(w.shape)}, the hyper-parameters "
            f"(hidden {cfg.hidden}, freqs {cfg.fourier}, millers {cfg.recip}) give {(cfg.hidden, expected)}"
        )
    if conditions:
        a = state_dict["decoder.cemb_adapter_0.0.weight"]
        if a.shape[1] != n_gauss * len(conditions):
            raise CheckpointImportError(
                f"reference checkpoint: condition adapter takes {a.shape[1]} inputs, "
                f"{len(conditions)} condition(s) x {n_gauss} Gaussians give {n_gauss * len(conditions)}"
            )
    return cfg


def key_map(cfg: ModelConfig) -> dict[str, str]:
    """This network's parameter names -> the reference module's names."""
    m = {
        "type_emb.weight": "decoder.node_embedding.weight",
        "input.weight": "decoder.atom_latent_emb.weight",
        "input.bias": "decoder.atom_latent_emb.bias",
        "final_ln.weight": "decoder.final_layer_norm.weight",
        "final_ln.bias": "decoder.final_layer_norm.bias",
        "head_k.weight": "decoder.lattice_out.weight",
        "head_f.weight": "decoder.coord_out.weight",
    }
    if cfg.task == "dng":
        m["type_emb.bias"] = "decoder.node_embedding.bias"
        m["head_a.weight"] = "decoder.type_out.weight"
        m["head_a.bias"] = "decoder.type_out.bias"
    for i in range(cfg.layers):
        ref = f"decoder.csp_layer_{i}"
        for ours, theirs in [
            ("edge1", "edge_mlp.0"),
            ("edge2", "edge_mlp.2"),
            ("node_mlp.0", "node_mlp.0"),
            ("node_mlp.2", "node_mlp.2"),
            ("ln", "layer_norm"),
        ]:
            for p in ("weight", "bias"):
                m[f"layers.{i}.{ours}.{p}"] = f"{ref}.{theirs}.{p}"
        if cfg.conditions:
            for j in (0, 2):
                for p in ("weight", "bias"):
                    m[f"cond_adapters.{i}.{j}.{p}"] = f"decoder.cemb_adapter_{i}.{j}.{p}"
            m[f"cond_mixins.{i}.weight"] = f"decoder.cemb_mixin_{i}.weight"
    for c in cfg.conditions:
        for buf in ("offsets", "widths"):
            m[f"cond_emb.{c}.{buf}"] = f"cond_emb.sub_emb_dict.{c}.expansion_net.{buf}"
    return m


def _check_type_table(state_dict: dict) -> None:
    idx = state_dict.get("type_encoding.reordered_indices", state_dict.get("decoder.type_encoding.reordered_indices"))
    if idx is None:
        return
    for z in range(1, min(TABLE_Z, idx.shape[0]) + 1):
        if tuple(int(v) for v in idx[z - 1]) != GRID[z]:
            raise CheckpointImportError(
                f"reference checkpoint: type_encoding places Z={z} at {tuple(idx[z - 1].tolist())}, "
                f"this project's table at {GRID[z]}"
            )


def network_state(cfg: ModelConfig, state_dict: dict) -> dict:
    """The reference weights under this network's names (every weight of the network present)."""
    _check_type_table(state_dict)
    out, missing = {}, []
    for ours, theirs in key_map(cfg).items():
        if theirs in state_dict:
            out[ours] = state_dict[theirs].detach().clone().float()
        else:
            missing.append(theirs)
    if missing:
        raise CheckpointImportError(
            f"reference checkpoint: state_dict lacks {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    used = set(key_map(cfg).values())
    unused = [
        k
        for k in state_dict
        if k not in used
        and not k.startswith(_IGNORED_PREFIXES)
        and not (not cfg.conditions and k.startswith(("decoder.cemb_adapter_", "decoder.cemb_mixin_")))
    ]
    if unused:
        raise CheckpointImportError(
            f"reference checkpoint: parameter {unused[0]} has no place in this network"
            + (f" ({len(unused) - 1} more)" if len(unused) > 1 else "")
        )
    if cfg.task == "csp" and out["type_emb.weight"].shape[0] != MAX_Z:
        raise CheckpointImportError(
            f"reference checkpoint: node embedding has {out['type_emb.weight'].shape[0]} rows, expected {MAX_Z}"
        )
    if cfg.task == "dng" and out["type_emb.weight"].shape[1] != TYPE_DIM:
        raise CheckpointImportError(
            f"reference checkpoint: type embedding takes {out['type_emb.weight'].shape[1]} inputs, expected {TYPE_DIM}"
        )
    return out


# ----------------------------------------------------------------------------- scalers
def read_scalers(path) -> dict[str, tuple[float, float]]:
    """prop_scalers.pt -> {condition: (mean, std)} without importing the authors' package."""
    path = Path(path)
    try:
        obj = safe_load.load_path(path, "scaler file", extra=safe_load.stand_ins_for(path))
    except safe_load.UnsafeFileError as exc:
        raise CheckpointImportError(str(exc)) from None
    except Exception as exc:
        raise CheckpointImportError(f"{path}: cannot read the scalers ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointImportError(f"{path}: expected a dict condition -> scaler, found {type(obj).__name__}")
    out = {}
    for name, sc in obj.items():
        means, stds = _get(sc, "means"), _get(sc, "stds")
        if means is None or stds is None:
            raise CheckpointImportError(f"{path}: scaler of '{name}' has no means/stds")
        mu, sd = float(torch.as_tensor(means).reshape(-1)[0]), float(torch.as_tensor(stds).reshape(-1)[0])
        if not sd > 0:
            raise CheckpointImportError(f"{path}: scaler of '{name}' has std {sd}")
        out[str(name)] = (mu, sd)
    return out


def load_reference(path, expected_sha256: str | None = None) -> dict:
    """Read a reference checkpoint (optionally checked against its sha256)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"reference checkpoint {path} not found")
    if expected_sha256:
        got = sha256_file(path)
        if got != expected_sha256.lower():
            raise CheckpointImportError(
                f"reference checkpoint {path}: sha256 {got} differs from the configured {expected_sha256}"
            )
    try:
        ckpt = safe_load.load_path(path, "checkpoint")
    except safe_load.UnsafeFileError as exc:
        raise CheckpointImportError(str(exc)) from None
    except Exception as exc:
        raise CheckpointImportError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointImportError(f"{path}: not a Lightning checkpoint (no state_dict)")
    ckpt["hyper_parameters"] = plain(ckpt.get("hyper_parameters") or {})
    return ckpt


def plain(obj):
    """Hydra/OmegaConf configs (DictConfig, ListConfig, AttributeDict) as plain dicts and lists, with
    interpolations resolved where they can be."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(obj, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(obj, resolve=True)
        except Exception:  # an interpolation into a part of the config the checkpoint does not hold
            return OmegaConf.to_container(obj, resolve=False)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj


def hparams_from_yaml(path) -> dict:
    try:
        hp = yaml.safe_load(Path(path).read_text())
    except Exception as exc:
        raise CheckpointImportError(f"{path}: cannot read the hyper-parameters ({exc})") from exc
    return hp.get("model", hp) if isinstance(hp, dict) else {}


def check_against_run(cfg: ModelConfig, run: dict, run_name: str = "run") -> None:
    """The checkpoint decides the network; a run config that says otherwise is an error."""
    if run["task"] != cfg.task:
        raise CheckpointImportError(
            f"config error at 'runs/{run_name}/task': '{run['task']}', but the checkpoint is a {cfg.task} model"
        )
    if sorted(run["conditions"]) != sorted(cfg.conditions):
        raise CheckpointImportError(
            f"config error at 'runs/{run_name}/conditions': {run['conditions']}, "
            f"but the checkpoint is conditioned on {cfg.conditions or 'nothing'}"
        )
    model = run.get("model", {})
    for key in ("hidden", "layers", "fourier", "recip", "time_dim"):
        if key in model and int(model[key]) != int(getattr(cfg, key)):
            raise CheckpointImportError(
                f"config error at 'runs/{run_name}/model/{key}': {model[key]}, "
                f"but the checkpoint has {getattr(cfg, key)} (set it to {getattr(cfg, key)})"
            )


def build_module(
    ckpt: dict, hp: dict, run: dict, run_name: str, scalers: dict | None, atom_count_hist, provenance: dict
):
    """A CrystalFlowModule holding the reference weights (sizes from the checkpoint)."""
    from dataclasses import asdict

    sd = ckpt["state_dict"]
    cfg = reference_model_config(hp, sd)
    check_against_run(cfg, run, run_name)
    if cfg.task == "dng" and atom_count_hist is None:
        raise CheckpointImportError(
            f"run {run_name}: a DNG import needs the training split's atom-count histogram: prepare the run's "
            "train_split first (crystalflow prepare, or snakemake the import target)"
        )
    scalers = scalers or {}
    missing = [c for c in cfg.conditions if c not in scalers]
    if missing:
        raise CheckpointImportError(
            f"reference checkpoint is conditioned on {cfg.conditions}: the scalers (prop_scalers.pt, "
            f"--scalers / init.scalers) must hold {missing}"
        )
    optim = _get(hp, "optim") or {}
    opt, sch = _get(optim, "optimizer") or {}, _get(optim, "lr_scheduler") or {}
    guide = float(_get(hp, "guide_threshold", -1) or -1)
    cfg.fast = bool({**defaults("model"), **(run.get("model") or {})}["fast"])
    # what the authors' hparams leave out takes the run's (validated) train settings, else the schema's
    t = {**defaults("train"), **(run.get("train") or {})}
    lw = t["loss_weights"]
    settings = {k: t[k] for k in MODULE_TRAIN_KEYS}
    settings.update(
        loss_weights=(
            float(_get(hp, "cost_lattice", lw[0])),
            float(_get(hp, "cost_coord", lw[1])),
            float(_get(hp, "cost_type", lw[2])),
        ),
        lr=float(_get(opt, "lr", t["lr"])),
        lr_factor=float(_get(sch, "factor", t["lr_factor"])),
        lr_patience=int(_get(sch, "patience", t["lr_patience"])),
        lr_min=float(_get(sch, "min_lr", t["lr_min"])),
        k_sigma=float(_get(hp, "lattice_polar_sigma", t["k_sigma"])),
        cond_drop=min(max(guide, 0.0), 1.0),
    )
    module = CrystalFlowModule(
        model=asdict(cfg),
        **settings,
        scalers={c: tuple(scalers[c]) for c in cfg.conditions},
        atom_count_hist=atom_count_hist,
        provenance=provenance,
    )
    module.net.load_state_dict(network_state(cfg, sd), strict=True)
    return module


def save_module(module, out) -> None:
    """Write a Lightning checkpoint of `module` that `CrystalFlowModule.load_from_checkpoint` reads."""
    payload = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
        "epoch": 0,
        "global_step": 0,
        "train_precision": "fp32",  # the authors trained in fp32 (TF32 matmuls on their GPUs)
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
