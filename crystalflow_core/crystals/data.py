"""Dataset preparation: CSV(.gz) of CIFs -> Niggli-reduced tensors cached per split.

Each split cache (a torch file) holds concatenated atom types and fractional coordinates,
per-crystal lattices and k vectors, atom counts, ids, condition columns, the atom-count histogram
and the condition scalers (mean/std) that training and sampling reuse. Rows that cannot be used
are skipped and listed with their reason in the rejected-rows file (``Layout.rejected``).
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from crystalflow_core import safe_load
from crystalflow_core.crystals.crystal import atom_offsets, min_interatomic_distance
from crystalflow_core.crystals.elements import MAX_Z, is_supported
from crystalflow_core.crystals.lattice import lattice_to_k
from crystalflow_core.errors import DataError
from crystalflow_core.io import atomic_path, closest_name, sha256_file, write_csv_atomic
from crystalflow_core.parallel import serve_map

log = logging.getLogger(__name__)
CACHE_FORMAT = 5  # 3: physical bounds, duplicates among parsed rows, key without the worker count; 4: CIF cells;
# 5: the crystals' symmetric forms (dataset symmetry: true)


# ----------------------------------------------------------------------------- parsing
def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, compression="infer")
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({type(exc).__name__}: {exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: file is empty") from exc
    if df.columns[0].startswith("Unnamed"):
        df = df.drop(columns=df.columns[0])
    return df


def parse_cif(cif: str, niggli: bool, bounds: PhysicalBounds | None = None, cif_cell: bool = False):
    """CIF text -> (Z, frac, lattice) of the Niggli-reduced cell, or raise ValueError with a reason; with
    `cif_cell` also (Z, frac, lattice) of the cell as the CIF gives it (what the authors' metric scripts
    fingerprint)."""
    from pymatgen.core import Structure

    if not isinstance(cif, str) or not cif.strip():
        raise ValueError("empty CIF")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            s = Structure.from_str(cif, fmt="cif")
        except Exception as exc:  # pymatgen raises many kinds
            raise ValueError(f"unparseable CIF: {type(exc).__name__}: {str(exc)[:120]}") from None
    if not s.is_ordered:
        raise ValueError("disordered or partially occupied site")
    lat = s.lattice.matrix
    if not np.all(np.isfinite(lat)) or not math.isfinite(s.volume):
        raise ValueError("non-finite lattice")
    if s.volume <= 1e-3:
        raise ValueError(f"degenerate lattice: volume {s.volume:.3g} A^3")
    if bounds is not None:
        bounds.check(s)
    zs = []
    for site in s:
        sp = site.specie
        z = getattr(sp, "Z", None)
        if z is None or not is_supported(int(z)):
            raise ValueError(f"element {sp} not in the type encoding (Z 1..{MAX_Z})")
        zs.append(int(z))
    as_given = (np.asarray(zs, np.int64), s.frac_coords.astype(np.float64), s.lattice.matrix.astype(np.float64))
    if niggli:
        try:
            s = s.get_reduced_structure("niggli")
        except Exception as exc:
            raise ValueError(f"Niggli reduction failed: {exc}") from None
        zs = [int(site.specie.Z) for site in s]
    frac = np.mod(s.frac_coords, 1.0)
    out = (np.asarray(zs, np.int64), frac.astype(np.float64), s.lattice.matrix.astype(np.float64))
    return (*out, as_given) if cif_cell else out


@dataclass(frozen=True)
class PhysicalBounds:
    """What a real crystal in a training set satisfies (rows outside are rejected with the reason)."""

    min_volume_per_atom: float  # A^3; the densest solids are above ~2.5
    max_volume_per_atom: float  # A^3; molecular/gas-like cells beyond
    min_distance: float  # A between two atoms (periodic images included)

    @classmethod
    def from_dataset(cls, ds: dict) -> PhysicalBounds:
        return cls(ds["min_volume_per_atom"], ds["max_volume_per_atom"], ds["min_distance"])

    def check(self, s) -> None:
        vpa = s.volume / len(s)
        if vpa < self.min_volume_per_atom:
            raise ValueError(
                f"volume per atom {vpa:.3g} A^3 below {self.min_volume_per_atom} (collapsed or sliver cell)"
            )
        if vpa > self.max_volume_per_atom:
            raise ValueError(f"volume per atom {vpa:.3g} A^3 above {self.max_volume_per_atom}")
        dmin = min_interatomic_distance(s)
        if dmin < self.min_distance:
            raise ValueError(f"atoms {dmin:.3g} A apart, below {self.min_distance} A")


def _row_parser():
    """A worker's function: a chunk of rows parsed."""
    return lambda chunk: [_parse_row(job) for job in chunk]


def _parse_row(args):
    idx, cif, niggli, bounds, symmetry = args
    try:
        z, frac, lat, given = parse_cif(cif, niggli, bounds, cif_cell=True)
        k = lattice_to_k(lat)
        if not np.all(np.isfinite(k)):
            raise ValueError("non-finite lattice parameters")
        return idx, (z, frac, lat, k, given, _symmetric_form(given) if symmetry else None), None
    except ValueError as exc:
        return idx, None, str(exc)


def _symmetric_form(given) -> dict:
    """The crystal's symmetric form (crystals.wyckoff.symmetry_info) with its k on the family's lattices."""
    from pymatgen.core import Lattice, Structure

    from crystalflow_core.crystals.wyckoff import k_mask_bias, symmetry_info

    info = symmetry_info(Structure(Lattice(given[2]), given[0].tolist(), given[1]))
    mask, bias = k_mask_bias(info["spacegroup"])
    info["k"] = lattice_to_k(info["lattice"]) * mask + bias
    return info


@dataclass(frozen=True)
class PrepareSettings:
    """How a split is read (from a validated `datasets` entry; defaults live in the schema only)."""

    id_column: str
    cif_column: str
    conditions: tuple
    niggli: bool
    max_rows: int | None
    symmetry: bool  # cache the symmetric forms too
    workers: int  # 0 = all cores; how, not what: not part of the cache key
    bounds: PhysicalBounds

    @classmethod
    def from_dataset(cls, ds: dict, workers: int = 0, **override) -> PrepareSettings:
        out = cls(
            ds["id_column"],
            ds["cif_column"],
            tuple(ds["conditions"]),
            ds["niggli"],
            ds["max_rows"],
            ds["symmetry"],
            workers,
            PhysicalBounds.from_dataset(ds),
        )
        return replace(out, **override)

    def key(self) -> dict:
        """The settings that change the cache's content."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("workers", "bounds")}
        d["conditions"] = list(self.conditions)
        d["bounds"] = self.bounds.__dict__
        return d


def _cached(out_path: Path, fingerprint: dict) -> dict | None:
    """The cache at `out_path` when it was built from the same source and settings, else None."""
    if not out_path.exists():
        return None
    try:
        cached = safe_load.load_path(out_path, "tensor cache")
    except safe_load.UnsafeFileError:
        raise
    except Exception:
        log.warning("%s unreadable; rebuilding", out_path)
        return None
    return cached if cached.get("fingerprint") == fingerprint else None


# a dataset CSV may name a condition as the rest of the project does (pressure_gpa) or as the authors' data
# does (pressure): condition name -> the accepted other name
CONDITION_ALIASES = {"pressure": "pressure_gpa"}


def _read_rows(csv_path: Path, settings: PrepareSettings) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, CIFs, condition values per row) of a split, checked for columns, rows and numbers."""
    df = read_table(csv_path)
    for cond, alias in CONDITION_ALIASES.items():  # the project's name of a quantity, for the authors' name
        if cond in settings.conditions and cond not in df.columns and alias in df.columns:
            df = df.rename(columns={alias: cond})
    for col in [settings.id_column, settings.cif_column, *settings.conditions]:
        if col not in df.columns:
            close = closest_name(col, df.columns)
            hint = f"; did you mean '{close}'?" if close else ""
            raise DataError(f"{csv_path}: missing column '{col}'{hint} (has: {', '.join(df.columns)})")
    unused = [c for c in df.columns if c not in (settings.id_column, settings.cif_column, *settings.conditions)]
    if unused:
        log.info("%s: columns this run does not use: %s", csv_path, ", ".join(map(str, unused)))
    if settings.max_rows:
        df = df.iloc[: settings.max_rows]
    if len(df) == 0:
        raise DataError(f"{csv_path}: no rows")
    try:
        cond = (
            df[list(settings.conditions)].to_numpy(dtype=np.float64) if settings.conditions else np.zeros((len(df), 0))
        )
    except (TypeError, ValueError) as exc:
        raise DataError(f"{csv_path}: condition columns {settings.conditions} are not numeric ({exc})") from exc
    return df[settings.id_column].astype(str).tolist(), df[settings.cif_column].tolist(), cond


def _parse_rows(cifs: list[str], cond: np.ndarray, settings: PrepareSettings) -> tuple[dict, list[dict]]:
    """Parse every row (in worker processes for large splits): ({row: (parsed, error)}, rows rejected
    before parsing for a missing condition value)."""
    rejected, jobs = [], []
    for i, cif in enumerate(cifs):
        if settings.conditions and not np.all(np.isfinite(cond[i])):
            rejected.append({"row": i, "reason": "missing condition value"})
        else:
            jobs.append((i, cif, settings.niggli, settings.bounds, settings.symmetry))
    workers = settings.workers or os.cpu_count() or 1
    results = {}
    if workers > 1 and len(jobs) > (20 if settings.symmetry else 200):
        chunks = [jobs[i : i + 64] for i in range(0, len(jobs), 64)]
        for part in serve_map(_row_parser, (), chunks, workers, desc="parsing CIFs"):
            for idx, ok, err in part:
                results[idx] = (ok, err)
    else:
        for job in jobs:
            idx, ok, err = _parse_row(job)
            results[idx] = (ok, err)
    return results, rejected


def _kept_rows(results: dict, ids: list[str], rejected: list[dict]) -> list[int]:
    """The rows kept: parsed, first of their id. Duplicates are decided among the rows that parse, so a
    broken first copy does not take a good second one with it. Appends the others to `rejected`."""
    keep, seen = [], {}
    for i in sorted(results):
        ok, err = results[i]
        if ok is None:
            rejected.append({"row": i, "reason": err})
        elif ids[i] in seen:
            rejected.append({"row": i, "reason": f"duplicate id (first kept at row {seen[ids[i]]})"})
        else:
            seen[ids[i]] = i
            keep.append(i)
    return keep


def _cache(results, keep, ids, cond, settings, n_rejected, fingerprint) -> dict:
    zs = [results[i][0][0] for i in keep]
    num_atoms = torch.tensor([len(z) for z in zs], dtype=torch.long)
    return {
        "ids": [ids[i] for i in keep],
        "rows": torch.tensor(keep, dtype=torch.long),
        "atom_types": torch.from_numpy(np.concatenate(zs)),
        "frac_coords": torch.from_numpy(np.concatenate([results[i][0][1] for i in keep])).float(),
        "lattices": torch.from_numpy(np.stack([results[i][0][2] for i in keep])),
        "k": torch.from_numpy(np.stack([results[i][0][3] for i in keep])).float(),
        "num_atoms": num_atoms,
        "conditions": {c: torch.from_numpy(cond[keep, j]).float() for j, c in enumerate(settings.conditions)},
        "condition_scalers": {
            c: (float(cond[keep, j].mean()), float(cond[keep, j].std() or 1.0))
            for j, c in enumerate(settings.conditions)
        },
        "atom_count_hist": torch.bincount(num_atoms, minlength=int(num_atoms.max()) + 1),
        # the cells as the CIFs give them (same atoms, the CIF's order): the reference cells of the
        # crystalflow protocol's coverage fingerprints
        "cif_atom_types": torch.from_numpy(np.concatenate([results[i][0][4][0] for i in keep])),
        "cif_frac_coords": torch.from_numpy(np.concatenate([results[i][0][4][1] for i in keep])),
        "cif_lattices": torch.from_numpy(np.stack([results[i][0][4][2] for i in keep])),
        "symmetry": _symmetric_cache([results[i][0][5] for i in keep]) if settings.symmetry else None,
        "n_rejected": n_rejected,
        "fingerprint": fingerprint,
    }


def _symmetric_cache(forms: list[dict]) -> dict:
    """The symmetric forms as tensors, keyed as the plain cache is (what a symmetric model trains on)."""
    num_atoms = torch.tensor([len(f["atom_types"]) for f in forms], dtype=torch.long)
    return {
        "atom_types": torch.from_numpy(np.concatenate([f["atom_types"] for f in forms])),
        "frac_coords": torch.from_numpy(np.concatenate([f["frac_coords"] for f in forms])).float(),
        "lattices": torch.from_numpy(np.stack([f["lattice"] for f in forms])),
        "k": torch.from_numpy(np.stack([f["k"] for f in forms])).float(),
        "num_atoms": num_atoms,
        "ops": torch.from_numpy(np.concatenate([f["ops"] for f in forms])).float(),
        "anchors": torch.from_numpy(np.concatenate([f["anchors"] for f in forms])),  # within each crystal
        "spacegroup": torch.tensor([f["spacegroup"] for f in forms], dtype=torch.long),
        "wyckoff": [f["wyckoff"] for f in forms],
        "atom_count_hist": torch.bincount(num_atoms, minlength=int(num_atoms.max()) + 1),
    }


def prepare_split(
    csv_path: str | Path,
    out_path: str | Path,
    rejected_path: str | Path,
    settings: PrepareSettings,
    force: bool = False,
) -> dict:
    """Parse one split and write the cache and the rejected rows with their reasons (atomically).

    Returns the cache dict. When `out_path` exists and was built from the same source file
    and settings, it is loaded instead of parsed again (use `force` to rebuild).
    """
    csv_path, out_path = Path(csv_path), Path(out_path)
    if not csv_path.exists():
        raise DataError(f"{csv_path}: file not found")
    fingerprint = {"source_sha256": sha256_file(csv_path), "settings": settings.key(), "format": CACHE_FORMAT}
    cached = None if force else _cached(out_path, fingerprint)
    if cached is not None:
        log.info("%s is up to date with %s; not parsing again", out_path, csv_path)
        return cached
    t0 = time.time()
    ids, cifs, cond = _read_rows(csv_path, settings)
    results, rejected = _parse_rows(cifs, cond, settings)
    keep = _kept_rows(results, ids, rejected)
    rejected = sorted(
        ({"row": r["row"], "id": ids[r["row"]], "reason": r["reason"]} for r in rejected), key=lambda r: r["row"]
    )
    write_csv_atomic(pd.DataFrame(rejected, columns=["row", "id", "reason"]), rejected_path)
    if not keep:
        raise DataError(f"{csv_path}: no usable rows ({len(rejected)} rejected, see {rejected_path})")
    cache = _cache(results, keep, ids, cond, settings, len(rejected), fingerprint)
    with atomic_path(out_path) as tmp:
        torch.save(cache, tmp)
    log.info(
        "%s: %d crystals kept, %d rejected, %.1f s -> %s",
        csv_path,
        len(keep),
        len(rejected),
        time.time() - t0,
        out_path,
    )
    return cache


def load_cache(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: cache not found (run the prepare step first)")
    try:
        return safe_load.load_path(path, "tensor cache")
    except safe_load.UnsafeFileError as exc:
        raise DataError(str(exc)) from None
    except Exception as exc:
        raise DataError(f"{path}: corrupt cache ({exc}); delete it and prepare again") from exc


def cache_structures(cache: dict, indices=None, cell: str = "niggli"):
    """Rebuild pymatgen Structures from a cache: the Niggli cells the model sees, or (`cell="cif"`) the cells
    as the CIFs give them."""
    from pymatgen.core import Lattice, Structure

    prefix = {"niggli": "", "cif": "cif_"}[cell]
    if f"{prefix}lattices" not in cache:
        raise DataError("this cache holds no CIF cells (built by a version before 0.5): prepare it again")
    offsets = atom_offsets(cache["num_atoms"].numpy())
    idx = range(len(cache["ids"])) if indices is None else indices
    out = []
    for i in idx:
        a, b = int(offsets[i]), int(offsets[i + 1])
        out.append(
            Structure(
                Lattice(cache[f"{prefix}lattices"][i].numpy()),
                cache[f"{prefix}atom_types"][a:b].tolist(),
                cache[f"{prefix}frac_coords"][a:b].double().numpy(),
            )
        )
    return out
