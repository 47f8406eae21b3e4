"""Interatomic potentials and the energy scale of what they predict.

An energy meets a hull only on the hull's scale. Matbench Discovery's phase diagram, the local hull's
formation energies and the MP elemental references are all on the MP2020-corrected scale (GGA/GGA+U
mixing, anion and U corrections applied). An energy source declares its scale:

* ``mp2020``: already corrected. CHGNet was trained on MPtrj, whose labels are MP2020-corrected
  energies, so its predictions go onto the hull as they are; correcting them again shifts every
  compound with an anion (O, F, Cl, S, N, H ...) or a GGA+U metal by tenths of an eV/atom.
* ``raw``: uncorrected GGA/GGA+U total energies as VASP reports them under MP's settings (DFT read
  back from VASP, a potential trained on raw energies such as SevenNet-0): MP2020 processing before the
  hull. SevenNet-0 gives rock-salt NaCl -3.383 eV/atom where CHGNet gives -3.666 and MgO -5.974 against
  -6.310: the gaps are MP2020's Cl and O corrections (diamond Si, which MP2020 leaves alone, -5.401 and
  -5.312), so the two compare only through their declared scales.

Torch-free: the table is read where records are made and where they meet a hull.
"""

from __future__ import annotations

from dataclasses import dataclass

from crystalflow_core.extras import POTENTIAL_PACKAGES

MP2020 = "mp2020"
RAW = "raw"
ENERGY_SCALES = {
    MP2020: "MP2020-corrected energies (the scale of MP's hull): onto the hull as they are",
    RAW: "raw GGA/GGA+U energies (VASP under MP's settings): MP2020 corrections before the hull",
}


@dataclass(frozen=True)
class Potential:
    """A universal potential: its name in records and configs, the scale of its energies, its training set,
    the Python package that carries it (its version goes into every record) and the model it loads."""

    name: str
    energy_scale: str
    trained_on: str
    package: str
    model: str

    def __post_init__(self):
        check_scale(self.energy_scale, f"potential {self.name}")


def check_scale(scale: str, what: str) -> str:
    if scale not in ENERGY_SCALES:
        raise ValueError(f"{what}: energy scale {scale!r} is not one of {', '.join(ENERGY_SCALES)}")
    return scale


POTENTIALS = {
    "chgnet": Potential(
        "chgnet", MP2020, "MPtrj (labels: MP2020-corrected GGA/GGA+U energies)", POTENTIAL_PACKAGES["chgnet"], "0.3.0"
    ),
    "sevennet": Potential(
        "sevennet", RAW, "MPtrj (labels: uncorrected GGA/GGA+U energies)", POTENTIAL_PACKAGES["sevennet"], "7net-0"
    ),
}


def potential(name: str) -> Potential:
    try:
        return POTENTIALS[name]
    except KeyError:
        raise ValueError(f"unknown potential {name!r}; known: {', '.join(POTENTIALS)}") from None


def record_potential(rec: dict) -> Potential:
    """The potential a relaxation record was made with (records of versions before 0.5 name none: CHGNet,
    the only relaxer then)."""
    return potential(rec.get("potential", "chgnet"))


def record_energy_scale(rec: dict) -> str:
    """The energy scale of a relaxation record: its own where it states one, else its potential's."""
    return check_scale(rec.get("energy_scale") or record_potential(rec).energy_scale, f"record {rec.get('id')!r}")
