"""Shapes, synthetic data, estimators and timing helpers shared by the benchmark modules.

Nothing here is named like an asv benchmark (``time_``, ``track_``, ``peakmem_`` ...), so asv
discovers no benchmarks in this module.
"""

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from fastmlp import FastMLP
from fastmlp.exceptions import ConvergenceWarning

SEED = 0
LEARNING_RATE = 0.01
DTYPES = ["float64", "float32"]
BATCH_SIZES = [1, 32, "full"]


@dataclass(frozen=True)
class Shape:
    """A network ``n_features - hidden... - 1`` and the sample counts used to time it.

    fastmlp's counts make one epoch a few milliseconds, so that the fixed part of its per-call
    overhead (tens of microseconds: ``training.CallOverhead``) is a small part of it; the checks
    of X and the shuffle add ~20 ns a row, which belong to the throughput a user sees. The slow
    competitors get fewer samples: their throughput is compared in samples/s, which does not
    depend on the count.
    """

    n_features: int
    hidden: tuple
    n_samples: int
    n_reference: int  # fastmlp's NumPy reference backend
    n_sklearn: int


SHAPES = {
    "3-5-1": Shape(3, (5,), 20_000, 1_000, 500),
    "30-16-1": Shape(30, (16,), 20_000, 1_000, 500),
    "100-64-1": Shape(100, (64,), 4_000, 300, 300),
    "784-128-1": Shape(784, (128,), 1_000, 100, 100),
    "100-64-32-1": Shape(100, (64, 32), 4_000, 300, 300),
}
SHAPE_NAMES = list(SHAPES)


def quiet_warnings() -> None:
    """Benchmarks stop after a fixed number of epochs on purpose: silence the warning."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    try:
        from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
    except ImportError:
        return
    warnings.simplefilter("ignore", SklearnConvergenceWarning)


def make_data(n_samples: int, n_features: int, dtype="float64"):
    """Standard-normal features and labels from a noisy planted linear rule (fixed seed).

    The float64 data is drawn first and cast, so float32 and float64 runs see the same values.
    """
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((n_samples, n_features))
    w = rng.standard_normal(n_features)
    noise = rng.standard_normal(n_samples) * 0.3 * math.sqrt(n_features)
    y = (X @ w + noise > 0).astype(np.int64)
    return X.astype(dtype, copy=False), y


def make_large_data(n_samples: int, n_features: int):
    """A large float64 X drawn in place (no temporary as big as X, so the process's peak
    memory before a benchmark is X itself) and a label per row."""
    rng = np.random.default_rng(SEED)
    X = np.empty((n_samples, n_features))
    rng.standard_normal(out=X)
    y = (X[:, 0] > 0).astype(np.int64)
    return X, y


def fastmlp_model(shape: Shape, **params) -> FastMLP:
    """An unfitted FastMLP for ``shape`` with the suite's fixed settings."""
    settings = dict(learning_rate_init=LEARNING_RATE, max_iter=1, tol=0, shuffle=True,
                    random_state=SEED)
    settings.update(params)
    return FastMLP(hidden_layer_sizes=shape.hidden, **settings)


def sklearn_model(shape: Shape):
    """scikit-learn's MLPClassifier configured as the same per-sample SGD as fastmlp."""
    from sklearn.neural_network import MLPClassifier
    return MLPClassifier(hidden_layer_sizes=shape.hidden, solver="sgd", batch_size=1,
                         momentum=0, alpha=0, learning_rate="constant",
                         learning_rate_init=LEARNING_RATE, shuffle=True, max_iter=1, tol=0,
                         random_state=SEED)


def warm_up(dtype="float64", batch_size=1, backend="numba") -> FastMLP:
    """Fit once on tiny data of this dtype and batch mode, so compiling (or loading the
    cached) training kernels happens here and never inside a timed call. Returns the model:
    prediction benchmarks warm up the forward kernel with it."""
    X, y = make_data(10, 3, dtype)
    return FastMLP(hidden_layer_sizes=(5,), max_iter=1, tol=0, batch_size=batch_size,
                   backend=backend, random_state=SEED).fit(X, y)


@dataclass
class Epochs:
    """An estimator primed on ``(X, y)``: each ``run()`` is one more epoch (``partial_fit``)
    on the same data, so nothing but the epoch itself (and the per-call checks) is timed."""

    model: object
    X: np.ndarray
    y: np.ndarray

    @classmethod
    def primed(cls, model, X, y) -> "Epochs":
        model.partial_fit(X, y, classes=np.unique(y))
        return cls(model, X, y)

    def run(self) -> None:
        self.model.partial_fit(self.X, self.y)


def fastmlp_epochs(shape: Shape, dtype="float64", n_samples=None, **params) -> Epochs:
    X, y = make_data(n_samples or shape.n_samples, shape.n_features, dtype)
    return Epochs.primed(fastmlp_model(shape, **params), X, y)


def sklearn_epochs(shape: Shape) -> Epochs:
    X, y = make_data(shape.n_sklearn, shape.n_features)
    return Epochs.primed(sklearn_model(shape), X, y)


def best_seconds(functions, repeats: int, min_seconds: float = 0.5,
                 max_repeats: int = 50) -> list:
    """Best wall time of each function, the functions interleaved within each round so that a
    burst of load from other processes hits all of them alike. Runs at least ``repeats``
    rounds and keeps going (up to ``max_repeats``) until ``min_seconds`` have passed: on a
    shared machine the best of more short calls is the steadier figure."""
    best = [math.inf] * len(functions)
    started = time.perf_counter()
    rounds = 0
    while rounds < repeats or (time.perf_counter() - started < min_seconds
                               and rounds < max_repeats):
        for k, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[k] = min(best[k], time.perf_counter() - start)
        rounds += 1
    return best


def microseconds_per_call(function, calls: int = 200, repeats: int = 10) -> float:
    """Mean microseconds per call of ``function`` over ``calls`` calls in a row, the best of
    at least ``repeats`` such runs (see ``best_seconds``)."""
    def run():
        for _ in range(calls):
            function()
    return best_seconds([run], repeats)[0] / calls * 1e6


def samples_per_second(epochs_list, repeats: int = 5) -> list:
    """Training throughput of each ``Epochs``, measured interleaved (see ``best_seconds``)."""
    seconds = best_seconds([epochs.run for epochs in epochs_list], repeats)
    return [len(epochs.y) / s for epochs, s in zip(epochs_list, seconds)]
