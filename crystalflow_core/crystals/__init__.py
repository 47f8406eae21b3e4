"""Crystals and data: elements and their encoding, the lattice parametrisation, crystal helpers,
dataset parsing and caches."""
