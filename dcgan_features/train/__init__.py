"""Training: the loop, one step, the CUDA-graph step, its config, the run state and the background checkpoint writer."""
