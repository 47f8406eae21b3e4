"""CrystalFlow core: flow-matching crystal generation (generative), crystals and data (crystals), materials
physics (materials), evaluation, the workflow's stages and the command line."""

__version__ = "0.5.0"  # 0.5: the energy scale, safe loading, prediction as a search, METRe and cRMSE
