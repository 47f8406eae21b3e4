"""The authors' training recipe reaches the Lightning trainer as config/config.yaml states it."""

import copy
import math

import pytest
import torch
import yaml
from conftest import REPO, module_settings

from crystalflow_core import config as cfgmod
from crystalflow_core.config import defaults
from crystalflow_core.generative.training import (
    CrystalFlowModule,
    TrainSettings,
    checkpoint_callback,
    module_for_run,
    trainer_settings,
)


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


def _module_of(run: dict):
    """The module exactly as training builds it from a run's config (tiny network)."""
    run = {**run, "model": {**run["model"], "hidden": 8, "layers": 1, "fourier": 2, "recip": 0, "time_dim": 8}}
    return module_for_run(run, TrainSettings.from_section(run["train"]), None, [0, 1, 1])


class _DM:
    val_set = object()


class _Trainer:
    datamodule = _DM()


def _optimizers(m, with_val: bool = True):
    _Trainer.datamodule = _DM() if with_val else None
    m._trainer = _Trainer()
    return m.configure_optimizers()


def test_scheduler_plateau_on_val_loss_every_five_epochs(paper):
    conf = _optimizers(_module_of(paper["runs"]["mp20_csp"]))
    sched = conf["lr_scheduler"]
    assert sched["frequency"] == 5 and sched["interval"] == "epoch" and sched["monitor"] == "val_loss"
    plateau = sched["scheduler"]
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (plateau.factor, plateau.patience, plateau.min_lrs[0]) == (0.6, 30, 1e-4)
    assert conf["optimizer"].param_groups[0]["lr"] == 1e-3 and conf["optimizer"].param_groups[0]["weight_decay"] == 0
    assert _optimizers(_module_of(paper["runs"]["mp20_csp"]), with_val=False)["lr_scheduler"]["monitor"] == "train_loss"


def test_every_train_setting_reaches_the_module_from_the_config(paper):
    """Values unlike any default: each arrives only if the config's value is passed on."""
    run = copy.deepcopy(paper["runs"]["mp20_csp"])
    run["train"].update(
        lr=2.5e-3, lr_factor=0.37, lr_patience=7, lr_min=3e-5, lr_frequency=3, loss_weights=[2, 3, 4], k_sigma=0.25
    )
    m = _module_of(run)
    conf = _optimizers(m)
    plateau = conf["lr_scheduler"]["scheduler"]
    assert (plateau.factor, plateau.patience, plateau.min_lrs[0]) == (0.37, 7, 3e-5)
    assert conf["lr_scheduler"]["frequency"] == 3 and conf["optimizer"].param_groups[0]["lr"] == 2.5e-3
    assert list(m.hparams.loss_weights) == [2, 3, 4] and m.hparams.k_sigma == 0.25
    fast = copy.deepcopy(run)
    fast["train"].update(recipe="fast", ema_decay=0.9, warmup_steps=11, ot_pairing=True, lr_schedule="cosine")
    m = _module_of(fast)
    assert m.ema_net is not None and m.hparams.ema_decay == 0.9 and m.hparams.warmup_steps == 11
    assert m.hparams.ot_pairing and "lr_scheduler" not in _optimizers(m)  # cosine: no plateau scheduler


def test_paper_config_says_what_each_run_reproduces():
    text = (REPO / "config/config.yaml").read_text()
    for what in ("Table 1", "Table 3", "Fig. 3", "mp_20_chgnet", "anti-anneal"):
        assert what in text


# ----------------------------------------------------------------------------- the fast recipe's levers
def _tiny(**hp):
    torch.manual_seed(0)
    return CrystalFlowModule(
        model={
            **defaults("model"),
            **dict(hidden=8, layers=1, fourier=2, recip=0, time_dim=8, task="csp", conditions=[]),
        },
        atom_count_hist=[0, 1, 1],
        **module_settings(**hp),
    )


def test_ema_weights_are_averaged_used_for_sampling_saved_and_reloaded(tmp_path):
    from crystalflow_core.generative.sampling import FlowSampler

    m = _tiny(ema_decay=0.75)
    p_net, p_ema = next(m.net.parameters()), next(m.ema_net.parameters())
    start = p_net.detach().clone()
    assert torch.equal(p_ema, start) and not p_ema.requires_grad
    with torch.no_grad():
        p_net.add_(1.0)
    m.on_train_batch_end(None, None, 0)
    assert torch.allclose(p_ema, start + 0.25)  # 0.75 old + 0.25 new
    assert m.sampler().net is m.ema_net
    path = tmp_path / "m.ckpt"
    torch.save({"hyper_parameters": dict(m.hparams), "state_dict": m.state_dict()}, path)
    loaded = FlowSampler.from_checkpoint(path)
    assert torch.allclose(next(loaded.net.parameters()), start + 0.25)  # the EMA weights, not the raw ones
    # the optimiser trains the raw weights only
    assert all(p.requires_grad for p in m.net.parameters())
    assert _tiny().ema_net is None and _tiny().sampler().net is not None


def test_warmup_reaches_the_optimizer_then_leaves_the_rate_alone():
    m = _tiny(lr=2e-3, warmup_steps=4)

    class _Trainer:
        global_step = 0
        datamodule = None

    m._trainer = _Trainer()
    opt = m.configure_optimizers()["optimizer"]
    seen = []
    for step in range(6):
        _Trainer.global_step = step
        m.optimizer_step(0, step, opt, optimizer_closure=lambda: None)
        seen.append(opt.param_groups[0]["lr"])
        if step == 4:
            opt.param_groups[0]["lr"] = 1e-4  # the plateau scheduler's cut stays after the warm-up
    assert seen[:4] == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3]) and seen[5] == pytest.approx(1e-4)


def test_cosine_schedule_reaches_the_optimizer_by_steps_or_by_time():
    from pytorch_lightning.callbacks import Timer

    m = _tiny(lr=2e-3, lr_min=1e-4, warmup_steps=2, lr_schedule="cosine")

    class _Trainer:
        global_step = 0
        datamodule = None
        estimated_stepping_batches = 10
        callbacks = []

    m._trainer = _Trainer()
    conf = m.configure_optimizers()
    assert "lr_scheduler" not in conf  # no plateau scheduler beside the cosine
    opt = conf["optimizer"]
    seen = {}
    for step in (0, 1, 5, 10):
        _Trainer.global_step = step
        m.optimizer_step(0, step, opt, optimizer_closure=lambda: None)
        seen[step] = opt.param_groups[0]["lr"]
    # warm-up ramp times the cosine; half-way: the mean of lr and lr_min; the end: lr_min
    half = lambda p: 1e-4 + 1.9e-3 * 0.5 * (1 + math.cos(math.pi * p))  # noqa: E731
    assert seen[0] == pytest.approx(half(0.0) / 2) and seen[1] == pytest.approx(half(0.1))
    assert seen[5] == pytest.approx(1.05e-3) and seen[10] == pytest.approx(1e-4)

    class _Clock(Timer):  # a time budget three quarters spent, at step 1 of 10
        def time_elapsed(self, stage="train"):
            return 75.0

        def time_remaining(self, stage="train"):
            return 25.0

    _Trainer.callbacks = [_Clock(duration={"seconds": 100})]
    _Trainer.global_step = 1
    assert m.run_progress() == pytest.approx(0.75)
    _Trainer.estimated_stepping_batches = float("inf")  # max_epochs -1: time alone
    assert m.run_progress() == pytest.approx(0.75)
    _Trainer.callbacks, _Trainer.global_step = [], 3
    assert m.run_progress() == 0.0


def test_ot_pairing_never_increases_the_prior_to_data_distance():
    from crystalflow_core.generative.flow import ot_pairing, torus_velocity

    def cost(k0, k1, f0, f1):
        return float(((k0 - k1) ** 2).sum() + (torus_velocity(f0, f1) ** 2).sum())

    # hand-made: two atoms whose prior points are swapped, two crystals whose lattices are swapped
    f1 = torch.tensor([[0.1, 0.1, 0.1], [0.6, 0.6, 0.6], [0.3, 0.3, 0.3]])
    f0 = torch.tensor([[0.62, 0.6, 0.6], [0.12, 0.1, 0.1], [0.9, 0.9, 0.9]])
    nc = torch.tensor([0, 0, 1])
    k1 = torch.tensor([[1.0] * 6, [-1.0] * 6])
    k0 = torch.tensor([[-0.9] * 6, [0.9] * 6])
    k0p, f0p = ot_pairing(k0, k1, f0, f1, nc)
    assert torch.equal(k0p, k0[[1, 0]]) and torch.equal(f0p, f0[[1, 0, 2]])
    assert cost(k0p, k1, f0p, f1) < cost(k0, k1, f0, f1)
    # across the torus: 0.95 is closer to 0.05 than 0.4 is
    f1 = torch.tensor([[0.05, 0.0, 0.0], [0.5, 0.0, 0.0]])
    f0 = torch.tensor([[0.45, 0.0, 0.0], [0.95, 0.0, 0.0]])
    _, f0p = ot_pairing(torch.zeros(1, 6), torch.zeros(1, 6), f0, f1, torch.tensor([0, 0]))
    assert torch.equal(f0p, f0[[1, 0]])
    # random batches: never worse than the identity pairing, and a permutation of the draws
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = torch.randint(1, 6, (4,), generator=g)
        nc = torch.repeat_interleave(torch.arange(4), n)
        f1, f0 = torch.rand(len(nc), 3, generator=g), torch.rand(len(nc), 3, generator=g)
        k1, k0 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
        k0p, f0p = ot_pairing(k0, k1, f0, f1, nc)
        assert cost(k0p, k1, f0p, f1) <= cost(k0, k1, f0, f1) + 1e-9
        assert torch.equal(torch.sort(f0p, 0).values, torch.sort(f0, 0).values)
        assert torch.equal(torch.sort(k0p, 0).values, torch.sort(k0, 0).values)


def test_recipe_paper_leaves_the_authors_recipe_untouched(paper):
    for name, run in paper["runs"].items():
        t = run["train"]
        assert t["recipe"] == "paper", name
        assert t["ema_decay"] is None and t["warmup_steps"] == 0 and not t["ot_pairing"], name
        assert t["lr_schedule"] == "plateau", name
    s = TrainSettings.from_section(paper["runs"]["mp20_csp"]["train"])
    assert (s.grad_clip, s.grad_clip_algorithm, s.lr_frequency) == (0.5, "value", 5)
    bad = {"runs": {"mp20_csp": {"train": {"ema_decay": 0.999}}}}
    with pytest.raises(cfgmod.ConfigError, match="recipe 'paper' keeps the authors' recipe, but ema_decay"):
        cfgmod.load(REPO / "config/config.yaml", bad)
    bad = {"runs": {"mp20_csp": {"train": {"lr_schedule": "cosine"}}}}
    with pytest.raises(cfgmod.ConfigError, match="recipe 'paper' keeps the authors' recipe, but lr_schedule"):
        cfgmod.load(REPO / "config/config.yaml", bad)
    ok = {"runs": {"mp20_csp": {"train": {"recipe": "fast", "ema_decay": 0.999, "ot_pairing": True}}}}
    assert cfgmod.load(REPO / "config/config.yaml", ok)["runs"]["mp20_csp"]["train"]["ema_decay"] == 0.999
