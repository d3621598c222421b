"""fastmlp: small multilayer perceptrons (classifiers and regressors) trained by compiled,
fused Numba kernels.

``FastMLP`` and ``FastMLPRegressor`` are the per-sample-first estimators with fastmlp's own
defaults; ``MLPClassifier`` and ``MLPRegressor`` are scikit-learn's classes with compiled
loops (imported on first use: they import scikit-learn, which ``import fastmlp`` does not).
"""

from ._version import __version__
from .classifier import FastMLP
from .persistence import load
from .regressor import FastMLPRegressor

__all__ = ["FastMLP", "FastMLPRegressor", "MLPClassifier", "MLPRegressor", "__version__", "load"]

_DROP_INS = ("MLPClassifier", "MLPRegressor")


def __getattr__(name: str):
    if name in _DROP_INS:
        from . import sklearn_compat
        return getattr(sklearn_compat, name)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_DROP_INS])
