"""FastMLPRegressor's per-sample SGD against scikit-learn's MLPRegressor with the same network
and algorithm, per loss; the ratio is measured in one process with the two contenders' epochs
interleaved (see ``_shared.best_seconds``), so load from other processes cancels out."""

import math

import numpy as np

from fastmlp import FastMLPRegressor

from ._shared import (LEARNING_RATE, SEED, SHAPE_NAMES, SHAPES, Epochs, quiet_warnings,
                      samples_per_second)

LOSSES = ["squared_error", "poisson"]


def make_regression_data(n_samples: int, n_features: int, loss: str):
    """Standard-normal features and targets from a noisy planted linear rule (fixed seed):
    values for squared error, Poisson counts of mean about 1 for the Poisson loss."""
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((n_samples, n_features))
    signal = X @ rng.standard_normal(n_features) / math.sqrt(n_features)
    if loss == "poisson":
        return X, rng.poisson(np.exp(0.5 * signal)).astype(np.float64)
    return X, signal + 0.3 * rng.standard_normal(n_samples)


def regressor_epochs(model, shape, n_samples: int, loss: str) -> Epochs:
    X, y = make_regression_data(n_samples, shape.n_features, loss)
    return Epochs(model.partial_fit(X, y), X, y)


class RegressionSpeedup:
    """FastMLPRegressor (float64, batch size 1) over scikit-learn's MLPRegressor configured as
    the same per-sample SGD (batch_size=1, momentum=0, alpha=0, constant learning rate, one
    BLAS thread)."""

    params = [SHAPE_NAMES, LOSSES]
    param_names = ["shape", "loss"]
    unit = "times faster"
    timeout = 180

    def setup(self, shape, loss):
        from sklearn.neural_network import MLPRegressor

        quiet_warnings()
        self.shape = SHAPES[shape]
        # An unbounded output moves by about lr * n_features per unit of error at each step:
        # the rate shrinks with the width, or both contenders' per-sample SGD diverges.
        settings = dict(hidden_layer_sizes=self.shape.hidden, loss=loss,
                        learning_rate_init=LEARNING_RATE / self.shape.n_features,
                        shuffle=True, max_iter=1, tol=0, random_state=SEED)
        # The first partial_fit compiles (or loads) the kernels, outside any timed call.
        self.fastmlp = regressor_epochs(FastMLPRegressor(**settings), self.shape,
                                        self.shape.n_samples, loss)
        self.sklearn = regressor_epochs(
            MLPRegressor(solver="sgd", batch_size=1, momentum=0, alpha=0,
                         learning_rate="constant", **settings),
            self.shape, self.shape.n_sklearn, loss)

    def track_over_sklearn(self, shape, loss):
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1):
            fast, slow = samples_per_second([self.fastmlp, self.sklearn], repeats=3)
        return fast / slow
