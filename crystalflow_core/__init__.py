"""CrystalFlow core: data, lattice maths, model, flows, sampling, relaxation, DFT hand-off, metrics."""

__version__ = "0.1.0"
