import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import need_data
from scipy.spatial.transform import Rotation

from crystalflow_core.crystals.elements import (
    GRID,
    MAX_Z,
    N_COLS,
    N_ROWS,
    TABLE_Z,
    TYPE_DIM,
    decode_types,
    encode_types,
)
from crystalflow_core.crystals.lattice import k_to_lattice, k_to_lattice_torch, lattice_to_k, lattice_to_k_torch

_CELL = re.compile(r"_cell_(length_a|length_b|length_c|angle_alpha|angle_beta|angle_gamma)\s+([-0-9.eE+]+)")


def test_cubic_cell_by_hand():
    # L = a I -> S = ln(a) I -> k = (0, 0, 0, 0, 0, ln a)
    k = lattice_to_k(np.eye(3) * 4.0)
    assert np.allclose(k, [0, 0, 0, 0, 0, np.log(4.0)])
    assert np.allclose(k_to_lattice(np.array([0, 0, 0, 0, 0, 1.0])), np.eye(3) * np.e)


def test_k_round_trip_all_mp20_test_lattices():
    from pymatgen.core import Lattice

    (path,) = need_data("mp_20/test.csv.gz")
    cifs = pd.read_csv(path, usecols=["cif"])["cif"]
    lats = []
    for cif in cifs:
        p = dict(_CELL.findall(cif))
        lats.append(
            Lattice.from_parameters(
                *(float(p[k]) for k in ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma"))
            ).matrix
        )
    lats = np.array(lats)
    assert len(lats) == 9046
    back = k_to_lattice(lattice_to_k(lats))
    # the round trip drops the rotation: compare Gram matrices and lattice parameters
    gram = lats @ lats.transpose(0, 2, 1)
    gram_back = back @ back.transpose(0, 2, 1)
    lengths, lengths_back = (
        np.sqrt(np.diagonal(gram, axis1=1, axis2=2)),
        np.sqrt(np.diagonal(gram_back, axis1=1, axis2=2)),
    )
    assert np.max(np.abs(lengths - lengths_back)) < 1e-5
    # applying the recovered rotation gives back the cell itself (max error in Angstrom)
    q = np.linalg.solve(back, lats)
    assert np.max(np.abs(back @ q - lats)) < 1e-5
    assert np.max(np.abs(gram - gram_back) / np.abs(gram).max(axis=(1, 2))[:, None, None]) < 1e-6


def test_k_invariant_under_rotation_and_torch_matches_numpy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lat = rng.normal(size=(3, 3)) * 3 + np.eye(3) * 5
        rot = Rotation.random(random_state=rng).as_matrix()
        assert np.allclose(lattice_to_k(lat), lattice_to_k(lat @ rot.T), atol=1e-10)
        kt = lattice_to_k_torch(torch.tensor(lat))
        assert np.allclose(kt.numpy(), lattice_to_k(lat), atol=1e-10)
        assert np.allclose(k_to_lattice_torch(kt).numpy(), k_to_lattice(lattice_to_k(lat)), atol=1e-10)


def test_type_encoding_round_trip_every_mp20_element():
    (path,) = need_data("mp_20/test.csv.gz")
    els = set()
    for e in pd.read_csv(path, usecols=["elements"])["elements"]:
        els.update(eval(e))
    from pymatgen.core import Element

    z = torch.tensor(sorted(Element(e).Z for e in els))
    assert len(z) > 80
    enc = encode_types(z)
    assert enc.shape == (len(z), TYPE_DIM) and TYPE_DIM == N_ROWS + N_COLS == 28
    assert torch.all(enc.sum(1) == 2)
    assert torch.equal(decode_types(enc), z)
    # noisy encodings still decode to the element
    assert torch.equal(
        decode_types(enc + 0.3 * torch.randn(enc.shape, generator=torch.Generator().manual_seed(0)).clamp(-0.45, 0.45)),
        z,
    )


def test_grid_is_chemical_and_decode_always_valid():
    # same column for a group: Li, Na, K share col 0 of their s/p rows; Fe, Ru, Os share a d column
    assert GRID[3][1] == GRID[11][1] == GRID[19][1] == 0
    assert GRID[26][1] == GRID[44][1] == GRID[76][1]
    assert len(set(GRID.values())) == TABLE_Z == 118  # every element has its own cell
    # the reference table's corners: Rf (10, 1), Nh (6, 2), Og (6, 7), Lr (12, 14), Lu (11, 14)
    assert (GRID[104], GRID[113], GRID[118], GRID[103], GRID[71]) == ((10, 1), (6, 2), (6, 7), (12, 14), (11, 14))
    z = decode_types(torch.randn(500, TYPE_DIM, generator=torch.Generator().manual_seed(1)))
    assert torch.all((z >= 1) & (z <= TABLE_Z))
    with pytest.raises(ValueError):
        encode_types(torch.tensor([MAX_Z + 1]))
