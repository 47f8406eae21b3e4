"""CrystalFlow core: flow-matching crystal generation (generative), crystals and data (crystals), materials
physics (materials), evaluation, the workflow's stages and the command line."""

__version__ = "0.7.0"  # 0.7: pools that cannot hang, strict inputs, the house split by concern, legible pictures
