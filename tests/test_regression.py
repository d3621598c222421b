"""FastMLPRegressor: scikit-learn's MLPRegressor as an oracle (SGD and L-BFGS, squared error and
Poisson, one and several outputs), the estimator checks, R², shapes, continued training,
target checks, model files and the training diagnostics."""

import json
import warnings

import numpy as np
import pytest
from conftest import BACKENDS, assert_relative_close, assert_same_weights, make_inputs
from sklearn.base import clone, is_regressor
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.metrics import r2_score as sklearn_r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks
from test_estimator import expected_failed_checks
from test_persistence import load_error, metadata_of, rewrite
from test_sklearn_oracle import N_EPOCHS, RTOL, starting_weights, train_fastmlp, train_sklearn

import fastmlp
from fastmlp import FastMLPRegressor, cli
from fastmlp._base import CACHES
from fastmlp.exceptions import (ConvergenceWarning, DataConversionWarning, DivergenceWarning,
                                TrainingWarning)
from fastmlp.kernels import dispatch
from fastmlp.regressor import r2_score

# A diverged fit keeps its starting weights: a comparison of two such would prove nothing.
pytestmark = [pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning"),
              pytest.mark.filterwarnings("error::fastmlp.exceptions.DivergenceWarning")]

HIDDEN = (5, 4)
N_ORACLE = 70       # batches of 32 make batches of 32, 32 and 6
LOSSES = ["squared_error", "poisson"]


def regression_data(loss: str, n: int, n_outputs: int | None, seed: int):
    """X (n, 4) and targets learnable from it: 1-D for ``n_outputs`` None, else (n, k);
    real values for squared error, Poisson counts (zeros among them) for the Poisson loss."""
    X = make_inputs(n, 4, np.float64, seed)
    rng = np.random.default_rng(seed + 1)
    k = n_outputs or 1
    signal = X @ rng.normal(scale=0.5, size=(4, k))
    y = rng.poisson(np.exp(signal)).astype(np.float64) if loss == "poisson" else \
        signal + 0.1 * rng.normal(size=(n, k))
    return X, y if n_outputs else y[:, 0]


def oracle_pair(loss: str, n_outputs, n: int = 30, backend: str = "numba", **params):
    """MLPRegressor's and FastMLPRegressor's fits from the same weights, no shuffling."""
    X, y = regression_data(loss, n, n_outputs, seed=41)
    params = dict(hidden_layer_sizes=HIDDEN, loss=loss) | params
    coefs, intercepts = starting_weights([X.shape[1], *params["hidden_layer_sizes"],
                                          n_outputs or 1], seed=42)
    oracle = train_sklearn(X, y, coefs, intercepts, oracle=MLPRegressor, **params)
    model = train_fastmlp(X, y, coefs, intercepts, estimator=FastMLPRegressor,
                          backend=backend, **params)
    return X, coefs, model, oracle


def assert_same_regressor(model, oracle, X, coefs, rtol: float = RTOL) -> None:
    """The same loss curve (for lbfgs, whose curve scikit-learn does not keep, the same last
    loss), weights and predictions, to ``rtol``; the oracle trained."""
    assert model.n_iter_ == oracle.n_iter_
    assert model.out_activation_ == oracle.out_activation_
    if oracle.solver == "lbfgs":
        assert_relative_close(model.loss_, oracle.loss_, rtol, "loss_")
    else:
        assert_relative_close(model.loss_curve_, oracle.loss_curve_, rtol, "loss_curve_")
    for layer, (W, b) in enumerate(zip(oracle.coefs_, oracle.intercepts_)):
        assert_relative_close(model.coefs_[layer], W, rtol, f"coefs_[{layer}]")
        assert_relative_close(model.intercepts_[layer], b, rtol, f"intercepts_[{layer}]")
    assert not np.allclose(oracle.coefs_[0], coefs[0]), "the oracle did not train"
    assert model.predict(X).shape == oracle.predict(X).shape
    assert_relative_close(model.predict(X), oracle.predict(X), rtol)


SGD_SETTINGS = {
    "plain-per-sample": dict(batch_size=1, learning_rate_init=0.02, momentum=0.0, alpha=1e-2),
    "momentum-per-sample": dict(batch_size=1, learning_rate_init=0.005, momentum=0.9,
                                nesterovs_momentum=False, alpha=1e-2),
    "nesterov-batch-8": dict(batch_size=8, learning_rate_init=0.01, momentum=0.9, alpha=0.1),
    "momentum-batch-32-blas": dict(batch_size=32, learning_rate_init=0.02, momentum=0.9,
                                   nesterovs_momentum=False, alpha=0.1),
    # The whole data set (N_ORACLE rows; scikit-learn has no "full").
    "full-batch": dict(batch_size=70, learning_rate_init=0.05, momentum=0.0, alpha=0.1),
}


@pytest.mark.parametrize("n_outputs", [None, 3], ids=["1-D", "3-outputs"])
@pytest.mark.parametrize("settings", SGD_SETTINGS)
@pytest.mark.parametrize("loss", LOSSES)
def test_sgd_walks_sklearns_path(loss, settings, n_outputs):
    params = SGD_SETTINGS[settings]
    X, coefs, model, oracle = oracle_pair(loss, n_outputs, n=N_ORACLE, activation="tanh",
                                          **params)
    if params["batch_size"] == 32:
        assert dispatch.use_blas(model._layout, 32)
    assert model.n_iter_ == N_EPOCHS
    assert_same_regressor(model, oracle, X, coefs)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ["relu", "logistic", "identity"])
def test_reference_backend_walks_sklearns_path(activation, loss):
    X, coefs, model, oracle = oracle_pair(loss, 2, backend="numpy", activation=activation,
                                          **SGD_SETTINGS["plain-per-sample"])
    assert_same_regressor(model, oracle, X, coefs)


@pytest.mark.parametrize("n_outputs", [None, 2], ids=["1-D", "2-outputs"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_lbfgs_walks_sklearns_path(backend, loss, n_outputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        X, coefs, model, oracle = oracle_pair(loss, n_outputs, backend=backend,
                                              solver="lbfgs", tol=0.0, max_iter=15,
                                              alpha=1e-3)
    assert model.n_iter_ >= 5
    assert_same_regressor(model, oracle, X, coefs)


# ------------------------------------------------------------------ the scikit-learn protocol

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Estimator FastMLPRegressor does not inherit",
                            UserWarning)
    ESTIMATOR_CHECKS = parametrize_with_checks([
        FastMLPRegressor(hidden_layer_sizes=(5,), max_iter=50, random_state=0),
        FastMLPRegressor(hidden_layer_sizes=(5,), max_iter=50, random_state=0, batch_size=8,
                         learning_rate_init=0.05, momentum=0.5, alpha=1e-3,
                         early_stopping=True, backend="numpy"),
        FastMLPRegressor(hidden_layer_sizes=(5,), max_iter=50, random_state=0,
                         solver="lbfgs"),
    ], expected_failed_checks=expected_failed_checks)


@ESTIMATOR_CHECKS
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # Some checks train on unscaled targets (hundreds), on which per-sample SGD may
        # diverge after a few epochs: the model keeps its last finite weights, which is all
        # those checks need.
        warnings.simplefilter("ignore", DivergenceWarning)
        check(estimator)


def test_is_a_regressor_and_clones():
    model = FastMLPRegressor((4,), loss="poisson", max_iter=3, random_state=0)
    assert is_regressor(model)
    copy = clone(model.fit(*regression_data("poisson", 20, None, seed=1)))
    assert copy.get_params() == model.get_params() and not hasattr(copy, "coefs_")


# ------------------------------------------------------------------ predictions and R²

def test_prediction_shapes_follow_sklearn():
    X, Y = regression_data("squared_error", 40, 3, seed=2)
    settings = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    assert FastMLPRegressor(**settings).fit(X, Y).predict(X).shape == (40, 3)
    assert FastMLPRegressor(**settings).fit(X, Y[:, 0]).predict(X).shape == (40,)
    with pytest.warns(DataConversionWarning, match="column-vector"):
        column = FastMLPRegressor(**settings).fit(X, Y[:, :1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataConversionWarning)
        oracle = MLPRegressor(**settings).fit(X, Y[:, :1])
    assert column.predict(X).shape == oracle.predict(X).shape == (40,)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_outputs", [None, 3], ids=["1-D", "3-outputs"])
def test_score_is_sklearns_r2(n_outputs, weighted):
    X, y = regression_data("squared_error", 50, n_outputs, seed=3)
    model = FastMLPRegressor((6,), max_iter=5, random_state=0).fit(X, y)
    weights = np.random.default_rng(4).uniform(0, 2, 50) if weighted else None
    expected = sklearn_r2_score(y, model.predict(X), sample_weight=weights)
    assert model.score(X, y, sample_weight=weights) == pytest.approx(expected, rel=1e-12)
    assert 0.3 < expected < 1


@pytest.mark.parametrize("case", ["constant-perfect", "constant-imperfect", "mixed-columns"])
def test_r2_of_constant_targets_is_sklearns(case):
    # force_finite: a constant target scores 1 when matched exactly, else 0 (not -inf/NaN).
    y = np.column_stack([np.full(6, 2.0), np.arange(6.0)])
    y_pred = y.copy()
    if case != "constant-perfect":
        y_pred[0] += 0.5
    if case != "mixed-columns":
        y, y_pred = y[:, 0], y_pred[:, 0]
    assert r2_score(y, y_pred) == sklearn_r2_score(y, y_pred)


def test_changing_loss_after_fit_changes_nothing_until_the_next_fit():
    X, y = regression_data("poisson", 40, None, seed=5)
    model = FastMLPRegressor((4,), loss="poisson", max_iter=3, random_state=0).fit(X, y)
    before = model.predict(X)
    model.set_params(loss="squared_error")
    assert model.out_activation_ == "exp"
    np.testing.assert_array_equal(model.predict(X), before)
    assert model.fit(X, y).out_activation_ == "identity"


def test_poisson_predictions_are_exp_of_the_network():
    X, y = regression_data("poisson", 40, 2, seed=6)
    model = FastMLPRegressor((4,), loss="poisson", max_iter=3, random_state=0).fit(X, y)
    A = np.maximum(X @ model.coefs_[0] + model.intercepts_[0], 0)
    assert_relative_close(model.predict(X), np.exp(A @ model.coefs_[1] +
                                                   model.intercepts_[1]), 1e-12)


# ------------------------------------------------------------------ training modes

@pytest.mark.parametrize("loss", LOSSES)
def test_partial_fit_walks_fits_path(loss):
    X, y = regression_data(loss, 40, 2, seed=7)
    settings = dict(hidden_layer_sizes=(5,), loss=loss, momentum=0.5, learning_rate_init=2e-3,
                    random_state=0)
    fitted = FastMLPRegressor(max_iter=3, **settings).fit(X, y)
    stepped = FastMLPRegressor(**settings)
    for _ in range(3):
        stepped.partial_fit(X, y)
    assert stepped.loss_curve_ == fitted.loss_curve_
    assert_same_weights(stepped.coefs_ + stepped.intercepts_,
                        fitted.coefs_ + fitted.intercepts_)


def test_warm_start_continues_from_the_weights():
    X, y = regression_data("squared_error", 40, None, seed=8)
    model = FastMLPRegressor((5,), max_iter=2, warm_start=True, random_state=0).fit(X, y)
    first = model.loss_curve_[-1]
    model.fit(X, y)
    assert model.n_iter_ == 2 and len(model.loss_curve_) == 4 and model.loss_curve_[-1] < first


def test_continued_training_needs_the_same_outputs():
    X, y = regression_data("squared_error", 40, 2, seed=9)
    model = FastMLPRegressor((4,), max_iter=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="3 output"):
        model.partial_fit(X, np.column_stack([y, y[:, 0]]))
    with pytest.raises(ValueError, match="1 output"):
        model.partial_fit(X, y[:, 0])


def test_early_stopping_scores_held_out_r2():
    X, y = regression_data("squared_error", 200, None, seed=10)
    model = FastMLPRegressor((8,), early_stopping=True, validation_fraction=0.2,
                             n_iter_no_change=3, max_iter=60, random_state=0).fit(X, y)
    assert len(model.validation_scores_) == model.n_iter_ < 60
    assert model.best_validation_score_ == max(model.validation_scores_) > 0.8
    assert model.best_loss_ is None


# ------------------------------------------------------------------ bad targets and parameters

@pytest.mark.parametrize("y, error, message", [
    (np.r_[np.nan, np.ones(9)], ValueError, "Input y contains NaN"),
    (np.r_[np.inf, np.ones(9)], ValueError, "Input y contains infinity"),
    (np.array(["a"] * 10), ValueError, "numeric targets"),
    (np.ones(10) + 1j, ValueError, "Complex data"),
    (np.ones(9), ValueError, "inconsistent numbers of samples"),
    (np.ones((10, 2, 2)), ValueError, "got shape"),
    (None, ValueError, "requires y"),
])
def test_bad_targets_are_refused(y, error, message):
    X = make_inputs(10, 3, np.float64, seed=11)
    with pytest.raises(error, match=message):
        FastMLPRegressor((3,), max_iter=1).fit(X, y)


def test_poisson_refuses_negative_targets_and_keeps_the_model():
    X, y = regression_data("poisson", 30, None, seed=12)
    model = FastMLPRegressor((3,), loss="poisson", max_iter=2, random_state=0).fit(X, y)
    before = model.predict(X)
    bad = y.copy()
    bad[4] = -1.5
    for train in (model.fit, model.partial_fit,
                  FastMLPRegressor((3,), loss="poisson", max_iter=2).fit):
        with pytest.raises(ValueError, match="non-negative y.*-1.5"):
            train(X, bad)
    np.testing.assert_array_equal(model.predict(X), before)


def test_an_unknown_loss_is_refused():
    X, y = regression_data("squared_error", 20, None, seed=13)
    with pytest.raises(ValueError, match="'loss' parameter"):
        FastMLPRegressor(loss="log_loss").fit(X, y)


# ------------------------------------------------------------------ model files

@pytest.mark.parametrize("loss, n_outputs", [("squared_error", None), ("poisson", 3)])
def test_round_trip_predicts_identically_and_continues_training(tmp_path, loss, n_outputs):
    X, y = regression_data(loss, 40, n_outputs, seed=14)
    model = FastMLPRegressor((5,), loss=loss, max_iter=3, momentum=0.5, random_state=0,
                             early_stopping=True).fit(X, y)
    model.save(tmp_path / "model.npz")
    loaded = fastmlp.load(tmp_path / "model.npz")
    assert type(loaded) is FastMLPRegressor and loaded.get_params() == model.get_params()
    assert set(vars(loaded)) - set(CACHES) == set(vars(model)) - set(CACHES)
    assert loaded.out_activation_ == model.out_activation_
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    for continued in (model, loaded):
        continued.set_params(early_stopping=False)  # partial_fit refuses early stopping
        continued.partial_fit(X, y)
    assert loaded.loss_curve_ == model.loss_curve_
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.fixture
def saved_regressor(tmp_path):
    X, y = regression_data("poisson", 30, 2, seed=15)
    path = tmp_path / "model.npz"
    FastMLPRegressor((4,), loss="poisson", max_iter=2, random_state=0).fit(X, y).save(path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda m: m["fitted"].update(kind="binary"), "target kind 'binary' is not one of"),
    (lambda m: m["fitted"].update(kind="continuous"), "2 output(s) does not fit continuous"),
    (lambda m: m["fitted"].update(out_activation="softmax"), "out_activation 'softmax'"),
    (lambda m: m.update(estimator="FastMLP"), "target kind 'continuous-multioutput'"),
])
def test_a_regressor_file_inconsistent_with_its_targets_is_refused(saved_regressor, change,
                                                                  message):
    metadata = metadata_of(saved_regressor)
    change(metadata)
    rewrite(saved_regressor, metadata=json.dumps(metadata))
    assert message in load_error(saved_regressor)


def test_the_cli_refuses_to_predict_with_a_regressor_by_name(saved_regressor, tmp_path,
                                                            capsys):
    rows = tmp_path / "rows.csv"
    np.savetxt(rows, make_inputs(3, 4, np.float64, seed=19), delimiter=",")
    assert cli.main(["predict", str(saved_regressor), str(rows)]) == 1
    assert "holds a FastMLPRegressor: fastmlp predict handles FastMLP classifiers only" in \
        capsys.readouterr().err


# ------------------------------------------------------------------ training diagnostics

def test_a_fit_that_learned_nothing_is_named_against_the_mean():
    X = make_inputs(2000, 4, np.float64, seed=16)
    y = np.random.default_rng(17).normal(size=2000)      # unrelated to X
    with pytest.warns(TrainingWarning, match="no better than predicting the targets' mean"):
        FastMLPRegressor((), activation="identity", tol=1.0, n_iter_no_change=2,
                         learning_rate_init=1e-3, random_state=0).fit(X, y)


@pytest.mark.parametrize("loss", LOSSES)
def test_a_fit_that_learned_raises_no_training_warning(loss):
    X, y = regression_data(loss, 300, 2, seed=18)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = FastMLPRegressor((6,), loss=loss, max_iter=30, random_state=0).fit(X, y)
    assert model.score(X, y) > 0.3     # Poisson noise caps R² well below 1
