"""Per-sample SGD (batch size 1) throughput and speedups, each ratio measured in one process
with the two contenders' epochs interleaved, so load from other processes cancels out (and
the compiled backend against the reference at larger batches, in alternating blocks).

Throughput is samples/s over a whole epoch of ``partial_fit`` (per-call checks included).
Competitors get fewer samples than fastmlp (``Shape.n_reference``, ``Shape.n_sklearn``);
samples/s does not depend on the count.
"""

import math
import time

from ._shared import (DTYPES, SHAPE_NAMES, SHAPES, fastmlp_epochs, quiet_warnings,
                      samples_per_second, sklearn_epochs, warm_up)


class Throughput:
    """fastmlp's training throughput at batch size 1."""

    params = [SHAPE_NAMES, DTYPES]
    param_names = ["shape", "dtype"]
    unit = "samples/s"
    timeout = 120

    def setup(self, shape, dtype):
        quiet_warnings()
        warm_up(dtype)
        self.epochs = fastmlp_epochs(SHAPES[shape], dtype)

    def track_samples_per_second(self, shape, dtype):
        return samples_per_second([self.epochs])[0]


class Speedup:
    """fastmlp (float64, batch size 1) against the NumPy reference backend and scikit-learn's
    MLPClassifier with the same network and algorithm (sgd, batch_size=1, momentum=0,
    alpha=0, constant learning rate, one BLAS thread); float32 against float64."""

    params = [SHAPE_NAMES]
    param_names = ["shape"]
    unit = "times faster"
    timeout = 180

    def setup(self, shape):
        quiet_warnings()
        warm_up("float64")
        warm_up("float32")
        warm_up("float64", backend="numpy")
        self.shape = SHAPES[shape]
        self.fastmlp = fastmlp_epochs(self.shape)

    def _ratio(self, other, repeats=3):
        fast, slow = samples_per_second([self.fastmlp, other], repeats)
        return fast / slow

    def track_over_numpy_backend(self, shape):
        return self._ratio(fastmlp_epochs(self.shape, n_samples=self.shape.n_reference,
                                          backend="numpy"))

    def track_over_sklearn(self, shape):
        # One BLAS thread, as fastmlp trains on one: multithreaded BLAS on a single sample's
        # matrix-vector products makes sklearn 4-7x slower at 784-128 on this 2-core machine,
        # and the comparison should be against sklearn at its best.
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1):
            return self._ratio(sklearn_epochs(self.shape))

    def track_float32_over_float64(self, shape):
        # Inverted so that "times faster" reads as float32's gain; more repeats because the
        # two are close and the ratio is what the float32 target is about.
        return 1 / self._ratio(fastmlp_epochs(self.shape, "float32"), repeats=7)


class BatchSpeedup:
    """fastmlp's compiled backend over its NumPy reference backend (float64) at batch sizes
    above 1, where the reference's matrix products run on BLAS too, so the gap is narrow.

    Measured in alternating blocks of epochs rather than epoch by epoch: the two call
    different BLAS libraries (SciPy's through Numba, NumPy's), whose idle threads keep
    spinning for a while after a call and would slow whichever runs next (784-128-1 full
    batch: 0.75x interleaved by epoch, where the compiled backend is 1.3x on its own)."""

    params = [SHAPE_NAMES, [32, "full"]]
    param_names = ["shape", "batch_size"]
    unit = "times faster"
    timeout = 180

    def setup(self, shape, batch_size):
        quiet_warnings()
        warm_up("float64", batch_size)
        warm_up("float64", batch_size, backend="numpy")
        self.fastmlp, self.numpy = (fastmlp_epochs(SHAPES[shape], batch_size=batch_size,
                                                   backend=backend)
                                    for backend in ("numba", "numpy"))

    def track_over_numpy_backend(self, shape, batch_size):
        best = {"fastmlp": math.inf, "numpy": math.inf}
        for _ in range(3):
            for name, epochs in (("fastmlp", self.fastmlp), ("numpy", self.numpy)):
                best[name] = min(best[name], _later_epochs_best(epochs))
        return best["numpy"] / best["fastmlp"]


def _later_epochs_best(epochs, seconds: float = 0.4) -> float:
    """Best epoch time (per sample) of back-to-back epochs for ``seconds``, the first half's
    left out: by then the other contender's BLAS threads have gone to sleep."""
    start = time.perf_counter()
    best = math.inf
    while (now := time.perf_counter()) - start < seconds:
        epochs.run()
        if now - start >= seconds / 2:
            best = min(best, (time.perf_counter() - now) / len(epochs.y))
    return best
