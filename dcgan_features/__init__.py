"""dcgan-features."""
__version__ = "0.1.0"
