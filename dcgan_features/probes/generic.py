"""The protocol of any labelled dataset: the registered one (:data:`.protocols.PROTOCOLS`), or one
built from the feature file for a dataset without one (a ``folder``, ``synthetic``, ...).

The generic protocol: the classes are the feature file's (its ``/_dataset`` class names, or
0..max label); a stratified 10% of each class's train rows (at most 10000, at least one per
class, seeded) is held out to choose C on the registered wide grid, widened at its edge as
everywhere; the ``all`` column refits on every labelled train row and scores test; a few-labels
column (``<n>-per-class``, 10 seeded draws) runs when ``--labels-per-class`` asks for one.

>>> labels = {"train": np.array([0, 0, 1, 1, 2, 2]), "test": np.array([0, 2])}
>>> cfg = protocol_for("folder", labels.get, ["a", "b", "c"])
>>> cfg.kind, cfg.n_classes, cfg.validation, cfg.val_fraction, cfg.labels_per_class
('generic', 3, 'stratified', 0.1, None)
>>> protocol_for("cifar10", labels.get).kind
'registered'
"""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError
from typing import Callable

from .protocols import PROTOCOLS, ProtocolConfig, get_protocol

GENERIC_VAL_FRACTION = 0.1
GENERIC_VAL_MAX = 10000
GENERIC_DRAWS = 10


def generic_protocol(name: str, y_train: np.ndarray, y_test: np.ndarray, classes=()) -> ProtocolConfig:
    """The generic protocol of a dataset whose train and test labels (and class names) are given."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    labelled = y_train[y_train >= 0]
    if labelled.size == 0:
        raise UserError(f"the {name} train split has no labels: a probe needs labelled rows (a folder needs "
                        f"DIR/<class>/* subfolders)")
    K = len(classes) if classes else int(max(labelled.max(), y_test.max(initial=0))) + 1
    return ProtocolConfig(name, val_size=GENERIC_VAL_MAX, val_fraction=GENERIC_VAL_FRACTION, validation="stratified",
                          n_classes=K, classes=tuple(classes), draws=GENERIC_DRAWS, kind="generic")


def protocol_for(dataset: str, labels: Callable[[str], np.ndarray], classes=(), **overrides) -> ProtocolConfig:
    """``dataset``'s registered protocol, or the generic one built from ``labels("train")`` and
    ``labels("test")`` (only read then); then ``overrides`` (``None`` ignored), checked as
    :func:`.protocols.get_protocol` checks them."""
    if dataset in PROTOCOLS:
        cfg = get_protocol(dataset, **overrides)
        named = tuple(classes) if classes and len(classes) == cfg.n_classes else cfg.classes
        return get_protocol(dataset, base=cfg, classes=named or None)
    base = generic_protocol(dataset, labels("train"), labels("test"), classes)
    return get_protocol(dataset, base=base, **overrides)
