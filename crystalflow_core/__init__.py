"""CrystalFlow core: flow-matching crystal generation (generative), crystals and data (crystals), materials
physics (materials), evaluation, the workflow's stages and the command line."""

__version__ = "0.8.0"  # 0.8: the symmetry-aware model, generators beside the model, prediction split by concern
