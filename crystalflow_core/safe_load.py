"""Reading torch files (checkpoints, the authors' scalers, the pipeline's tensor caches) without running code.

Every torch file goes through `load` here: ``torch.load(weights_only=True)``, which rebuilds tensors and
plain containers and refuses every other class, plus an allow-list of the few classes real files hold:

* this project's checkpoints and caches: tensors, dicts, lists, numbers, strings (nothing more);
* Lightning checkpoints: ``collections.defaultdict``, numpy scalars and dtypes in callback states, the
  hyper-parameters' type (``hparams_type``: OmegaConf's ``DictConfig``);
* the authors' checkpoints (hydra): OmegaConf's ``DictConfig``/``ListConfig``, their metadata and nodes,
  ``typing.Any`` and the builtin types they name as ``ref_type``/``object_type``;
* the authors' condition scalers (``prop_scalers.pt``): objects of their package's ``*Scaler*`` classes,
  rebuilt as data-only stand-ins (`stand_ins_for`), never their class.

Each entry only builds data (a container, a node of a config, a number from its bytes); functions that
act (``exec``, ``os.system``, ``subprocess.Popen``, ``getattr``, ...) are never on it. Anything else stops
with one line naming the file and the class (`UnsafeFileError`), before any of the file's code could run.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import importlib
import io
import pickle
import pickletools
import re
import zipfile
from pathlib import Path

import torch

from crystalflow_core.errors import UnsafeFileError  # noqa: F401 - raised here, defined with the others

# (module, name) of every class beyond torch's own weights-only set that a real file may hold
ALLOWED = (
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "int"),
    ("builtins", "float"),
    ("builtins", "complex"),
    ("builtins", "str"),
    ("builtins", "bytes"),
    ("builtins", "bool"),
    ("builtins", "object"),
    ("collections", "defaultdict"),
    ("collections", "OrderedDict"),
    ("typing", "Any"),
    ("omegaconf.dictconfig", "DictConfig"),
    ("omegaconf.listconfig", "ListConfig"),
    ("omegaconf.base", "ContainerMetadata"),
    ("omegaconf.base", "Metadata"),
    ("omegaconf.nodes", "AnyNode"),
    ("omegaconf.nodes", "StringNode"),
    ("omegaconf.nodes", "IntegerNode"),
    ("omegaconf.nodes", "FloatNode"),
    ("omegaconf.nodes", "BooleanNode"),
    ("omegaconf.nodes", "BytesNode"),
    ("omegaconf.nodes", "PathNode"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.dtypes", "Float64DType"),
    ("numpy.dtypes", "Float32DType"),
    ("numpy.dtypes", "Int64DType"),
    ("numpy.dtypes", "Int32DType"),
    ("numpy.dtypes", "BoolDType"),
)


def _resolve(module: str, name: str):
    """The allowed class, or None where its package is not installed (a file that names it fails then)."""
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return obj


def allowed_globals() -> list:
    out = []
    for module, name in ALLOWED:
        obj = _resolve(module, name)
        if obj is None:
            continue
        if f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}" == f"{module}.{name}":
            out.append(obj)
        else:  # known under another name (numpy's scalar, typing.Any): allowed under the name files use
            out.append((obj, f"{module}.{name}"))
    return out


class StandIn:
    """A data-only object: the state a file gives it lands in its __dict__; it has no behaviour."""

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slots state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise UnsafeFileError(f"{type(self).__qualname__}: state is a {type(state).__name__}, not a dict")
        self.__dict__.update(state)


KNOWN_SCALERS = ("diffcsp.common.data_utils.StandardScalerTorch", "diffcsp.common.data_utils.StandardScaler")
_SCALER = re.compile(r"^[A-Za-z_][\w.]*\.\w*Scaler\w*$")


def stand_ins_for(path) -> list:
    """Data-only stand-ins for the scaler classes of the authors' package that `path` names
    (diffcsp.common.data_utils.StandardScalerTorch and the like): their means and stds come back, their code never
    runs (it is not even imported)."""
    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    try:
        names = find(str(path)) if find else KNOWN_SCALERS
    except Exception:  # not a torch zip file: torch.load says what is wrong
        names = []
    out = []
    for full in names:
        if _SCALER.match(full):
            module, _, name = full.rpartition(".")
            out.append(type(name, (StandIn,), {"__module__": module, "__qualname__": name}))
    return out


@contextlib.contextmanager
def _allowing(extra: list):
    allow = allowed_globals() + list(extra)
    if hasattr(torch.serialization, "safe_globals"):
        with torch.serialization.safe_globals(allow):
            yield
    else:  # torch 2.4: no context manager, the allow-list is process-wide
        torch.serialization.add_safe_globals(allow)
        yield


def _pickle_bytes(source) -> bytes:
    """The pickle stream of a torch file (the data.pkl of its zip container, or the file itself)."""
    raw = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(name) if name else b""
    return raw


def _python3_name(module: str, name: str) -> str:
    """Protocol-2 pickles name Python 2 modules (__builtin__.exec, commands.call): the name Python 3 loads."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def globals_named(source) -> list[str]:
    """Every module.name a pickle stream names (GLOBAL, STACK_GLOBAL), read statically: nothing runs."""
    out, pushed, memo = [], [], {}  # pushed: the recent pushes (a string or None for anything else)
    try:
        for op, arg, _ in pickletools.genops(_pickle_bytes(source)):
            if op.name == "GLOBAL":
                out.append(_python3_name(*str(arg).split(" ", 1)))
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                pushed.append(arg)
            elif op.name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[arg] = pushed[-1] if pushed else None
            elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                pushed.append(memo.get(arg))
            elif op.name == "STACK_GLOBAL":
                if len(pushed) >= 2 and isinstance(pushed[-2], str) and isinstance(pushed[-1], str):
                    out.append(_python3_name(pushed[-2], pushed[-1]))
                pushed.append(None)
            elif op.name != "FRAME":
                pushed.append(None)
    except Exception:  # a truncated or foreign stream: what was read so far
        pass
    return out


def _refused(source, extra: list) -> str | None:
    """The first class the file names outside torch's own set, the allow-list and `extra`."""
    try:
        from torch import _weights_only_unpickler as w

        torch_own = set(w._get_allowed_globals())
    except Exception:  # a private part of torch: without it, torch's own classes go by their module
        torch_own = None
    safe = {f"{m}.{n}" for m, n in ALLOWED} | {f"{c.__module__}.{c.__qualname__}" for c in extra}
    for name in globals_named(source):
        ours = name in safe or (name in torch_own if torch_own is not None else name.startswith("torch."))
        if not ours:
            return name
    return None


def load(source, what: str, map_location="cpu", extra: list | tuple = (), name: str | None = None):
    """torch.load of `source` (a path or bytes) with weights_only=True and the allow-list (plus `extra`
    classes); UnsafeFileError naming the file and the class for anything else. Other read errors pass
    through (callers say what a corrupt file means for them)."""
    label = name or str(source)
    data = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with _allowing(list(extra)):
            return torch.load(data, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        cls = _refused(source, list(extra))
        if cls is None:
            raise
        raise UnsafeFileError(
            f"{label}: refused: this {what} holds {cls}, which is not among the classes such files may hold "
            "(loading it could run code; crystalflow_core/safe_load.py lists what is allowed)"
        ) from None


def load_path(path, what: str, map_location="cpu", extra: list | tuple = ()):
    """`load` of a file by path."""
    path = Path(path)
    return load(path, what, map_location=map_location, extra=extra, name=str(path))


@contextlib.contextmanager
def allowing_checkpoint_classes():
    """The allow-list around a third-party loader that calls torch.load(weights_only=True) itself
    (Lightning's Trainer resuming from last.ckpt, load_from_checkpoint)."""
    with _allowing([]):
        yield


# ----------------------------------------------------------------------------- plain pickles
class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the named globals and the classes (never functions, never dotted
    attribute paths) of the named modules."""

    def __init__(self, fh, label: str, what: str, names: set, class_modules: set):
        super().__init__(fh)
        self.label, self.what, self.names, self.class_modules = label, what, names, class_modules

    def find_class(self, module, name):
        full = _python3_name(module, name)
        module = full.rpartition(".")[0]
        if "." not in name:
            if full in self.names:
                return super().find_class(module, name)
            if module in self.class_modules:
                obj = super().find_class(module, name)
                if isinstance(obj, type):
                    return obj
        raise UnsafeFileError(
            f"{self.label}: refused: this {self.what} holds {full}, which is not among the classes such files "
            "may hold (loading it could run code)"
        )


def load_pickle(fh, label: str, what: str, names: set, class_modules: set):
    """pickle.load of an open binary file that may name only `names` (module.name) and the classes of
    `class_modules`; UnsafeFileError naming the file and the global for anything else."""
    return _RestrictedUnpickler(fh, label, what, set(names), set(class_modules)).load()
