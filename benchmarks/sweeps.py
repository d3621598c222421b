"""A hyperparameter sweep on every core: GridSearchCV over 16 candidates x 3 folds of 30-16-1
per-sample FastMLP networks, on one core and through joblib's thread and process backends
with one job per core. Read the ratio of the parallel times to the sequential one.

Two sizes of fit: 10 epochs each (a fit of about 5 ms, where the Python around the kernels
weighs most) and to convergence (FastMLP's stopping rule at its default tol, up to 200
epochs)."""

import os

import joblib
import numpy as np
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

from ._shared import SEED, SHAPES, fastmlp_model, quiet_warnings

GRID = {"learning_rate_init": [1e-3, 3e-3, 1e-2, 3e-2], "alpha": [0.0, 1e-4, 1e-3, 1e-2]}
N_SAMPLES = 6000
EPOCHS = 10


FITS = {"10 epochs": dict(max_iter=EPOCHS), "to convergence": dict(max_iter=200, tol=1e-4)}


class GridSearch:
    params = [["sequential", "threading", "loky"], list(FITS)]
    param_names = ["backend", "fit"]
    timeout = 600
    number = 1
    repeat = (3, 7, 60.0)

    def setup(self, backend, fit):
        quiet_warnings()
        rng = np.random.default_rng(SEED)
        self.X = rng.normal(size=(N_SAMPLES, 30))
        self.y = (self.X[:, :3].sum(axis=1) + 0.5 * rng.normal(size=N_SAMPLES) > 0).astype(int)
        self.model = fastmlp_model(SHAPES["30-16-1"], **FITS[fit])
        self.n_jobs = 1 if backend == "sequential" else os.cpu_count()
        self.time_grid_search(backend, fit)     # kernels loaded, the process pool started

    def time_grid_search(self, backend, fit):
        # BLAS to one thread: the products of a fit are small, and BLAS threads would compete
        # with the sweep's jobs for the cores (the loky backend limits its workers' itself).
        with joblib.parallel_config(backend=backend, n_jobs=self.n_jobs), \
                threadpool_limits(1, "blas"):
            GridSearchCV(self.model, GRID, cv=3, n_jobs=self.n_jobs).fit(self.X, self.y)
