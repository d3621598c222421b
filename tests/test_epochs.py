"""Many epochs in one compiled call (kernels.epochs): the same fit, bit for bit, as one epoch
per call with the front's Python between epochs; its own checks handed back to the front;
and an interrupt that lands between calls leaves the fit of the completed epochs."""

import warnings

import numpy as np
import pytest
from conftest import (assert_same_weights, make_labels, many_epochs_per_call,
                      one_epoch_per_call, weights)

import fastmlp._base
from fastmlp import FastMLP, FastMLPRegressor
from fastmlp.exceptions import ConvergenceWarning, DivergenceWarning
from fastmlp.kernels import dispatch
from fastmlp.kernels.codes import SGD, SIGMOID, SOFTMAX
from fastmlp.kernels.layout import make_layout

N_SAMPLES = 60


@pytest.fixture(autouse=True)
def _many_epochs_from_the_first_fit(monkeypatch):
    many_epochs_per_call(monkeypatch)


def fit(model, X, y, per_epoch: bool = False):
    """``model`` fitted quietly, in one epoch per call with ``per_epoch``; with the warnings
    it gave."""
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if per_epoch:
            one_epoch_per_call(patch)
        model.fit(X, y)
    return model, [w.category for w in caught]


def training_state(model) -> dict:
    """Everything a continued fit reads, beyond the weights."""
    optimizer = model._optimizer
    return dict(loss_curve_=model.loss_curve_, n_iter_=model.n_iter_, t_=model.t_,
                best_loss_=model.best_loss_, count=model._no_improvement_count,
                steps=optimizer.steps, learning_rate=optimizer.learning_rate,
                buffers={name: buffer.tolist() for name, buffer in optimizer.buffers.items()},
                rng=model._rng.bit_generator.state)


def assert_same_fit(fast, slow) -> None:
    assert_same_weights(weights(fast), weights(slow))
    assert training_state(fast) == training_state(slow)


SETTINGS = {
    "defaults": dict(),
    "per-sample-L2-momentum": dict(batch_size=1, momentum=0.9, alpha=1e-3),
    "per-sample-nesterov": dict(batch_size=1, momentum=0.9, nesterovs_momentum=True),
    "per-sample-adam": dict(batch_size=1, solver="adam", hidden_layer_sizes=(6, 4),
                            activation="tanh"),
    "mini-batch-adam": dict(batch_size=8, solver="adam", alpha=1e-4),
    "mini-batch-blas": dict(batch_size=40, momentum=0.9, activation="logistic"),
    "full-batch": dict(batch_size="full", learning_rate_init=0.1),
    "invscaling": dict(batch_size=4, learning_rate="invscaling", learning_rate_init=0.2,
                       power_t=0.4),
    # The stopping rule fires often: the rate is divided several times, then training stops.
    "adaptive": dict(batch_size=4, learning_rate="adaptive", learning_rate_init=0.2, tol=0.1,
                     n_iter_no_change=1, max_iter=300),
    "stops-early": dict(tol=1e-2, n_iter_no_change=3, max_iter=500),
    "no-shuffle": dict(shuffle=False),
    "no-stopping": dict(n_iter_no_change=np.inf),
}


# Every setting in float64; in float32 one of each kernel (per-sample, streamed, BLAS).
CASES = [(setting, "float64") for setting in SETTINGS] + \
    [(setting, "float32") for setting in ("defaults", "per-sample-adam", "mini-batch-blas")]


@pytest.mark.parametrize("setting, dtype", CASES)
def test_many_epochs_a_call_is_one_epoch_a_call(setting, dtype):
    X, y = make_labels("multiclass", N_SAMPLES, seed=301)
    X = X.astype(dtype)
    params = dict(dict(hidden_layer_sizes=(5,), max_iter=40, random_state=0),
                  **SETTINGS[setting])
    fast, fast_warnings = fit(FastMLP(**params), X, y)
    slow, slow_warnings = fit(FastMLP(**params), X, y, per_epoch=True)
    assert_same_fit(fast, slow)
    assert fast_warnings == slow_warnings
    # ... and training on continues alike.
    for model in (fast, slow):
        model.partial_fit(X, y)
    assert_same_weights(weights(fast), weights(slow))


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressors_alike(loss):
    X, _ = make_labels("binary", N_SAMPLES, seed=302)
    y = np.exp(0.5 * X[:, 0]) if loss == "poisson" else np.column_stack([X[:, 0], X[:, 1]])
    params = dict(hidden_layer_sizes=(5,), max_iter=30, learning_rate_init=1e-3, loss=loss,
                  random_state=0)
    fast, _ = fit(FastMLPRegressor(**params), X, y)
    slow, _ = fit(FastMLPRegressor(**params), X, y, per_epoch=True)
    assert_same_fit(fast, slow)


@pytest.mark.parametrize("seconds", [0.0, 1e9], ids=["an-epoch-a-call", "every-epoch-a-call"])
def test_how_epochs_are_split_into_calls_changes_nothing(monkeypatch, seconds):
    X, y = make_labels("binary", N_SAMPLES, seed=303)
    params = dict(hidden_layer_sizes=(5,), max_iter=50, tol=1e-3, random_state=0)
    slow, _ = fit(FastMLP(**params), X, y, per_epoch=True)
    calls = []
    real = dispatch.sgd_epochs

    def counted(*args):
        calls.append(None)
        return real(*args)
    monkeypatch.setattr(fastmlp._base, "EPOCHS_CALL_SECONDS", seconds)
    monkeypatch.setattr(dispatch, "sgd_epochs", counted)
    fast, _ = fit(FastMLP(**params), X, y)
    assert_same_fit(fast, slow)
    # The first call times an epoch; then as many as fit the time.
    assert len(calls) == (fast.n_iter_ if seconds == 0 else 2)


def test_a_diverging_fit_is_redone_an_epoch_a_call():
    X, y = make_labels("binary", N_SAMPLES, seed=304)
    X = X * 1e3     # unscaled, at a huge learning rate: the loss overflows in a few epochs
    params = dict(hidden_layer_sizes=(5,), max_iter=200, learning_rate_init=10.0,
                  random_state=0)
    fast, fast_warnings = fit(FastMLP(**params), X, y)
    slow, slow_warnings = fit(FastMLP(**params), X, y, per_epoch=True)
    assert DivergenceWarning in fast_warnings and fast_warnings == slow_warnings
    assert fast.n_iter_ < 200 and np.isfinite(fast.predict_proba(X)).all()
    assert_same_fit(fast, slow)


def test_a_shuffle_that_runs_out_of_draws_is_redone(monkeypatch):
    # Fisher-Yates rejects a draw with probability below n / 2**32; the front then draws
    # more. Here every call says so: the front redoes its epochs one at a time, the same fit.
    X, y = make_labels("binary", N_SAMPLES, seed=305)
    params = dict(hidden_layer_sizes=(5,), max_iter=20, random_state=0)
    slow, _ = fit(FastMLP(**params), X, y, per_epoch=True)
    real = dispatch.sgd_epochs

    def short_of_draws(*args):
        args = list(args)
        args[8] = args[8][:0]     # no draws: the shuffle stops at once
        return real(*args)
    monkeypatch.setattr(dispatch, "sgd_epochs", short_of_draws)
    fast, _ = fit(FastMLP(**params), X, y)
    assert_same_fit(fast, slow)


@pytest.mark.parametrize("call", [1, 2])
def test_an_interrupt_between_calls_leaves_the_completed_epochs(monkeypatch, call):
    X, y = make_labels("multiclass", N_SAMPLES, seed=306)
    params = dict(hidden_layer_sizes=(5,), batch_size=4, momentum=0.5, random_state=0, tol=0.0,
                  n_iter_no_change=100)
    real = dispatch.sgd_epochs
    done = []

    def interrupted(*args):
        result = real(*args)
        done.append(result[0])
        if len(done) == call:
            raise KeyboardInterrupt     # after the call's epochs ran, before they are booked
        return result
    monkeypatch.setattr(dispatch, "sgd_epochs", interrupted)
    model = FastMLP(max_iter=50, **params)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    monkeypatch.undo()
    completed = sum(done[:-1])
    assert model.n_iter_ == completed == len(model.loss_curve_)
    if completed:
        same, _ = fit(FastMLP(max_iter=completed, **params), X, y, per_epoch=True)
        assert_same_fit(model, same)
    model.partial_fit(X, y)     # usable and continuable
    assert np.isfinite(model.predict_proba(X)).all()


@pytest.mark.parametrize("setting", ["sample-weight", "replacement", "mt19937", "numpy-backend",
                                     "sparse", "verbose", "early-stopping"])
def test_fits_that_need_the_front_between_epochs_take_one_epoch_a_call(monkeypatch, setting,
                                                                         capsys):
    import scipy.sparse
    X, y = make_labels("binary", N_SAMPLES, seed=307)
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    fit_params = {}
    if setting == "sample-weight":
        fit_params["sample_weight"] = np.linspace(0.5, 2, N_SAMPLES)
        params["batch_size"] = 4     # (at batch size 1 weights would cancel, and it says so)
    elif setting == "replacement":
        params["shuffle"] = "replacement"
    elif setting == "mt19937":
        params["random_state"] = np.random.Generator(np.random.MT19937(0))
    elif setting == "numpy-backend":
        params["backend"] = "numpy"
    elif setting == "sparse":
        X = scipy.sparse.csr_matrix(X)
    else:
        params[setting.replace("-", "_")] = True

    def refuse(*args):
        raise AssertionError("many epochs a call")
    monkeypatch.setattr(dispatch, "sgd_epochs", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = FastMLP(**params).fit(X, y, **fit_params)
    assert model.n_iter_ == 5


def test_a_configuration_takes_many_epochs_a_call_from_its_second_fit(monkeypatch):
    monkeypatch.undo()      # the rule itself, not this module's fixture
    monkeypatch.setattr(dispatch, "_ASKED", set())
    monkeypatch.setattr(dispatch, "_compiled_here", lambda kernel: False)
    configuration = (make_layout([3, 5, 1])[0], 1, SGD, SIGMOID)
    assert not dispatch.sgd_epochs_due(*configuration, np.float64)
    assert dispatch.sgd_epochs_due(*configuration, np.float64)
    assert not dispatch.sgd_epochs_due(*configuration, np.float32)     # another kernel
    assert not dispatch.sgd_epochs_due(make_layout([3, 5, 1])[0], 8, SGD, SIGMOID, np.float64)
    assert not dispatch.sgd_epochs_due(make_layout([3, 5, 1])[0], 1, SGD, SOFTMAX, np.float64)
    # A kernel already compiled in this process is due at once.
    monkeypatch.setattr(dispatch, "_ASKED", set())
    monkeypatch.setattr(dispatch, "_compiled_here", lambda kernel: True)
    assert dispatch.sgd_epochs_due(*configuration, np.float64)


def test_a_first_fit_takes_one_epoch_a_call_and_a_second_many(monkeypatch):
    monkeypatch.undo()
    monkeypatch.setattr(dispatch, "_ASKED", set())
    # As in a fresh process (other tests here compiled the kernel already).
    monkeypatch.setattr(dispatch, "_compiled_here", lambda kernel: False)
    calls = []
    real = dispatch.sgd_epochs

    def counted(*args):
        calls.append(None)
        return real(*args)
    monkeypatch.setattr(dispatch, "sgd_epochs", counted)
    X, y = make_labels("binary", N_SAMPLES, seed=308)
    params = dict(hidden_layer_sizes=(5,), max_iter=10, random_state=0)
    first, _ = fit(FastMLP(**params), X, y)
    assert not calls
    second, _ = fit(FastMLP(**params), X, y)
    assert calls
    assert_same_fit(first, second)


def test_an_epoch_kernel_is_called_only_for_types_whose_address_was_taken():
    """The many-epochs kernel calls its epoch kernel through an address for the types it
    passes (kernels.epochs.call_epoch): a call with types no address was taken for would pass
    arguments the code does not take, so it does not compile."""
    from numba import njit
    from numba.core.errors import TypingError

    from fastmlp.kernels.epochs import call_epoch

    @njit
    def call(address, row):
        return call_epoch(address, (row, row.size))

    with pytest.raises(TypingError, match="no epoch kernel's address was taken"):
        call(0, np.ones(3, dtype=np.float16))
