"""CrystalFlow core: flow-matching crystal generation (generative), crystals and data (crystals), materials
physics (materials), evaluation, the workflow's stages and the command line."""

__version__ = "0.11.0"  # 0.11: one word for each meaning of "targets" (build, condition_values, searches)
