"""28-dim periodic-table encoding of atom types for de novo generation.

Grid of 13 rows x 15 columns, derived from the periodic table so that chemically similar elements
share a row or column:
  rows 0-6   s+p block of periods 1-7 (8 columns: groups 1, 2, 13..18; H in col 0, He in col 7)
  rows 7-10  d block of periods 4-7 (10 columns: groups 3..12; for periods 6-7 group 3 is La/Ac,
             which live in the f rows, so col 0 stays empty)
  rows 11-12 f block of periods 6-7 (15 columns: La..Lu, Ac..Lr)
An element is encoded as one-hot(row, 13) ++ one-hot(col, 15). Decoding takes the argmax of the row
part over rows that hold an element, then the argmax over the columns that hold an element in that
row. The grid holds all 118 elements (decoding may give any of them, as in the reference code);
training data are limited to Z <= MAX_Z = 100 (the reference's CSP embedding table).
"""

from __future__ import annotations

import numpy as np
import torch

from crystalflow_core.compositions import MAX_Z  # one constant, torch-free for the configuration

N_ROWS, N_COLS = 13, 15
TYPE_DIM = N_ROWS + N_COLS

TABLE_Z = 118  # the type table covers every element; DNG decodes over all of them, as the reference does
_PERIOD_START = [1, 3, 11, 19, 37, 55, 87, 119]


def _grid_position(z: int) -> tuple[int, int]:
    if not 1 <= z <= 118:
        raise ValueError(f"atomic number {z} outside 1..118")
    period = max(p for p in range(7) if _PERIOD_START[p] <= z) + 1
    off = z - _PERIOD_START[period - 1]
    sp_row = period - 1
    if period == 1:
        return sp_row, 0 if z == 1 else 7
    if period in (2, 3):
        return sp_row, off
    if off < 2:
        return sp_row, off
    if period in (4, 5):
        if off < 12:
            return 7 + period - 4, off - 2
        return sp_row, off - 10
    # periods 6, 7
    if off < 17:
        return 11 + period - 6, off - 2
    if off < 26:
        return 7 + period - 4, off - 16
    return sp_row, off - 24


GRID = {z: _grid_position(z) for z in range(1, TABLE_Z + 1)}
_CELL_TO_Z = np.zeros((N_ROWS, N_COLS), dtype=np.int64)
for _z, (_r, _c) in GRID.items():
    assert _CELL_TO_Z[_r, _c] == 0, "grid collision"
    _CELL_TO_Z[_r, _c] = _z
CELL_TO_Z = torch.from_numpy(_CELL_TO_Z)
CELL_OCCUPIED = CELL_TO_Z > 0
ROW_OCCUPIED = CELL_OCCUPIED.any(dim=1)


def is_supported(z: int) -> bool:
    """Z usable in training data: 1..MAX_Z (the reference's CSP embedding has 100 rows)."""
    return 1 <= z <= MAX_Z


def encode_types(z: torch.Tensor) -> torch.Tensor:
    """(N,) atomic numbers -> (N, 28) float encoding."""
    z = torch.as_tensor(z, dtype=torch.long)
    table = torch.zeros(MAX_Z + 1, TYPE_DIM)
    for zz, (r, c) in GRID.items():
        if zz > MAX_Z:
            continue
        table[zz, r] = 1.0
        table[zz, N_ROWS + c] = 1.0
    if (z < 1).any() or (z > MAX_Z).any():
        raise ValueError(f"atomic numbers outside 1..{MAX_Z}: {z[(z < 1) | (z > MAX_Z)].tolist()}")
    return table[z]


def decode_types(a: torch.Tensor) -> torch.Tensor:
    """(N, 28) continuous vectors -> (N,) atomic numbers (always a valid element)."""
    rows = a[:, :N_ROWS].masked_fill(~ROW_OCCUPIED.to(a.device), float("-inf")).argmax(dim=1)
    cols_score = a[:, N_ROWS:].masked_fill(~CELL_OCCUPIED.to(a.device)[rows], float("-inf"))
    cols = cols_score.argmax(dim=1)
    return CELL_TO_Z.to(a.device)[rows, cols]
