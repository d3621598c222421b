"""solver="adam" against scikit-learn's MLPClassifier(solver="adam"): training throughput
(samples/s of partial_fit epochs, per-call checks included) at batch size 1 and at
scikit-learn's default batch of 200, the two contenders' epochs interleaved in one process,
with scikit-learn's Adam defaults (alpha 1e-4, learning_rate_init 1e-3) on one BLAS thread."""

from ._shared import (SEED, SHAPES, Epochs, fastmlp_epochs, make_data, quiet_warnings,
                      samples_per_second)

ADAM_SHAPES = ["30-16-1", "100-64-1", "784-128-1"]
BATCH_SIZES = [1, 200]
ADAM = dict(solver="adam", alpha=1e-4, learning_rate_init=1e-3)
# At batch 200 both train on the same data: fewer samples would shrink scikit-learn's batch.
BATCH_200_SAMPLES = 4_000


def sklearn_adam_epochs(shape, batch_size: int, n_samples: int) -> Epochs:
    from sklearn.neural_network import MLPClassifier
    X, y = make_data(n_samples, shape.n_features)
    model = MLPClassifier(hidden_layer_sizes=shape.hidden, batch_size=batch_size, shuffle=True,
                          max_iter=1, tol=0, random_state=SEED, **ADAM)
    return Epochs.primed(model, X, y)


class AdamSpeedup:
    """fastmlp (float64) over scikit-learn, both with solver="adam" and the same network."""

    params = [ADAM_SHAPES, BATCH_SIZES]
    param_names = ["shape", "batch_size"]
    unit = "times faster"
    timeout = 300

    def setup(self, shape, batch_size):
        quiet_warnings()
        shape = SHAPES[shape]
        n_fastmlp, n_sklearn = ((shape.n_samples, shape.n_sklearn) if batch_size == 1
                                else (BATCH_200_SAMPLES, BATCH_200_SAMPLES))
        # Priming runs an epoch, which compiles (or loads) the kernels outside the timing.
        self.fastmlp = fastmlp_epochs(shape, n_samples=n_fastmlp, batch_size=batch_size,
                                      **ADAM)
        self.sklearn = sklearn_adam_epochs(shape, batch_size, n_sklearn)

    def track_over_sklearn(self, shape, batch_size):
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1):
            fast, slow = samples_per_second([self.fastmlp, self.sklearn], repeats=3)
        return fast / slow

    def track_samples_per_second(self, shape, batch_size):
        return samples_per_second([self.fastmlp])[0]

    track_samples_per_second.unit = "samples/s"
