"""CrystalFlow core: flow-matching crystal generation (generative), crystals and data (crystals), materials
physics (materials), evaluation, the workflow's stages and the command line."""

__version__ = "0.6.0"  # 0.6: the stage table, torch-free DAG, Snakemake report; SevenNet-0 and committees
