"""Sample weights and class weights: the compiled kernels walk the weighted reference's
trajectory, scikit-learn's MLPClassifier walks FastMLP's weighted path, the math holds
(integer weights are repeated rows, zero-weight batches are absent), class_weight is the
sample weights scikit-learn computes for it, and bad weights are refused."""

import json
import warnings

import numpy as np
import pytest
from conftest import (BACKENDS, HIDDEN_CODES, OUTPUTS, assert_passes_with_jit_disabled,
                      assert_relative_close, assert_same_weights, make_inputs, make_labels,
                      make_network, make_targets, weights)
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from test_equivalence import OPTIMIZERS, Training, assert_same_trajectory, epoch_orders
from test_lbfgs import assert_same_lbfgs, lbfgs_pair
from test_persistence import metadata_of, rewrite
from test_sklearn_oracle import N_SAMPLES as ORACLE_SAMPLES
from test_sklearn_oracle import assert_same_path

import fastmlp
from fastmlp import FastMLP
from fastmlp.exceptions import ConvergenceWarning
from fastmlp.kernels import dispatch
from fastmlp.kernels.codes import SIGMOID, SOFTMAX

DTYPES = {"float64": np.float64, "float32": np.float32}


def sample_weights(n: int, dtype, seed: int, zeros: int = 3) -> np.ndarray:
    """Weights spread over [0.1, 3], ``zeros`` of them zero."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 3.0, n)
    w[rng.choice(n, zeros, replace=False)] = 0
    return w.astype(dtype)


def fit_quietly(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args, **kwargs)


# ------------------------------------------------------------------ compiled == reference

# (hidden widths, samples, batch size): batch 1 takes the per-sample kernel (the shallow one
# for a single hidden layer), 8 the streamed mini-batch gradient, 40 and the full batch of 100
# the BLAS path (over chunks).
KERNEL_CASES = {"per-sample-shallow": ((6,), 37, 1), "per-sample-deep": ((6, 5), 37, 1),
                "streamed-8": ((6, 5), 37, 8), "blas-40": ((6, 5), 100, 40),
                "full": ((6,), 100, 100)}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", KERNEL_CASES)
def test_weighted_trajectories_match_the_reference(case, dtype, output, optimizer):
    hidden, n, batch_size = KERNEL_CASES[case]
    dtype = DTYPES[dtype]
    code, n_outputs = OUTPUTS[output]
    X = make_inputs(n, 4, dtype, seed=1)
    Y = make_targets(output, n, dtype, seed=2)
    network = make_network([4, *hidden, n_outputs], dtype, seed=3)
    if batch_size >= 32:
        assert dispatch.use_blas(network[1], batch_size)
    assert_same_trajectory(network, X, Y, epoch_orders("permutation", n, seed=4), batch_size,
                           OPTIMIZERS[optimizer], "tanh", code,
                           sample_weight=sample_weights(n, dtype, seed=5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_sample_weights_scale_the_penalty_only(dtype):
    """At batch size 1 the kernel uses alpha / w as its penalty and nothing else of w: with
    weights w it walks the unweighted trajectory of penalty alpha / w, here the same w for
    every sample."""
    dtype = DTYPES[dtype]
    X = make_inputs(37, 4, dtype, seed=1)
    Y = make_targets("softmax", 37, dtype, seed=2)
    network = make_network([4, 6, 3], dtype, seed=3)
    code, hyper, alpha = OPTIMIZERS["nesterov-l2"]
    order = epoch_orders("permutation", 37, seed=4)[0]
    weighted, scaled = (Training(dispatch, *network) for _ in range(2))
    w = dtype(4)
    tanh = HIDDEN_CODES["tanh"]
    weighted.epoch(X, Y, order, 1, (code, hyper, alpha), tanh, SOFTMAX, np.full(37, w, dtype))
    scaled.epoch(X, Y, order, 1, (code, hyper, alpha / w), tanh, SOFTMAX)
    assert_relative_close(weighted.params, scaled.params, 1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_of_zero_weight_is_absent(backend, batch_size):
    """A batch whose weights sum to zero takes no step and adds no loss: training is the
    same as on the order without it (scikit-learn would divide by zero). With momentum, so
    that a zero step that still moved the velocity would show."""
    kernels = BACKENDS[backend]
    n = 24
    X = make_inputs(n, 4, np.float64, seed=6)
    Y = make_targets("binary", n, np.float64, seed=7)
    network = make_network([4, 5, 1], np.float64, seed=8)
    order = np.random.default_rng(9).permutation(n)
    w = sample_weights(n, np.float64, seed=10, zeros=0)
    w[order[8:8 + batch_size]] = 0      # the third batch of 4, the ninth sample
    kept = np.concatenate([order[:8], order[8 + batch_size:]])
    settings = OPTIMIZERS["nesterov-l2"]
    full, without = (Training(kernels, *network) for _ in range(2))
    tanh = HIDDEN_CODES["tanh"]
    loss = full.epoch(X, Y, order, batch_size, settings, tanh, SIGMOID, w)
    loss_without = without.epoch(X, Y, kept, batch_size, settings, tanh, SIGMOID, w)
    assert_same_weights([full.params, full.state[0]], [without.params, without.state[0]])
    assert full.steps == without.steps
    assert loss * n == pytest.approx(loss_without * kept.size, rel=1e-14)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_the_optimizer_counts_no_step_for_a_batch_of_zero_weight(batch_size):
    X, y = make_labels("binary", 20, seed=46)
    w = np.ones(20)
    w[4:8] = 0      # the second batch of 4, four samples
    model = FastMLP(3, batch_size=batch_size, shuffle=False, random_state=47)
    model.partial_fit(X, y, np.unique(y), sample_weight=w)
    assert model.get_training_state().optimizer.steps == (16 if batch_size == 1 else 4)


def test_batch_gradient_of_zero_total_weight_is_zero():
    X = make_inputs(5, 4, np.float64, seed=11)
    Y = make_targets("binary", 5, np.float64, seed=12)
    params, layout, n_units = make_network([4, 3, 1], np.float64, seed=13)
    for kernels in BACKENDS.values():
        grad = np.full_like(params, np.nan)
        loss = kernels.batch_gradient(params, layout, X, Y, np.zeros(5), np.arange(5), 0.1,
                                      HIDDEN_CODES["tanh"], SIGMOID, np.empty(2 * n_units),
                                      grad)
        assert loss == 0
        assert not grad.any()


def test_integer_weights_are_repeated_rows_in_full_batch_descent():
    """A weight of k is the row k times over: the full batch's weighted mean gradient and
    its penalty over the total weight are those of the repeated data."""
    X, y = make_labels("multiclass", 40, seed=14)
    counts = np.random.default_rng(15).integers(1, 4, 40)
    settings = dict(hidden_layer_sizes=(6,), batch_size="full", shuffle=False, alpha=0.05,
                    momentum=0.9, learning_rate_init=0.1, max_iter=20, random_state=16)
    weighted = fit_quietly(FastMLP(**settings), X, y, sample_weight=counts)
    repeated = fit_quietly(FastMLP(**settings), np.repeat(X, counts, axis=0),
                           np.repeat(y, counts))
    assert_relative_close(weighted.loss_curve_, repeated.loss_curve_, 1e-10)
    for got, want in zip(weights(weighted), weights(repeated)):
        assert_relative_close(got, want, 1e-10)


def test_weighted_kernels_still_run_with_jit_disabled():
    """NUMBA_DISABLE_JIT=1 runs the weighted kernels as plain Python too."""
    assert_passes_with_jit_disabled(__file__, "test_weighted_trajectories_match_the_reference "
                                    "and plain and softmax or zero_weight or zero_total_weight")


# ------------------------------------------------------------------ scikit-learn as oracle

ORACLE_WEIGHTS = np.random.default_rng(17).uniform(0.2, 3.0, ORACLE_SAMPLES)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("batch_size", [1, 8, ORACLE_SAMPLES])
def test_weighted_sgd_walks_sklearns_path(batch_size, momentum, backend):
    assert_same_path("multiclass", backend, sample_weight=ORACLE_WEIGHTS, activation="tanh",
                     learning_rate_init=0.01, momentum=momentum, alpha=0.05,
                     batch_size=batch_size)


@pytest.mark.parametrize("kind, batch_size", [("binary", 1), ("multilabel", 8)])
def test_weighted_sigmoid_outputs_walk_sklearns_path(kind, batch_size):
    assert_same_path(kind, sample_weight=ORACLE_WEIGHTS, activation="relu",
                     hidden_layer_sizes=(7,), learning_rate_init=0.05, momentum=0.0,
                     alpha=0.01, batch_size=batch_size)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_lbfgs_walks_sklearns_path(backend, kind):
    X, _, coefs, _, model, oracle = lbfgs_pair(kind, backend, sample_weight=ORACLE_WEIGHTS,
                                               activation="tanh")
    assert model.n_iter_ >= 5
    assert_same_lbfgs(model, oracle, X, coefs)


# ------------------------------------------------------------------ the estimator

def test_without_a_penalty_per_sample_weights_change_nothing():
    """scikit-learn's semantics at batch size 1: the weight cancels out of the mean of one
    sample, and only the penalty would keep it."""
    X, y = make_labels("binary", 50, seed=18)
    w = sample_weights(50, np.float64, seed=19, zeros=0)
    plain = fit_quietly(FastMLP(5, max_iter=3, random_state=0), X, y)
    weighted = fit_quietly(FastMLP(5, max_iter=3, random_state=0), X, y, sample_weight=w)
    assert_same_weights(weights(weighted), weights(plain))
    assert weighted.loss_curve_ == plain.loss_curve_


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_weighted_estimator_backends_train_alike(solver, dtype):
    X, y = make_labels("multiclass", 60, seed=20)
    X = X.astype(DTYPES[dtype])
    w = sample_weights(60, np.float64, seed=21)
    settings = dict(hidden_layer_sizes=(6, 5), solver=solver, batch_size=7, alpha=0.01,
                    momentum=0.9, max_iter=4, random_state=22)
    fast, slow = (fit_quietly(FastMLP(backend=backend, **settings), X, y, sample_weight=w)
                  for backend in BACKENDS)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    assert_relative_close(fast.loss_curve_, slow.loss_curve_, rtol)
    for got, want in zip(weights(fast), weights(slow)):
        assert_relative_close(got, want, rtol)


def test_weighted_partial_fit_walks_fits_path():
    X, y = make_labels("binary", 40, seed=23)
    w = sample_weights(40, np.float64, seed=24)
    settings = dict(hidden_layer_sizes=(5,), batch_size=6, alpha=0.01, random_state=25)
    fitted = fit_quietly(FastMLP(max_iter=3, **settings), X, y, sample_weight=w)
    stepped = FastMLP(**settings)
    for _ in range(3):
        stepped.partial_fit(X, y, np.unique(y), sample_weight=w)
    assert_same_weights(weights(stepped), weights(fitted))


def test_early_stopping_scores_weighted_accuracy_on_weighted_held_out_rows(monkeypatch):
    """The held-out rows keep their weights and their accuracy is weighted by them."""
    X, y = make_labels("multiclass", 80, seed=26)
    w = sample_weights(80, np.float64, seed=27)
    weight_of_row = {row.tobytes(): weight for row, weight in zip(X, w)}
    scored = []
    score_rows = FastMLP._score_rows

    def recording(model, X_val, y_val, sample_weight=None):
        score = score_rows(model, X_val, y_val, sample_weight)
        correct = model.predict(X_val) == y_val
        scored.append((score, np.average(correct, weights=[weight_of_row[row.tobytes()]
                                                           for row in X_val]),
                       correct.mean()))
        return score
    monkeypatch.setattr(FastMLP, "_score_rows", recording)
    model = fit_quietly(FastMLP(5, early_stopping=True, validation_fraction=0.25, max_iter=4,
                                random_state=28), X, y, sample_weight=w)
    assert len(scored) == model.n_iter_ == 4
    assert [score for score, _, _ in scored] == model.validation_scores_
    for score, expected, _ in scored:
        assert score == pytest.approx(expected, rel=1e-15)
    assert any(score != unweighted for score, _, unweighted in scored)


# ------------------------------------------------------------------ class_weight

CLASS_WEIGHTS = {"balanced": ("multiclass", "balanced"),
                 "dict": ("multiclass", {3: 0.5, 11: 4.0}),
                 "str-labels": ("binary-str", {"cat": 2.5, "dog": 0.25}),
                 "multilabel-balanced": ("multilabel", "balanced"),
                 "multilabel-dicts": ("multilabel", [{0: 1, 1: 3}, {0: 2, 1: 1},
                                                     {0: 0.5, 1: 0.5}])}


def class_weight_data(kind: str):
    if kind == "binary-str":
        return make_labels("binary", 50, seed=29, label_type="str")
    return make_labels(kind, 50, seed=29)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("case", CLASS_WEIGHTS)
def test_class_weight_is_sklearns_sample_weight(case, solver):
    kind, class_weight = CLASS_WEIGHTS[case]
    X, y = class_weight_data(kind)
    given = sample_weights(50, np.float64, seed=30, zeros=0)
    settings = dict(hidden_layer_sizes=(5,), solver=solver, alpha=0.01, batch_size=4,
                    max_iter=3, random_state=31)
    by_class = fit_quietly(FastMLP(class_weight=class_weight, **settings), X, y,
                           sample_weight=given)
    by_sample = fit_quietly(FastMLP(**settings), X, y,
                            sample_weight=given * compute_sample_weight(class_weight, y))
    assert_same_weights(weights(by_class), weights(by_sample))
    assert by_class.loss_curve_ == by_sample.loss_curve_
    unweighted = fit_quietly(FastMLP(**settings), X, y, sample_weight=given)
    assert by_class.loss_curve_ != unweighted.loss_curve_


def test_partial_fit_weighs_a_dict_over_the_declared_classes():
    """As SGDClassifier: a chunk of the data need not hold every class of the dict."""
    X, y = make_labels("multiclass", 40, seed=32)
    chunk = y != 11
    class_weight = {3: 0.5, 7: 2.0, 11: 3.0}
    model = FastMLP(5, class_weight=class_weight, random_state=33)
    model.partial_fit(X[chunk], y[chunk], classes=[3, 7, 11])
    expected = FastMLP(5, random_state=33).partial_fit(
        X[chunk], y[chunk], classes=[3, 7, 11],
        sample_weight=compute_class_weight(class_weight, classes=np.array([3, 7, 11]),
                                           y=y[chunk])[np.searchsorted([3, 7, 11], y[chunk])])
    assert_same_weights(weights(model), weights(expected))


def test_partial_fit_refuses_balanced_class_weight():
    X, y = make_labels("binary", 20, seed=34)
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        FastMLP(3, class_weight="balanced").partial_fit(X, y, classes=np.unique(y))


@pytest.mark.parametrize("kind, class_weight, message", [
    ("multiclass", "heavy", "class_weight must be None, 'balanced' or a dict"),
    ("multiclass", [{3: 1.0}], "class_weight must be None, 'balanced' or a dict"),
    ("multilabel", {0: 1.0}, "a list of dicts"),
    ("multiclass", {3: -1.0}, "must not be negative"),
    ("multiclass", {3: 0.0, 7: 0.0, 11: 0.0}, "all zero"),
])
def test_bad_class_weight_is_refused(kind, class_weight, message):
    X, y = make_labels(kind, 30, seed=35)
    with pytest.raises(ValueError, match=message):
        FastMLP(3, class_weight=class_weight).fit(X, y)


@pytest.mark.parametrize("class_weight", [None, "balanced", {3: 0.5, 11: 2.0},
                                          {np.int64(3): np.float64(0.5)},
                                          {"cat": 0.5}, {True: 2.0, 1.5: 3.0},
                                          [{0: 1, 1: 2}, {0: 3, 1: 1}]])
def test_class_weight_survives_save_and_load(tmp_path, class_weight):
    X, y = make_labels("multiclass", 30, seed=36)
    model = fit_quietly(FastMLP(3, max_iter=2, random_state=37), X, y)
    model.set_params(class_weight=class_weight)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz")
    assert loaded.get_params() == model.get_params()
    assert type(loaded.class_weight) is type(class_weight)


def test_a_file_from_before_class_weight_loads_without_it(tmp_path):
    X, y = make_labels("binary", 30, seed=38)
    path = tmp_path / "m.npz"
    fit_quietly(FastMLP(3, max_iter=2, random_state=39), X, y).save(path)
    metadata = metadata_of(path)
    del metadata["params"]["class_weight"]
    rewrite(path, metadata=json.dumps(metadata))
    assert fastmlp.load(path).class_weight is None


# ------------------------------------------------------------------ bad sample weights

@pytest.mark.parametrize("sample_weight, message", [
    (np.ones(19), r"sample_weight has shape \(19,\), expected \(20,\)"),
    (np.ones((20, 1)), r"sample_weight has shape \(20, 1\)"),
    (np.r_[np.nan, np.ones(19)], "sample_weight contains NaN"),
    (np.r_[np.inf, np.ones(19)], "sample_weight contains infinity"),
    (np.r_[-1.0, np.ones(19)], "must not be negative"),
    (np.zeros(20), "all zero"),
    (["a"] * 20, "could not convert"),
])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_bad_sample_weight_is_refused(method, sample_weight, message):
    X, y = make_labels("binary", 20, seed=40)
    model = FastMLP(3)
    with pytest.raises(ValueError, match=message):
        if method == "fit":
            model.fit(X, y, sample_weight=sample_weight)
        else:
            model.partial_fit(X, y, np.unique(y), sample_weight=sample_weight)
    assert not model.__sklearn_is_fitted__()


def test_weights_beyond_float32_are_refused_for_a_float32_network():
    X, y = make_labels("binary", 20, seed=41)
    with pytest.raises(ValueError, match="too large for the network's float32"):
        FastMLP(3).fit(X.astype(np.float32), y, sample_weight=np.full(20, 1e39))
    with pytest.raises(ValueError, match="sum to more than float32"):
        FastMLP(3).fit(X.astype(np.float32), y, sample_weight=np.full(20, 1e38))


def test_a_refused_weight_leaves_a_fitted_model_as_it_was():
    X, y = make_labels("binary", 20, seed=42)
    model = fit_quietly(FastMLP(3, max_iter=2, random_state=43), X, y)
    before = [a.copy() for a in weights(model)]
    with pytest.raises(ValueError, match="must not be negative"):
        model.partial_fit(X, y, sample_weight=-np.ones(20))
    with pytest.raises(ValueError, match="all zero"):
        model.fit(X, y, sample_weight=np.zeros(20))
    assert_same_weights(weights(model), before)


def test_early_stopping_refuses_held_out_rows_of_zero_weight():
    X, y = make_labels("binary", 20, seed=44)
    w = np.zeros(20)
    w[0] = 1.0      # the training or the validation rows all weigh zero
    with pytest.raises(ValueError, match="Every sample that early stopping keeps for"):
        FastMLP(3, early_stopping=True, validation_fraction=0.5, random_state=45).fit(
            X, y, sample_weight=w)


@pytest.mark.parametrize("weights", ["sample_weight", "class_weight"])
def test_weights_that_cannot_matter_are_named(weights):
    """Per-sample steps without a penalty cancel every weight (scikit-learn's weighted mean
    per batch): the fit says so rather than silently train as unweighted."""
    X, y = make_labels("binary", 40, seed=30)
    w = np.linspace(1.0, 3.0, 40)
    params = dict(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    given = dict(class_weight="balanced") if weights == "class_weight" else {}
    sample_weight = w if weights == "sample_weight" else None
    y = np.where(np.arange(40) < 30, 0, 1) if weights == "class_weight" else y
    with pytest.warns(UserWarning, match="no effect with batch_size=1 and alpha=0"):
        fit_quietly(FastMLP(**params, **given), X, y, sample_weight=sample_weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for settings in (dict(alpha=1e-3), dict(batch_size=4)):
            fit_quietly(FastMLP(**params, **given, **settings), X, y,
                        sample_weight=sample_weight)
        fit_quietly(FastMLP(**params), X, y, sample_weight=np.full(40, 2.0))   # all alike
