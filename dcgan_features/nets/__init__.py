"""The networks: the architecture registry (G/D builders and feature metadata), BatchNorm helpers, checkpoints, the authors' Theano import."""
