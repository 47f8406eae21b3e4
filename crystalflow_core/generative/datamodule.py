"""The training data: cached crystals as a torch Dataset, the per-epoch shuffling that depends only on (seed,
epoch) so a resumed run draws what an uninterrupted one would, and the Lightning data module."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from crystalflow_core.crystals.crystal import atom_offsets
from crystalflow_core.crystals.data import load_cache
from crystalflow_core.errors import DataError

log = logging.getLogger(__name__)


class CrystalSet(Dataset):
    """Index dataset over a split cache; batching is done in `collate` by slicing offsets. `symmetric`: the
    crystals' symmetric forms (conventional cells with each atom's Wyckoff operation and anchor)."""

    def __init__(self, cache: dict, conditions: list[str], scalers: dict, symmetric: bool = False):
        if symmetric:
            if not cache.get("symmetry"):
                raise DataError(
                    "this data cache holds no symmetry information: prepare the dataset with symmetry: true"
                )
            cache = {**cache["symmetry"], "conditions": cache["conditions"]}
        self.c = cache
        self.symmetric = symmetric
        self.offsets = torch.from_numpy(atom_offsets(cache["num_atoms"].numpy()))
        self.conditions = conditions
        self.scalers = scalers
        for name in conditions:
            if name not in cache["conditions"]:
                raise KeyError(f"condition '{name}' not in the data cache (has {list(cache['conditions'])})")

    def __len__(self):
        return len(self.c["num_atoms"])

    def __getitem__(self, i):
        return i

    def collate(self, idx: list[int]) -> dict:
        idx_t = torch.tensor(idx, dtype=torch.long)
        na = self.c["num_atoms"][idx_t]
        starts = self.offsets[idx_t]
        atom_idx = torch.repeat_interleave(starts - torch.cumsum(na, 0) + na, na) + torch.arange(int(na.sum()))
        out = {
            "num_atoms": na,
            "atom_types": self.c["atom_types"][atom_idx],
            "frac_coords": self.c["frac_coords"][atom_idx],
            "k": self.c["k"][idx_t],
            "cond": {},
        }
        if self.symmetric:  # anchors: indices within the batch
            base = torch.repeat_interleave(torch.cumsum(na, 0) - na, na)  # cached anchors: within a crystal
            out["ops"] = self.c["ops"][atom_idx]
            out["anchors"] = self.c["anchors"][atom_idx] + base
            out["spacegroup"] = self.c["spacegroup"][idx_t]
        for name in self.conditions:
            mu, sd = self.scalers[name]
            out["cond"][name] = (self.c["conditions"][name][idx_t] - mu) / sd
        return out


def epoch_seed(seed: int, epoch: int) -> int:
    return int(seed) * 100_003 + int(epoch) + 1


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled order that depends only on (seed, epoch); Lightning calls set_epoch every epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        yield from torch.randperm(self.n, generator=g).tolist()


class CrystalDataModule(pl.LightningDataModule):
    def __init__(  # noqa: PLR0913
        self, train_path, val_path, conditions, batch_size: int, workers: int, seed: int, symmetric: bool = False
    ):
        super().__init__()
        self.symmetric = symmetric
        self.seed = seed
        self.train_path, self.val_path = train_path, val_path
        self.conditions = list(conditions)
        self.batch_size, self.workers = batch_size, workers

    def setup(self, stage=None):
        tr = load_cache(self.train_path)
        self.scalers = {c: tr["condition_scalers"][c] for c in self.conditions}
        self.train_set = CrystalSet(tr, self.conditions, self.scalers, self.symmetric)
        self.val_set = (
            CrystalSet(load_cache(self.val_path), self.conditions, self.scalers, self.symmetric)
            if self.val_path
            else None
        )

    def _loader(self, ds, shuffle):
        # own generator: creating a loader iterator draws a base seed, which must not come from the
        # global stream (Lightning creates the iterator before or after the epoch hook depending on
        # whether the run was resumed)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(ds), self.seed) if shuffle else None,
            collate_fn=ds.collate,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self):
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        return self._loader(self.val_set, False) if self.val_set is not None else []
