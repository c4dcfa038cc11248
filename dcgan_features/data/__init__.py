"""Datasets: the registry (one ``DatasetSpec`` per dataset), readers of each released format, the restricted unpickler."""
