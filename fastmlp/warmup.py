"""Compiling the kernels of the common configurations ahead of first use (``fastmlp compile``).

Numba compiles a kernel the first time a configuration trains and keeps it in a disk cache;
a fresh install, a new Numba or a new fastmlp pays those seconds in its first fits. Warming
up trains a tiny model of each common configuration, in worker processes on every core, so
that later fits, in any process using the same cache, load the kernels instead.
"""

import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from multiprocessing.process import BaseProcess

import numpy as np

# FastMLP parameters of the configurations users train most; each compiles its own kernels
# (the optimizer, the penalty, the network's depth and the batch path are compile-time
# choices; the hidden activation is not). Every one runs in float64 and float32.
COMMON_CONFIGURATIONS = (
    {},
    {"momentum": 0.9, "alpha": 1e-4},
    {"hidden_layer_sizes": (16, 16)},
    {"batch_size": 32},
    {"batch_size": 32, "momentum": 0.9, "alpha": 1e-4},
    {"solver": "lbfgs"},
    {"solver": "adam"},
    # scikit-learn's defaults (MLPClassifier and MLPRegressor train on the same kernels).
    {"solver": "adam", "batch_size": 200, "alpha": 1e-4},
)
# Classifiers' targets, and real values (FastMLPRegressor's squared error).
TARGETS = ("binary", "multiclass", "continuous")
DTYPES = ("float64", "float32")
# Enough rows for a batch of 32 to take its own (BLAS) path.
ROWS = 64


def configurations() -> list[dict]:
    """Every configuration ``compile_kernels`` warms up, as keyword arguments of
    ``warm_up_one``."""
    return [dict(params=params, target=target, dtype=dtype)
            for dtype in DTYPES for params in COMMON_CONFIGURATIONS for target in TARGETS]


def warm_up_one(params: dict, target: str, dtype: str) -> float:
    """Train and predict a tiny model of one configuration; returns the seconds it took
    (compiling, or loading from the disk cache, its kernels)."""
    from .classifier import FastMLP
    from .regressor import FastMLPRegressor

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(ROWS, 4)).astype(dtype)
    if target == "continuous":
        estimator, y = FastMLPRegressor, X.sum(axis=1)
    else:
        estimator, y = FastMLP, np.arange(ROWS) % (2 if target == "binary" else 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # what two epochs on random rows learn is not news
        # Twice: the second fit of a configuration in a process compiles its many-epochs
        # kernel (kernels.dispatch.sgd_epochs_due).
        for _ in range(2):
            model = estimator(**{"hidden_layer_sizes": (8,), "max_iter": 2, **params})
            model.fit(X, y)
        model.predict(X)
    return time.perf_counter() - start


def _warm_up_kwargs(kwargs: dict) -> float:
    return warm_up_one(**kwargs)


def compile_kernels(jobs: int | None = None, report=None) -> float:
    """Warm up every configuration of ``configurations()`` in ``jobs`` worker processes
    (default: one per core); ``report(configuration, seconds)`` is called as each finishes.
    Returns the wall-clock seconds. Workers are fresh interpreters (spawned): a forked copy
    of a process that already runs Numba's compiler is not safe."""
    jobs = jobs or os.cpu_count() or 1
    start = time.perf_counter()
    todo = configurations()
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        for configuration, seconds in zip(todo, pool.map(_warm_up_kwargs, todo)):
            if report is not None:
                report(configuration, seconds)
    return time.perf_counter() - start


def compile_prediction_aside(params: dict, X: np.ndarray, y: np.ndarray) -> BaseProcess | None:
    """Start compiling the prediction kernel of ``FastMLP(**params)`` fitted on ``(X, y)`` in
    a process of its own, so that it compiles on another core while this process compiles
    the training kernels (``fastmlp train``'s first run: about a third of its compiling).
    The kernel cache's locks make this process's first prediction wait for that compile and
    load its result. Returns the process, or None where it would not help: one core, or the
    kernel compiled or cached already."""
    from .kernels.dispatch import prediction_compiled

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2 or prediction_compiled(X.dtype):
        return None
    process = get_context("spawn").Process(target=_compile_prediction, args=(params, X, y),
                                           daemon=True)
    process.start()
    return process


def _compile_prediction(params: dict, X: np.ndarray, y: np.ndarray) -> None:
    """compile_prediction_aside's process: trains one epoch with the NumPy backend (which
    compiles nothing), then predicts with the compiled one. Silent whatever happens: the
    parent compiles anything this leaves undone, and reports its own errors."""
    from .classifier import FastMLP

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = FastMLP(**{**params, "max_iter": 1, "early_stopping": False,
                               "verbose": False, "backend": "numpy"}).fit(X, y)
        model.set_params(backend="numba").predict_proba(X)
    except BaseException:   # noqa: BLE001 (a Ctrl-C reaches this process too)
        pass
