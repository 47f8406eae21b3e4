"""Arithmetic precision of training and sampling: fp32, bf16, or auto (bf16 where the device computes
it natively: a CUDA GPU of compute capability 8.0 or newer, or a CPU with AMX or AVX512-BF16; fp32
elsewhere, where emulated bf16 would be slower than fp32).

bf16 means mixed precision: the weights, the optimiser and the ODE state stay fp32, the network's
matrix products run in bf16 under `torch.autocast`, and the network keeps the numerically delicate parts
in fp32 (see `fp32_region` in network.py).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "auto")
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
LIGHTNING = {"fp32": "32-true", "bf16": "bf16-mixed"}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The first processor's feature flags (empty where /proc/cpuinfo is not there)."""
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def device_type(device) -> str:
    return torch.device(device).type


def native_bf16(device, flags: set[str] | None = None) -> tuple[bool, str]:
    """(does `device` compute bf16 natively, why): CUDA by compute capability, CPUs by AMX/AVX512-BF16."""
    dev = torch.device(device)
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        name = torch.cuda.get_device_name(dev)
        if major >= 8:
            return True, f"{name} has compute capability {major}.{minor} (bf16 from 8.0)"
        return False, f"{name} has compute capability {major}.{minor} (bf16 needs 8.0)"
    if dev.type == "cpu":
        found = sorted(set(NATIVE_BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, f"the CPU has neither {' nor '.join(NATIVE_BF16_CPU_FLAGS)}"
    return False, f"device type {dev.type} is not known to compute bf16 natively"


def resolve(requested: str, device, what: str = "", flags: set[str] | None = None) -> str:
    """The precision to run at: `requested` when fp32 or bf16; for auto bf16 where `device` has it
    natively, else fp32. The choice and its reason are logged."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}: one of {', '.join(PRECISIONS)}")
    native, why = native_bf16(device, flags)
    label = f"{what}: " if what else ""
    if requested == "auto":
        chosen = "bf16" if native else "fp32"
        log.info("%sprecision auto -> %s on %s (%s)", label, chosen, device_type(device), why)
        return chosen
    if requested == "bf16" and not native:
        log.warning("%sprecision bf16 on %s, where %s: emulated, likely slower than fp32", label, device, why)
    else:
        log.info("%sprecision %s on %s", label, requested, device_type(device))
    return requested


def autocast(precision: str, device):
    """The context the network runs in: bf16 autocast for 'bf16', nothing for 'fp32'."""
    if precision == "bf16":
        return torch.autocast(device_type(device), dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"precision {precision!r} is not resolved (fp32 or bf16)")


def lightning_precision(precision: str) -> str:
    """Lightning's name of a resolved precision."""
    return LIGHTNING[precision]


def from_lightning(name: str) -> str:
    """This project's name of a Lightning precision (fp32, bf16, or Lightning's own name for others)."""
    return {lightning: ours for ours, lightning in LIGHTNING.items()}.get(name, name)
