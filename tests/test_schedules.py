"""SGD's learning-rate schedules ("invscaling", "adaptive"): scikit-learn's paths from the same
weights, both backends alike, and the current learning rate kept as optimizer state (roll-back,
partial_fit, warm start, model files)."""

import json
import warnings

import pytest
from conftest import (BACKENDS, assert_relative_close, assert_same_weights, make_labels,
                      one_epoch_per_call)
from test_persistence import metadata_of, rewrite
from test_reliability import interrupt_on_call
from test_sklearn_oracle import (N_SAMPLES, RTOL, assert_same_model, starting_weights,
                                 train_fastmlp, train_sklearn)

import fastmlp
from fastmlp import FastMLP
from fastmlp.exceptions import ConvergenceWarning

N_EPOCHS = 12
HIDDEN = (5, 4)
# A stopping rule that fires often (a loss must fall by 0.1 per epoch to count as
# improving), so that the adaptive schedule divides its learning rate several times.
ADAPTIVE_RULE = dict(tol=0.1, n_iter_no_change=1)


def schedule_settings(schedule: str, momentum: float, batch_size: int) -> dict:
    rule = ADAPTIVE_RULE if schedule == "adaptive" else {}
    return dict(learning_rate=schedule, learning_rate_init=0.2, power_t=0.4, momentum=momentum,
                alpha=1e-3,
                batch_size=batch_size, hidden_layer_sizes=HIDDEN, activation="tanh",
                max_iter=N_EPOCHS, **rule)


def oracle_pair(kind: str, backend: str = "numba", **params):
    X, y = make_labels(kind, N_SAMPLES, seed=81)
    n_outputs = {"binary": 1, "multiclass": 3}[kind]
    coefs, intercepts = starting_weights([X.shape[1], *HIDDEN, n_outputs], seed=82)
    oracle = train_sklearn(X, y, coefs, intercepts, **params)
    model = train_fastmlp(X, y, coefs, intercepts, backend=backend, **params)
    return X, y, coefs, model, oracle


@pytest.mark.parametrize("batch_size", [1, 10], ids=["per-sample", "mini-batch"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_schedules_walk_sklearns_path(backend, schedule, momentum, batch_size):
    params = schedule_settings(schedule, momentum, batch_size)
    X, _, coefs, model, oracle = oracle_pair("multiclass", backend, **params)
    assert model.n_iter_ == oracle.n_iter_ == N_EPOCHS
    assert_relative_close(model.loss_curve_, oracle.loss_curve_, RTOL, "loss_curve_")
    assert_same_model(model, oracle, X, coefs)
    rate = model.get_training_state().optimizer.learning_rate
    assert rate == oracle._optimizer.learning_rate
    assert rate < params["learning_rate_init"], "the schedule never changed the learning rate"


def test_adaptive_schedule_stops_where_sklearn_does():
    # Starting at 1e-5, two divisions by 5 reach 4e-7 <= 1e-6: the next trigger stops.
    params = dict(schedule_settings("adaptive", 0.0, 1), learning_rate_init=1e-5,
                  max_iter=50)
    X, _, coefs, model, oracle = oracle_pair("binary", **params)
    assert model.n_iter_ == oracle.n_iter_ < params["max_iter"]
    assert_relative_close(model.loss_curve_, oracle.loss_curve_, RTOL, "loss_curve_")
    assert model.get_training_state().optimizer.learning_rate == \
        oracle._optimizer.learning_rate == pytest.approx(1e-5 / 25)


def test_adaptive_stop_is_not_a_convergence_failure():
    X, y = make_labels("binary", N_SAMPLES, seed=83)
    model = FastMLP(5, learning_rate="adaptive", learning_rate_init=1e-5, max_iter=100,
                    random_state=0, **ADAPTIVE_RULE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    assert model.n_iter_ < 100
    assert not [w for w in caught if "Maximum iterations" in str(w.message)]


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_compiled_and_reference_schedules_agree(schedule):
    X, y = make_labels("multiclass", N_SAMPLES, seed=84)
    params = dict(schedule_settings(schedule, 0.9, 4), shuffle=True, random_state=3)
    models = [FastMLP(backend=backend, **params) for backend in BACKENDS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        compiled, reference = [model.fit(X, y) for model in models]
    assert_relative_close(compiled.loss_curve_, reference.loss_curve_, RTOL)
    for mine, theirs in zip(compiled.coefs_ + compiled.intercepts_,
                            reference.coefs_ + reference.intercepts_):
        assert_relative_close(mine, theirs, RTOL)
    rates = [m.get_training_state().optimizer.learning_rate for m in (compiled, reference)]
    assert_relative_close(rates[0], rates[1], RTOL)


def fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def test_partial_fit_continues_the_schedule_and_fit_restarts_it():
    X, y = make_labels("binary", N_SAMPLES, seed=85)
    params = schedule_settings("invscaling", 0.0, 1)
    model = FastMLP(**dict(params, max_iter=3), random_state=0, shuffle=False)
    fit_quietly(model, X, y)
    rate = model.get_training_state().optimizer.learning_rate
    assert rate == pytest.approx(0.2 / (3 * N_SAMPLES + 1) ** 0.4, rel=1e-15)
    model.partial_fit(X, y)
    assert model.get_training_state().optimizer.learning_rate == \
        pytest.approx(0.2 / (4 * N_SAMPLES + 1) ** 0.4, rel=1e-15)
    # scikit-learn: a warm-started fit makes a new optimizer, at learning_rate_init; the
    # schedule then goes on from the samples seen so far (t_).
    model.set_params(warm_start=True, max_iter=1)
    first_rate = []
    with pytest.MonkeyPatch.context() as patch:
        one_epoch_per_call(patch)
        real = fastmlp.kernels.dispatch.sgd_epoch

        def spy(*args):
            first_rate.append(args[10][0])     # hyper: the learning rate first
            return real(*args)
        patch.setattr(fastmlp.kernels.dispatch, "sgd_epoch", spy)
        fit_quietly(model, X, y)
    assert first_rate == [0.2]
    assert model.get_training_state().optimizer.learning_rate == \
        pytest.approx(0.2 / (5 * N_SAMPLES + 1) ** 0.4, rel=1e-15)


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_interrupt_restores_the_learning_rate(monkeypatch, schedule):
    X, y = make_labels("multiclass", N_SAMPLES, seed=86)
    params = dict(schedule_settings(schedule, 0.5, 4), random_state=0)
    with monkeypatch.context() as patch:
        one_epoch_per_call(patch)
        interrupt_on_call(patch, FastMLP, "_record_epoch", call=6)
        model = FastMLP(**dict(params, max_iter=20))
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y)
    same = fit_quietly(FastMLP(**dict(params, max_iter=5)), X, y)
    assert model.n_iter_ == 5
    rate = model.get_training_state().optimizer.learning_rate
    assert rate == same.get_training_state().optimizer.learning_rate < 0.2
    for continued in (model, same):
        continued.partial_fit(X, y)
    assert_same_weights(model.coefs_ + model.intercepts_, same.coefs_ + same.intercepts_)


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_model_files_keep_the_learning_rate(tmp_path, schedule):
    X, y = make_labels("multiclass", N_SAMPLES, seed=87)
    model = fit_quietly(FastMLP(**schedule_settings(schedule, 0.9, 4), random_state=0), X, y)
    model.save(tmp_path / "model.npz")
    loaded = fastmlp.load(tmp_path / "model.npz")
    rate = model.get_training_state().optimizer.learning_rate
    assert rate < 0.2
    assert loaded.get_training_state().optimizer.learning_rate == rate
    for continued in (model, loaded):
        continued.partial_fit(X, y)
    assert_same_weights(model.coefs_ + model.intercepts_, loaded.coefs_ + loaded.intercepts_)


def test_files_from_before_the_schedules_load_as_constant_rate(tmp_path):
    """A model file written before schedules and solvers existed: no learning-rate state, no
    solver/learning_rate/power_t/max_fun parameters. It trained at learning_rate_init."""
    X, y = make_labels("binary", N_SAMPLES, seed=88)
    model = fit_quietly(FastMLP(5, max_iter=3, learning_rate_init=0.05, random_state=0), X, y)
    path = tmp_path / "old.npz"
    model.save(path)
    metadata = metadata_of(path)
    del metadata["fitted"]["optimizer_learning_rate"]
    for param in ("solver", "learning_rate", "power_t", "max_fun"):
        del metadata["params"][param]
    rewrite(path, metadata=json.dumps(metadata))
    loaded = fastmlp.load(path)
    assert loaded.get_params() == model.get_params()
    assert loaded.get_training_state().optimizer.learning_rate == 0.05
    for continued in (model, loaded):
        continued.partial_fit(X, y)
    assert_same_weights(model.coefs_ + model.intercepts_, loaded.coefs_ + loaded.intercepts_)
