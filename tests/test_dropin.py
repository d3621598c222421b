"""fastmlp.MLPClassifier and fastmlp.MLPRegressor against scikit-learn's own classes: the same
parameters give the same fitted model, attribute by attribute, to round-off (both draw their
initial weights, shuffles and validation splits from scikit-learn's code, so even shuffled
training with early stopping walks the same path)."""

import inspect
import pickle
import warnings

import numpy as np
import pytest
import sklearn.neural_network as sklearn_nn
from conftest import assert_relative_close
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network._multilayer_perceptron import BaseMultilayerPerceptron
from sklearn.utils.class_weight import compute_sample_weight

import fastmlp
from fastmlp import sklearn_compat

N_SAMPLES = 120
RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def classification(kind: str, dtype=np.float64, n: int = N_SAMPLES, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(dtype)
    score = X @ rng.normal(size=(6, 3))
    if kind == "binary":
        return X, np.where(score[:, 0] > 0, "yes", "no")
    if kind == "multiclass":
        return X, score.argmax(axis=1) * 10
    return X, (score > 0).astype(int)


def regression(n_outputs: int, dtype=np.float64, n: int = N_SAMPLES, seed: int = 1,
               positive: bool = False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(dtype)
    Y = np.tanh(X @ rng.normal(size=(5, n_outputs))) + 0.1 * rng.normal(size=(n, n_outputs))
    if positive:
        Y = np.exp(Y)
    return X, Y[:, 0] if n_outputs == 1 else Y


def fit_both(name: str, X, y, fit=None, **params):
    """scikit-learn's estimator and fastmlp's, fitted alike; returns them with the warnings
    each fit raised."""
    fitted, caught = [], []
    for module in (sklearn_nn, fastmlp):
        est = getattr(module, name)(**params)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            (fit or (lambda est: est.fit(X, y)))(est)
        fitted.append(est)
        caught.append([(w.category, str(w.message)) for w in record])
    return fitted, caught


def assert_same_fit(oracle, model, X, rtol: float) -> None:
    assert type(model).__module__ == "fastmlp.sklearn_compat"
    for name in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_",
                 "n_features_in_"):
        assert getattr(model, name) == getattr(oracle, name), name
    for W, W_oracle in zip(model.coefs_ + model.intercepts_,
                           oracle.coefs_ + oracle.intercepts_):
        assert W.dtype == W_oracle.dtype
        assert_relative_close(W, W_oracle, rtol, "weights")
    if hasattr(oracle, "loss_curve_"):
        assert_relative_close(model.loss_curve_, oracle.loss_curve_, rtol, "loss_curve_")
    assert_relative_close(model.loss_, oracle.loss_, rtol, "loss_")
    for name in ("validation_scores_", "best_validation_score_", "best_loss_"):
        assert (getattr(model, name, None) is None) == (getattr(oracle, name, None) is None)
        if getattr(oracle, name, None) is not None:
            assert_relative_close(getattr(model, name), getattr(oracle, name), rtol, name)
    predict = "predict_proba" if hasattr(oracle, "classes_") else "predict"
    assert_relative_close(getattr(model, predict)(X), getattr(oracle, predict)(X), rtol,
                          predict)
    assert np.array_equal(model.predict(X), oracle.predict(X)) or predict == "predict"


SGD_SETTINGS = {
    "per-sample": dict(solver="sgd", batch_size=1, momentum=0.0, learning_rate_init=0.01),
    "per-sample-momentum-l2": dict(solver="sgd", batch_size=1, alpha=1e-3),
    "mini-batch-nesterov-off": dict(solver="sgd", batch_size=8, nesterovs_momentum=False),
    "auto-batch-invscaling": dict(solver="sgd", learning_rate="invscaling",
                                  learning_rate_init=0.2),
    "adaptive-early-stopping": dict(solver="sgd", batch_size=16, learning_rate="adaptive",
                                    early_stopping=True, n_iter_no_change=2, max_iter=30),
    "blas-batches-unshuffled": dict(solver="sgd", batch_size=40, shuffle=False),
    "adam-per-sample": dict(solver="adam", batch_size=1),
    "adam-defaults": dict(solver="adam"),
    "adam-early-stopping": dict(solver="adam", batch_size=10, early_stopping=True,
                                validation_fraction=0.2),
    # Few enough iterations that L-BFGS-B's convergence tests, which round-off can tip either
    # way near the optimum, do not stop either fit.
    "lbfgs": dict(solver="lbfgs", max_iter=15),
}


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("settings", SGD_SETTINGS.values(), ids=SGD_SETTINGS)
def test_classifier_fits_as_sklearns(kind, settings):
    if kind == "multilabel" and settings.get("early_stopping"):
        settings = dict(settings, validation_fraction=0.25)
    X, y = classification(kind)
    params = dict(hidden_layer_sizes=(7, 5), max_iter=6, random_state=3) | settings
    (oracle, model), (oracle_warnings, model_warnings) = fit_both("MLPClassifier", X, y,
                                                                  **params)
    assert model_warnings == oracle_warnings
    assert_same_fit(oracle, model, X, RTOL[np.float64])


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("settings", SGD_SETTINGS.values(), ids=SGD_SETTINGS)
def test_regressor_fits_as_sklearns(loss, n_outputs, settings):
    X, y = regression(n_outputs, positive=loss == "poisson")
    params = dict(hidden_layer_sizes=(6,), max_iter=6, random_state=4, loss=loss,
                  learning_rate_init=0.01) | settings
    (oracle, model), (oracle_warnings, model_warnings) = fit_both("MLPRegressor", X, y,
                                                                  **params)
    assert model_warnings == oracle_warnings
    assert_same_fit(oracle, model, X, RTOL[np.float64])


@pytest.mark.parametrize("name, data", [("MLPClassifier", classification("multiclass",
                                                                         np.float32)),
                                        ("MLPRegressor", regression(2, np.float32))])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_float32_fits_as_sklearns(name, data, solver):
    X, y = data
    params = dict(hidden_layer_sizes=(6,), max_iter=4, random_state=5, solver=solver)
    (oracle, model), _ = fit_both(name, X, y, **params)
    assert_same_fit(oracle, model, X, RTOL[np.float32])


def test_partial_fit_and_warm_start_continue_as_sklearns():
    X, y = classification("multiclass")

    def train(est):
        est.partial_fit(X[:60], y[:60], classes=np.unique(y))
        est.partial_fit(X[60:], y[60:])
        est.set_params(warm_start=True, max_iter=3).fit(X, y)
        est.partial_fit(X, y)

    for solver in ("sgd", "adam"):
        (oracle, model), (oracle_warnings, model_warnings) = fit_both(
            "MLPClassifier", X, y, train, hidden_layer_sizes=(5,), random_state=6,
            solver=solver, batch_size=10)
        assert model_warnings == oracle_warnings
        assert_same_fit(oracle, model, X, RTOL[np.float64])


def test_sample_weight_fits_as_sklearns():
    X, y = classification("binary")
    weight = np.random.default_rng(7).uniform(0.1, 3.0, len(y))
    for settings in (dict(solver="sgd", batch_size=1, alpha=0.01), dict(solver="adam"),
                     dict(solver="sgd", batch_size=12, early_stopping=True),
                     dict(solver="lbfgs")):
        (oracle, model), _ = fit_both("MLPClassifier", X, y,
                                      lambda est: est.fit(X, y, sample_weight=weight),
                                      hidden_layer_sizes=(5,), max_iter=5, random_state=8,
                                      **settings)
        assert_same_fit(oracle, model, X, RTOL[np.float64])


@pytest.mark.parametrize("class_weight", ["balanced", {"yes": 3.0, "no": 0.5}])
def test_class_weight_is_the_corresponding_sample_weight(class_weight):
    X, y = classification("binary")
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=9, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = fastmlp.MLPClassifier(class_weight=class_weight, **params).fit(X, y)
        by_samples = fastmlp.MLPClassifier(**params).fit(
            X, y, sample_weight=compute_sample_weight(class_weight, y))
    for W, W_samples in zip(weighted.coefs_, by_samples.coefs_):
        np.testing.assert_array_equal(W, W_samples)


def test_class_weight_balanced_is_refused_by_partial_fit():
    X, y = classification("binary")
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        fastmlp.MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=["no", "yes"])


@pytest.mark.parametrize("container", [sparse.csr_matrix, sparse.csc_array])
def test_sparse_input_fits_as_dense(container):
    X, y = classification("multiclass")
    X[np.abs(X) < 0.8] = 0
    params = dict(hidden_layer_sizes=(5,), max_iter=4, random_state=10, solver="sgd",
                  batch_size=1, momentum=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        on_sparse = fastmlp.MLPClassifier(**params).fit(container(X), y)
        on_dense = fastmlp.MLPClassifier(**params).fit(X, y)
    for W, W_dense in zip(on_sparse.coefs_, on_dense.coefs_):
        assert_relative_close(W, W_dense, 1e-12)
    assert_relative_close(on_sparse.predict_proba(container(X)), on_dense.predict_proba(X),
                          1e-12)


def test_weights_are_views_of_the_trained_buffer_and_assignments_are_used():
    X, y = classification("binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastmlp.MLPClassifier((5,), max_iter=3, random_state=11).fit(X, y)
        oracle = sklearn_nn.MLPClassifier((5,), max_iter=3, random_state=11).fit(X, y)
    assert all(W.base is model.coefs_[0].base for W in model.coefs_ + model.intercepts_)
    model.coefs_[0][:] *= 2                        # in place: the trained buffer itself
    oracle.coefs_[0][:] *= 2
    model.intercepts_ = [b + 1 for b in model.intercepts_]     # new arrays
    oracle.intercepts_ = [b + 1 for b in oracle.intercepts_]
    assert_relative_close(model.predict_proba(X), oracle.predict_proba(X), 1e-12)


def test_pickled_model_predicts_and_continues_identically():
    X, y = classification("multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastmlp.MLPClassifier((5,), max_iter=3, random_state=12, solver="sgd").fit(X, y)
        copy = pickle.loads(pickle.dumps(model))
        np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
        for est in (model, copy):
            est.partial_fit(X, y)
    for W, W_copy in zip(model.coefs_, copy.coefs_):
        np.testing.assert_array_equal(W, W_copy)


def test_signatures_are_sklearns_plus_class_weight():
    for name, extra in (("MLPClassifier", ["class_weight"]), ("MLPRegressor", [])):
        ours = inspect.signature(getattr(fastmlp, name).__init__).parameters
        theirs = inspect.signature(getattr(sklearn_nn, name).__init__).parameters
        assert list(ours) == list(theirs) + extra
        assert all(ours[key] == theirs[key] for key in theirs)
        assert issubclass(getattr(fastmlp, name), getattr(sklearn_nn, name))


def test_an_incompatible_scikit_learn_fails_at_import(monkeypatch):
    monkeypatch.setattr(BaseMultilayerPerceptron, "_fit_stochastic",
                        lambda self, X, y, incremental: None)
    with pytest.raises(ImportError, match="_fit_stochastic"):
        sklearn_compat._check_scikit_learn()


def test_import_fastmlp_does_not_import_sklearn_until_a_drop_in_is_used():
    import subprocess
    import sys

    code = ("import sys, fastmlp; assert 'sklearn' not in sys.modules; "
            "fastmlp.MLPRegressor; assert 'sklearn' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
