"""bf16 where the hardware has it: the choice of precision (auto by device), the network's fp32 islands
under autocast, the error of bf16 outputs on real crystals, bf16 training and sampling, and where the
precision is recorded (checkpoint, sample records, metric rows)."""

import logging
from dataclasses import replace

import pytest
import torch
from conftest import REPO, module_settings, need_data, tiny_config

from crystalflow_core.config import defaults
from crystalflow_core.config import load as load_config
from crystalflow_core.errors import ConfigError
from crystalflow_core.generative import network
from crystalflow_core.generative import precision as prec
from crystalflow_core.generative.network import CSPNet, ModelConfig
from crystalflow_core.generative.sampling import FlowSampler, SampleSettings, dng_items, generate
from crystalflow_core.generative.training import (
    CrystalFlowModule,
    TrainSettings,
    trainer_settings,
)

BF16_CPU = {"fpu", "avx2", "avx512f", "avx512_bf16"}
AMX_CPU = {"avx2", "amx_tile", "amx_bf16"}
AVX2_CPU = {"fpu", "avx2", "fma"}


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\nflags\t: other\n")
    assert prec.cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert prec.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    ("flags", "expect", "why"),
    [
        (BF16_CPU, "bf16", "avx512_bf16"),
        (AMX_CPU, "bf16", "amx_bf16"),
        (AVX2_CPU, "fp32", "neither amx_bf16 nor avx512_bf16"),
    ],
)
def test_auto_picks_bf16_only_on_a_cpu_that_has_it_and_says_why(caplog, flags, expect, why):
    with caplog.at_level(logging.INFO, logger="crystalflow_core.generative.precision"):
        assert prec.resolve("auto", "cpu", "training", flags) == expect
    assert f"training: precision auto -> {expect} on cpu" in caplog.text and why in caplog.text
    assert prec.resolve("fp32", "cpu", "", flags) == "fp32"  # asked for: kept


def test_bf16_asked_for_without_native_support_runs_but_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert prec.resolve("bf16", "cpu", "sampling", AVX2_CPU) == "bf16"
    assert "emulated" in caplog.text
    with pytest.raises(ValueError, match="'fp16'"):
        prec.resolve("fp16", "cpu")


@pytest.mark.parametrize(("capability", "expect"), [((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp32")])
def test_auto_on_a_gpu_goes_by_compute_capability(monkeypatch, caplog, capability, expect):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Test GPU")
    with caplog.at_level(logging.INFO):
        assert prec.resolve("auto", "cuda", "training") == expect
    assert f"compute capability {capability[0]}.{capability[1]}" in caplog.text


def test_training_precision_reaches_lightning(monkeypatch):
    tcfg = TrainSettings.from_section(defaults("train"), accelerator="cpu")
    assert tcfg.precision == "fp32" and trainer_settings(tcfg, False)["precision"] == "32-true"
    monkeypatch.setattr(prec, "cpu_flags", lambda: BF16_CPU)
    assert trainer_settings(replace(tcfg, precision="auto"), False)["precision"] == "bf16-mixed"
    assert trainer_settings(replace(tcfg, precision="bf16"), False)["precision"] == "bf16-mixed"
    monkeypatch.setattr(prec, "cpu_flags", lambda: AVX2_CPU)
    assert trainer_settings(replace(tcfg, precision="auto"), False)["precision"] == "32-true"


def test_paper_config_stays_fp32_and_the_quick_config_uses_auto():
    paper = load_config(REPO / "config/config.yaml")
    assert paper["runs"]
    for name, run in paper["runs"].items():
        assert run["train"]["precision"] == "fp32", name
        assert run["sample"]["precision"] == "fp32", name
    quick = load_config(REPO / "config/quick.yaml")
    for run in quick["runs"].values():
        assert run["train"]["recipe"] == "fast"
        assert run["train"]["precision"] == "auto" and run["sample"]["precision"] == "auto"


def test_paper_recipe_refuses_bf16_training(tmp_path):
    import yaml

    cfg = tiny_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    run = next(iter(data["runs"].values()))
    run["train"] = {**run.get("train", {}), "recipe": "paper", "precision": "bf16"}
    for key in ("ema_decay", "warmup_steps", "ot_pairing", "lr_schedule"):
        run["train"].pop(key, None)
    cfg.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="recipe 'paper'.*precision bf16"):
        load_config(cfg)


# ----------------------------------------------------------------------------- the network under bf16
def _net(task="csp", **sizes):
    torch.manual_seed(0)
    cfg = {**defaults("model"), "hidden": 64, "layers": 2, "fourier": 32, "recip": 4, **sizes}
    return CSPNet(ModelConfig(**{**cfg, "task": task, "conditions": []})).eval()


def _mp20_test(n):
    need_data("mp_20/test.csv.gz")
    import sys

    sys.path.insert(0, "benchmarks")
    from _common import mp20_test_tensors

    return mp20_test_tensors(n)


def test_fourier_and_time_features_stay_fp32_under_autocast(monkeypatch):
    seen = {}

    def spy(name, fn):
        def wrapped(*args, **kw):
            out = fn(*args, **kw)
            seen[name] = [o.dtype for o in (out if isinstance(out, tuple) else (out,))]
            seen[f"{name} autocast"] = torch.is_autocast_enabled("cpu")
            return out

        return wrapped

    monkeypatch.setattr(network, "pair_features_fast", spy("pairs", network.pair_features_fast))
    monkeypatch.setattr(network, "_sinusoidal_time", spy("time", network._sinusoidal_time))
    net = _net()
    na = torch.tensor([3, 2])
    z = torch.tensor([11, 17, 17, 14, 14])
    f, k, t = torch.rand(5, 3), torch.randn(2, 6) * 0.2, torch.rand(2)
    with torch.no_grad(), prec.autocast("bf16", "cpu"):
        out = net(t, z, f, k, na)
    assert seen["pairs"] == [torch.float32, torch.float32] and seen["time"] == [torch.float32]
    assert not seen["pairs autocast"] and not seen["time autocast"]
    assert all(o.dtype == torch.float32 for o in out if o is not None)  # the ODE state and the loss see fp32


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_outputs_on_real_crystals_are_within_a_percent_of_fp32(fast):
    """The first 64 MP-20 test crystals (Niggli-reduced) through a network of the quick size: bf16
    products move the outputs by about 0.5 % of their scale (2^-8 is bf16's resolution); arguments of
    sin/cos in bf16 would move them by far more."""
    z, f, k, na = _mp20_test(64)
    net = _net(hidden=128, layers=3, fourier=64, recip=4, fast=fast)
    t = torch.rand(len(na), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(t, z, f, k, na)
        with prec.autocast("bf16", "cpu"):
            low = net(t, z, f, k, na)
    for r, b in zip(ref[:2], low[:2]):
        rel = float((r - b).norm() / r.norm())
        assert 1e-5 < rel < 1e-2  # bf16 did run, and stayed within 1 %


def test_fourier_features_in_bf16_would_be_noise_at_the_paper_frequencies():
    """Why the features are an fp32 island: fractional coordinates rounded to bf16 (resolution 2^-9
    near 1) shift 2 pi n f by up to about 3 rad at n = 255, the paper's highest frequency."""
    z, f, k, na = _mp20_test(16)
    g = network.Graph.build(na)
    exact = network.pair_features_fast(f, g.pi, g.pj, 256, 8)
    with prec.autocast("bf16", "cpu"), network.fp32_region(f):
        island = network.pair_features_fast(f, g.pi, g.pj, 256, 8)
    rounded = network.pair_features_fast(f.to(torch.bfloat16).float(), g.pi, g.pj, 256, 8)
    assert all(torch.equal(a, b) for a, b in zip(exact, island))
    assert max(float((a - b).abs().max()) for a, b in zip(exact, rounded)) > 0.5


# ----------------------------------------------------------------------------- sampling and training
def _module(task="csp"):
    torch.manual_seed(0)
    model = {**defaults("model"), "hidden": 32, "layers": 2, "fourier": 8, "recip": 2, "task": task, "conditions": []}
    return CrystalFlowModule(model=model, **module_settings(), atom_count_hist=[0, 2, 3, 1])


def _settings(**kw):
    return SampleSettings.from_section(defaults("sample", "dng"), "dng", steps=4, batch_size=8, seed=3, **kw)


def test_bf16_sampling_records_its_precision_and_stays_close_to_fp32(monkeypatch):
    m = _module("dng")
    items = dng_items([0, 2, 3, 1], 8, seed=0)
    monkeypatch.setattr(prec, "cpu_flags", lambda: AVX2_CPU)
    fp = generate(m, items, _settings(precision="auto"), progress=False)  # auto -> fp32 on this "CPU"
    monkeypatch.setattr(prec, "cpu_flags", lambda: BF16_CPU)
    bf = generate(m, items, _settings(precision="auto"), progress=False)  # auto -> bf16
    assert {r["precision"] for r in fp} == {"fp32"} and {r["precision"] for r in bf} == {"bf16"}
    assert {r["train_precision"] for r in bf} == {"unrecorded"}  # a module never trained by a Trainer
    assert fp == generate(m, items, _settings(precision="fp32"), progress=False)
    diffs = []
    for a, b in zip(fp, bf):
        assert a["num_atoms"] == b["num_atoms"]
        lat_a, lat_b = torch.tensor(a["lattice"]), torch.tensor(b["lattice"])
        diffs.append(float((lat_a - lat_b).abs().max() / lat_a.abs().max()))
    assert 0 < max(diffs) < 0.05  # the same prior draws, integrated with bf16 products


def test_precision_is_part_of_the_sample_provenance():
    from crystalflow_core.stages.sample import sample_provenance

    cfg = load_config(REPO / "config/quick.yaml")
    run = cfg["runs"]["mp20_csp"]
    fp32 = {**run, "sample": {**run["sample"], "precision": "fp32"}}
    assert sample_provenance(run, "ab" * 32, 10, 0, 1)["key"] != sample_provenance(fp32, "ab" * 32, 10, 0, 1)["key"]


def test_metric_rows_name_the_precisions():
    from crystalflow_core.evaluation.sample_metrics import made_from

    recs = [
        {"model_sha256": "x", "method": "euler", "nfe": 10, "precision": "bf16", "train_precision": "fp32"},
        {"model_sha256": "x", "method": "euler", "nfe": 10, "precision": "fp32", "train_precision": "fp32"},
        {"model_sha256": "x", "method": "euler", "nfe": 10},
    ]
    row = made_from(recs[:1])
    assert row["precision"] == "bf16" and row["train_precision"] == "fp32"
    row = made_from(recs)  # shards made on different machines: every precision is named
    assert row["precision"] == "bf16;fp32;unrecorded" and row["train_precision"] == "fp32;unrecorded"


def test_bf16_training_step_and_the_checkpoint_records_it(tmp_path, monkeypatch):
    import pytorch_lightning as pl

    m = _module("csp")
    g = torch.Generator().manual_seed(0)
    na = torch.tensor([2, 3])
    batch = {
        "num_atoms": na,
        "atom_types": torch.tensor([11, 17, 14, 8, 8]),
        "frac_coords": torch.rand(5, 3, generator=g),
        "k": torch.randn(2, 6, generator=g) * 0.2,
        "cond": {},
    }
    monkeypatch.setattr(prec, "cpu_flags", lambda: BF16_CPU)
    tcfg = TrainSettings.from_section(defaults("train"), accelerator="cpu", precision="auto", max_epochs=1)
    args = trainer_settings(tcfg, False)
    assert args["precision"] == "bf16-mixed"
    trainer = pl.Trainer(
        **{**args, "max_epochs": None, "max_time": None, "devices": 1},
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    m.configure_optimizers = lambda: torch.optim.Adam(m.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in m.parameters()]
    trainer.fit(m, train_dataloaders=torch.utils.data.DataLoader([batch, batch], batch_size=None))
    assert all(p.dtype == torch.float32 for p in m.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, p) for a, p in zip(before, m.parameters()))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    sampler = FlowSampler.from_checkpoint(path)
    assert sampler.train_precision == "bf16"
    items = [{"id": "a", "num_atoms": 2, "atom_types": [11, 17]}]
    s = SampleSettings.from_section(defaults("sample"), "csp", steps=2, batch_size=1)
    rec = sampler.generate(items, s, progress=False)[0]
    assert rec["train_precision"] == "bf16" and rec["precision"] == "fp32"  # the schema's sampling default
