"""scikit-learn's Adam solver: the compiled kernels walk the reference's trajectory in every
batch mode, FastMLP(solver="adam") walks MLPClassifier(solver="adam")'s from the same weights,
and its state (moments and step count) carries across partial_fit calls, model files and
warm starts as scikit-learn's does (test_reliability rolls it back after an interrupt)."""

import warnings

import numpy as np
import pytest
from conftest import (BACKENDS, HIDDEN_CODES, OUTPUTS, RTOL, assert_relative_close,
                      make_inputs, make_labels, make_network, make_targets)
from test_equivalence import Training, assert_same_trajectory, epoch_orders
from test_sklearn_oracle import assert_same_model, starting_weights, train_sklearn

from fastmlp import FastMLP, load
from fastmlp.exceptions import ConvergenceWarning
from fastmlp.kernels import dispatch
from fastmlp.kernels.codes import ADAM

ADAM_HYPER = (0.01, 0.9, 0.999, 1e-8)
N_SAMPLES = 40
N_EPOCHS = 3
NETWORKS = {"shallow": [5, 7, 1], "deep": [5, 7, 6, 4, 3]}
DTYPES = {"float64": np.float64, "float32": np.float32}


def network_data(name: str, n: int, dtype):
    sizes = NETWORKS[name]
    output = "binary" if sizes[-1] == 1 else "softmax"
    X = make_inputs(n, sizes[0], dtype, seed=1)
    Y = make_targets(output, n, dtype, seed=2)
    return make_network(sizes, dtype, seed=3), X, Y, OUTPUTS[output][0]


@pytest.mark.parametrize("alpha", [0.0, 0.01])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("batch_size", [1, 8, 32, "full"])
def test_compiled_adam_walks_the_references_trajectory(batch_size, network, dtype, alpha):
    """Per-sample kernel (1), streamed mini-batches (8), BLAS mini-batches (32 with a short
    last batch), full batch; moments compared after every epoch."""
    n = 70
    (params, layout, n_units), X, Y, code = network_data(network, n, DTYPES[dtype])
    batch = n if batch_size == "full" else batch_size
    assert dispatch.use_blas(layout, batch) == (batch >= 32)
    assert_same_trajectory((params, layout, n_units), X, Y,
                           epoch_orders("permutation", n, seed=4), batch,
                           (ADAM, ADAM_HYPER, alpha), "tanh", code)


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_epoch_continues_adams_step_count(backend, batch_size):
    """Two epochs, the second starting at the first's step count, walk the path of one epoch
    over both orders: the bias correction continues from t, as scikit-learn's does across
    epochs and partial_fit calls, rather than restarting."""
    network, X, Y, code = network_data("shallow", N_SAMPLES, np.float64)
    order = np.random.default_rng(5).permutation(N_SAMPLES)
    settings = (ADAM, ADAM_HYPER, 0.0)
    two, one = (Training(BACKENDS[backend], *network) for _ in range(2))
    for _ in range(2):
        two.epoch(X, Y, order, batch_size, settings, HIDDEN_CODES["relu"], code)
    one.epoch(X, Y, np.concatenate([order, order]), batch_size, settings,
              HIDDEN_CODES["relu"], code)
    assert two.steps == one.steps == 2 * N_SAMPLES // batch_size
    assert_relative_close(two.params, one.params, 1e-13, "params")
    for mine, theirs in zip(two.state, one.state):
        assert_relative_close(mine, theirs, 1e-13, "moments")
    restarted = Training(BACKENDS[backend], *network)
    for _ in range(2):
        restarted.steps = 0
        restarted.epoch(X, Y, order, batch_size, settings, HIDDEN_CODES["relu"], code)
    assert not np.allclose(restarted.params, one.params, rtol=1e-6, atol=0)


def fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


ORACLE_CASES = {
    # (kind, n_samples, settings)
    "per-sample": ("multiclass", 30, dict(batch_size=1, alpha=0.0)),
    "per-sample-l2": ("binary", 30, dict(batch_size=1, alpha=0.01)),
    "per-sample-deep": ("multilabel", 30, dict(batch_size=1, alpha=0.001,
                                               hidden_layer_sizes=(6, 5, 4))),
    "batch-200": ("multiclass", 450, dict(batch_size=200, alpha=0.0)),
    "batch-200-l2": ("binary", 450, dict(batch_size=200, alpha=0.01)),
}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", ORACLE_CASES)
def test_adam_walks_sklearns_path(case, backend):
    assert_adam_walks_sklearns_path(*ORACLE_CASES[case], backend, np.float64)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_float32_adam_walks_sklearns_path(backend):
    """scikit-learn steps float32 weights by a float64 update (its lr_t is a NumPy float64);
    fastmlp stays in float32 with lr_t rounded once: the same path to float32's round-off."""
    assert_adam_walks_sklearns_path(*ORACLE_CASES["per-sample-deep"], backend, np.float32)


def assert_adam_walks_sklearns_path(kind, n, settings, backend, dtype):
    settings = dict(solver="adam", activation="relu", learning_rate_init=0.01,
                    hidden_layer_sizes=(5, 4), beta_1=0.8, beta_2=0.99, epsilon=1e-7,
                    shuffle=False, tol=0.0, n_iter_no_change=10, max_iter=4) | settings
    X, y = make_labels(kind, n, seed=21)
    X = X.astype(dtype)
    n_outputs = {"binary": 1, "multiclass": 3, "multilabel": 3}[kind]
    coefs, intercepts = ([array.astype(dtype) for array in arrays] for arrays in starting_weights(
        [X.shape[1], *settings["hidden_layer_sizes"], n_outputs], seed=22))
    oracle = train_sklearn(X, y, coefs, intercepts, **settings)
    model = fit_quietly(FastMLP(init=(coefs, intercepts), backend=backend, **settings), X, y)
    assert model.n_iter_ == oracle.n_iter_ == 4
    assert model.coefs_[0].dtype == oracle.coefs_[0].dtype == dtype
    rtol = RTOL[dtype]
    assert_relative_close(model.loss_curve_, oracle.loss_curve_, rtol, "loss_curve_")
    assert_same_model(model, oracle, X, coefs, rtol)
    assert model.get_training_state().optimizer.steps == oracle._optimizer.t


ADAM_SETTINGS = dict(solver="adam", hidden_layer_sizes=(6,), batch_size=4,
                     learning_rate_init=0.02, random_state=0, tol=0.0, n_iter_no_change=100,
                     alpha=0.001)


def weights(model):
    return model.coefs_ + model.intercepts_


def assert_same_weights(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def assert_same_optimizer(a, b):
    a, b = a.get_training_state().optimizer, b.get_training_state().optimizer
    assert a.name == b.name == "adam" and a.steps == b.steps
    for name in ("m", "v"):
        np.testing.assert_array_equal(a.buffers[name], b.buffers[name])


def test_partial_fit_continues_the_step_count_and_fit_restarts_it():
    X, y = make_labels("multiclass", N_SAMPLES, seed=31)
    whole = fit_quietly(FastMLP(max_iter=3, **ADAM_SETTINGS), X, y)
    steps = -(-N_SAMPLES // 4)
    assert whole.get_training_state().optimizer.steps == 3 * steps
    pieces = FastMLP(**ADAM_SETTINGS)
    for _ in range(3):
        pieces.partial_fit(X, y, classes=np.unique(y))
    assert_same_weights(weights(pieces), weights(whole))
    assert_same_optimizer(pieces, whole)
    # scikit-learn: a warm-started fit makes a new optimizer (moments zero, t from zero).
    fit_quietly(whole.set_params(warm_start=True, max_iter=2), X, y)
    assert whole.get_training_state().optimizer.steps == 2 * steps


def test_warm_started_fit_starts_a_fresh_optimizer_from_the_weights():
    X, y = make_labels("binary", N_SAMPLES, seed=32)
    settings = dict(ADAM_SETTINGS, shuffle=False)
    model = fit_quietly(FastMLP(max_iter=3, **settings), X, y)
    coefs, intercepts = ([W.copy() for W in model.coefs_],
                         [b.copy() for b in model.intercepts_])
    fit_quietly(model.set_params(warm_start=True, max_iter=2), X, y)
    fresh = fit_quietly(FastMLP(max_iter=2, **dict(settings, init=(coefs, intercepts))), X, y)
    assert_same_weights(weights(model), weights(fresh))
    assert_same_optimizer(model, fresh)


def test_model_file_round_trip_continues_training_identically(tmp_path):
    X, y = make_labels("multiclass", N_SAMPLES, seed=33)
    model = fit_quietly(FastMLP(max_iter=2, **ADAM_SETTINGS), X, y)
    model.save(tmp_path / "adam.fastmlp")
    loaded = load(tmp_path / "adam.fastmlp")
    assert_same_optimizer(loaded, model)
    assert loaded.get_training_state().optimizer.steps == 2 * -(-N_SAMPLES // 4)
    for continued in (model, loaded):
        continued.partial_fit(X, y)
    assert_same_weights(weights(loaded), weights(model))
    assert_same_optimizer(loaded, model)


def test_learning_rate_schedules_do_not_apply_to_adam():
    """scikit-learn's adam ignores learning_rate: the same path under every schedule, and
    the stopping rule stops it (no adaptive slow-down)."""
    X, y = make_labels("binary", N_SAMPLES, seed=35)
    settings = dict(ADAM_SETTINGS, tol=10.0, n_iter_no_change=2, max_iter=50)
    models = [FastMLP(learning_rate=schedule, **settings).fit(X, y)
              for schedule in ("constant", "invscaling", "adaptive")]
    for model in models:
        # The first epoch improves on no loss at all; then n_iter_no_change + 1 that do not.
        assert model.n_iter_ == settings["n_iter_no_change"] + 2
        assert model.get_training_state().optimizer.learning_rate == 0.02
        assert_same_weights(weights(model), weights(models[0]))


def test_adam_early_stopping_stops_by_sklearns_rule():
    """Stopped once n_iter_no_change + 1 epochs in a row scored no better than the best
    before them by tol, keeping the best score."""
    X, y = make_labels("multiclass", 60, seed=36)
    settings = dict(ADAM_SETTINGS, tol=1e-3, n_iter_no_change=3, max_iter=200,
                    early_stopping=True)
    model = fit_quietly(FastMLP(**settings), X, y)
    scores = model.validation_scores_
    assert len(scores) == model.n_iter_ < 200
    waited = settings["n_iter_no_change"] + 1
    best_before = max(scores[:-waited])
    assert all(score < best_before + settings["tol"] for score in scores[-waited:])
    assert model.best_validation_score_ == max(scores)
