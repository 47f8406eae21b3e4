"""Materials physics: CHGNet relaxation, convex hulls, DFT inputs and outputs, ion transport, and
structure prediction for given compositions."""
