import numpy as np
import pytest
import torch
from conftest import module_settings
from scipy.spatial.transform import Rotation

from crystalflow_core.config import defaults
from crystalflow_core.crystals.lattice import lattice_to_k
from crystalflow_core.generative.flow import flow_loss, interpolate, torus_velocity, wrap
from crystalflow_core.generative.network import CSPNet, Graph, ModelConfig


def _batch(seed=0, sizes=(3, 1, 5, 2)):
    g = torch.Generator().manual_seed(seed)
    na = torch.tensor(sizes)
    n = int(na.sum())
    return dict(
        t=torch.rand(len(sizes), generator=g),
        types=torch.randint(1, 90, (n,), generator=g),
        frac=torch.rand(n, 3, generator=g),
        k=torch.randn(len(sizes), 6, generator=g) * 0.3,
        num_atoms=na,
    )


def _net(task="csp", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        **{
            **defaults("model"),
            **dict(hidden=32, layers=2, fourier=16, recip=4, time_dim=16, task=task, conditions=[]),
            **kw,
        }
    )
    return CSPNet(cfg).eval()


def test_graph_pairs_without_python_loops():
    g = Graph.build(torch.tensor([2, 3]))
    assert g.ei.tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert g.ej.tolist() == [0, 1, 0, 1, 2, 3, 4, 2, 3, 4, 2, 3, 4]
    assert list(zip(g.pi.tolist(), g.pj.tolist())) == [(0, 1), (2, 3), (2, 4), (3, 4)]


def test_fast_equals_plain_fp32():
    net = _net()
    b = _batch()
    with torch.no_grad():
        net.cfg.fast = True
        fast = net(**b)
        net.cfg.fast = False
        plain = net(**b)
    for a, p in zip(fast[:2], plain[:2]):
        assert torch.allclose(a, p, atol=1e-5, rtol=1e-5), (a - p).abs().max()


def test_fast_equals_plain_gradients():
    net = _net()
    b = _batch(1)
    grads = []
    for fast in (True, False):
        net.zero_grad()
        net.cfg.fast = fast
        vk, vf, _ = net(**b)
        (vk.square().sum() + vf.square().sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fast", [True, False])
def test_permutation_equivariance(fast):
    net = _net()
    net.cfg.fast = fast
    b = _batch(2, sizes=(4, 3))
    perm = torch.cat([torch.tensor([2, 0, 3, 1]), torch.tensor([6, 4, 5])])
    with torch.no_grad():
        vk, vf, _ = net(**b)
        vk2, vf2, _ = net(**{**b, "types": b["types"][perm], "frac": b["frac"][perm]})
    assert torch.allclose(vk, vk2, atol=1e-5)
    assert torch.allclose(vf[perm], vf2, atol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_periodic_translation_invariance(fast):
    net = _net()
    net.cfg.fast = fast
    b = _batch(3)
    shift = torch.rand(len(b["num_atoms"]), 3, generator=torch.Generator().manual_seed(5))
    nc = Graph.build(b["num_atoms"]).node_crystal
    with torch.no_grad():
        ref = net(**b)
        moved = net(**{**b, "frac": wrap(b["frac"] + shift[nc] + torch.tensor([1.0, -2.0, 3.0]))})
    assert torch.allclose(ref[0], moved[0], atol=2e-5)
    assert torch.allclose(ref[1], moved[1], atol=2e-5)


def test_rotation_of_cell_leaves_k_and_outputs_unchanged():
    net = _net()
    rng = np.random.default_rng(0)
    lat = rng.normal(size=(2, 3, 3)) + np.eye(3) * 4
    rot = Rotation.random(2, random_state=1).as_matrix()
    k = torch.tensor(lattice_to_k(lat), dtype=torch.float32)
    k_rot = torch.tensor(lattice_to_k(lat @ rot.transpose(0, 2, 1)), dtype=torch.float32)
    assert torch.allclose(k, k_rot, atol=1e-6)
    b = _batch(4, sizes=(3, 2))
    with torch.no_grad():
        a = net(**{**b, "k": k})
        c = net(**{**b, "k": k_rot})
    assert torch.allclose(a[0], c[0], atol=1e-5) and torch.allclose(a[1], c[1], atol=1e-5)


def test_torus_velocity_hand_computed_wrap_around():
    f0 = torch.tensor([[0.9, 0.1, 0.5]])
    f1 = torch.tensor([[0.1, 0.9, 0.5]])
    # 0.9 -> 0.1 goes +0.2 across the boundary, 0.1 -> 0.9 goes -0.2, 0.5 -> 0.5 stays
    assert torch.allclose(torus_velocity(f0, f1), torch.tensor([[0.2, -0.2, 0.0]]), atol=1e-6)
    assert torch.allclose(wrap(f0 + 0.5 * torus_velocity(f0, f1)), torch.tensor([[0.0, 0.0, 0.5]]), atol=1e-6)
    # endpoints of the path
    k1 = torch.randn(1, 6)
    tg = interpolate(k1, f1, torch.tensor([0]), t=torch.tensor([1.0]), k_sigma=0.1)
    assert torch.allclose(tg.f_t, f1, atol=1e-6) and torch.allclose(tg.k_t, k1, atol=1e-6)
    tg0 = interpolate(
        k1, f1, torch.tensor([0]), t=torch.tensor([0.0]), generator=torch.Generator().manual_seed(0), k_sigma=0.1
    )
    assert torch.allclose(tg0.k_t + tg0.u_k, k1, atol=1e-6)


def test_loss_weights_hand_computed():
    from crystalflow_core.generative.flow import FlowTargets

    z = torch.zeros
    tg = FlowTargets(z(1), z(1, 6), z(2, 3), z(2, 28), torch.ones(1, 6), torch.full((2, 3), 0.5), torch.ones(2, 28))
    out = flow_loss((z(1, 6), z(2, 3), z(2, 28)), tg, (1.0, 10.0, 10.0))
    assert out["loss_k"].item() == pytest.approx(1.0)
    assert out["loss_f"].item() == pytest.approx(0.25)
    assert out["loss"].item() == pytest.approx(1.0 + 2.5 + 10.0)


def _module(task="csp", conditions=()):
    from crystalflow_core.generative.training import CrystalFlowModule

    torch.manual_seed(0)
    return CrystalFlowModule(
        model={
            **defaults("model"),
            **dict(hidden=32, layers=2, fourier=8, recip=2, time_dim=64, task=task, conditions=list(conditions)),
        },
        scalers={c: (-1.0, 1.0) for c in conditions},
        atom_count_hist=[0, 1, 2, 1],
        **module_settings(cond_drop=0.2),
    )


def _train_batch(conditions=()):
    b = _batch(7, sizes=(2, 3, 1))
    return {
        "num_atoms": b["num_atoms"],
        "atom_types": b["types"],
        "frac_coords": b["frac"],
        "k": b["k"] + torch.tensor([0, 0, 0, 0, 0, 1.5]),
        "cond": {c: torch.tensor([0.5, -1.0, 0.0]) for c in conditions},
    }


def test_overfit_one_small_batch_loss_decreases():
    m = _module()
    batch = _train_batch()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    torch.manual_seed(1)
    losses = []
    for _ in range(120):
        g = Graph.build(batch["num_atoms"])
        tg = interpolate(batch["k"], batch["frac_coords"], g.node_crystal, k_sigma=0.1)
        loss = flow_loss(
            m.velocity(tg.t, batch["atom_types"], tg.f_t, tg.k_t, batch["num_atoms"], graph=g), tg, (1.0, 10.0, 10.0)
        )["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:20])


@pytest.mark.parametrize("task,conditions", [("csp", ()), ("dng", ()), ("dng", ("formation_energy_per_atom",))])
def test_variants_train_one_step_and_checkpoint_reloads(tmp_path, task, conditions):
    import pytorch_lightning as pl

    from crystalflow_core.generative.training import load_module

    m = _module(task, conditions)
    batch = _train_batch(conditions)
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    m.configure_optimizers = lambda: torch.optim.Adam(m.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in m.parameters()]
    trainer.fit(m, train_dataloaders=loader)
    assert any(not torch.equal(a, p) for a, p in zip(before, m.parameters()))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    m2 = load_module(path)
    b = _batch(9, sizes=(2, 2))
    types = b["types"] if task == "csp" else torch.randn(4, 28)
    cond = {c: torch.tensor([0.1, -0.3]) for c in conditions} or None
    with torch.no_grad():
        o1 = m.eval().net(b["t"], types, b["frac"], b["k"], b["num_atoms"], cond)
        o2 = m2.net(b["t"], types, b["frac"], b["k"], b["num_atoms"], cond)
    for x, y in zip(o1, o2):
        if x is not None:
            assert torch.equal(x, y)


def test_corrupt_checkpoint_is_reported(tmp_path):
    from crystalflow_core.generative.training import load_module

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="bad.ckpt"):
        load_module(bad)
