"""CrystalFlow core: flow-matching crystal generation (generative), crystals and data (crystals), materials
physics (materials), evaluation, the workflow's stages and the command line."""

__version__ = "0.4.0"  # 0.4: bf16 where the hardware has it (train.precision, sample.precision)
