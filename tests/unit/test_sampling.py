from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import module_settings

from crystalflow_core.config import defaults
from crystalflow_core.crystals.elements import TABLE_Z
from crystalflow_core.generative.sampling import (
    SampleSettings,
    csp_items,
    dng_items,
    generate,
    record_to_structure,
    sampling_batches,
)


def integrate(vel, k, f, a, **kw):
    """sampling.integrate with the schema's sample defaults for what a test leaves out."""
    from crystalflow_core.generative.integrators import integrate as run

    d = defaults("sample")
    base = dict(anneal=0.0, anneal_offset=d["anneal_offset"], anneal_vars=("f",), grid=d["time_grid"])
    base["grid_power"] = d["time_grid_power"]
    return run(vel, k, f, a, **{**base, **kw})


@pytest.mark.parametrize("grid", ["uniform", "dense_end"])
@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_constant_velocity_on_torus_lands_exactly(method, grid):
    k0 = torch.zeros(1, 6, dtype=torch.float64)
    f0 = torch.tensor([[0.9, 0.2, 0.0]], dtype=torch.float64)
    vk = torch.arange(6, dtype=torch.float64)[None]
    vf = torch.tensor([[0.35, -0.7, 2.25]], dtype=torch.float64)

    def vel(t, k, f, a):
        return vk, vf, None

    stats = {}
    k, f, _ = integrate(vel, k0, f0, None, steps=7, method=method, grid=grid, stats=stats)
    assert stats["nfe"] == 7 * {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[method]
    assert torch.allclose(k, vk, atol=1e-12)
    expected = torch.tensor([[0.25, 0.5, 0.25]], dtype=torch.float64)  # (0.9+0.35, 0.2-0.7, 2.25) mod 1
    assert torch.allclose(f, expected, atol=1e-12)
    assert float(f.min()) >= 0 and float(f.max()) < 1


@pytest.mark.parametrize("method,exact", [("euler", False), ("midpoint", True), ("heun", True), ("rk4", True)])
def test_velocity_linear_in_t_is_integrated_exactly_by_second_order_methods(method, exact):
    # v(t) = a + b t: x(1) = a + b / 2; Euler (velocity at the end of each step) gives a + b (S + 1) / (2 S)
    a_, b_ = 0.3, 1.2
    vel = lambda t, k, f, a: (a_ + b_ * t[:, None] * torch.ones_like(k), torch.zeros_like(f), None)  # noqa: E731
    k0, f0 = torch.zeros(1, 6, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    k, _, _ = integrate(vel, k0, f0, None, steps=5, method=method)
    err = float((k - (a_ + b_ / 2)).abs().max())
    if exact:
        assert err < 1e-12
    else:
        assert err == pytest.approx(b_ * (6 / 10 - 1 / 2), abs=1e-12)


def test_higher_order_methods_agree_with_fine_euler_on_the_torus_with_anti_annealing():
    # a coordinate field that depends on the position (a pull towards 0.5) and crosses the cell boundary
    vel = lambda t, k, f, a: (torch.sin(3 * t[:, None]) * torch.ones_like(k), 0.8 - 0.5 * torch.sin(6.283 * f), None)  # noqa: E731
    k0 = torch.zeros(2, 6, dtype=torch.float64)
    f0 = torch.tensor([[0.9, 0.1, 0.45], [0.2, 0.7, 0.95]], dtype=torch.float64)
    args = (k0, f0, None)
    ref_k, ref_f, _ = integrate(vel, *args, steps=16000, method="euler", anneal=5.0)
    for method, steps in (("midpoint", 200), ("heun", 200), ("rk4", 50)):
        k, f, _ = integrate(vel, *args, steps=steps, method=method, anneal=5.0)
        d = (f - ref_f + 0.5) % 1.0 - 0.5  # torus distance
        assert float(d.abs().max()) < 5e-3 and float((k - ref_k).abs().max()) < 5e-3, method


def test_dense_end_grid():
    from crystalflow_core.generative.integrators import time_grid

    t = time_grid(4, "dense_end", 2.0)
    assert t[0] == 0.0 and t[-1] == 1.0 and np.all(np.diff(np.diff(t)) < 0)  # steps shrink towards t = 1
    assert np.allclose(time_grid(4), [0, 0.25, 0.5, 0.75, 1])


def test_anti_annealing_only_on_coordinates():
    k0, f0 = torch.zeros(1, 6, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    a0 = torch.zeros(1, 28, dtype=torch.float64)
    one = lambda t, k, f, a: (torch.full_like(k, 0.01), torch.full_like(f, 0.01), torch.full_like(a, 0.01))  # noqa: E731
    k, f, a = integrate(one, k0, f0, a0, steps=4, method="euler", anneal=5.0)
    # Euler on the authors' grid: sum_i (1 + 5 t_i) * 0.01 / 4 with t_i = .25, .5, .75, 1 -> 0.01 * (1 + 5 * 0.625)
    assert torch.allclose(f, torch.full_like(f, 0.01 * (1 + 5 * 0.625)), atol=1e-12)
    assert torch.allclose(k, torch.full_like(k, 0.01), atol=1e-12)
    assert torch.allclose(a, torch.full_like(a, 0.01), atol=1e-12)


def _module(task, conditions=()):
    from crystalflow_core.generative.training import CrystalFlowModule

    torch.manual_seed(0)
    return CrystalFlowModule(
        model={
            **defaults("model"),
            **dict(hidden=16, layers=1, fourier=8, recip=2, time_dim=16, task=task, conditions=list(conditions)),
        },
        scalers={c: (-1.5, 1.0) for c in conditions},
        atom_count_hist=[0, 2, 5, 0, 3],
        **module_settings(),
    )


@pytest.fixture
def cache():
    return {"ids": ["a", "b"], "num_atoms": torch.tensor([2, 3]), "atom_types": torch.tensor([11, 17, 8, 8, 26])}


def test_csp_samples_shapes_ranges_and_determinism(cache):
    m = _module("csp")
    with torch.no_grad():  # untrained: keep the lattice at its prior draw so no sample is flagged
        m.net.head_k.weight.zero_()
    items = csp_items(cache, n_candidates=2)
    assert [(i["target_id"], i["candidate"]) for i in items] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    s = SampleSettings.from_section(defaults("sample"), "csp", steps=3, anneal=5.0, batch_size=3, seed=4)
    r1 = generate(m, items, s, progress=False)
    r2 = generate(m, items, s, progress=False)
    assert r1 == r2
    r3 = generate(
        m, items, SampleSettings.from_section(defaults("sample"), "csp", steps=3, batch_size=3, seed=5), progress=False
    )
    assert r3[0]["frac_coords"] != r1[0]["frac_coords"]
    for rec, it in zip(r1, items):
        assert rec["species"] == it["atom_types"]
        f = np.array(rec["frac_coords"])
        assert f.shape == (it["num_atoms"], 3) and f.min() >= 0 and f.max() < 1
        lat = np.array(rec["lattice"])
        assert np.allclose(lat, lat.T)  # exp(S) is symmetric
        st = record_to_structure(rec)
        assert st is not None and len(st) == it["num_atoms"]


def test_sampling_points_parse_and_settings():
    from crystalflow_core.config import run_defaults
    from crystalflow_core.generative.sampling import settings_for_run
    from crystalflow_core.points import parse_point, point_of, sampling_points

    assert parse_point("100") == (None, 100) and parse_point(20) == (None, 20)
    assert parse_point("heun_10") == ("heun", 10)
    with pytest.raises(ValueError, match="heun_10"):
        parse_point("foo10")
    run = run_defaults(
        {"dataset": "d", "task": "csp", "sample": {"steps": [100], "extra": [{"method": "rk4", "steps": 5}]}}
    )
    assert sampling_points(run) == ["100", "rk4_5"]
    s = settings_for_run(run, "rk4_5")
    assert (s.method, s.steps) == ("rk4", 5) and settings_for_run(run, "100").method == "euler"
    assert point_of(run, "rk4", 5) == "rk4_5" and point_of(run, "euler", 100) == "100"


def test_sampling_batches_pack_by_pair_budget():
    items = [{"num_atoms": n} for n in (5, 1, 3, 4, 2, 6)]
    assert sampling_batches(items, 4) == [[0, 1, 2, 3], [4, 5]]
    b = sampling_batches(items, 4, pair_budget=30)  # sorted by N: 1, 2, 3, 4 | 5 | 6 (36 > 30: alone)
    assert b == [[1, 4, 2, 3], [0], [5]]
    assert all(sum(items[i]["num_atoms"] ** 2 for i in g) <= 30 or len(g) == 1 for g in b)
    assert sorted(i for g in b for i in g) == list(range(6))


def test_pair_budget_batching_gives_the_samples_of_fixed_batches():
    m = _module("dng")
    with torch.no_grad():
        m.net.head_k.weight.zero_()
    items = dng_items([0, 2, 5, 0, 3, 1, 2], 13, seed=1)
    for i, it in enumerate(items):
        it["id"] = f"s{i}"
    s = SampleSettings.from_section(defaults("sample", "dng"), "dng", steps=4, batch_size=5, seed=2)
    fixed = generate(m, items, s, progress=False)
    packed = generate(m, items, replace(s, pair_budget=40, batch_size=1), progress=False)
    one_by_one = generate(m, items, replace(s, batch_size=1), progress=False)
    for a, b, c in zip(fixed, packed, one_by_one):
        assert a["id"] == b["id"] == c["id"] and a["species"] == b["species"] == c["species"]
        assert np.allclose(a["frac_coords"], b["frac_coords"], atol=1e-5)
        assert np.allclose(a["lattice"], b["lattice"], atol=1e-5)
        assert np.allclose(a["frac_coords"], c["frac_coords"], atol=1e-5)
    # and one item alone, from the middle of the list, is drawn the same (shards see subsets)
    alone = generate(m, items[7:8], s, progress=False)[0]
    assert np.allclose(alone["frac_coords"], fixed[7]["frac_coords"], atol=1e-5)


def test_dng_conditional_guidance_and_atom_counts():
    m = _module("dng", ["formation_energy_per_atom"])
    items = dng_items([0, 2, 5, 0, 3], 40, seed=0, conditions={"formation_energy_per_atom": -2.0})
    assert {i["num_atoms"] for i in items} <= {1, 2, 4}
    recs = generate(
        m,
        items,
        SampleSettings.from_section(defaults("sample"), "csp", steps=2, anneal=0.0, guidance=2.0, batch_size=16),
        progress=False,
    )
    assert len(recs) == 40
    for r in recs:
        assert all(1 <= z <= TABLE_Z for z in r["species"])  # decoded over the whole table, as the reference
        assert r["condition"] == {"formation_energy_per_atom": -2.0}
    with pytest.raises(ValueError, match="condition"):
        generate(
            m, dng_items([0, 1], 2, 0), SampleSettings.from_section(defaults("sample"), "csp", steps=1), progress=False
        )


def test_exploding_samples_are_flagged_not_fatal(cache):
    m = _module("csp")
    # make the lattice velocity huge: the sample explodes, the batch still returns every record
    with torch.no_grad():
        m.net.head_k.weight.normal_(0.0, 200.0, generator=torch.Generator().manual_seed(0))
    recs = generate(
        m,
        csp_items(cache, 1),
        SampleSettings.from_section(defaults("sample"), "csp", steps=2, batch_size=8),
        progress=False,
    )
    assert len(recs) == 2 and all(r["flag"] for r in recs)
    assert all(record_to_structure(r) is None for r in recs)


def test_shards_partition_items_and_keep_them_when_others_are_added():
    from crystalflow_core.jobs import shard_of

    items = [{"id": f"s{k}"} for k in range(300)]
    parts = [shard_of(items, i, 3) for i in range(3)]
    assert sorted((it["id"] for p in parts for it in p), key=lambda s: int(s[1:])) == [it["id"] for it in items]
    assert all(70 <= len(p) <= 130 for p in parts)  # a hash: roughly even
    more = [shard_of(items + [{"id": f"t{k}"} for k in range(50)], i, 3) for i in range(3)]
    assert all(set(it["id"] for it in p) <= set(it["id"] for it in m) for p, m in zip(parts, more))
    jobs = [(f"k{k}", None) for k in range(6)]
    assert shard_of(jobs, 0, 1, key=lambda j: j[0]) == jobs


def test_jobs_use_their_threads_capped_at_usable_cores(monkeypatch):
    """Training and sampling set torch's threads from the job, not from OMP_NUM_THREADS=1."""
    import os

    from crystalflow_core.stages import use_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cores = len(os.sched_getaffinity(0))
    try:
        assert use_threads(0) == cores and torch.get_num_threads() == cores
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
        assert use_threads(cores + 7) == cores  # --cores 8 on a smaller machine: no oversubscription
    finally:
        torch.set_num_threads(before)
