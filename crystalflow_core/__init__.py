"""CrystalFlow core: data, lattice maths, model, flows, sampling, relaxation, DFT hand-off, metrics."""

__version__ = "0.2.0"  # 0.2: per-item prior draws (samples no longer depend on batching or shards)
