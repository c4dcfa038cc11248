"""The small core every stage may import: the one user error, atomic writes, locks, devices, torchrun plumbing. Imports no other part of the package."""
