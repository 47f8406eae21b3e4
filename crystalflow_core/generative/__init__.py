"""The generative model: the network, flow-matching paths and loss, training, sampling, and the
import of the authors' checkpoints."""
