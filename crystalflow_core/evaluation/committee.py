"""A second potential's opinion on a stability table: E_hull under both, the spread, the rates both agree on."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pandas as pd

from crystalflow_core.evaluation import metrics as M
from crystalflow_core.materials.hull import hull_columns, on_hull_scale
from crystalflow_core.materials.potentials import record_energy_scale

log = logging.getLogger(__name__)


def committee_columns(st: pd.DataFrame, name: str, second: dict, refs: dict, hull, threshold: float) -> pd.DataFrame:
    """The second potential's opinion beside the first's: per structure its E_hull (`second`: {id: record
    of potential `name`'s energy per atom on the relaxed structure}, put on the hull's scale by its own
    declared scale), the spread |E_hull first - E_hull second|, `committee_disagrees` (spread above
    `threshold` eV/atom, or only one of the two has an E_hull) and `stable_agreed` / `metastable_agreed`."""
    st = st.copy()
    col = f"e_hull_{name}"
    st[col] = np.nan
    for i, row in st.iterrows():
        rec = second.get(row["id"])
        if not rec or rec.get("error") or "energy_per_atom" not in rec or not np.isfinite(row["e_hull"]):
            continue
        s = rec["structure"]
        e, _ = on_hull_scale(s, rec["energy_per_atom"] * len(s), record_energy_scale(rec))
        if np.isfinite(e):
            with contextlib.suppress(KeyError):  # an element without a reference: the row says so already
                st.at[i, col] = hull_columns(s, e, refs, hull)["e_hull"]
    first, other = st["e_hull"].to_numpy(float), st[col].to_numpy(float)
    st["e_hull_spread"] = np.abs(first - other)
    has_first = np.isfinite(first)
    st["committee_disagrees"] = has_first & ~(st["e_hull_spread"].to_numpy(float) <= threshold)
    both = np.fmax(first, other)  # the less stable of the two opinions (NaN where either has none)
    both[~(np.isfinite(first) & np.isfinite(other))] = np.nan
    st["e_hull_agreed"] = both
    return st


def committee_summary(st: pd.DataFrame, second: str | None, metastable_e_hull: float) -> dict:
    """Stable / metastable / S.U.N. rates under the second potential (`second`, the config's
    relax.committee[1]) and under both (agreed), the spread."""
    if second is None:
        return {}
    unique, new, n = st["unique"].to_numpy(bool), st["new"].to_numpy(bool), len(st)
    row = {"committee": f"{st['potential'].iloc[0] if len(st) else ''}+{second}"}
    for label, column in ((second, f"e_hull_{second}"), ("agreed", "e_hull_agreed")):
        s = M.sun_summary(st[column].to_numpy(float), unique, new, n, metastable_e_hull)
        row.update({f"{k.removesuffix('_pct')}_{label}_pct": s[k] for k in ("stable_pct", "metastable_pct", "sun_pct")})
    spread = st["e_hull_spread"].to_numpy(float)
    row["e_hull_spread_median"] = float(np.nanmedian(spread)) if np.isfinite(spread).any() else float("nan")
    row["n_committee_disagree"] = int(st["committee_disagrees"].astype(bool).sum())
    return row
