"""The authors' CrystalFlow, exactly: their checkpoints load into this network and reproduce the outputs
and sampler trajectories that their code computed (../shared/fixtures/reference_crystalflow)."""

import pickle
import subprocess
import sys
import types
from dataclasses import replace

import pytest
import torch
import yaml
from conftest import DATA, REPO, need_data, rejected_of

from crystalflow_core.config import defaults
from crystalflow_core.crystals.elements import decode_types
from crystalflow_core.generative.integrators import guided_velocity, integrate
from crystalflow_core.generative.network import CSPNet, Graph, ModelConfig
from crystalflow_core.generative.reference import (
    CheckpointImportError,
    key_map,
    network_state,
    read_scalers,
    reference_model_config,
)

FIXTURES = REPO.parent / "shared" / "fixtures" / "reference_crystalflow"
NAMES = ["csp", "dng", "dng_eform", "csp_pressure"]


def fixture(name):
    path = FIXTURES / f"{name}.pt"
    if not path.exists():
        pytest.skip(f"reference fixture not found: {path}")
    return torch.load(path, weights_only=True)


def reference_net(d, fast=True):
    ck = d["checkpoint"]
    cfg = replace(reference_model_config(ck["hyper_parameters"], ck["state_dict"]), fast=fast)
    net = CSPNet(cfg)
    net.load_state_dict(network_state(cfg, ck["state_dict"]), strict=True)
    return net.eval()


def _close(out, ref):
    for name, o in zip(("v_k", "v_f", "v_a"), out):
        r = ref[name]
        if r is None:
            assert o is None
            continue
        scale = r.abs().max()
        err = (o - r).abs().max() / scale
        assert err <= 1e-5, f"{name}: {err:.2e} of the largest magnitude"


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_imported_network_reproduces_reference_outputs(name, fast):
    d = fixture(name)
    net = reference_net(d, fast)
    inp = d["inputs"]
    args = (inp["t"], inp["types"], inp["frac_coords"], inp["k"], inp["num_atoms"])
    with torch.no_grad():
        _close(net(*args), d["outputs_unconditional"])
        if d["outputs_conditional"] is not None:
            assert net.cfg.conditions == list(inp["conditions"])
            _close(net(*args, inp["conditions"]), d["outputs_conditional"])
            # the unconditional pass of guidance (gate 0) is the unconditional output
            mask = torch.zeros(len(inp["num_atoms"]), dtype=torch.bool)
            _close(net(*args, inp["conditions"], mask), d["outputs_unconditional"])
        else:
            assert not net.cfg.conditions


@pytest.mark.parametrize("name", NAMES)
def test_sampler_reproduces_reference_trajectory(name):
    d = fixture(name)
    net = reference_net(d)
    inp, tr = d["inputs"], d["trajectory"]
    g = Graph.build(inp["num_atoms"])
    dng = net.cfg.task == "dng"
    w = tr["guidance"] if tr["guidance"] is not None else 1.0
    v = guided_velocity(net, None if dng else inp["types"], inp["num_atoms"], inp["conditions"] or None, w, g, "fp32")
    a0 = inp["types"] if dng else None
    run = lambda vel, slope: integrate(  # noqa: E731
        vel, inp["k"], inp["frac_coords"], a0, tr["steps"], "euler", slope, 0.0, ("f",), "uniform", 2.0
    )
    with torch.no_grad():
        k, f, a = run(v, tr["anneal_coords_slope"])
    fin = tr["final"]
    assert (k - fin["k"]).abs().max() <= 1e-4
    assert (f - fin["frac"]).abs().max() <= 1e-4  # both wrapped into [0, 1)
    if dng:
        assert (a - fin["types_vec"]).abs().max() <= 1e-4
        assert decode_types(a).tolist() == fin["Z"].tolist()
    # the time grid matters: evaluating at the start of each step (t = (i - 1) / S) misses the reference
    start_grid = lambda t, *x: v(t - 1.0 / tr["steps"], *x)  # noqa: E731
    with torch.no_grad():
        k2, _, _ = run(start_grid, 0.0)
    assert (k2 - fin["k"]).abs().max() > 1e-3


def _reference_state_from(net: CSPNet) -> dict:
    """A state_dict under the authors' parameter names made from one of our networks (inverse map)."""
    ours = net.state_dict()
    sd = {theirs: ours[mine].clone() for mine, theirs in key_map(net.cfg).items()}
    sd["beta_scheduler.betas"] = torch.zeros(3)  # reference-only buffers are ignored
    return sd


def _hparams(cfg: ModelConfig, **dec):
    d = {
        "hidden_dim": cfg.hidden,
        "num_layers": cfg.layers,
        "num_freqs": cfg.fourier,
        "num_millers": cfg.recip,
        "rec_emb": "sin" if cfg.recip else "none",
        "dis_emb": "sin",
        "lattice_dim": 6,
        "ip": False,
        "ln": True,
        "pred_type": cfg.task == "dng",
        "na_emb": 0,
        "edge_style": "fc",
        "act_fn": "silu",
    }
    d.update(dec)
    return {
        "decoder": d,
        "time_dim": cfg.time_dim,
        "lattice_polar": True,
        "lattice_polar_sigma": 0.1,
        "type_encoding": "table",
        "conditions": {"cond_keys": list(cfg.conditions)},
    }


@pytest.mark.parametrize(
    "sizes",
    [
        dict(
            hidden=24,
            layers=3,
            fourier=5,
            recip=2,
            time_dim=32,
            task="dng",
            conditions=["pressure", "formation_energy_per_atom"],
        ),
        dict(hidden=40, layers=1, fourier=7, recip=0, time_dim=64, task="csp"),
    ],
)
def test_importer_takes_any_sizes_and_number_of_conditions(sizes):
    torch.manual_seed(3)
    src = CSPNet(ModelConfig(**{**defaults("model"), "conditions": [], **sizes})).eval()
    for p in src.parameters():  # no weight at its initial value
        p.data.add_(0.05 * torch.randn_like(p))
    sd = _reference_state_from(src)
    cfg = reference_model_config(_hparams(src.cfg), sd)
    assert (cfg.hidden, cfg.layers, cfg.fourier, cfg.recip, cfg.time_dim) == tuple(
        sizes[k] for k in ("hidden", "layers", "fourier", "recip", "time_dim")
    )
    assert cfg.conditions == sizes.get("conditions", [])
    net = CSPNet(cfg).eval()
    net.load_state_dict(network_state(cfg, sd))
    na = torch.tensor([2, 3])
    types = torch.randn(5, 28) if cfg.task == "dng" else torch.tensor([8, 26, 3, 3, 16])
    cond = {c: torch.tensor([0.3, -1.2]) for c in cfg.conditions}
    args = (torch.tensor([0.2, 0.7]), types, torch.rand(5, 3), torch.randn(2, 6) * 0.2, na, cond or None)
    with torch.no_grad():
        for a, b in zip(src(*args), net(*args)):
            assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    "key,value,where",
    [
        ("ip", True, "decoder.ip"),
        ("edge_style", "knn", "decoder.edge_style"),
        ("na_emb", 16, "decoder.na_emb"),
        ("periodic_norm", True, "decoder.periodic_norm"),
        ("use_angles", True, "decoder.use_angles"),
        ("lattice_dim", 9, "decoder.lattice_dim"),
    ],
)
def test_unsupported_reference_variant_is_one_line_error(key, value, where):
    d = fixture("csp")
    hp = yaml.safe_load(yaml.safe_dump({k: v for k, v in d["checkpoint"]["hyper_parameters"].items() if k != "optim"}))
    hp["decoder"][key] = value
    with pytest.raises(CheckpointImportError) as err:
        reference_model_config(hp, d["checkpoint"]["state_dict"])
    msg = str(err.value)
    assert where in msg and repr(value) in msg and "\n" not in msg


@pytest.mark.parametrize(
    "key,value", [("lattice_polar", False), ("type_encoding", "onehot"), ("symmetrize_anchor", True)]
)
def test_unsupported_top_level_variant(key, value):
    d = fixture("dng")
    hp = dict(d["checkpoint"]["hyper_parameters"])
    hp[key] = value
    with pytest.raises(CheckpointImportError, match=key):
        reference_model_config(hp, d["checkpoint"]["state_dict"])


def _write_scalers(path, values: dict):
    """prop_scalers.pt as the authors' package pickles it: scaler objects of a class that does not
    exist here (its module is registered only while pickling)."""
    names = ["diffcsp", "diffcsp.common", "diffcsp.common.data_utils"]
    mods = {n: types.ModuleType(n) for n in names}

    class StandardScalerTorch:
        def __init__(self, means, stds):
            self.means, self.stds, self.replace_nan_token = means, stds, 0.0

    StandardScalerTorch.__module__ = "diffcsp.common.data_utils"
    StandardScalerTorch.__qualname__ = "StandardScalerTorch"
    mods["diffcsp.common.data_utils"].StandardScalerTorch = StandardScalerTorch
    sys.modules.update(mods)
    try:
        torch.save({k: StandardScalerTorch(torch.tensor(m), torch.tensor(s)) for k, (m, s) in values.items()}, path)
    finally:
        for n in names:
            sys.modules.pop(n, None)


def test_scalers_read_without_the_authors_package(tmp_path):
    p = tmp_path / "prop_scalers.pt"
    _write_scalers(p, {"formation_energy_per_atom": (-1.25, 1.5), "pressure": (40.0, 25.0)})
    assert "diffcsp" not in sys.modules
    assert read_scalers(p) == {"formation_energy_per_atom": (-1.25, 1.5), "pressure": (40.0, 25.0)}
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(p.read_bytes()[:10])  # not a pickle by itself: torch's zip container


def _tiny_cfg(tmp_path, run_name, task, conditions, **run_extra):
    from crystalflow_core import config as cfgmod

    need_data("mp_20/val.csv.gz", "mp_20/test.csv.gz")
    run = {
        "dataset": "mp_20",
        "task": task,
        "train_split": "val",
        "val_split": None,
        "conditions": conditions,
        "novelty_splits": ["val"],
        "relax": {"enabled": False},
        "model": {"hidden": 64, "layers": 2, "fourier": 16, "recip": 3, "time_dim": 256},
        "sample": {
            "steps": [3],
            "num_samples": 4,
            "condition_values": [-1.0],
            "guidance": 1.5,
            "batch_size": 8,
            "k": [1],
            "test_limit": 3,
        },
    }
    run.update(run_extra)
    cfg = {
        "data_mirror": str(DATA),
        "results": str(tmp_path / "results"),
        "datasets": {
            "mp_20": {
                "conditions": ["formation_energy_per_atom"],
                "max_rows": 20,
                "splits": {"val": {"file": "mp_20/val.csv.gz"}, "test": {"file": "mp_20/test.csv.gz"}},
            }
        },
        "runs": {run_name: run},
    }
    return cfgmod.validate(cfg)


def _save_fixture_ckpt(d, path):
    torch.save(
        {"state_dict": d["checkpoint"]["state_dict"], "hyper_parameters": d["checkpoint"]["hyper_parameters"]}, path
    )


def test_conditional_import_carries_scalers_and_guided_sampling_runs(tmp_path):
    from crystalflow_core import stages
    from crystalflow_core.generative.training import load_module
    from crystalflow_core.io import read_jsonl

    d = fixture("dng_eform")
    cfg = _tiny_cfg(tmp_path, "eform", "dng", ["formation_energy_per_atom"])
    ck, sc = tmp_path / "ref.ckpt", tmp_path / "prop_scalers.pt"
    _save_fixture_ckpt(d, ck)
    _write_scalers(sc, {"formation_energy_per_atom": (-1.5, 1.25)})
    train_pt = tmp_path / "val.pt"
    from crystalflow_core.errors import DataError
    from crystalflow_core.jobs import split_file

    with pytest.raises(DataError, match=r"mp_20/val: input .*elsewhere.csv.gz is not the configured source"):
        stages.prepare(cfg, "mp_20", "val", str(train_pt), str(rejected_of(train_pt)), 1, csv="elsewhere.csv.gz")
    assert not train_pt.exists()
    # the workflow's resolved input (the mirror's copy here), as the stage table passes it
    stages.prepare(
        cfg, "mp_20", "val", str(train_pt), str(rejected_of(train_pt)), 1, csv=split_file(cfg, "mp_20", "val")
    )
    out = tmp_path / "results/runs/eform/model.ckpt"
    with pytest.raises(ValueError, match="prop_scalers"):
        stages.import_checkpoint(cfg, "eform", str(ck), str(out), train_pt=str(train_pt))
    stages.import_checkpoint(cfg, "eform", str(ck), str(out), scalers=str(sc), train_pt=str(train_pt))
    module = load_module(out)
    assert module.hparams.scalers == {"formation_energy_per_atom": (-1.5, 1.25)}
    assert module.hparams.provenance["sha256"]
    # the loaded module is the reference network: same outputs as the fixture
    inp = d["inputs"]
    with torch.no_grad():
        _close(
            module.net(inp["t"], inp["types"], inp["frac_coords"], inp["k"], inp["num_atoms"], inp["conditions"]),
            d["outputs_conditional"],
        )
    samples = tmp_path / "shard0.jsonl"
    stages.sample(cfg["runs"]["eform"], str(out), None, 3, 0, 1, str(samples), 1)
    recs = read_jsonl(samples)
    assert len(recs) == 4 and all(r["condition_value"] == -1.0 and len(r["species"]) == r["num_atoms"] for r in recs)


def test_config_that_disagrees_with_the_checkpoint_is_an_error(tmp_path):
    from crystalflow_core import stages

    d = fixture("csp")
    cfg = _tiny_cfg(tmp_path, "c", "csp", [])
    cfg["runs"]["c"]["model"]["hidden"] = 128
    ck = tmp_path / "ref.ckpt"
    _save_fixture_ckpt(d, ck)
    with pytest.raises(CheckpointImportError, match=r"runs/c/model/hidden.*128.*64"):
        stages.import_checkpoint(cfg, "c", str(ck), str(tmp_path / "m.ckpt"))
    cfg["runs"]["c"]["model"]["hidden"] = 64
    cfg["runs"]["c"]["task"] = "dng"
    with pytest.raises(CheckpointImportError, match="csp model"):
        stages.import_checkpoint(cfg, "c", str(ck), str(tmp_path / "m.ckpt"))


def test_cli_import_errors_in_one_line(tmp_path):
    d = fixture("csp")
    ck = tmp_path / "ref.ckpt"
    sd = dict(d["checkpoint"])
    hp = dict(sd["hyper_parameters"])
    hp["decoder"] = dict(hp["decoder"], edge_style="knn")
    torch.save({"state_dict": sd["state_dict"], "hyper_parameters": hp}, ck)
    cfg = _tiny_cfg(tmp_path, "c", "csp", [])
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({k: cfg[k] for k in ("data_mirror", "results", "datasets", "runs")}))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "crystalflow_core.cli",
            "import-checkpoint",
            str(ck),
            "--config",
            str(cfg_path),
            "--run",
            "c",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert "decoder.edge_style = 'knn'" in last and "Traceback" not in p.stderr


def test_workflow_imports_instead_of_training(tmp_path):
    from crystalflow_core.errors import ConfigError

    with pytest.raises(ConfigError, match="init/reference_checkpoint.*not found"):  # checked before any job
        _tiny_cfg(tmp_path, "c", "csp", [], init={"reference_checkpoint": str(tmp_path / "ref.ckpt")})
    _save_fixture_ckpt(fixture("csp"), tmp_path / "ref.ckpt")
    cfg = _tiny_cfg(tmp_path, "c", "csp", [], init={"reference_checkpoint": str(tmp_path / "ref.ckpt")})
    cfg_path = tmp_path / "c.yaml"
    raw = {k: cfg[k] for k in ("data_mirror", "results", "datasets", "runs")}
    cfg_path.write_text(yaml.safe_dump(raw))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-n",
            "--configfile",
            str(cfg_path),
            "--cores",
            "1",
            str(tmp_path / "results/runs/c/model.ckpt"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "import_reference" in p.stdout and "rule train:" not in p.stdout and "\ntrain " not in p.stdout


def test_checkpoint_with_hydra_hyper_parameters_imports(tmp_path):
    """The authors' Lightning checkpoints hold their hydra config (OmegaConf objects, an interpolation
    included) as hyper_parameters; the importer reads them as plain values."""
    from omegaconf import OmegaConf

    from crystalflow_core.generative.reference import load_reference

    d = fixture("csp")
    hp = dict(d["checkpoint"]["hyper_parameters"])
    dec = dict(hp["decoder"], hidden_dim="${hidden}")
    cfg = OmegaConf.create({**{k: v for k, v in hp.items() if k != "decoder"}, "hidden": 64, "decoder": dec})
    ck = tmp_path / "hydra.ckpt"
    torch.save({"state_dict": d["checkpoint"]["state_dict"], "hyper_parameters": cfg}, ck)
    ref = load_reference(ck)
    assert isinstance(ref["hyper_parameters"], dict) and ref["hyper_parameters"]["decoder"]["hidden_dim"] == 64
    net_cfg = reference_model_config(ref["hyper_parameters"], ref["state_dict"])
    assert (net_cfg.hidden, net_cfg.layers, net_cfg.task) == (64, 2, "csp")
