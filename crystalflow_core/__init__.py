"""CrystalFlow core: flow-matching crystal generation (generative), crystals and data (crystals), materials
physics (materials), evaluation, the workflow's stages and the command line."""

__version__ = "0.10.0"  # 0.10: DNG baselines, refinements kept, twins carried across a search
