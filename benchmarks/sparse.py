"""Per-sample SGD on a sparse X (SciPy CSR: 20,000 features, 0.5% of them non-zero) against
the same problem given dense, the two contenders' epochs interleaved in one process.

The sparse kernel touches only the weight rows of a sample's non-zero features, where the
dense kernel streams all of W: the ratio grows with the share of zeros. The dense contender
trains on the first ``N_DENSE`` rows only (samples/s does not depend on the count, and the
dense copy of all rows would be 320 MB).
"""

import numpy as np

from ._shared import SEED, Epochs, fastmlp_model, Shape, quiet_warnings, samples_per_second

N_FEATURES = 20_000
DENSITY = 0.005
N_SAMPLES = 2_000
N_DENSE = 250


def make_sparse_data():
    """A CSR X of standard-normal non-zeros and labels from a planted linear rule."""
    import scipy.sparse
    rng = np.random.default_rng(SEED)
    X = scipy.sparse.random_array((N_SAMPLES, N_FEATURES), density=DENSITY, format="csr",
                                  random_state=rng, data_sampler=rng.standard_normal)
    scores = X @ rng.standard_normal(N_FEATURES)
    return X, (scores > np.median(scores)).astype(np.int64)


class SparseSpeedup:
    """Samples/s of per-sample SGD on the sparse X over on its dense copy (float64,
    binary, one hidden layer of ``hidden`` units)."""

    params = [[16, 64]]
    param_names = ["hidden"]
    unit = "times faster"
    timeout = 300

    def setup(self, hidden):
        quiet_warnings()
        X, y = make_sparse_data()
        shape = Shape(N_FEATURES, (hidden,), N_SAMPLES, 0, 0)
        # Priming compiles (or loads) both kernels outside the timed calls.
        self.sparse = Epochs.primed(fastmlp_model(shape), X, y)
        self.dense = Epochs.primed(fastmlp_model(shape), X[:N_DENSE].toarray(), y[:N_DENSE])

    def track_sparse_over_dense(self, hidden):
        sparse, dense = samples_per_second([self.sparse, self.dense], repeats=3)
        return sparse / dense

    def track_sparse_samples_per_second(self, hidden):
        return samples_per_second([self.sparse], repeats=3)[0]

    track_sparse_samples_per_second.unit = "samples/s"
