"""``python -m dcgan_features.cli`` and ``torchrun -m dcgan_features.cli``."""

from . import main

main()
