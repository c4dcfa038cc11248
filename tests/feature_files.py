"""Feature files in the real schema, written through the store's writer, for the probe tests."""

import numpy as np

from dcgan_features.extract.store import FileMeta
from dcgan_features.extract.writer import FeatureWriter


def write_features(path, splits, dataset="digits", dtype="float16", incomplete=(), trained_on="fashion-mnist"):
    """A feature file in the real schema via the store's writer: ``splits`` = {name: (X, labels)}.

    Splits named in ``incomplete`` are then marked unfinished, as an interrupted extraction leaves them.
    """
    dim = next(iter(splits.values()))[0].shape[1]
    meta = FileMeta(dataset, "dcgan32", 4, ("d1",), (dim,), 4, "running", "ab" * 32, dtype, trained_on=trained_on)
    w = FeatureWriter(path, meta, {s: (y, np.arange(len(y))) for s, (X, y) in splits.items()}).open()
    for s, (X, y) in splits.items():
        w.write(s, 0, np.asarray(X, dtype))
        w.complete(s)
    w.finish()
    w.close()
    if incomplete:
        import h5py

        with h5py.File(path, "r+") as f:
            for s in incomplete:
                f[s].attrs["complete"] = False
    return path

