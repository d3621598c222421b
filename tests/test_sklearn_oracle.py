"""scikit-learn's MLPClassifier as an oracle: from the same starting weights, with the same
(unshuffled) sample order, FastMLP and MLPClassifier walk the same path to round-off."""

import warnings

import numpy as np
import pytest
from conftest import assert_relative_close, make_labels
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.neural_network import MLPClassifier

from fastmlp import FastMLP
from fastmlp.exceptions import ConvergenceWarning

N_SAMPLES = 30
N_EPOCHS = 5
HIDDEN = (5, 4)
RTOL = 1e-10


def starting_weights(sizes, seed: int):
    """Small weights so that no output saturates: scikit-learn clips probabilities at the
    machine epsilon in its log-loss, fastmlp computes the loss from the logits."""
    rng = np.random.default_rng(seed)
    coefs = [rng.uniform(-0.5, 0.5, (fan_in, fan_out)) / np.sqrt(fan_in)
             for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    intercepts = [rng.uniform(-0.1, 0.1, fan_out) for fan_out in sizes[1:]]
    return coefs, intercepts


def oracle_settings(params: dict) -> dict:
    """``params`` over the settings both estimators share in these tests: no shuffling, and a
    stopping rule that does not stop."""
    return dict(shuffle=False, tol=0.0, n_iter_no_change=N_EPOCHS + 1, max_iter=N_EPOCHS) | \
        params


def train_sklearn(X, y, coefs, intercepts, sample_weight=None, oracle=MLPClassifier,
                  **params):
    """scikit-learn's ``oracle`` (MLPClassifier or MLPRegressor) trained from the given
    weights: one throw-away fit sets up its classes and shapes, then a warm-started fit runs
    from our weights (it updates coefs_ in place), with the throw-away epoch's bookkeeping
    (t_, the stopping rule's count) undone. The throw-away fit starts from seeded weights: from
    NumPy's global generator, whose state depends on the tests run before, its epoch could
    overflow (an identity network with a Poisson loss did), and scikit-learn raises."""
    settings = oracle_settings(dict(solver="sgd", learning_rate="constant", random_state=0)
                               | params)
    max_iter = settings.pop("max_iter")
    model = oracle(warm_start=True, max_iter=1, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        model.fit(X, y)
        model.coefs_ = [W.copy() for W in coefs]
        model.intercepts_ = [b.copy() for b in intercepts]
        model.loss_curve_ = []
        model.t_, model.best_loss_, model._no_improvement_count = 0, np.inf, 0
        model.set_params(max_iter=max_iter).fit(X, y, sample_weight=sample_weight)
    return model


def train_fastmlp(X, y, coefs, intercepts, sample_weight=None, estimator=FastMLP, **params):
    model = estimator(init=(coefs, intercepts), **oracle_settings(params))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, sample_weight=sample_weight)


def assert_same_path(kind: str, backend: str = "numba", sample_weight=None, **params) -> None:
    X, y = make_labels(kind, N_SAMPLES, seed=21)
    n_outputs = {"binary": 1, "multiclass": 3, "multilabel": 3}[kind]
    hidden = params.setdefault("hidden_layer_sizes", HIDDEN)
    coefs, intercepts = starting_weights([X.shape[1], *hidden, n_outputs], seed=22)
    oracle = train_sklearn(X, y, coefs, intercepts, sample_weight, **params)
    model = train_fastmlp(X, y, coefs, intercepts, sample_weight, backend=backend, **params)
    assert model.n_iter_ == oracle.n_iter_ == N_EPOCHS
    assert_relative_close(model.loss_curve_, oracle.loss_curve_, RTOL, "loss_curve_")
    assert_same_model(model, oracle, X, coefs)


def assert_same_model(model, oracle, X, coefs, rtol: float = RTOL) -> None:
    """The same weights and predictions, to ``rtol``, and the oracle moved from ``coefs``."""
    for layer, (W, b) in enumerate(zip(oracle.coefs_, oracle.intercepts_)):
        assert_relative_close(model.coefs_[layer], W, rtol, f"coefs_[{layer}]")
        assert_relative_close(model.intercepts_[layer], b, rtol, f"intercepts_[{layer}]")
    assert not np.allclose(oracle.coefs_[0], coefs[0]), "the oracle did not train"
    np.testing.assert_array_equal(model.predict(X), oracle.predict(X))
    assert_relative_close(model.predict_proba(X), oracle.predict_proba(X), rtol)


PLAIN_SGD = dict(batch_size=1, learning_rate_init=0.05, momentum=0.0, alpha=0.0)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_per_sample_sgd_walks_sklearns_path(backend, activation, kind):
    assert_same_path(kind, backend, activation=activation, **PLAIN_SGD)


@pytest.mark.parametrize("settings", [
    dict(momentum=0.9, nesterovs_momentum=True, alpha=0.01, batch_size=1),
    dict(momentum=0.8, nesterovs_momentum=False, alpha=0.1, batch_size=7),
    dict(momentum=0.0, alpha=0.05, batch_size=N_SAMPLES),
], ids=["nesterov-l2-per-sample", "momentum-l2-mini-batch", "l2-full-batch"])
def test_momentum_and_l2_walk_sklearns_path(settings):
    assert_same_path("multiclass", activation="tanh", learning_rate_init=0.01, **settings)


def test_single_hidden_layer_walks_sklearns_path():
    assert_same_path("binary", activation="relu", hidden_layer_sizes=(7,), **PLAIN_SGD)
