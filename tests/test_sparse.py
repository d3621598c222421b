"""Sparse X: dense computation is the oracle.

The sparse per-sample kernel leaves out only terms whose feature is zero, which change no sum,
so it trains bitwise the dense kernel's weights; the other settings run the dense kernels on
densified groups of whole batches, bitwise the dense result while a batch never straddles two
groups (mini-batches), to rounding where the dense computation ran across a group boundary
(a per-sample epoch restarting its fused first-layer pass, L-BFGS's full batch summed over
blocks); an epoch's loss summed over several groups is the dense one to rounding. The
small-budget tests make those boundaries happen on small data.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse

from conftest import (BACKENDS, HIDDEN_CODES, OUTPUTS, RTOL, assert_relative_close,
                      make_inputs, make_labels, make_network, make_targets)
from fastmlp import FastMLP
from fastmlp.exceptions import ConvergenceWarning
from fastmlp.kernels import csr
from fastmlp.kernels.codes import EXP, SGD
from fastmlp.kernels.layout import aligned_copy

FORMATS = {
    "csr_matrix": scipy.sparse.csr_matrix, "csr_array": scipy.sparse.csr_array,
    "csc_matrix": scipy.sparse.csc_matrix, "csc_array": scipy.sparse.csc_array,
}


def sparsify(X: np.ndarray, seed: int, density: float = 0.25) -> np.ndarray:
    """X with most entries zero, and its row 2 all zero (a row with no non-zeros)."""
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) >= density] = 0
    X[2] = 0
    return X


def fit_quietly(model: FastMLP, X, y) -> FastMLP:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def fit_both(X, y, to_sparse=scipy.sparse.csr_matrix, **params):
    """The same model fitted on dense X and on its sparse copy."""
    settings = dict(hidden_layer_sizes=(8,), learning_rate_init=0.05, max_iter=4,
                    random_state=0) | params
    return fit_quietly(FastMLP(**settings), X, y), fit_quietly(FastMLP(**settings),
                                                                  to_sparse(X), y)


def assert_same_fit(dense: FastMLP, sparse: FastMLP, loss_rtol: float = 0.0) -> None:
    """The same weights bitwise; the same loss curve, or to ``loss_rtol`` where an epoch's
    loss is summed over groups of batches (a sum in another order)."""
    np.testing.assert_array_equal(sparse._params, dense._params)
    if loss_rtol:
        assert_relative_close(sparse.loss_curve_, dense.loss_curve_, loss_rtol, "loss curve")
    else:
        assert sparse.loss_curve_ == dense.loss_curve_
    assert sparse.n_iter_ == dense.n_iter_


def assert_close_fit(dense: FastMLP, sparse: FastMLP, rtol: float) -> None:
    assert_relative_close(sparse._params, dense._params, rtol, "weights")
    assert_relative_close(sparse.loss_curve_, dense.loss_curve_, rtol, "loss curve")
    assert sparse.n_iter_ == dense.n_iter_


# ------------------------------------------------------------------ the sparse kernel


def _epochs(backend, sparse: bool, params, layout, n_units, X, Y, hidden, output, n_epochs=3):
    """Per-sample plain SGD epochs on X (dense, or its CSR parts); the weights and losses."""
    params = aligned_copy(params)
    dtype = params.dtype.type
    scratch = np.empty(2 * n_units, dtype=params.dtype)
    grad = np.empty_like(params)
    rng = np.random.default_rng(5)
    Xs = scipy.sparse.csr_matrix(X)
    losses = []
    for _ in range(n_epochs):
        order = rng.permutation(X.shape[0])
        # A smaller rate for the exp output, whose Poisson steps grow with exp(z).
        lr = 0.02 if output == EXP else 0.1
        common = (None, order, 1, SGD, (lr, 0.0), 0, dtype(0), hidden, output, scratch)
        if sparse:
            loss = backend.sparse_sgd_epoch(params, None, grad, layout, Xs.data, Xs.indices,
                                            Xs.indptr, Y, *common)
        else:
            loss = backend.sgd_epoch(params, None, grad, layout, X, Y, *common)
        losses.append(float(loss))
    return params, losses


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("output", sorted(OUTPUTS))
@pytest.mark.parametrize("hidden_sizes", [(16,), (9, 5)], ids=["shallow", "deep"])
@pytest.mark.parametrize("activation", sorted(HIDDEN_CODES))
def test_sparse_kernel_trains_the_dense_kernels_weights_bitwise(activation, hidden_sizes,
                                                                output, dtype):
    code, n_outputs = OUTPUTS[output]
    sizes = [30, *hidden_sizes, n_outputs]
    params, layout, n_units = make_network(sizes, dtype, seed=1)
    X = sparsify(make_inputs(40, 30, dtype, seed=2), seed=3)
    Y = make_targets(output, 40, dtype, seed=4)
    hidden = HIDDEN_CODES[activation]
    dense = _epochs(BACKENDS["numba"], False, params, layout, n_units, X, Y, hidden, code)
    sparse = _epochs(BACKENDS["numba"], True, params, layout, n_units, X, Y, hidden, code)
    # A trajectory that diverged would match trivially.
    assert np.isfinite(dense[1]).all() and np.isfinite(dense[0]).all()
    np.testing.assert_array_equal(sparse[0], dense[0])
    assert sparse[1] == dense[1]
    reference = _epochs(BACKENDS["numpy"], True, params, layout, n_units, X, Y, hidden, code)
    assert_relative_close(sparse[0], reference[0], RTOL[dtype], "weights")
    assert_relative_close(sparse[1], reference[1], RTOL[dtype], "losses")


def test_sparse_kernel_reads_int64_indices():
    params, layout, n_units = make_network([30, 16, 1], np.float64, seed=1)
    X = sparsify(make_inputs(40, 30, np.float64, seed=2), seed=3)
    Y = make_targets("binary", 40, np.float64, seed=4)
    Xs = scipy.sparse.csr_matrix(X)
    runs = []
    for index_type in (np.int32, np.int64):
        trained = aligned_copy(params)
        BACKENDS["numba"].sparse_sgd_epoch(
            trained, None, None, layout, Xs.data, Xs.indices.astype(index_type),
            Xs.indptr.astype(index_type), Y, None, np.arange(40), 1, SGD, (0.1, 0.0), 0, 0.0,
            HIDDEN_CODES["relu"], OUTPUTS["binary"][0], np.empty(2 * n_units))
        runs.append(trained)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_sparse_kernel_ignores_sample_weight():
    """At batch size 1 scikit-learn's sample weight scales only the L2 term, which plain SGD
    has not: the sparse kernel trains the same weights with or without one."""
    params, layout, n_units = make_network([30, 16, 1], np.float64, seed=1)
    X = scipy.sparse.csr_matrix(sparsify(make_inputs(40, 30, np.float64, seed=2), seed=3))
    Y = make_targets("binary", 40, np.float64, seed=4)
    runs = []
    for sample_weight in (None, np.linspace(0.5, 2.0, 40)):
        trained = aligned_copy(params)
        BACKENDS["numba"].sparse_sgd_epoch(
            trained, None, None, layout, X.data, X.indices, X.indptr, Y, sample_weight,
            np.arange(40), 1, SGD, (0.1, 0.0), 0, 0.0, HIDDEN_CODES["relu"],
            OUTPUTS["binary"][0], np.empty(2 * n_units))
        runs.append(trained)
    np.testing.assert_array_equal(runs[0], runs[1])


# ------------------------------------------------------------------ the estimator


@pytest.mark.parametrize("to_sparse", FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_fit_on_sparse_x_is_the_dense_fit(kind, to_sparse):
    X, y = make_labels(kind, 60, seed=7)
    X = sparsify(np.hstack([X, make_inputs(60, 20, np.float64, seed=8)]), seed=9)
    dense, sparse = fit_both(X, y, to_sparse)
    assert_same_fit(dense, sparse)
    for method in ("predict", "predict_proba", "decision_function"):
        np.testing.assert_array_equal(getattr(sparse, method)(to_sparse(X)),
                                      getattr(dense, method)(X))


@pytest.mark.parametrize("params", [
    dict(activation="tanh", hidden_layer_sizes=(7, 5)),
    dict(batch_size=8, momentum=0.9),
    dict(batch_size=5, nesterovs_momentum=False, momentum=0.5, alpha=1e-3),
    dict(alpha=1e-3),
    dict(momentum=0.9),
    dict(early_stopping=True, max_iter=8),
    dict(solver="lbfgs", max_iter=20),
    dict(backend="numpy"),
    dict(backend="numpy", batch_size=8, momentum=0.9),
], ids=repr)
def test_every_setting_trains_on_sparse_x_as_on_dense(params):
    X, y = make_labels("multiclass", 60, seed=11)
    X = sparsify(np.hstack([X, make_inputs(60, 20, np.float64, seed=12)]), seed=13)
    assert_same_fit(*fit_both(X, y, **params))


def test_float32_sparse_trains_in_float32_as_dense():
    X, y = make_labels("binary", 60, seed=14)
    X = sparsify(np.hstack([X, make_inputs(60, 20, np.float64, seed=15)]), seed=16)
    dense, sparse = fit_both(X.astype(np.float32), y)
    assert sparse._params.dtype == np.float32
    assert_same_fit(dense, sparse)
    np.testing.assert_array_equal(sparse.predict_proba(scipy.sparse.csr_matrix(X)),
                                  dense.predict_proba(X.astype(np.float32)))


def test_partial_fit_on_sparse_x_is_the_dense_partial_fit():
    X, y = make_labels("multiclass", 60, seed=17)
    X = sparsify(X, seed=18, density=0.5)
    models = [FastMLP(hidden_layer_sizes=(6,), random_state=0) for _ in range(2)]
    for start in range(0, 60, 20):
        rows = slice(start, start + 20)
        models[0].partial_fit(X[rows], y[rows], classes=np.unique(y))
        models[1].partial_fit(scipy.sparse.csr_array(X[rows]), y[rows], classes=np.unique(y))
    assert_same_fit(*models)


def test_int_sparse_x_trains_in_float64():
    X, y = make_labels("binary", 40, seed=19)
    X = np.round(3 * sparsify(X, seed=20, density=0.5)).astype(np.int64)
    dense, sparse = fit_both(X, y)
    assert sparse._params.dtype == np.float64
    assert_same_fit(dense, sparse)


def test_other_sparse_formats_are_converted():
    X, y = make_labels("binary", 40, seed=21)
    X = sparsify(X, seed=22, density=0.5)
    dense, _ = fit_both(X, y)
    for to_sparse in (scipy.sparse.coo_matrix, scipy.sparse.lil_array, scipy.sparse.dok_matrix):
        _, sparse = fit_both(X, y, to_sparse)
        assert_same_fit(dense, sparse)


def test_unsorted_and_duplicate_indices_mean_their_sum_and_x_is_left_alone():
    X, y = make_labels("binary", 40, seed=23)
    X = sparsify(X, seed=24, density=0.5)
    canonical = scipy.sparse.csr_matrix(X)
    # Each row's entries reversed, and each stored value split into two halves.
    rows = np.repeat(np.arange(40), np.diff(canonical.indptr))
    order = np.lexsort((-canonical.indices, rows))
    messy = scipy.sparse.csr_matrix((np.repeat(canonical.data[order] / 2, 2),
                                     np.repeat(canonical.indices[order], 2),
                                     2 * canonical.indptr), shape=X.shape)
    np.testing.assert_array_equal(messy.toarray(), X)
    assert not messy.has_canonical_format
    before = (messy.data.copy(), messy.indices.copy())
    dense, sparse = fit_both(X, y, lambda X: messy)
    assert_same_fit(dense, sparse)
    np.testing.assert_array_equal(messy.data, before[0])
    np.testing.assert_array_equal(messy.indices, before[1])


@pytest.mark.parametrize("bad, message", [(np.nan, "contains NaN"), (np.inf, "infinity")])
def test_non_finite_stored_values_are_refused(bad, message):
    X, y = make_labels("binary", 20, seed=25)
    X[4, 1] = bad
    with pytest.raises(ValueError, match=message):
        FastMLP().fit(scipy.sparse.csr_matrix(X), y)


def test_sparse_tag():
    assert FastMLP().__sklearn_tags__().input_tags.sparse


# ------------------------------------------------------------------ blocks within the budget


@pytest.fixture
def small_blocks(monkeypatch):
    """A dense block budget of 7 rows of 24 float64 features: every path crosses blocks."""
    monkeypatch.setattr(csr, "DENSE_BLOCK_BYTES", 7 * 24 * 8)


def block_data(seed: int):
    X, y = make_labels("multiclass", 60, seed=seed)
    return sparsify(np.hstack([X, make_inputs(60, 20, np.float64, seed=seed + 1)]),
                    seed=seed + 2), y


@pytest.mark.parametrize("params", [
    dict(), dict(batch_size=5, momentum=0.9), dict(batch_size=7), dict(early_stopping=True),
    dict(backend="numpy", batch_size=3),
], ids=repr)
def test_small_blocks_keep_the_dense_weights_bitwise(small_blocks, params):
    X, y = block_data(seed=26)
    dense, sparse = fit_both(X, y, **params)
    # Measured: the loss curves differ by about 1e-16 relative.
    assert_same_fit(dense, sparse, loss_rtol=1e-14)
    # The compiled forward pass sums each row alone; NumPy's matrix products round by the
    # block's shape (measured: 2e-16 relative).
    rtol = 1e-14 if params.get("backend") == "numpy" else 0.0
    assert_relative_close(sparse.predict_proba(scipy.sparse.csr_matrix(X)),
                          dense.predict_proba(X), rtol, "probabilities")


# Measured: about 1e-15 (per-sample groups), 1e-13 (L-BFGS) relative.
@pytest.mark.parametrize("params, rtol", [
    (dict(momentum=0.9), 1e-12), (dict(alpha=1e-2), 1e-12),
    (dict(batch_size=20, momentum=0.5, alpha=1e-2), 1e-12),
    (dict(batch_size="full", backend="numpy"), 1e-12),
    (dict(solver="lbfgs", max_iter=30), 1e-10),
    (dict(solver="lbfgs", max_iter=30, alpha=1e-2), 1e-10),
], ids=repr)
def test_small_blocks_round_like_the_dense_fit(small_blocks, params, rtol):
    X, y = block_data(seed=29)
    assert_close_fit(*fit_both(X, y, **params), rtol)


@pytest.mark.parametrize("weighted", [False, True])
def test_a_batch_over_the_budget_has_the_dense_gradient(small_blocks, weighted):
    """Summed over blocks, each weighted by its share of the batch's (sample-weighted) total:
    the dense batch's mean gradient, its whole penalty included."""
    from fastmlp._sparse import SparseKernels
    X, y = block_data(seed=32)
    sizes = [24, 6, 3]
    params, layout, n_units = make_network(sizes, np.float64, seed=33)
    Y = np.eye(3)[np.unique(y, return_inverse=True)[1]]
    rows = np.arange(60)
    weight = np.random.default_rng(34).uniform(0, 3, 60) if weighted else None
    results = []
    for kernels, X_in in ((BACKENDS["numba"], X),
                          (SparseKernels(BACKENDS["numba"]), scipy.sparse.csr_matrix(X))):
        grad = np.empty_like(params)
        loss = kernels.batch_gradient(params, layout, X_in, Y, weight, rows, 0.01,
                                      HIDDEN_CODES["relu"], OUTPUTS["softmax"][0],
                                      np.empty(2 * n_units), grad)
        results.append((float(loss), grad))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-14)
    assert_relative_close(results[1][1], results[0][1], 1e-14, "gradient")


def test_wide_sparse_x_is_never_densified_whole(monkeypatch):
    """20,000 features: per-sample SGD densifies nothing, and every other path (mini-batches,
    a full batch, L-BFGS, prediction) densifies blocks within the budget."""
    blocks = []
    dense_rows = csr.dense_rows

    def recording(data, indices, indptr, rows, n_features):
        blocks.append(len(rows) * n_features * data.dtype.itemsize)
        return dense_rows(data, indices, indptr, rows, n_features)

    monkeypatch.setattr(csr, "dense_rows", recording)
    X = scipy.sparse.random_array((400, 20_000), density=0.005, format="csr",
                                  random_state=np.random.default_rng(35))
    y = np.asarray(X[:, :100].sum(axis=1)).ravel() > np.median(X[:, :100].sum(axis=1))
    model = fit_quietly(FastMLP(hidden_layer_sizes=(16,), max_iter=2, random_state=0), X, y)
    assert blocks == []
    model.predict_proba(X)
    for batch_size in (32, "full"):
        fit_quietly(FastMLP(hidden_layer_sizes=(16,), max_iter=2, random_state=0,
                            batch_size=batch_size, momentum=0.9), X, y)
    fit_quietly(FastMLP(hidden_layer_sizes=(16,), max_iter=2, solver="lbfgs"), X, y)
    full = X.shape[0] * X.shape[1] * 8
    assert len(blocks) > 2
    assert max(blocks) <= csr.DENSE_BLOCK_BYTES < full
