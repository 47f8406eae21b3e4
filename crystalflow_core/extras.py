"""Optional packages: what a configuration needs installed beyond the base install, checked when the config
is validated (before any job), so that a missing package is one line with its install command instead of a
worker that dies at start-up. Imports nothing heavy: `find_spec` only looks for the package."""

from __future__ import annotations

from importlib.util import find_spec

from crystalflow_core.errors import ConfigError

# the Python package of each potential a config can name (materials.potentials reads it from here)
POTENTIAL_PACKAGES = {"chgnet": "chgnet", "sevennet": "sevenn"}
# the project's extra that installs an optional package
EXTRA_OF = {"sevenn": "sevenn"}


def installed(package: str) -> bool:
    return find_spec(package) is not None


def require(package: str, where: str, what: str) -> None:
    """ConfigError naming `where`, `what` needs and the install command, when `package` is missing."""
    if not installed(package):
        extra = EXTRA_OF.get(package)
        how = f"pip install -e '.[{extra}]'" if extra else f"pip install {package}"
        raise ConfigError(f"config error at '{where}': {what} needs the {package} package: {how}")


def _relax_potentials(relax: dict) -> list[str]:
    return [relax["model"], *relax["committee"]]


def check_config_extras(cfg: dict) -> None:
    """Every potential a run or prediction job names has its package installed."""
    sections = [(f"runs/{n}/relax", r["relax"]) for n, r in cfg["runs"].items()]
    sections += [(f"predict/{n}/relax", j["relax"]) for n, j in cfg["predict"].items()]
    for where, relax in sections:
        for name in _relax_potentials(relax):
            require(POTENTIAL_PACKAGES[name], where, f"relax.model/committee {name}")
