"""fastmlp: small multilayer perceptrons (classifiers and regressors) trained by compiled,
fused Numba kernels."""

from ._version import __version__
from .classifier import FastMLP
from .persistence import load
from .regressor import FastMLPRegressor

__all__ = ["FastMLP", "FastMLPRegressor", "__version__", "load"]
