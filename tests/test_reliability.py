"""Reliability: every bad input gets a clear error before any work starts; divergence and
Ctrl-C never leave a broken or silently NaN model; inputs are never modified and their memory
layout or integer dtype never changes the model; concurrent use gives serial results."""

import os
import re
import signal
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas
import pytest
import scipy.sparse
from conftest import (BACKENDS, assert_relative_close, assert_same_weights, make_labels,
                      one_epoch_per_call, weights)

import fastmlp._base
from fastmlp import FastMLP
from fastmlp._validation import check_X
from fastmlp.exceptions import ConvergenceWarning, DivergenceWarning, NotFittedError
from fastmlp.kernels import codes
from fastmlp.kernels.layout import make_layout

N_SAMPLES = 40
X_OK, Y_OK = make_labels("binary", 20, seed=61)


def fit_quietly(model: FastMLP, X, y) -> FastMLP:
    """fit, without the ConvergenceWarning a short max_iter is meant to produce."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def starting_weights(sizes, seed: int):
    """Explicit ``init`` arrays, so that the weights of epoch 0 are known."""
    rng = np.random.default_rng(seed)
    coefs = [rng.uniform(-0.5, 0.5, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    return coefs, [rng.uniform(-0.5, 0.5, b) for b in sizes[1:]]


def forbid_training(monkeypatch) -> None:
    """Make the kernels fail the test when called: a check must raise before work starts."""
    def refuse(*args):
        raise AssertionError("training started before the input was checked")
    for module in BACKENDS.values():
        monkeypatch.setattr(module, "sgd_epoch", refuse)
    monkeypatch.setattr(BACKENDS["numba"], "sgd_epochs", refuse)


@pytest.fixture
def no_training(monkeypatch):
    forbid_training(monkeypatch)


# ------------------------------------------------------------------ bad input, clear errors

def with_value(value, dtype=np.float64):
    X = X_OK.astype(dtype)
    X[3, 1] = value
    return X


def with_label(value):
    y = Y_OK.astype(object)
    y[5] = value
    return y


BAD_X = {
    "none": (None, ValueError, "X is None"),
    "nan": (with_value(np.nan), ValueError, "contains NaN"),
    "inf": (with_value(np.inf), ValueError, "infinity"),
    "-inf-float32": (with_value(-np.inf, np.float32), ValueError, "infinity"),
    "nan-in-objects": (with_value(np.nan, object), ValueError, "contains NaN"),
    "empty": (np.empty((0, 4)), ValueError, "0 sample"),
    "no-features": (np.empty((20, 0)), ValueError, "0 feature"),
    "scalar": (1.0, ValueError, "got scalar array"),
    "1-D": (X_OK[:, 0], ValueError, "got 1D array"),
    "3-D": (X_OK.reshape(20, 2, 2), ValueError, "dim 3"),
    "ragged": ([[1.0, 2.0]] * 19 + [[1.0]], ValueError, "could not convert X"),
    "strings": (X_OK.astype(str), ValueError, "numeric features"),
    "bytes": (X_OK.astype(bytes), ValueError, "numeric features"),
    "text-objects": (with_value("abc", object), ValueError, "numeric features"),
    "dict-objects": (with_value({"a": 1}, object), TypeError, "numeric features"),
    "huge-int-objects": (with_value(10**400, object), ValueError, "too large"),
    "complex": (X_OK + 1j, ValueError, "Complex data"),
    "dates": (X_OK.astype("datetime64[D]"), ValueError, "numeric features"),
    "records": (np.zeros((20, 4), dtype=[("a", "f8")]), ValueError, "numeric features"),
    "masked": (np.ma.masked_greater(X_OK, 1.0), ValueError, "masked"),
    "sparse-nan": (scipy.sparse.csr_matrix(with_value(np.nan)), ValueError, "contains NaN"),
    "sparse-inf": (scipy.sparse.coo_array(with_value(np.inf)), ValueError, "infinity"),
    "sparse-complex": (scipy.sparse.csr_array(X_OK + 1j), ValueError, "Complex data"),
}

BAD_Y = {
    "none": (None, ValueError, "y is None"),
    "nan": (np.where(Y_OK == 3, np.nan, Y_OK), ValueError, "contains NaN"),
    "inf": (np.where(Y_OK == 3, np.inf, Y_OK), ValueError, "infinity"),
    "none-label": (with_label(None), ValueError, "None"),
    "nan-label": (with_label(np.float32("nan")), ValueError, "NaN"),
    "continuous": (np.linspace(0, 1, 20), ValueError, "continuous"),
    "complex": (Y_OK + 1j, ValueError, "Complex labels"),
    "strings-and-numbers": (with_label("cat"), TypeError, r"mixes labels.*number.*str"),
    "too-short": (Y_OK[:-1], ValueError, r"inconsistent numbers of samples: \[20, 19\]"),
    "scalar": (3, ValueError, r"got shape \(\)"),
    "3-D": (np.zeros((20, 2, 2)), ValueError, "1-D .* or 2-D"),
    "no-columns": (np.zeros((20, 0)), ValueError, "at least one label column"),
    "one-class": (np.full(20, 7), ValueError, "only one class"),
    "multioutput": (np.column_stack([Y_OK, Y_OK]), ValueError, "multi-label indicator"),
    "sparse": (scipy.sparse.csr_matrix(Y_OK[:, None]), TypeError, "sparse"),
}


@pytest.mark.parametrize("X, error, match", BAD_X.values(), ids=BAD_X.keys())
def test_bad_X_is_refused_by_name(no_training, X, error, match):
    with pytest.raises(error, match=match):
        FastMLP(hidden_layer_sizes=(3,)).fit(X, Y_OK)


@pytest.mark.parametrize("y, error, match", BAD_Y.values(), ids=BAD_Y.keys())
def test_bad_y_is_refused_by_name(no_training, y, error, match):
    with pytest.raises(error, match=match):
        FastMLP(hidden_layer_sizes=(3,)).fit(X_OK, y)



NON_FINITE = {"nan": (np.nan, "contains NaN"), "inf": (np.inf, "contains infinity"),
              "-inf": (-np.inf, "contains infinity"), "nan-and-inf": (None, "contains NaN")}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_non_finite_X_is_refused_by_every_training_call(monkeypatch, value, position, order,
                                                        dtype):
    # Training checks finiteness from X's range (which it needs anyway); prediction from its
    # sum. Both must refuse NaN and infinity anywhere, with the same message.
    X, y = make_labels("binary", 1003, seed=62)    # an odd size: values past the SIMD blocks
    model = fit_quietly(FastMLP(hidden_layer_sizes=(3,), max_iter=1, random_state=0),
                        X.astype(dtype), y)
    bad = np.array(X, dtype=dtype, order=order)
    row = {"first": 0, "middle": 517, "last": -1}[position]
    number, message = NON_FINITE[value]
    if number is None:
        bad[row, 1], bad[row - 2, 3] = np.inf, np.nan
    else:
        bad[row, 1] = number
    forbid_training(monkeypatch)
    calls = [lambda: FastMLP(hidden_layer_sizes=(3,)).fit(bad, y),
             lambda: FastMLP(hidden_layer_sizes=(3,)).partial_fit(bad, y, classes=[3, 7]),
             lambda: model.partial_fit(bad, y), lambda: model.predict(bad)]
    messages = []
    for call in calls:
        with pytest.raises(ValueError, match=message) as error:
            call()
        messages.append(str(error.value))
    assert len(set(messages)) == 1, messages



@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
@pytest.mark.parametrize("extreme", [-1e4, 1e4])
def test_training_gets_the_largest_absolute_feature_from_the_check(dtype, extreme):
    # The overflow bound starts from it: it must be exact, whichever sign holds the extreme.
    X = np.asfortranarray(X_OK * 10)
    X[7, 2] = extreme
    X = X.astype(dtype)
    checked, abs_max = check_X(X, "FastMLP", return_abs_max=True)
    plain = check_X(X, "FastMLP")
    assert checked.dtype == plain.dtype == (np.float64 if dtype == np.int16 else dtype)
    np.testing.assert_array_equal(checked, plain)
    assert abs_max == float(np.abs(checked).max()) == abs(float(checked[7, 2]))

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_finite_X_whose_sum_overflows_is_not_refused(dtype):
    # Finite values only: fit accepts them (and then reports the divergence they cause).
    X, y = make_labels("binary", 20, seed=63)
    X = X.astype(dtype)
    X[:, 0] = np.finfo(dtype).max / 2 * np.sign(X[:, 0])
    with pytest.warns(DivergenceWarning):
        FastMLP(hidden_layer_sizes=(3,), max_iter=1, random_state=0).fit(X, y)

@pytest.mark.parametrize("case", ["x", "y"])
def test_a_refused_fit_leaves_the_fitted_model_as_it_was(monkeypatch, case):
    model = fit_quietly(FastMLP(hidden_layer_sizes=(3,), max_iter=2, random_state=0), X_OK,
                        Y_OK)
    before = [W.copy() for W in weights(model)]
    forbid_training(monkeypatch)
    for X, y in ([(x, Y_OK) for x, _, _ in BAD_X.values()] if case == "x" else
                 [(X_OK, y) for y, _, _ in BAD_Y.values()]):
        with pytest.raises((ValueError, TypeError)):
            model.fit(X, y)
    assert model.n_iter_ == 2 and model.n_features_in_ == 4
    assert_same_weights(weights(model), before)


def sizes_iterator():
    return (width for width in [3])


BAD_PARAMS = [
    ("hidden_layer_sizes", value) for value in
    [0, -3, (0,), (4, -1), (3.0,), 2.5, True, (True,), "5", None, (4, None), sizes_iterator()]
] + [
    ("activation", value) for value in ["softmax", "RELU", None, ["relu"], 1]
] + [
    ("learning_rate_init", value) for value in [0, -0.1, np.nan, np.inf, "0.1", True, None]
] + [
    ("batch_size", value) for value in [0, -1, True, "half", "FULL", 2.5, None]
] + [
    ("max_iter", value) for value in [0, -1, 1.5, True, None]
] + [
    ("solver", value) for value in ["Adam", "LBFGS", None, ["sgd"]]
] + [
    ("learning_rate", value) for value in ["optimal", "Constant", None, ["adaptive"]]
] + [
    ("power_t", value) for value in [-0.5, np.nan, np.inf, "0.5", True]
] + [
    ("max_fun", value) for value in [0, -1, 1.5, True, None]
] + [
    ("momentum", value) for value in [1, 1.5, -0.1, np.nan]
] + [
    (beta, value) for beta in ("beta_1", "beta_2") for value in [1, 1.5, -0.1, np.nan, "0.9"]
] + [
    ("epsilon", value) for value in [0, -1e-8, np.inf, np.nan, None]
] + [
    ("alpha", value) for value in [-1e-4, np.inf, np.nan]
] + [
    ("tol", value) for value in [-1, np.nan, np.inf]
] + [
    ("validation_fraction", value) for value in [0, 1, 1.5, -0.1, np.nan]
] + [
    ("n_iter_no_change", value) for value in [0, -2, 1.5, True]
] + [
    ("shuffle", value) for value in ["yes", 1, None, np.array([True, False])]
] + [
    ("nesterovs_momentum", 1), ("early_stopping", "no"), ("warm_start", 0),
    ("verbose", "loud"), ("verbose", 1.5),
] + [
    ("backend", value) for value in ["cuda", "NUMBA", None, ["numba"]]
] + [
    ("init", value) for value in ["uniform", np.nan, np.inf, None, True, np.zeros(3),
                                  ([], [], [])]
] + [
    ("random_state", value) for value in [-1, 2**32, 1.5, "seed", True, [1, 2]]
]


@pytest.mark.parametrize("param, value", BAD_PARAMS,
                         ids=[f"{param}={value!r}"[:40] for param, value in BAD_PARAMS])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_invalid_parameters_are_refused_by_name(no_training, param, value, method):
    model = FastMLP(hidden_layer_sizes=(3,)).set_params(**{param: value})
    fit_params = {"classes": [3, 7]} if method == "partial_fit" else {}
    with pytest.raises(ValueError, match=re.escape(f"'{param}' parameter of FastMLP must be")):
        getattr(model, method)(X_OK, Y_OK, **fit_params)


BAD_INIT_ARRAYS = {
    "parts-not-sequences": ((1.0, 2.0), "sequence of arrays"),
    "strings": ((["ab", "cd"], ["e", "f"]), "not an array of real numbers"),
    "ragged": (([[[1.0, 2.0], [3.0]], np.zeros((3, 1))], [np.zeros(3), np.zeros(1)]),
               "layer 0: coefs are not an array of real numbers"),
    "complex": (([np.zeros((4, 3)) + 1j, np.zeros((3, 1))], [np.zeros(3), np.zeros(1)]),
                "complex"),
    "too-many-layers": (([np.zeros((4, 3)), np.zeros((3, 1)), np.zeros((1, 1))],
                         [np.zeros(3), np.zeros(1), np.zeros(1)]), "must hold 2 weight"),
    "transposed": (([np.zeros((3, 4)), np.zeros((3, 1))], [np.zeros(3), np.zeros(1)]),
                   r"layer 0: expected coefs of shape \(4, 3\)"),
    "inf-intercept": (([np.zeros((4, 3)), np.zeros((3, 1))], [np.zeros(3), [np.inf]]),
                      "layer 1: starting weights must be finite"),
}


@pytest.mark.parametrize("init, match", BAD_INIT_ARRAYS.values(), ids=BAD_INIT_ARRAYS.keys())
def test_malformed_init_arrays_are_refused(no_training, init, match):
    # (test_estimator.py covers the plain wrong counts, shapes and NaN.)
    with pytest.raises(ValueError, match=match):
        FastMLP(hidden_layer_sizes=(3,), init=init).fit(X_OK, Y_OK)


PREDICTORS = ["predict", "predict_proba", "predict_log_proba", "decision_function", "score"]


def call(model: FastMLP, method: str, X):
    return model.score(X, Y_OK[:X.shape[0]]) if method == "score" else getattr(model, method)(X)


@pytest.mark.parametrize("method", PREDICTORS)
def test_prediction_input_is_checked(method):
    model = fit_quietly(FastMLP(hidden_layer_sizes=(3,), max_iter=1, random_state=0), X_OK,
                        Y_OK)
    with pytest.raises(ValueError, match="X has 3 features, but FastMLP is expecting 4"):
        call(model, method, X_OK[:, :3])
    with pytest.raises(ValueError, match="contains NaN"):
        call(model, method, with_value(np.nan))
    with pytest.raises(ValueError, match="got 1D array"):
        call(model, method, X_OK[0])
    with pytest.raises(ValueError, match="contains NaN"):
        call(model, method, scipy.sparse.csr_matrix(with_value(np.nan)))


BAD_SCORE_INPUTS = {
    "no-y": (None, None, "y is None"),
    "short-y": (Y_OK[:-1], None, r"inconsistent numbers of samples: \[20, 19\]"),
    "indicator-y": (np.column_stack([Y_OK, Y_OK]), None,
                    r"y has shape \(20, 2\), but the predictions have shape \(20,\)"),
    "nan-label": (np.where(Y_OK == 3, np.nan, Y_OK), None, "contains NaN"),
    "short-weights": (Y_OK, np.ones(3), r"sample_weight has shape \(3,\), expected \(20,\)"),
    "nan-weights": (Y_OK, np.full(20, np.nan), "sample_weight contains NaN"),
    "negative-weights": (Y_OK, -np.ones(20), "must not be negative"),
}


@pytest.mark.parametrize("y, sample_weight, match", BAD_SCORE_INPUTS.values(),
                         ids=BAD_SCORE_INPUTS.keys())
def test_score_checks_its_labels_and_weights(y, sample_weight, match):
    model = fit_quietly(FastMLP(hidden_layer_sizes=(3,), max_iter=1, random_state=0), X_OK,
                        Y_OK)
    with pytest.raises(ValueError, match=match):
        model.score(X_OK, y, sample_weight=sample_weight)


def test_float32_model_refuses_values_beyond_float32():
    model = fit_quietly(FastMLP(hidden_layer_sizes=(3,), max_iter=1, random_state=0),
                        X_OK.astype(np.float32), Y_OK)
    with pytest.raises(ValueError, match="too large for dtype.*float32"):
        model.predict(with_value(1e39))


def test_score_before_fit_is_not_fitted_error():
    # (The other prediction methods are covered by test_estimator.py.)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        FastMLP().score(X_OK, Y_OK)


BAD_CLASSES = {
    "empty": ([], ValueError, "at least 2 classes"),
    "one": ([3], ValueError, "at least 2 classes"),
    "nan": ([3, 7, np.nan], ValueError, "NaN"),
    "none": (np.array([3, 7, None], dtype=object), ValueError, "None"),
    "strings-and-numbers": (np.array([3, 7, "x"], dtype=object), TypeError, "mixes labels"),
    "missing-a-label-of-y": ([3, 8], ValueError, r"labels not in classes_ \[3, 8\]: \[7\]"),
}


@pytest.mark.parametrize("classes, error, match", BAD_CLASSES.values(), ids=BAD_CLASSES.keys())
def test_bad_partial_fit_classes_are_refused(no_training, classes, error, match):
    with pytest.raises(error, match=match):
        FastMLP(hidden_layer_sizes=(3,)).partial_fit(X_OK, Y_OK, classes=classes)


@pytest.mark.parametrize("method", ["warm_start", "partial_fit"])
def test_continued_training_refuses_a_changed_architecture(method):
    model = fit_quietly(FastMLP(hidden_layer_sizes=(3,), max_iter=1, random_state=0), X_OK,
                        Y_OK)
    model.set_params(hidden_layer_sizes=(5,), warm_start=method == "warm_start")
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(5,\) does not match .*\(3,\)"):
        model.fit(X_OK, Y_OK) if method == "warm_start" else model.partial_fit(X_OK, Y_OK)
    assert [W.shape for W in model.coefs_] == [(4, 3), (3, 1)]


TARGET_SHAPE_CHANGES = {
    "binary-then-indicator": ("binary", np.ones((20, 3), dtype=int), r"a label per row"),
    "multiclass-then-indicator": ("multiclass", np.ones((20, 3), dtype=int),
                                  r"a label per row"),
    "indicator-then-labels": ("multilabel", np.ones(20, dtype=int), r"3 label columns"),
    "indicator-then-fewer-columns": ("multilabel", np.ones((20, 2), dtype=int),
                                     r"3 label columns"),
    "indicator-then-more-columns": ("multilabel", np.ones((20, 4), dtype=int),
                                    r"3 label columns"),
}


@pytest.mark.parametrize("method", ["warm_start", "partial_fit"])
@pytest.mark.parametrize("kind, y, match", TARGET_SHAPE_CHANGES.values(),
                         ids=TARGET_SHAPE_CHANGES.keys())
def test_continued_training_refuses_targets_of_another_shape(monkeypatch, method, kind, y,
                                                             match):
    """The kernels index each row of the target matrix by the network's outputs: targets
    shaped unlike the first fit's must be refused before they get there (they once reached
    Numba as a typing error, or as reads past the end of a row)."""
    X, y_first = make_labels(kind, 20, seed=63)
    model = fit_quietly(FastMLP(hidden_layer_sizes=(3,), max_iter=1, random_state=0), X,
                        y_first)
    before = [W.copy() for W in model.coefs_]
    model.set_params(warm_start=method == "warm_start")
    forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y) if method == "warm_start" else model.partial_fit(X, y)
    assert_same_weights(model.coefs_, before)


# ------------------------------------------------------------------ divergence

DIVERGING = {"huge-learning-rate": (1.0, 1e6), "huge-features": (1e150, 0.01)}


def diverging_settings(backend, batch_size, learning_rate_init) -> dict:
    return dict(hidden_layer_sizes=(5,), batch_size=batch_size, backend=backend,
                learning_rate_init=learning_rate_init, init=starting_weights([4, 5, 3], seed=62),
                random_state=0, n_iter_no_change=1000)


def weights_after(epochs: int, settings: dict, X, y) -> list[np.ndarray]:
    """The weights a run with these settings has after ``epochs`` epochs."""
    if epochs == 0:
        coefs, intercepts = settings["init"]
        return coefs + intercepts
    return weights(fit_quietly(FastMLP(max_iter=epochs, **settings), X, y))


def assert_usable_probabilities(model: FastMLP, X) -> None:
    P = model.predict_proba(X)
    assert np.isfinite(P).all() and (P >= 0).all() and (P <= 1).all()
    assert_relative_close(P.sum(axis=1), np.ones(len(X)), 1e-12)


def single_warning(run, category):
    """Run ``run()``; check it warned exactly once, with ``category``; return the message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    assert [warning.category for warning in caught] == [category], \
        [str(warning.message) for warning in caught]
    return str(caught[0].message)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 7, "full"])
@pytest.mark.parametrize("cause", DIVERGING)
def test_divergence_keeps_the_last_usable_epoch(backend, batch_size, cause):
    scale, learning_rate_init = DIVERGING[cause]
    X, y = make_labels("multiclass", N_SAMPLES, seed=63)
    X = scale * X
    settings = diverging_settings(backend, batch_size, learning_rate_init)
    model = FastMLP(max_iter=100, **settings)
    message = single_warning(lambda: model.fit(X, y), DivergenceWarning)
    # It says what happened, when, what the model keeps and what to try.
    epochs = model.n_iter_
    for part in (f"diverged in epoch {epochs + 1}", f"weights of epoch {epochs}",
                 "learning_rate_init", "standardise"):
        assert part in message
    assert epochs == len(model.loss_curve_) < 100 and model.t_ == epochs * N_SAMPLES
    assert np.isfinite(model.loss_curve_).all()
    assert_same_weights(weights(model), weights_after(epochs, settings, X, y))
    assert_usable_probabilities(model, X)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_that_diverges_keeps_the_model_it_had(backend):
    X, y = make_labels("multiclass", N_SAMPLES, seed=64)
    settings = diverging_settings(backend, batch_size=1, learning_rate_init=1e6)
    model = FastMLP(**settings)
    for calls in range(50):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.partial_fit(X, y, classes=np.unique(y))
        if caught:
            break
    assert [warning.category for warning in caught] == [DivergenceWarning]
    assert model.n_iter_ == 0 and calls == len(model.loss_curve_)
    stepped = FastMLP(**settings)
    for _ in range(calls):
        stepped.partial_fit(X, y, classes=np.unique(y))
    expected = weights(stepped) if calls else weights_after(0, settings, X, y)
    assert_same_weights(weights(model), expected)
    assert_usable_probabilities(model, X)


def test_finite_weights_whose_outputs_overflow_count_as_divergence():
    # One full-batch step from a loss of ~1e155 makes w ~ -1e155: still finite, but
    # w * x overflows. The loss of that epoch was taken before the step and is finite, so
    # only a look at the outputs shows the model is unusable.
    X, y = np.array([[1e155], [-1e155]]), np.array([0, 1])
    model = FastMLP(hidden_layer_sizes=(), batch_size="full", learning_rate_init=1.0,
                    max_iter=1, init=([[[1.0]]], [[0.0]]))
    message = single_warning(lambda: model.fit(X, y), DivergenceWarning)
    assert "outputs overflow" in message
    assert model.n_iter_ == 0 and model.coefs_[0][0, 0] == 1.0
    assert_usable_probabilities(model, X)


def test_large_but_harmless_weights_are_not_divergence():
    # Features of 1e150 times unit weights stay far below overflow: training goes on.
    X, y = make_labels("binary", N_SAMPLES, seed=65)
    model = FastMLP(hidden_layer_sizes=(3,), activation="tanh", learning_rate_init=1e-3,
                    max_iter=3, random_state=0)
    single_warning(lambda: model.fit(1e150 * X, y), ConvergenceWarning)
    assert model.n_iter_ == 3


def overflowing_network(kind: str, backend: str, output_weights) -> FastMLP:
    """A finite identity network whose hidden unit sums the features: inputs of +-1e308 make
    it +-inf, and ``output_weights`` spread that to the logits."""
    X, y = make_labels(kind, N_SAMPLES, seed=66)
    model = fit_quietly(FastMLP(hidden_layer_sizes=(1,), activation="identity", max_iter=1,
                                backend=backend, random_state=0), X, y)
    model.coefs_[0][...] = 1
    model.coefs_[1][...] = output_weights
    for b in model.intercepts_:
        b[...] = 0
    return model


HUGE_ROWS = np.array([[1e308] * 4, [-1e308] * 4, [0.5] * 4])


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_logits_give_their_limit_probabilities(backend):
    binary = overflowing_network("binary", backend, [[1.0]])
    np.testing.assert_array_equal(binary.decision_function(HUGE_ROWS)[:2], [np.inf, -np.inf])
    np.testing.assert_array_equal(binary.predict_proba(HUGE_ROWS)[:2], [[0, 1], [1, 0]])
    multiclass = overflowing_network("multiclass", backend, [[-1.0, 0.5, 1.0]])
    np.testing.assert_array_equal(multiclass.decision_function(HUGE_ROWS)[:2],
                                  [[-np.inf, np.inf, np.inf], [np.inf, -np.inf, -np.inf]])
    P = multiclass.predict_proba(HUGE_ROWS)
    # Two logits at +inf share the probability; the finite row is an ordinary softmax.
    np.testing.assert_array_equal(P[:2], [[0, 0.5, 0.5], [1, 0, 0]])
    logits = 2 * np.array([-1, 0.5, 1])
    assert_relative_close(P[2], np.exp(logits) / np.exp(logits).sum(), 1e-12)
    np.testing.assert_array_equal(multiclass.predict(HUGE_ROWS[1:2]), multiclass.classes_[:1])


def test_saturated_probabilities_have_log_minus_infinity_without_warnings():
    model = overflowing_network("binary", "numba", [[1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_P = model.predict_log_proba(HUGE_ROWS[:1])
    np.testing.assert_array_equal(log_P, [[-np.inf, 0]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function", "score"])
def test_outputs_that_overflow_to_nan_raise(backend, method):
    # A zero output weight times an infinite hidden unit is NaN: no answer exists, and
    # silently predicting the first class would be a lie.
    model = overflowing_network("multiclass", backend, [[-1.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"overflow to NaN on 2 row\(s\) of X \(first: row 0"):
        call(model, method, np.vstack([HUGE_ROWS, HUGE_ROWS[:1]])[[0, 2, 3]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_kernels_on_huge_finite_logits(backend, dtype):
    # exp overflows on the way (to inf, never to NaN): sigmoids saturate at 0 and 1, the
    # softmax's max-shift keeps it finite.
    kernels = BACKENDS[backend]
    layout, n_params, n_units = make_layout([1, 3])
    params = np.array([1.0, 1.0, -1.0, 0.0, 0.0, 0.0], dtype=dtype)
    big = float(np.finfo(dtype).max) / 2
    X = np.array([[big], [-big], [1e4]], dtype=dtype)
    for code in (codes.SIGMOID, codes.SOFTMAX):
        out = np.empty((3, 3), dtype=dtype)
        with np.errstate(over="ignore"):
            kernels.forward(params, layout, X, codes.RELU, code, np.empty(n_units, dtype),
                            out)
        assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
        expected = [[1, 1, 0], [0, 0, 1], [1, 1, 0]] if code == codes.SIGMOID else \
            [[0.5, 0.5, 0], [0, 0, 1], [0.5, 0.5, 0]]
        np.testing.assert_allclose(out, expected, atol=1e-30)


# ------------------------------------------------------------------ interrupts

def interrupt_on_call(monkeypatch, owner, name: str, call: int, before: bool = False):
    """Make ``owner.name`` raise KeyboardInterrupt on its ``call``-th call, before or after
    doing its real work: a Ctrl-C landing at that point of the epoch loop."""
    real = getattr(owner, name)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(None)
        if before and len(calls) == call:
            raise KeyboardInterrupt
        result = real(*args, **kwargs)
        if len(calls) == call:
            raise KeyboardInterrupt
        return result
    monkeypatch.setattr(owner, name, interrupted)


# Where in epoch 3 the interrupt lands, and how many epochs are then complete.
INTERRUPT_POINTS = {
    "before-the-sample-order": (FastMLP, "_epoch_order", True, 2),
    "after-the-snapshot": (fastmlp._base._Checkpoint, "save", False, 2),
    "after-the-kernel": ("kernels", "sgd_epoch", False, 2),
    "after-the-divergence-check": (FastMLP, "_divergence", False, 2),
    "after-the-bookkeeping": (FastMLP, "_record_epoch", False, 2),
    "after-the-commit": (FastMLP, "_report_epoch", False, 3),
}


def interrupt_settings(backend: str, solver: str = "sgd") -> dict:
    # Momentum (or Adam's moments and step count), so the optimizer's state must be rolled
    # back too; shuffling, so the random state must.
    return dict(hidden_layer_sizes=(5,), batch_size=4, momentum=0.5, learning_rate_init=0.05,
                random_state=0, tol=0.0, n_iter_no_change=100, backend=backend, solver=solver)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("point", INTERRUPT_POINTS)
def test_interrupted_fit_is_the_fit_of_its_completed_epochs(monkeypatch, backend, point,
                                                            solver):
    owner, name, before, completed = INTERRUPT_POINTS[point]
    owner = BACKENDS[backend] if owner == "kernels" else owner
    X, y = make_labels("multiclass", N_SAMPLES, seed=67)
    settings = interrupt_settings(backend, solver)
    with monkeypatch.context() as patch:
        one_epoch_per_call(patch)
        interrupt_on_call(patch, owner, name, call=3, before=before)
        model = FastMLP(max_iter=10, **settings)
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y)
    same = fit_quietly(FastMLP(max_iter=completed, **settings), X, y)
    assert model.n_iter_ == completed == len(model.loss_curve_)
    assert model.loss_curve_ == same.loss_curve_ and model.t_ == same.t_
    assert_same_weights(weights(model), weights(same))
    # Optimizer state and random state too: training on continues exactly alike.
    for continued in (model, same):
        continued.partial_fit(X, y)
    assert_same_weights(weights(model), weights(same))


def test_interrupted_early_stopping_keeps_its_scores_consistent(monkeypatch):
    X, y = make_labels("multiclass", N_SAMPLES, seed=68)
    settings = dict(interrupt_settings("numba"), early_stopping=True, validation_fraction=0.25)
    with monkeypatch.context() as patch:
        interrupt_on_call(patch, FastMLP, "_record_epoch", call=4)
        model = FastMLP(max_iter=10, **settings)
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y)
    same = fit_quietly(FastMLP(max_iter=3, **settings), X, y)
    assert model.n_iter_ == 3 == len(model.validation_scores_) == len(model.loss_curve_)
    assert model.validation_scores_ == same.validation_scores_
    assert model.best_validation_score_ == same.best_validation_score_


def test_interrupt_in_the_first_epoch_leaves_the_starting_weights(monkeypatch):
    X, y = make_labels("multiclass", N_SAMPLES, seed=69)
    init = starting_weights([4, 5, 3], seed=70)
    model = fit_quietly(FastMLP(hidden_layer_sizes=(2,), max_iter=2, random_state=0), X, y)
    model.set_params(hidden_layer_sizes=(5,), init=init)
    with monkeypatch.context() as patch:
        one_epoch_per_call(patch)
        interrupt_on_call(patch, BACKENDS["numba"], "sgd_epoch", call=1)
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y)
    # The new network, before any epoch: usable, and saying so.
    assert model.n_iter_ == 0 and model.loss_curve_ == []
    assert_same_weights(weights(model), init[0] + init[1])
    assert_usable_probabilities(model, X)


def test_interrupted_partial_fit_keeps_the_previous_calls(monkeypatch):
    X, y = make_labels("binary", N_SAMPLES, seed=71)
    model = FastMLP(**interrupt_settings("numba")).partial_fit(X, y, classes=np.unique(y))
    before = [W.copy() for W in weights(model)]
    with monkeypatch.context() as patch:
        interrupt_on_call(patch, BACKENDS["numba"], "sgd_epoch", call=1)
        with pytest.raises(KeyboardInterrupt):
            model.partial_fit(X, y)
    assert model.n_iter_ == 0 and len(model.loss_curve_) == 1   # the interrupted call's
    assert_same_weights(weights(model), before)


SIGINT_CHILD = """
import signal, sys, warnings
import numpy as np
from fastmlp import FastMLP

# A process started in the background by a shell (CI's bounds-checked run) inherits SIGINT
# ignored, and Python then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
warnings.simplefilter("ignore")
X = np.random.default_rng(0).normal(size=(200, 5))
y = X[:, 0] + X[:, 1] > 0
settings = dict(hidden_layer_sizes=(8,), random_state=0, n_iter_no_change=10**9)
for _ in range(2):    # compiled before the parent may interrupt (many epochs a call: second)
    FastMLP(max_iter=1, **settings).fit(X, y)
model = FastMLP(max_iter=10**9, **settings)
try:
    print("training", flush=True)
    model.fit(X, y)
except KeyboardInterrupt:
    epochs = model.n_iter_
    again = FastMLP(max_iter=max(epochs, 1), **settings).fit(X, y)
    same = all(np.array_equal(a, b) for a, b in zip(model.coefs_, again.coefs_))
    usable = bool(np.isfinite(model.predict_proba(X)).all())
    print(epochs, len(model.loss_curve_), usable, same, flush=True)
"""


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_ctrl_c_during_a_real_fit():
    child = subprocess.Popen([sys.executable, "-c", SIGINT_CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "training", child.stderr.read()
        time.sleep(0.3)     # well inside the fit: an epoch here takes ~100 microseconds
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    epochs, curve, usable, same = out.split()
    assert int(epochs) > 0 and curve == epochs, err
    assert usable == "True" and same == "True", err


# ------------------------------------------------------------------ inputs

def read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, dtype", [("multiclass", np.float64), ("multiclass", np.float32),
                                         ("multilabel", np.float64)])
def test_inputs_are_never_modified(backend, kind, dtype):
    # Read-only arrays make any write raise; the copies catch writes through other views.
    # float32/float64 C-ordered X and a float multi-label y reach the kernels uncopied.
    X, y = make_labels(kind, N_SAMPLES, seed=72)
    X, y = X.astype(dtype), y.astype(dtype) if kind == "multilabel" else y
    coefs, intercepts = starting_weights([4, 5, 3], seed=73)
    classes = np.unique(y) if kind == "multiclass" else None
    given = [X, y, *coefs, *intercepts] + ([classes] if classes is not None else [])
    copies = [array.copy() for array in given]
    X, y, *rest = frozen = [read_only(array) for array in given]
    init = (frozen[2:4], frozen[4:6])
    settings = dict(hidden_layer_sizes=(5,), init=init, max_iter=3, backend=backend,
                    random_state=0)
    model = fit_quietly(FastMLP(**settings), X, y)
    model.partial_fit(X, y)
    fit_quietly(FastMLP(**settings, early_stopping=True, validation_fraction=0.25), X, y)
    FastMLP(**settings).partial_fit(X, y, classes=frozen[6] if classes is not None else None)
    for method in PREDICTORS[:-1]:
        getattr(model, method)(X)
    model.score(X, y)
    for array, copy in zip(frozen, copies):
        np.testing.assert_array_equal(array, copy)


def with_strides(X: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """X's values in a view that steps over ``rows`` rows and ``columns`` columns."""
    spread = np.zeros((rows * X.shape[0], columns * X.shape[1]), dtype=X.dtype)
    spread[::rows, ::columns] = X
    return spread[::rows, ::columns]


FLOAT_LAYOUTS = {
    "fortran": np.asfortranarray,
    "row-strided": lambda X: with_strides(X, 2, 1),
    "column-strided": lambda X: with_strides(X, 1, 3),
    "both-strided": lambda X: with_strides(X, 3, 2),
    "reversed-memory": lambda X: X[::-1].copy()[::-1],
    "read-only": read_only,
    "big-endian": lambda X: X.astype(X.dtype.newbyteorder(">")),
    "list-of-lists": lambda X: X.tolist(),
    "object": lambda X: X.astype(object),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", FLOAT_LAYOUTS)
def test_memory_layout_never_changes_the_model(backend, dtype, layout):
    X, y = make_labels("multiclass", N_SAMPLES, seed=74)
    X = X.astype(dtype)
    changed = FLOAT_LAYOUTS[layout](X)
    if layout in ("list-of-lists", "object"):
        dtype = np.float64      # Python floats: float32 values, trained in float64
    settings = dict(hidden_layer_sizes=(5,), max_iter=3, backend=backend, random_state=0)
    model = fit_quietly(FastMLP(**settings), changed, y)
    plain = fit_quietly(FastMLP(**settings), np.ascontiguousarray(X, dtype=dtype), y)
    assert model.coefs_[0].dtype == dtype
    assert_same_weights(weights(model), weights(plain))
    np.testing.assert_array_equal(model.predict_proba(changed), plain.predict_proba(X))


INTEGER_INPUTS = {
    "int8": lambda X: X.astype(np.int8),
    "int64": lambda X: X.astype(np.int64),
    "uint16": lambda X: (X + 10).astype(np.uint16),
    "bool": lambda X: X > 0,
    "float16": lambda X: X.astype(np.float16),
    "strided-int32": lambda X: with_strides(X.astype(np.int32), 2, 2),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", INTEGER_INPUTS)
def test_other_numbers_train_like_their_float64_copy(backend, dtype):
    X, y = make_labels("binary", N_SAMPLES, seed=75)
    X = INTEGER_INPUTS[dtype](np.round(3 * X))
    settings = dict(hidden_layer_sizes=(5,), max_iter=3, backend=backend, random_state=0)
    model = fit_quietly(FastMLP(**settings), X, y)
    plain = fit_quietly(FastMLP(**settings), np.array(X, dtype=np.float64), y)
    assert model.coefs_[0].dtype == np.float64
    assert_same_weights(weights(model), weights(plain))


def test_dataframes_train_like_their_arrays():
    X, y = make_labels("multiclass", N_SAMPLES, seed=76)
    frame = pandas.DataFrame(X, columns=list("abcd")).astype({"a": "float32", "b": "int64"})
    frame["b"] = np.round(3 * X[:, 1]).astype(np.int64)
    settings = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    model = fit_quietly(FastMLP(**settings), frame, pandas.Series(y))
    plain = fit_quietly(FastMLP(**settings), frame.to_numpy(dtype=np.float64), y)
    assert_same_weights(weights(model), weights(plain))
    assert list(model.feature_names_in_) == list("abcd")


def test_dataframe_columns_are_matched_by_name_at_predict_time():
    X, y = make_labels("binary", N_SAMPLES, seed=76)
    frame = pandas.DataFrame(X, columns=["income", "score", "loans", "age"])
    model = fit_quietly(FastMLP(hidden_layer_sizes=(4,), max_iter=2, random_state=0), frame, y)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        unnamed = model.predict_proba(X)
    np.testing.assert_array_equal(model.predict_proba(frame), unnamed)
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(frame[["score", "income", "loans", "age"]])


# A column each, refused by name with what to do, before any training.
BAD_COLUMNS = {
    "categorical-text": (lambda: pandas.Categorical(["x", "y"] * 10),
                         r"column 'colour' is categorical\. Encode it first"),
    "categorical-numbers": (lambda: pandas.Categorical([1, 2] * 10),
                            r"column 'colour' is categorical"),
    "text": (lambda: ["red", "blue"] * 10, r"column 'colour' \(dtype \w+\) holds values that"),
    "string-dtype": (lambda: pandas.array(["1", "x"] * 10, dtype="string"),
                     r"column 'colour' \(dtype string\) holds values that are not numbers"),
    "dates": (lambda: pandas.date_range("2020-01-01", periods=20),
              r"column 'colour' has dtype datetime64"),
    "nullable-with-missing": (lambda: pandas.array([1, None] * 10, dtype="Int64"),
                              r"contains NaN \(missing values\) in column\(s\) \['colour'\]"),
}


@pytest.mark.parametrize("column", BAD_COLUMNS)
def test_dataframe_columns_that_are_not_numbers_are_named(column, no_training):
    values, message = BAD_COLUMNS[column]
    frame = pandas.DataFrame({"size": np.arange(20.0), "colour": values()})
    with pytest.raises(ValueError, match=message):
        FastMLP().fit(frame, [0, 1] * 10)


def test_nullable_numeric_columns_without_missing_values_train_like_floats():
    X, y = make_labels("binary", N_SAMPLES, seed=76)
    frame = pandas.DataFrame({"a": pandas.array(np.round(3 * X[:, 0]).astype(int), dtype="Int64"),
                              "b": X[:, 1]})
    settings = dict(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    model = fit_quietly(FastMLP(**settings), frame, y)
    plain = fit_quietly(FastMLP(**settings), frame.astype(np.float64).to_numpy(), y)
    assert_same_weights(weights(model), weights(plain))


# ------------------------------------------------------------------ threads

# (test_estimator.py covers float64 fits of one backend from two threads.)
MIXED_MODELS = [dict(backend="numba", dtype=np.float32), dict(backend="numba", dtype=np.float64),
                dict(backend="numpy", dtype=np.float32, batch_size=5),
                dict(backend="numpy", dtype=np.float64, batch_size="full")]


def mixed_fit(case: dict, X, y) -> FastMLP:
    settings = {key: value for key, value in case.items() if key != "dtype"}
    return fit_quietly(FastMLP(hidden_layer_sizes=(6,), max_iter=10, random_state=1,
                               **settings), X.astype(case["dtype"]), y)


# catch_warnings is not thread-safe: the filter is set for the whole test instead.
@pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")
def test_mixed_fits_and_large_predictions_in_threads_match_serial_ones():
    X, y = make_labels("multiclass", N_SAMPLES, seed=77)
    serial = [mixed_fit(case, X, y) for case in MIXED_MODELS]
    with ThreadPoolExecutor(len(MIXED_MODELS)) as pool:
        threaded = list(pool.map(lambda case: mixed_fit(case, X, y), MIXED_MODELS))
    for alone, together in zip(serial, threaded):
        assert alone.loss_curve_ == together.loss_curve_
        assert_same_weights(weights(together), weights(alone))
    # Large enough that each call also splits its rows over a pool of its own.
    X_big = np.random.default_rng(78).normal(size=(fastmlp._base._PARALLEL_ROWS + 5000, 4))
    expected = [model.predict_proba(X_big) for model in serial]
    with ThreadPoolExecutor(len(serial)) as pool:
        got = list(pool.map(lambda model: model.predict_proba(X_big), serial + serial[::-1]))
    for P, want in zip(got, expected + expected[::-1]):
        np.testing.assert_array_equal(P, want)


# ------------------------------------------------------------------ edge shapes and sizes

def test_one_feature_and_one_sample():
    X, y = make_labels("binary", N_SAMPLES, seed=79)
    model = fit_quietly(FastMLP(hidden_layer_sizes=(3,), max_iter=3, random_state=0),
                        X[:, :1], y)
    assert_usable_probabilities(model, X[:, :1])
    single = FastMLP(hidden_layer_sizes=(3,), batch_size="full", random_state=0)
    single.partial_fit(X[:1], y[:1], classes=np.unique(y))
    assert single.n_iter_ == 1 and single.predict(X[:1]).shape == (1,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_larger_than_the_data_is_full_batch(backend):
    X, y = make_labels("multiclass", N_SAMPLES, seed=80)
    settings = dict(hidden_layer_sizes=(4,), max_iter=3, backend=backend, random_state=0)
    huge = fit_quietly(FastMLP(batch_size=10**12, **settings), X, y)
    full = fit_quietly(FastMLP(batch_size="full", **settings), X, y)
    assert_same_weights(weights(huge), weights(full))


# Two ReLU units on two rows end dead, which fit rightly warns about; the stopping rule is what
# this test is about.
@pytest.mark.filterwarnings("ignore::fastmlp.exceptions.TrainingWarning")
def test_huge_max_iter_on_tiny_data_stops_by_the_stopping_rule():
    model = FastMLP(hidden_layer_sizes=(2,), max_iter=10**12, random_state=0)
    model.fit([[0.0], [1.0]], [0, 1])
    assert 10 < model.n_iter_ < 10_000


@pytest.mark.parametrize("n_features, hidden", [(3, (10_000,)), (50_000, (2,))],
                         ids=["wide-hidden-layer", "many-features"])
def test_large_layers(n_features, hidden):
    X = np.random.default_rng(81).normal(size=(6, n_features))
    y = np.array([0, 1] * 3)
    model = fit_quietly(FastMLP(hidden_layer_sizes=hidden, max_iter=2, random_state=0), X, y)
    assert_usable_probabilities(model, X)


def test_impossible_network_size_is_refused_before_training(no_training):
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(10000000000000,\) .* needs about"):
        FastMLP(hidden_layer_sizes=(10**13,)).fit(X_OK, Y_OK)
