"""``dcgan-features reproduce PROTOCOL``: one of the paper's experiments, from model to table.

One command runs the chain (model, features of the trained D and of a random D, probes of
those and of raw pixels) into one folder, skipping every stage whose output is complete
and was made from the same inputs and settings, resuming an interrupted one, and writes
``results.csv`` and ``report.html``. ``config`` holds the settings and the per-protocol
defaults, ``stages`` the skip/resume machinery, ``chain`` the stages themselves, ``runner``
runs them and writes the table, ``report`` the page and ``paper`` the paper's figures.

    from dcgan_features.reproduce import ReproduceConfig, run
    run(ReproduceConfig("digits", out="runs/digits", epochs=1, width=4))
"""

from .chain import Chain
from .config import SETUPS, ReproduceConfig
from .runner import dry_run, run

__all__ = ["Chain", "ReproduceConfig", "SETUPS", "dry_run", "run"]
