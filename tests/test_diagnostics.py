"""fit's checks for a model that trained without error and learned nothing (TrainingWarning)."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from fastmlp import FastMLP, _diagnostics
from fastmlp._targets import encode
from fastmlp.exceptions import DivergenceWarning, TrainingWarning

pytestmark = pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return X, StandardScaler().fit_transform(X), y


def fit_silently(model, X, y):
    """Fit with TrainingWarning as an error: the test fails if the check fires."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        return model.fit(X, y)


def test_dead_relu_layer_on_raw_features_warns_with_cause_and_fix(cancer):
    """The issue's case: scikit-learn's breast-cancer features as they are (areas in the
    hundreds) kill every ReLU unit in the first epoch; the model predicts one class."""
    X, _, y = cancer
    with pytest.warns(TrainingWarning, match="hidden layer 1 is inactive") as caught:
        model = FastMLP(random_state=0).fit(X, y)
    message = str(caught[0].message)
    assert "large unscaled features" in message and "StandardScaler" in message
    assert "smaller learning_rate_init (now 0.01)" in message
    assert caught[0].filename == __file__   # points at the caller's fit
    assert len(np.unique(model.predict(X))) == 1    # still a usable (useless) model


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hidden, activation", [((100,), "relu"), ((32, 16, 8), "relu"),
                                                ((16,), "tanh"), ((16,), "logistic")])
def test_standardised_features_train_without_a_warning(cancer, dtype, hidden, activation):
    _, X, y = cancer
    model = fit_silently(FastMLP(hidden, activation, random_state=0), X.astype(dtype), y)
    assert model.score(X.astype(dtype), y) > 0.95


def test_a_layer_behind_the_first_is_named(cancer):
    """Second layer's weights and biases all negative: its ReLUs never fire, and no gradient
    reaches them or the first layer; only the output bias learns."""
    _, X, y = cancer
    rng = np.random.default_rng(0)
    coefs = [rng.normal(0, 0.3, (30, 8)), -np.ones((8, 4)), rng.normal(0, 0.3, (4, 1))]
    intercepts = [np.zeros(8), -np.ones(4), np.zeros(1)]
    with pytest.warns(TrainingWarning, match="every ReLU unit of hidden layer 2 is inactive"):
        FastMLP((8, 4), init=(coefs, intercepts), max_iter=5, random_state=0).fit(X, y)


def test_saturated_logistic_layer_named_as_the_cause_of_constant_outputs(cancer):
    """Every weight 1 on raw features: every unit's input is in the thousands."""
    X, _, y = cancer
    with pytest.warns(TrainingWarning, match="outputs are the same for every training sample"
                      ".*every logistic unit of hidden layer 1 is saturated on every "
                      "training sample") as caught:
        FastMLP(16, "logistic", init=1.0, random_state=0).fit(X, y)
    assert "StandardScaler" in str(caught[0].message)


def test_a_saturated_layer_that_still_separates_the_classes_is_not_reported(cancer):
    """Features times 1e6: every tanh unit saturates, but their signs still carry the data
    and the output layer learns from them."""
    _, X, y = cancer
    model = fit_silently(FastMLP(16, "tanh", max_iter=30, random_state=0), 1e6 * X, y)
    assert model.score(1e6 * X, y) > 0.8
    Y = encode(y, model.classes_, model._kind, X.dtype)
    assert not _diagnostics._Statistics.of(model, 1e6 * X, Y).lively[0].any()


def test_identical_rows_with_different_labels_are_not_reported():
    """No network can tell the rows apart: equal outputs, at the class frequencies, are
    right."""
    X, y = np.zeros((6, 2)), np.array([0, 1] * 3)
    model = fit_silently(FastMLP((), random_state=0), X, y)
    assert model._no_improvement_count > model.n_iter_no_change     # stopped by the rule
    Y = encode(y, model.classes_, model._kind, X.dtype)
    stats = _diagnostics._Statistics.of(model, X, Y)
    assert stats.constant_outputs() and stats.learned_nothing()


def test_early_stopping_on_labels_with_nothing_to_learn_is_not_reported():
    """Random labels: the best validation epoch is no better than the class frequencies,
    rightly."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 5)), rng.integers(0, 2, 300)
    model = fit_silently(FastMLP(8, early_stopping=True, learning_rate_init=0.1,
                                 random_state=0), X, y)
    assert model._no_improvement_count > model.n_iter_no_change     # stopped by the rule
    Y = encode(y, model.classes_, model._kind, X.dtype)
    assert _diagnostics._Statistics.of(model, X, Y).learned_nothing()


@pytest.mark.parametrize("activation", ["logistic", "tanh"])
def test_no_better_than_class_frequencies(cancer, activation):
    """Raw features with squashing units: training stops on a loss at the class prior's."""
    X, _, y = cancer
    with pytest.warns(TrainingWarning, match="no better than predicting the class "
                      "frequencies") as caught:
        model = FastMLP(16, activation, random_state=0).fit(X, y)
    assert "StandardScaler" in str(caught[0].message)
    assert model.score(X, y) < 0.65


def test_a_learning_rate_too_small_to_move_anything(cancer):
    _, X, y = cancer
    with pytest.warns(TrainingWarning, match="the loss barely moved: use a larger "
                      r"learning_rate_init \(now 1e-09\)") as caught:
        FastMLP(16, learning_rate_init=1e-9, random_state=0).fit(X, y)
    assert "StandardScaler" not in str(caught[0].message)   # the features are standardised


def test_a_penalty_that_flattens_the_network(cancer):
    _, X, y = cancer
    with pytest.warns(TrainingWarning, match=r"a smaller alpha \(now 100.0\)"):
        FastMLP(16, alpha=100.0, random_state=0).fit(X, y)


def test_a_diverged_fit_warns_only_about_the_divergence(cancer):
    X, _, y = cancer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        FastMLP(16, "identity", random_state=0).fit(X, y)
    categories = {w.category for w in caught}
    assert DivergenceWarning in categories and TrainingWarning not in categories


def test_partial_fit_is_not_checked(cancer, monkeypatch):
    """partial_fit on a few rows is a kernel call and some validation; a forward pass over the
    rows would multiply its cost. fit checks; partial_fit does not."""
    X, _, y = cancer

    def checked(*args, **kwargs):
        raise AssertionError("partial_fit ran the training checks")

    monkeypatch.setattr("fastmlp._base.warn_training_problems", checked)
    FastMLP(random_state=0).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(AssertionError, match="ran the training checks"):
        FastMLP(random_state=0, max_iter=1).fit(X, y)


@pytest.mark.parametrize("data", ["cancer", "iris"])
def test_the_chunked_pass_measures_what_predict_proba_says(cancer, data, monkeypatch):
    """Chunks of 7 rows, summed: the loss equals scikit-learn's log_loss of predict_proba,
    the prior loss the log_loss of the class frequencies, the activity flags a direct
    computation."""
    if data == "cancer":
        _, X, y = cancer
        model = FastMLP((12, 5), random_state=0, max_iter=3).fit(X, y)
    else:
        X, y = load_iris(return_X_y=True)
        model = FastMLP(12, random_state=0, max_iter=3).fit(X, y)
    monkeypatch.setattr(_diagnostics, "CHUNK_ROWS", 7)
    Y = encode(y, model.classes_, model._kind, X.dtype)
    stats = _diagnostics._Statistics.of(model, X, Y)
    assert stats.n == len(y)
    assert stats.loss() == pytest.approx(log_loss(y, model.predict_proba(X)), rel=1e-9)
    frequencies = np.bincount(y) / len(y)
    assert stats.prior_loss() == pytest.approx(
        log_loss(y, np.tile(frequencies, (len(y), 1))), rel=1e-12)
    A = X
    for layer, (W, b) in enumerate(zip(model.coefs_[:-1], model.intercepts_[:-1])):
        A = np.maximum(A @ W + b, 0)
        np.testing.assert_array_equal(stats.alive[layer], (A > 0).any(axis=0))
    assert not stats.constant_outputs()


def test_checking_a_small_fit_does_not_compile_the_prediction_kernel(tmp_path):
    """The check of a small fit runs in NumPy: compiling the prediction kernel for it would
    add seconds to the first fit a user runs. A fresh interpreter and an empty kernel cache;
    the raw breast-cancer features make the check find (and so fully run on) a dead layer."""
    script = """
import warnings
from sklearn.datasets import load_breast_cancer
from fastmlp import FastMLP
from fastmlp.kernels import predict
X, y = load_breast_cancer(return_X_y=True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    FastMLP(random_state=0, max_iter=5).fit(X, y)
print(len(predict.forward.overloads), *sorted({type(w.message).__name__ for w in caught}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env=os.environ | {"NUMBA_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    compiled, *warned = result.stdout.split()
    assert compiled == "0" and "TrainingWarning" in warned
