"""fastmlp: small multilayer-perceptron classifiers trained by compiled, fused Numba kernels."""

from ._version import __version__
from .classifier import FastMLP
from .persistence import load

__all__ = ["FastMLP", "__version__", "load"]
