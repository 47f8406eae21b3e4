"""CrystalFlow core: flow-matching crystal generation (generative), crystals and data (crystals), materials
physics (materials), evaluation, the workflow's stages and the command line."""

__version__ = "0.9.0"  # 0.9: prediction relaxation throughput (abandon, twins, PreconLBFGS), lead groups
