"""``predict_proba`` on 1,000,000 rows, fastmlp against scikit-learn with identical weights."""

import time

import numpy as np

from ._shared import (SHAPES, best_seconds, fastmlp_model, make_data, make_large_data,
                      quiet_warnings, sklearn_model, warm_up)


def sklearn_twin(model, shape):
    """An MLPClassifier holding ``model``'s weights: fitted once on tiny data so that its
    attributes exist, then given fastmlp's coefficients."""
    X, y = make_data(20, shape.n_features)
    twin = sklearn_model(shape).fit(X, y)
    twin.coefs_ = [c.astype(np.float64) for c in model.coefs_]
    twin.intercepts_ = [b.astype(np.float64) for b in model.intercepts_]
    # The same network or the comparison means nothing.
    np.testing.assert_allclose(twin.predict_proba(X), model.predict_proba(X), rtol=1e-6)
    return twin


class PredictProba:
    """Both use float64 input; fastmlp spreads row blocks over threads (both cores here)."""

    params = [["30-16-1", "100-64-1"]]
    param_names = ["shape"]
    n_rows = 1_000_000
    timeout = 300

    def setup(self, shape):
        quiet_warnings()
        warm_up("float64").predict_proba(make_data(10, 3)[0])
        self.shape = SHAPES[shape]
        X, y = make_data(self.shape.n_samples, self.shape.n_features)
        self.fastmlp = fastmlp_model(self.shape).fit(X, y)
        self.sklearn = sklearn_twin(self.fastmlp, self.shape)
        self.X = make_large_data(self.n_rows, self.shape.n_features)[0]

    def time_fastmlp(self, shape):
        self.fastmlp.predict_proba(self.X)

    def time_sklearn(self, shape):
        self.sklearn.predict_proba(self.X)

    def track_speedup_over_sklearn(self, shape):
        fastmlp, sklearn = best_seconds([lambda: self.fastmlp.predict_proba(self.X),
                                         lambda: self.sklearn.predict_proba(self.X)], 3)
        return sklearn / fastmlp

    track_speedup_over_sklearn.unit = "times faster"

    def track_fastmlp_cores_used(self, shape):
        """CPU time over wall time of one call: about 2 when both cores work throughout."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.fastmlp.predict_proba(self.X)
        return (time.process_time() - cpu) / (time.perf_counter() - wall)

    track_fastmlp_cores_used.unit = "cores"
