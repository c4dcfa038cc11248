"""Feature extraction: sources (our D, pixels, K-means, any torch model), hooks and pooling, the resumable writer, the store reader, torchrun parts."""
