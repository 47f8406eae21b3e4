"""The authors' training recipe reaches the Lightning trainer as config/config.yaml states it."""

import pytest
import torch
import yaml
from conftest import REPO

from crystalflow_core import config as cfgmod
from crystalflow_core.config import defaults
from crystalflow_core.training import CrystalFlowModule, TrainSettings, checkpoint_callback, trainer_settings


@pytest.fixture(scope="module")
def paper():
    return cfgmod.validate(yaml.safe_load((REPO / "config/config.yaml").read_text()), mirror_check=False)


@pytest.mark.parametrize(
    "run,epochs,batch,devices",
    [
        ("mp20_csp", 3000, 256, "auto"),
        ("mpts52_csp", 500, 128, "auto"),
        ("mp20_dng", 3000, 256, 4),
        ("mp20_dng_eform", 3000, 256, 4),
        ("perov5_csp", 3000, 1024, "auto"),
    ],
)
def test_paper_recipe_reaches_the_trainer(paper, run, epochs, batch, devices):
    import pytorch_lightning as pl

    tcfg = paper["runs"][run]["train"]
    assert (tcfg["max_epochs"], tcfg["batch_size"], tcfg["devices"]) == (epochs, batch, devices)
    assert tcfg["loss_weights"] == [1, 10, 10] and tcfg["seed"] == 42 and tcfg["matmul_precision"] == "medium"
    settings = trainer_settings(
        TrainSettings.from_section(tcfg, accelerator="cpu", devices=1 if devices == 4 else "auto", strategy="auto"),
        has_val=True,
    )
    trainer = pl.Trainer(**settings, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert trainer.gradient_clip_algorithm == "value" and trainer.gradient_clip_val == 0.5
    assert trainer.max_epochs == epochs and trainer.check_val_every_n_epoch == 1
    if devices == 4:
        assert tcfg["strategy"] == "ddp"  # 4 x 256 as the authors trained DNG
    cb = checkpoint_callback("unused", has_val=True)
    assert cb.monitor == "val_loss" and cb.save_top_k == 1 and cb.mode == "min" and cb.save_last


def test_scheduler_plateau_on_val_loss_every_five_epochs(paper):
    t = paper["runs"]["mp20_csp"]["train"]
    m = CrystalFlowModule(
        model={
            **defaults("model"),
            **dict(hidden=8, layers=1, fourier=2, recip=0, time_dim=8, task="csp", conditions=[]),
        },
        lr=t["lr"],
        lr_factor=t["lr_factor"],
        lr_patience=t["lr_patience"],
        lr_min=t["lr_min"],
        lr_frequency=t["lr_frequency"],
    )

    class _DM:
        val_set = object()

    class _Trainer:
        datamodule = _DM()

    m._trainer = _Trainer()
    conf = m.configure_optimizers()
    sched = conf["lr_scheduler"]
    assert sched["frequency"] == 5 and sched["interval"] == "epoch" and sched["monitor"] == "val_loss"
    plateau = sched["scheduler"]
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (plateau.factor, plateau.patience, plateau.min_lrs[0]) == (0.6, 30, 1e-4)
    assert conf["optimizer"].param_groups[0]["lr"] == 1e-3 and conf["optimizer"].param_groups[0]["weight_decay"] == 0
    _Trainer.datamodule = None
    assert m.configure_optimizers()["lr_scheduler"]["monitor"] == "train_loss"  # runs without a val split


def test_paper_config_says_what_each_run_reproduces():
    text = (REPO / "config/config.yaml").read_text()
    for what in ("Table 1", "Table 3", "Fig. 3", "mp_20_chgnet", "anti-anneal"):
        assert what in text
