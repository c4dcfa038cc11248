"""Looking at the networks: samples, walks, vector arithmetic, and the paper's section-6 internals."""
