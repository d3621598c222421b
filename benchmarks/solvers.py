"""solver="lbfgs" against scikit-learn's: seconds per L-BFGS iteration on the full batch,
the two fits interleaved in one process with one BLAS thread each, from the same weights (so
both take the same iterations and the same number of loss evaluations)."""

import numpy as np

from ._shared import SEED, SHAPES, best_seconds, make_data, quiet_warnings

LBFGS_SHAPES = ["30-16-1", "100-64-1", "784-128-1"]
N_SAMPLES = 3_000
N_ITER = 20


class LbfgsSpeedup:
    """fastmlp's lbfgs fit over MLPClassifier(solver="lbfgs"), per iteration."""

    params = [LBFGS_SHAPES]
    param_names = ["shape"]
    unit = "times faster"
    timeout = 300

    def setup(self, shape):
        from sklearn.neural_network import MLPClassifier

        from fastmlp import FastMLP

        quiet_warnings()
        shape = SHAPES[shape]
        self.X, self.y = make_data(N_SAMPLES, shape.n_features)
        sizes = [shape.n_features, *shape.hidden, 1]
        rng = np.random.default_rng(SEED)
        self.coefs = [rng.uniform(-0.1, 0.1, (fan_in, fan_out))
                      for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
        self.intercepts = [np.zeros(fan_out) for fan_out in sizes[1:]]
        # gtol 0: both run all N_ITER iterations.
        common = dict(hidden_layer_sizes=shape.hidden, solver="lbfgs", tol=0.0, alpha=1e-4,
                      max_iter=N_ITER)
        self.fastmlp = FastMLP(init=(self.coefs, self.intercepts), **common)
        self.fastmlp.fit(self.X, self.y)      # compiles the kernels outside the timing
        self.sklearn = MLPClassifier(warm_start=True, **dict(common, max_iter=1))
        self.sklearn.fit(self.X, self.y)      # sets up its classes and shapes
        self.sklearn.set_params(max_iter=N_ITER)

    def _fit_fastmlp(self):
        self.fastmlp.fit(self.X, self.y)

    def _fit_sklearn(self):
        self.sklearn.coefs_ = [W.copy() for W in self.coefs]
        self.sklearn.intercepts_ = [b.copy() for b in self.intercepts]
        self.sklearn.fit(self.X, self.y)

    def track_over_sklearn(self, shape):
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1):
            fast, slow = best_seconds([self._fit_fastmlp, self._fit_sklearn], repeats=3)
        assert self.fastmlp.n_iter_ == self.sklearn.n_iter_ == N_ITER
        return slow / fast
