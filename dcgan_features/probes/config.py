"""The names and defaults of the probing stage, importable without torch (the CLI reads them).

>>> ProbeConfig().probes, PROBE_NAMES, BACKENDS
(('svm', 'logreg'), ('svm', 'logreg', 'knn'), ('torch', 'sklearn'))
"""

from __future__ import annotations

from dataclasses import dataclass

LINEAR_PROBES = ("svm", "logreg")  # the probes with a C, fitted by either backend
PROBE_NAMES = LINEAR_PROBES + ("knn",)  # every probe a protocol can run
BACKENDS = ("torch", "sklearn")  # torch: our solver; sklearn: LinearSVC / LogisticRegression


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of one ``probe`` run besides the protocol's own numbers (:class:`.protocols.ProtocolConfig`)."""

    probes: tuple[str, ...] = LINEAR_PROBES
    seed: int | None = None  # seeds the validation split and the label draws; None: the protocol's
    device: str = "auto"
    backend: str = "torch"
    standardize: bool = False
    postprocess: bool = True  # apply what the feature file's recipe records (kmeans:K: Coates's standardisation)
    out: str = "runs/probes"  # one JSON per record and probes.csv (runs/: ignored by git, like every run)
    threads: int | None = None  # CPU threads; None: core.threads' policy or OMP_NUM_THREADS
