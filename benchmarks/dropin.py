"""fastmlp.MLPClassifier over scikit-learn's MLPClassifier with the same parameters: training
throughput (samples/s over whole fits, stopping rule off) on one BLAS thread, the two fits
interleaved in one process. Both draw the same initial weights and shuffles from
scikit-learn's code, so both train the same model; scikit-learn gets fewer rows where it is
slow (samples/s does not depend on the count)."""

import numpy as np

from ._shared import SHAPES, best_seconds, make_data, quiet_warnings

DROPIN_SHAPES = ["30-16-1", "100-64-1", "784-128-1"]
# scikit-learn's defaults are Adam on batches of 200 (batch_size="auto").
SETTINGS = {
    "defaults": {},
    "adam-batch-1": dict(batch_size=1),
    "sgd-batch-1": dict(solver="sgd", batch_size=1, momentum=0.0),
}
EPOCHS = 3


class DropInSpeedup:
    """Samples/s of fastmlp.MLPClassifier over sklearn.neural_network.MLPClassifier."""

    params = [list(SETTINGS), DROPIN_SHAPES]
    param_names = ["setting", "shape"]
    unit = "times faster"
    timeout = 600

    def setup(self, setting, shape):
        from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

        from fastmlp import MLPClassifier

        quiet_warnings()
        shape = SHAPES[shape]
        per_sample = SETTINGS[setting].get("batch_size") == 1
        n_fast = shape.n_samples if per_sample else 4 * shape.n_samples
        n_slow = shape.n_sklearn if per_sample else 4 * shape.n_samples
        params = dict(hidden_layer_sizes=shape.hidden, max_iter=EPOCHS, tol=0.0,
                      n_iter_no_change=np.inf, random_state=0, **SETTINGS[setting])
        self.fits = []
        for estimator, n in ((MLPClassifier, n_fast), (SklearnMLPClassifier, n_slow)):
            X, y = make_data(n, shape.n_features)
            self.fits.append((estimator(**params), X, y))
        self.fits[0][0].fit(*self.fits[0][1:])  # compiles the kernels outside the timing

    def track_over_sklearn(self, setting, shape):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            seconds = best_seconds([lambda fit=fit: fit[0].fit(*fit[1:]) for fit in self.fits],
                                   repeats=2, min_seconds=0.2, max_repeats=5)
        fast, slow = (len(y) * EPOCHS / s for (_, _, y), s in zip(self.fits, seconds))
        return fast / slow


class DropInLbfgsSpeedup:
    """Seconds per L-BFGS iteration of scikit-learn's MLPClassifier over fastmlp's, from the
    same weights (same random_state): both take the same iterations."""

    params = [DROPIN_SHAPES]
    param_names = ["shape"]
    unit = "times faster"
    timeout = 300

    def setup(self, shape):
        from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

        from fastmlp import MLPClassifier

        quiet_warnings()
        shape = SHAPES[shape]
        self.X, self.y = make_data(3_000, shape.n_features)
        params = dict(hidden_layer_sizes=shape.hidden, solver="lbfgs", max_iter=20, tol=0.0,
                      random_state=0)
        self.fast, self.slow = MLPClassifier(**params), SklearnMLPClassifier(**params)
        self.fast.fit(self.X, self.y)

    def track_over_sklearn(self, shape):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            fast, slow = best_seconds([lambda: self.fast.fit(self.X, self.y),
                                       lambda: self.slow.fit(self.X, self.y)], repeats=3)
        return (slow / self.slow.n_iter_) / (fast / self.fast.n_iter_)
