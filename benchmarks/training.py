"""Training time and memory: one epoch per shape, dtype and batch mode; per-call overhead;
peak memory of ``fit``, including a 1,000,000 x 100 float64 array."""

import tracemalloc

import numpy as np

from fastmlp import FastMLP

from ._shared import (BATCH_SIZES, DTYPES, SHAPE_NAMES, SHAPES, Epochs, Shape, fastmlp_epochs,
                      fastmlp_model, make_data, make_large_data, microseconds_per_call,
                      quiet_warnings, warm_up)


class TrainEpoch:
    """One epoch of ``partial_fit`` on a primed estimator (``SHAPES`` gives the sample count
    per shape). Kernels are compiled or loaded from the cache in ``setup``."""

    params = [SHAPE_NAMES, DTYPES, BATCH_SIZES]
    param_names = ["shape", "dtype", "batch_size"]
    timeout = 180

    def setup(self, shape, dtype, batch_size):
        quiet_warnings()
        warm_up(dtype, batch_size)
        self.epochs = fastmlp_epochs(SHAPES[shape], dtype, batch_size=batch_size)

    def time_partial_fit(self, shape, dtype, batch_size):
        self.epochs.run()


class CallOverhead:
    """The cost of a call that does almost no arithmetic: validation, target encoding, the
    epoch loop and result handling. Compare with ``TrainEpoch`` to see what fraction of an
    epoch is overhead. Issue 19's targets: ``predict_proba`` of one row <= 10 us and
    ``partial_fit`` of ten rows <= 25 us.

    Microseconds per call in a loop of calls, as serving and online learning make them:
    asv's own timing of a class with a ``setup`` times one call after each setup (asv_runner
    >= 0.3), whose cold caches double a call of a few microseconds."""

    params = [DTYPES]
    param_names = ["dtype"]
    unit = "us"

    def setup(self, dtype):
        quiet_warnings()
        warm_up(dtype).predict_proba(make_data(2, 3, dtype)[0])
        X = make_data(2, 3, dtype)[0]
        self.epochs = Epochs.primed(fastmlp_model(SHAPES["3-5-1"]), X, np.array([0, 1]))
        self.one_row = X[:1]
        X, y = make_data(10, 3, dtype)
        self.ten_rows = Epochs.primed(fastmlp_model(SHAPES["3-5-1"]), X, y)

    def track_partial_fit_two_samples(self, dtype):
        return microseconds_per_call(self.epochs.run)

    def track_fit_one_epoch_two_samples(self, dtype):
        return microseconds_per_call(lambda: self.epochs.model.fit(self.epochs.X,
                                                                   self.epochs.y))

    def track_predict_proba_one_row(self, dtype):
        return microseconds_per_call(lambda: self.epochs.model.predict_proba(self.one_row))

    def track_partial_fit_ten_rows(self, dtype):
        return microseconds_per_call(self.ten_rows.run)


class TinyFit:
    """The README's loan example once its kernels are compiled: ``fit`` of the 10 x 3 table,
    1,000 epochs at most (``tol=0``), per-sample and full-batch. Issue 19's target is <= 2 ms
    each."""

    params = [[1, "full"]]
    param_names = ["batch_size"]

    def setup(self, batch_size):
        from fastmlp.datasets import load_loan
        quiet_warnings()
        self.X, self.y, _ = load_loan()
        self.model = FastMLP(hidden_layer_sizes=(5,), batch_size=batch_size,
                             learning_rate_init=0.1, max_iter=1000, tol=0, init="normal",
                             random_state=0)
        for _ in range(2):  # a second fit compiles the many-epochs kernel (sgd_epochs_due)
            self.model.fit(self.X, self.y)

    def time_fit(self, batch_size):
        self.model.fit(self.X, self.y)


class FitMemory:
    """Peak resident memory of the process after a one-epoch ``fit`` (the interpreter and
    imports included, so read differences between shapes rather than absolute values)."""

    params = [SHAPE_NAMES, DTYPES]
    param_names = ["shape", "dtype"]
    timeout = 180

    def setup(self, shape, dtype):
        quiet_warnings()
        warm_up(dtype)
        self.shape = SHAPES[shape]
        self.X, self.y = make_data(self.shape.n_samples, self.shape.n_features, dtype)

    def peakmem_fit(self, shape, dtype):
        fastmlp_model(self.shape).fit(self.X, self.y)


class LargeFitMemory:
    """``fit`` on a 1,000,000 x 100 float64 array (800 MB), one epoch of a 100-8-1 network:
    fit must not copy a C-contiguous float64 X. A small hidden layer keeps the epoch at a few
    seconds; memory does not depend on the width."""

    n_samples = 1_000_000
    shape = Shape(100, (8,), n_samples, 0, 0)
    timeout = 300
    # Each value costs seconds (drawing 800 MB, one epoch over 1M samples) and barely varies.
    rounds = 1
    repeat = 1

    def setup(self):
        quiet_warnings()
        warm_up("float64")
        self.X, self.y = make_large_data(self.n_samples, self.shape.n_features)

    def peakmem_fit(self):
        fastmlp_model(self.shape).fit(self.X, self.y)

    def track_fit_extra_memory(self):
        """Peak of everything ``fit`` allocates (NumPy reports its buffers to tracemalloc),
        as a fraction of X's size. The issue's target is <= 0.1 (plus the parameters)."""
        tracemalloc.start()
        try:
            fastmlp_model(self.shape).fit(self.X, self.y)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak / self.X.nbytes

    track_fit_extra_memory.unit = "fraction of X"
