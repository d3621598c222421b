"""Property-based tests (hypothesis): whatever the shapes, input dtype, label type and
training settings, fit ends with a finite model whose predictions are labels from
``classes_`` and whose probabilities are distributions, without stray warnings; and both
backends train the same model.

Examples are derandomized (the same ones on every run and machine) and few: these sweep the
space of inputs, the other test modules go deep on each behaviour."""

import warnings

import numpy as np
import pytest
from conftest import RTOL, assert_relative_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmlp import FastMLP
from fastmlp.exceptions import ConvergenceWarning, DivergenceWarning

PROFILE = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

# Label sets, by type; the first n_classes are used (bool labels only come in two).
LABELS = {
    "int": [3, 7, 11, 20],
    "negative-int": [-5, -1, 0, 2],
    "integral-float": [-1.0, 0.0, 2.0, 5.0],
    "bool": [False, True],
    "str": ["cat", "dog", "eel", "fox"],
    "object-str": np.array(["a", "bb", "c", "dd"], dtype=object),
    "bytes": [b"x", b"y", b"z", b"w"],
}
INDICATOR = "multi-label-indicator"
INPUT_DTYPES = ["float64", "float32", "int64", "bool", "float16"]


def huge(dtype: str) -> float:
    """A scale that leaves the features finite in their dtype but overflows the network."""
    return float(np.finfo(dtype).max) ** 0.5 if dtype.startswith("float") else 1e9


@st.composite
def datasets(draw, dtypes=INPUT_DTYPES, scales=(1.0, 1e3, huge)):
    """(X, y): every class present at least once, X of any of ``dtypes``."""
    label_type = draw(st.sampled_from([*LABELS, INDICATOR]))
    n_classes = 2 if label_type == "bool" else draw(st.integers(2, 4))
    n = draw(st.integers(n_classes, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(dtypes))
    scale = draw(st.sampled_from(scales))
    X = (scale(dtype) if callable(scale) else scale) * rng.normal(
        size=(n, draw(st.integers(1, 6))))
    X = X > 0 if dtype == "bool" else X.astype(dtype)
    if label_type == INDICATOR:
        return X, (rng.random((n, n_classes)) < 0.5).astype(int)
    labels = np.asarray(LABELS[label_type])[:n_classes]
    return X, labels[rng.permutation(np.arange(n) % n_classes)]


def training_settings(learning_rates=(1e-3, 0.1, 2.0, 1e6), early_stopping=(False, True)):
    return st.fixed_dictionaries(dict(
        hidden_layer_sizes=st.lists(st.integers(1, 8), max_size=2).map(tuple),
        activation=st.sampled_from(["relu", "logistic", "tanh", "identity"]),
        batch_size=st.sampled_from([1, 2, 5, "full", 1000]),
        shuffle=st.sampled_from([True, False, "replacement"]),
        momentum=st.sampled_from([0.0, 0.5, 0.9]),
        nesterovs_momentum=st.booleans(),
        alpha=st.sampled_from([0.0, 1e-3]),
        learning_rate_init=st.sampled_from(learning_rates),
        max_iter=st.integers(1, 4),
        early_stopping=st.sampled_from(early_stopping),
    ))


def fit_strictly(params: dict, X, y, backend: str = "numba") -> FastMLP:
    """fit, failing on any warning but the two that report how training ended."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DivergenceWarning)
        return FastMLP(random_state=0, backend=backend, **params).fit(X, y)


@PROFILE
@given(data=datasets(), params=training_settings(), backend=st.sampled_from(["numba", "numpy"]))
def test_any_fit_gives_a_finite_model_with_sound_predictions(data, params, backend):
    X, y = data
    if params.get("early_stopping") and y.ndim == 1 and \
            np.unique(y, return_counts=True)[1].min() < 2:
        # Early stopping's stratified split needs two samples of every class.
        with pytest.raises(ValueError, match="least populated class"):
            fit_strictly(params, X, y, backend)
        return
    model = fit_strictly(params, X, y, backend)
    assert all(np.isfinite(W).all() for W in model.coefs_ + model.intercepts_)
    assert model.n_iter_ == len(model.loss_curve_) <= params["max_iter"]
    assert np.isfinite(model.loss_curve_).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P = model.predict_proba(X)
        predicted = model.predict(X)
    assert P.shape == (len(X), len(model.classes_))
    assert np.isfinite(P).all() and (P >= 0).all() and (P <= 1).all()
    if y.ndim == 2:
        np.testing.assert_array_equal(predicted, (P > 0.5).astype(int))
        return
    np.testing.assert_array_equal(model.classes_, np.unique(y))
    assert_relative_close(P.sum(axis=1), np.ones(len(X)), 1e-6)
    assert np.isin(predicted, model.classes_).all() and predicted.dtype == y.dtype
    np.testing.assert_array_equal(predicted, model.classes_[P.argmax(axis=1)])


@settings(PROFILE, max_examples=40)
@given(data=datasets(dtypes=["float64", "int64", "bool"], scales=(1.0,)),
       params=training_settings(learning_rates=(1e-3, 0.1), early_stopping=(False,)))
def test_backends_train_the_same_model(data, params):
    X, y = data
    compiled = fit_strictly(params, X, y, "numba")
    reference = fit_strictly(params, X, y, "numpy")
    assert compiled.n_iter_ == reference.n_iter_
    assert_relative_close(compiled.loss_curve_, reference.loss_curve_, RTOL[np.float64])
    for W, W_reference in zip(compiled.coefs_ + compiled.intercepts_,
                              reference.coefs_ + reference.intercepts_):
        assert_relative_close(W, W_reference, RTOL[np.float64])


@settings(PROFILE, max_examples=25)
@given(data=datasets(dtypes=["float32"], scales=(1.0,)),
       params=training_settings(learning_rates=(1e-3, 0.1), early_stopping=(False,)))
def test_backends_train_the_same_float32_model(data, params):
    X, y = data
    compiled = fit_strictly(params, X, y, "numba")
    reference = fit_strictly(params, X, y, "numpy")
    assert compiled.coefs_[0].dtype == np.float32
    for W, W_reference in zip(compiled.coefs_ + compiled.intercepts_,
                              reference.coefs_ + reference.intercepts_):
        assert_relative_close(W, W_reference, RTOL[np.float32])
