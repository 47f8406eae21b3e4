"""No file a user downloads or shares runs code when it is loaded: crafted checkpoints, scaler files and
tensor caches are refused with one line naming the file and the class, and nothing of theirs runs; real
files (the fixtures, Lightning checkpoints, the authors' hydra layout) still load."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from crystalflow_core import safe_load
from crystalflow_core.crystals.data import load_cache
from crystalflow_core.errors import DataError
from crystalflow_core.generative.reference import CheckpointImportError, load_reference, read_scalers
from crystalflow_core.generative.sampling import FlowSampler
from crystalflow_core.generative.training import load_module


class _Payload:
    """Pickles as a call of `func(*args)`: what a malicious checkpoint holds."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "exec": (builtins.exec, (code,)),
        "eval": (builtins.eval, (code,)),
        "os.system": (os.system, (f"touch {marker}",)),
        "subprocess": (subprocess.call, (["touch", str(marker)],)),
    }


def _write(path, payload, protocol, container="torch"):
    obj = {"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"x": _Payload(*payload)}}
    if container == "torch":
        torch.save(obj, path, pickle_protocol=protocol)
    else:  # a bare pickle, not torch's zip container
        path.write_bytes(pickle.dumps(obj, protocol=protocol))


LOADERS = {
    "import-checkpoint": lambda p: load_reference(p),
    "sampler": lambda p: FlowSampler.from_checkpoint(p),
    "training": lambda p: load_module(p),
    "scalers": lambda p: read_scalers(p),
    "cache": lambda p: load_cache(p),
}


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("kind", ["exec", "eval", "os.system", "subprocess"])
def test_crafted_payloads_are_refused_and_run_nothing(tmp_path, protocol, kind):
    marker = tmp_path / "ran.txt"
    payload = _payloads(marker)[kind]
    path = tmp_path / f"evil_{protocol}.ckpt"
    _write(path, payload, protocol)
    for name, load in LOADERS.items():
        with pytest.raises((CheckpointImportError, DataError, RuntimeError, ValueError)) as err:
            load(path)
        msg = str(err.value)
        assert str(path) in msg and "refused" in msg and "\n" not in msg, (name, msg)
        assert not marker.exists(), f"{name} ran the payload"
    cls = {"exec": "builtins.exec", "eval": "builtins.eval", "subprocess": "subprocess.call"}.get(kind)
    if cls:
        assert cls in msg
    else:  # os.system pickles as posix.system (nt.system on Windows)
        assert ".system" in msg


def test_a_bare_pickle_is_refused_too(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pkl"
    _write(path, _payloads(marker)["os.system"], 4, container="pickle")
    with pytest.raises(CheckpointImportError, match="refused"):
        load_reference(path)
    assert not marker.exists()


def test_the_command_line_refuses_a_crafted_checkpoint_in_one_line(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.ckpt"
    _write(path, _payloads(marker)["exec"], 4)
    from test_reference import _tiny_cfg

    cfg = _tiny_cfg(tmp_path, "c", "csp", [])
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({k: cfg[k] for k in ("data_mirror", "results", "datasets", "runs")}))
    cmd = [sys.executable, "-m", "crystalflow_core.cli", "import-checkpoint", str(path), "--config", str(cfg_path)]
    p = subprocess.run(cmd + ["--run", "c", "--threads", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0 and not marker.exists()
    last = p.stderr.strip().splitlines()[-1]
    assert "refused" in last and "builtins.exec" in last and str(path) in last, p.stderr[-2000:]
    assert "Traceback" not in p.stderr


def test_lightning_and_hydra_checkpoints_of_the_authors_layout_load(tmp_path):
    """What a real authors' checkpoint holds beside the weights: hydra DictConfigs (interpolations, lists,
    None) and their type, callback states with tensors and numpy scalars, optimiser states."""
    from omegaconf import DictConfig, OmegaConf

    cfg = OmegaConf.create({"decoder": {"hidden_dim": "${hidden}", "x": [1, 2.0, "a", None, True]}, "hidden": 64})
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    ck = {
        "state_dict": {"decoder.w": torch.ones(3)},
        "hyper_parameters": {"decoder": cfg.decoder, "data": cfg, "lr": np.float64(1e-3)},
        "hyper_parameters_type": DictConfig,
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.5), "best_k": {"a": np.float32(1.0)}}},
        "optimizer_states": [opt.state_dict()],
        "epoch": 3,
    }
    path = tmp_path / "ref.ckpt"
    torch.save(ck, path)  # torch's (and Lightning's) pickle protocol, 2
    got = load_reference(path)
    assert got["hyper_parameters"]["decoder"]["hidden_dim"] == 64
    assert got["hyper_parameters"]["decoder"]["x"] == [1, 2.0, "a", None, True]
    assert torch.equal(got["state_dict"]["decoder.w"], torch.ones(3)) and got["epoch"] == 3
    assert safe_load.globals_named(path.read_bytes())  # the scan sees the classes ...
    torch.save(ck, path, pickle_protocol=4)  # ... in protocol 4 too, whose frames torch's weights-only reader refuses
    names = safe_load.globals_named(path.read_bytes())
    assert "omegaconf.dictconfig.DictConfig" in names and "collections.defaultdict" in names


def test_scaler_stand_ins_hold_data_only(tmp_path):
    """The authors' scaler objects come back as stand-ins of no behaviour: a __reduce__ of theirs is not called."""
    from test_reference import _write_scalers

    p = tmp_path / "prop_scalers.pt"
    _write_scalers(p, {"pressure": (40.0, 25.0)})
    extra = safe_load.stand_ins_for(p)
    assert [c.__qualname__ for c in extra] == ["StandardScalerTorch"] and "diffcsp" not in sys.modules
    obj = safe_load.load_path(p, "scaler file", extra=extra)
    sc = obj["pressure"]
    assert isinstance(sc, safe_load.StandIn) and float(sc.means) == 40.0
    assert [m for m in vars(type(sc)) if not m.startswith("__")] == []


def test_the_pipelines_own_files_load_with_weights_only(tmp_path):
    cache = {"fingerprint": {"source": "x", "conditions": ["pressure"]}, "ids": ["a"], "frac": torch.rand(2, 3)}
    torch.save(cache, tmp_path / "val.pt")
    got = load_cache(tmp_path / "val.pt")
    assert got["ids"] == ["a"] and torch.equal(got["frac"], cache["frac"])


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_matbench_phase_diagram_loads_and_a_crafted_one_is_refused(tmp_path, protocol):
    """The Matbench Discovery hull is a pickled PatchedPhaseDiagram: pymatgen's entry and structure classes
    load, a call of anything else is refused before it runs."""
    import gzip

    from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram
    from pymatgen.core import Lattice, Structure
    from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

    from crystalflow_core.materials.hull import MatbenchHull

    li2o = Structure(Lattice.cubic(4.6), ["Li", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]])
    entries = [ComputedEntry("Li", -1.9), ComputedEntry("O2", -9.8), ComputedStructureEntry(li2o, -12.0)]
    ppd = PatchedPhaseDiagram(entries + [ComputedEntry("Li2O", -14.3)])
    path = tmp_path / "ppd.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump(ppd, fh, protocol=protocol)
    hull = MatbenchHull(path)
    assert len(hull) == 4 and hull.elements == {"Li", "O"}
    marker = tmp_path / "ran.txt"
    with gzip.open(path, "wb") as fh:
        pickle.dump([ppd, _Payload(*_payloads(marker)["os.system"])], fh, protocol=protocol)
    with pytest.raises(safe_load.UnsafeFileError, match=r"ppd.pkl.gz: refused: .* holds posix.system"):
        MatbenchHull(path)
    assert not marker.exists()
