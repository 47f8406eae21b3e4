"""Lightning module, data module and the resumable training entry point."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pytorch_lightning as pl
import torch

from crystalflow_core import safe_load
from crystalflow_core.config import defaults
from crystalflow_core.crystals.elements import encode_types
from crystalflow_core.errors import CheckpointError
from crystalflow_core.generative import precision as prec
from crystalflow_core.generative.datamodule import CrystalDataModule, epoch_seed
from crystalflow_core.generative.flow import flow_loss, interpolate
from crystalflow_core.generative.network import CSPNet, Graph, ModelConfig, fp32_region
from crystalflow_core.generative.sampling import FlowSampler
from crystalflow_core.generative.symmetry import SymmetryConstraint

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data


# ----------------------------------------------------------------------------- module
class CrystalFlowModule(pl.LightningModule):
    def __init__(  # noqa: PLR0913  (Lightning saves these arguments as the checkpoint's hyper-parameters)
        self,
        model: dict,
        loss_weights,
        lr,
        lr_factor,
        lr_patience,
        lr_min,
        k_sigma,
        cond_drop,
        compile,
        seed,
        lr_frequency,
        ema_decay,
        warmup_steps,
        ot_pairing,
        lr_schedule,
        scalers=None,
        atom_count_hist=None,
        provenance=None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.mcfg = ModelConfig.from_saved(model)
        self.net = CSPNet(self.mcfg)
        # exponential moving average of the weights: what sampling uses (and what the checkpoint's
        # sampler loads) when ema_decay is set; the loss and the optimiser see the raw weights
        self.ema_net = None
        if ema_decay:
            self.ema_net = CSPNet(self.mcfg)
            self.ema_net.load_state_dict(self.net.state_dict())
            self.ema_net.requires_grad_(False)
        self.forward_net = self.net
        if compile:
            try:
                self.forward_net = torch.compile(self.net, dynamic=True)
            except Exception as exc:  # pragma: no cover - depends on the platform
                log.warning("torch.compile unavailable (%s); running eagerly", exc)

    @property
    def task(self):
        return self.mcfg.task

    def velocity(self, t, types, frac, k, num_atoms, cond=None, cond_mask=None, graph=None):
        return self.forward_net(t, types, frac, k, num_atoms, cond, cond_mask, graph)

    def sampler(self):
        """The sampling side of this model (shares the network, the EMA one where kept; no Lightning)."""
        hp = self.hparams
        net = self.ema_net if self.ema_net is not None else self.net
        trained = prec.from_lightning(str(self.trainer.precision)) if self._trainer is not None else "unrecorded"
        return FlowSampler(net, hp.k_sigma, hp.get("scalers") or {}, hp.get("atom_count_hist"), trained)

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema_net is not None:
            d = float(self.hparams.ema_decay)
            for pe, p in zip(self.ema_net.parameters(), self.net.parameters()):
                pe.lerp_(p.detach(), 1.0 - d)
            for be, b in zip(self.ema_net.buffers(), self.net.buffers()):
                be.copy_(b)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        """Linear learning-rate warm-up over the first `warmup_steps` optimiser steps; with
        `lr_schedule: cosine` the rate then follows a cosine from `lr` down to `lr_min` over the run
        (otherwise the plateau scheduler alone sets it after the warm-up)."""
        hp = self.hparams
        w = int(hp.warmup_steps or 0)
        step = self.trainer.global_step
        ramp = (step + 1) / w if w and step < w else None
        if hp.lr_schedule == "cosine":
            lr = hp.lr_min + (hp.lr - hp.lr_min) * 0.5 * (1.0 + math.cos(math.pi * self.run_progress()))
            lr *= ramp if ramp is not None else 1.0
        else:
            lr = hp.lr * ramp if ramp is not None else None
        if lr is not None:
            for g in optimizer.param_groups:
                g["lr"] = lr
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

    def run_progress(self) -> float:
        """How far the run is, 0..1: the larger of the step fraction (max_epochs) and the time fraction
        (max_minutes, through Lightning's Timer, which a resumed run restores), whichever ends it first."""
        from pytorch_lightning.callbacks import Timer

        tr = self.trainer
        total = tr.estimated_stepping_batches
        p = tr.global_step / total if total and math.isfinite(total) else 0.0
        for timer in (c for c in tr.callbacks if isinstance(c, Timer)):
            left = timer.time_remaining("train")
            if left is not None:
                done = timer.time_elapsed("train")
                p = max(p, done / max(done + left, 1e-9))
        return min(max(p, 0.0), 1.0)

    def _step(self, batch, stage):
        g = Graph.build(batch["num_atoms"])
        z = batch["atom_types"]
        a1 = encode_types(z).to(batch["k"]) if self.task == "dng" else None
        ot = bool(self.hparams.ot_pairing) and stage == "train"
        sym = None
        if self.mcfg.symmetry == "anchor":
            sym = SymmetryConstraint(batch["spacegroup"], batch["ops"], batch["anchors"], self.mcfg.symmetrize_loss)
        with fp32_region(batch["k"]):  # paths, targets and OT costs in fp32 also under bf16 autocast
            tgt = interpolate(
                batch["k"], batch["frac_coords"], g.node_crystal, a1, k_sigma=self.hparams.k_sigma, ot=ot, sym=sym
            )
        types = tgt.a_t if self.task == "dng" else z
        cond_mask = None
        if batch["cond"] and stage == "train" and self.hparams.cond_drop > 0:
            cond_mask = torch.rand(len(batch["num_atoms"]), device=self.device) >= self.hparams.cond_drop
        pred = self.velocity(tgt.t, types, tgt.f_t, tgt.k_t, batch["num_atoms"], batch["cond"], cond_mask, g)
        with fp32_region(batch["k"]):
            losses = flow_loss(pred, tgt, self.hparams.loss_weights, sym)
        bs = len(batch["num_atoms"])
        for name, val in losses.items():
            self.log(
                f"{stage}_{name}",
                val,
                batch_size=bs,
                prog_bar=(name == "loss"),
                on_step=False,
                on_epoch=True,
                sync_dist=stage == "val",
            )
        return losses["loss"]

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def on_train_epoch_start(self):
        # the draws of an epoch (times, noise, condition dropout) depend on (seed, epoch) only, so a
        # run resumed from a checkpoint continues exactly as an uninterrupted one would
        torch.manual_seed(epoch_seed(self.hparams.seed, self.current_epoch))

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr)
        if self.hparams.lr_schedule == "cosine":
            return {"optimizer": opt}  # optimizer_step sets the rate
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=self.hparams.lr_factor, patience=self.hparams.lr_patience, min_lr=self.hparams.lr_min
        )
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": sched,
                "monitor": self.monitor,
                "interval": "epoch",
                "frequency": int(self.hparams.lr_frequency),
            },
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The checkpoint records the precision it was trained at (fp32 or bf16); samples carry it on."""
        if self._trainer is not None:
            checkpoint["train_precision"] = prec.from_lightning(str(self.trainer.precision))

    @property
    def monitor(self) -> str:
        """The authors' recipe watches the validation loss; runs without a validation split the training loss."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        return "val_loss" if dm is not None and getattr(dm, "val_set", None) is not None else "train_loss"


class EpochLog(pl.Callback):
    """One readable line per epoch: loss per component, val loss, lr, seconds per epoch."""

    def on_train_epoch_start(self, trainer, module):
        self.t0 = time.time()

    def on_train_epoch_end(self, trainer, module):
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(m.items()) if k.startswith(("train_", "val_")))
        log.info(
            "epoch %d/%d %s lr=%.2e time=%.1fs",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            parts,
            lr,
            time.time() - getattr(self, "t0", time.time()),
        )


# the module's settings from a run's `train` section (build_module passes them; older checkpoints
# without some of them get the schema's defaults when they are loaded)
MODULE_TRAIN_KEYS = (
    "loss_weights",
    "lr",
    "lr_factor",
    "lr_patience",
    "lr_min",
    "k_sigma",
    "cond_drop",
    "compile",
    "seed",
    "lr_frequency",
    "ema_decay",
    "warmup_steps",
    "ot_pairing",
    "lr_schedule",
)


def load_module(path, map_location="cpu") -> CrystalFlowModule:
    try:
        hp = safe_load.load_path(path, "checkpoint").get("hyper_parameters") or {}
        train = defaults("train")
        missing = {k: train[k] for k in MODULE_TRAIN_KEYS if k not in hp}
        with safe_load.allowing_checkpoint_classes():
            return CrystalFlowModule.load_from_checkpoint(path, map_location=map_location, weights_only=True, **missing)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from exc


def _valid_checkpoint(path: Path) -> bool:
    try:
        safe_load.load_path(path, "checkpoint")
        return True
    except Exception as exc:
        log.error("checkpoint %s is corrupt (%s); moving it to %s.corrupt", path, exc, path)
        shutil.move(path, str(path) + ".corrupt")
        return False


@dataclass(frozen=True)
class TrainSettings:
    """How a run trains (its validated `train` section; defaults live in the schema only)."""

    batch_size: int
    max_epochs: int
    max_minutes: float | None
    lr: float
    lr_factor: float
    lr_patience: int
    lr_min: float
    lr_frequency: int
    grad_clip: float
    grad_clip_algorithm: str
    matmul_precision: str
    loss_weights: tuple
    k_sigma: float
    cond_drop: float
    accelerator: str
    devices: str | int
    strategy: str
    precision: str
    compile: bool
    gpu: bool
    seed: int
    workers: int
    val_every: int
    progress_bar: bool
    recipe: str
    ema_decay: float | None
    warmup_steps: int
    ot_pairing: bool
    lr_schedule: str

    @classmethod
    def from_section(cls, t: dict, **override) -> TrainSettings:
        out = cls(**{f: (tuple(t[f]) if f == "loss_weights" else t[f]) for f in cls.__dataclass_fields__})
        return replace(out, **override)


def train_device(tcfg: TrainSettings) -> str:
    """The device type Lightning will train on: a GPU when the accelerator allows one and one is there."""
    wants_gpu = tcfg.accelerator in ("auto", "gpu", "cuda")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def trainer_settings(tcfg: TrainSettings, has_val: bool) -> dict:
    """Lightning Trainer arguments of a run's train section (the authors' recipe in config.yaml:
    clipping by value at 0.5, fp32 with TF32 matmuls on GPUs; `precision` auto is resolved here, for
    the device the run trains on)."""
    max_time = tcfg.max_minutes
    return dict(
        accelerator=tcfg.accelerator,
        devices=tcfg.devices,
        strategy=tcfg.strategy,
        precision=prec.lightning_precision(prec.resolve(tcfg.precision, train_device(tcfg), "training")),
        max_epochs=tcfg.max_epochs,
        max_time={"minutes": max_time} if max_time else None,
        gradient_clip_val=tcfg.grad_clip or None,
        gradient_clip_algorithm=tcfg.grad_clip_algorithm,
        check_val_every_n_epoch=tcfg.val_every if has_val else 1,
    )


def checkpoint_callback(workdir, has_val: bool):
    """Keeps the best model by the monitored loss (save_top_k 1, as the authors' recipe) and the last
    epoch for resuming."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return ModelCheckpoint(
        dirpath=workdir,
        filename="best-epoch{epoch:05d}",
        save_last=True,
        save_top_k=1,
        every_n_epochs=1,
        auto_insert_metric_name=False,
        monitor="val_loss" if has_val else "train_loss",
        mode="min",
    )


def module_for_run(run: dict, tcfg: TrainSettings, scalers, atom_count_hist: list) -> CrystalFlowModule:
    """The Lightning module of a run: its network (`model`, task, conditions) and every setting of its
    `train` section that the module uses (the one place the config reaches the module)."""
    conditions = list(run.get("conditions", []))
    model_cfg = asdict(ModelConfig(**dict(run["model"], task=run["task"], conditions=conditions)))
    return CrystalFlowModule(
        model=model_cfg,
        **{k: getattr(tcfg, k) for k in MODULE_TRAIN_KEYS},
        scalers=scalers,
        atom_count_hist=atom_count_hist,
    )


def train(run: dict, train_path, val_path, out_ckpt, workdir) -> Path:
    """Train one run (dict from config) and write `out_ckpt`; resumes from `workdir/last.ckpt`."""
    from pytorch_lightning.loggers import CSVLogger

    tcfg = TrainSettings.from_section(run["train"])
    seed = tcfg.seed
    pl.seed_everything(seed, workers=True)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    conditions = list(run.get("conditions", []))
    symmetric = run["model"].get("symmetry", "none") != "none"
    dm = CrystalDataModule(train_path, val_path, conditions, tcfg.batch_size, tcfg.workers, seed, symmetric)
    dm.setup()
    module = module_for_run(run, tcfg, dm.scalers, dm.train_set.c["atom_count_hist"].tolist())
    has_val = bool(val_path)
    ckpt_cb = checkpoint_callback(workdir, has_val)
    if torch.cuda.is_available():  # TF32 matmuls on GPUs ('medium' in the authors' runs)
        torch.set_float32_matmul_precision(tcfg.matmul_precision)
    trainer = pl.Trainer(
        **trainer_settings(tcfg, has_val),
        callbacks=[ckpt_cb, EpochLog()],
        logger=CSVLogger(str(workdir), name="metrics"),
        enable_progress_bar=tcfg.progress_bar,
        default_root_dir=str(workdir),
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    last = workdir / "last.ckpt"
    resume = str(last) if last.exists() and _valid_checkpoint(last) else None
    if resume:
        log.info("resuming from %s", resume)
    with safe_load.allowing_checkpoint_classes():  # resuming reads last.ckpt: weights only, the allow-list
        trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
    out_ckpt = Path(out_ckpt)
    out_ckpt.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_ckpt.with_name(f".{out_ckpt.name}.tmp")
    best = ckpt_cb.best_model_path
    if not (best and Path(best).exists()):
        trainer.save_checkpoint(tmp)  # collective under DDP; only rank 0 writes
    elif trainer.global_rank == 0:  # the kept model is the one with the best monitored loss
        shutil.copyfile(best, tmp)
        log.info("best %s = %.5f (%s)", ckpt_cb.monitor, float(ckpt_cb.best_model_score), Path(best).name)
    if trainer.global_rank == 0:
        os.replace(tmp, out_ckpt)
        # a kill between saving a new best and deleting the old one leaves an untracked best file behind
        for stale in workdir.glob("best-epoch*.ckpt"):
            if best and stale.resolve() != Path(best).resolve():
                stale.unlink()
    log.info("trained %d epochs (%d optimizer steps) -> %s", trainer.current_epoch, trainer.global_step, out_ckpt)
    if tcfg.max_minutes and trainer.current_epoch < tcfg.max_epochs:
        log.warning(
            "the %g-minute cap ended training after %d of %d epochs: a model trained for minutes learns as much "
            "as the machine computes in them (a busy machine or a slower CPU trains fewer steps)",
            tcfg.max_minutes,
            trainer.current_epoch,
            tcfg.max_epochs,
        )
    return out_ckpt
