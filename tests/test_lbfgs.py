"""solver="lbfgs": scikit-learn's L-BFGS path from the same weights (both backends, the
streamed and the BLAS gradient), its warnings, and FastMLP's guarantees around it
(interrupts, divergence, model files)."""

import contextlib
import warnings

import numpy as np
import pytest
from conftest import BACKENDS, assert_relative_close, assert_same_weights, make_labels
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.neural_network._base import LOSS_FUNCTIONS
from test_reliability import interrupt_on_call
from test_sklearn_oracle import (N_SAMPLES, RTOL, assert_same_model, starting_weights,
                                 train_fastmlp, train_sklearn)

import fastmlp
from fastmlp import FastMLP
from fastmlp.exceptions import ConvergenceWarning, DivergenceWarning, TrainingWarning
from fastmlp.kernels import dispatch

N_ITER = 15
# L-BFGS amplifies round-off (FastMLP sums a gradient over the samples in another order than
# scikit-learn's BLAS does): on some data sets the weights part by up to ~1e-8 after 15
# iterations, while the losses agree to ~1e-10. On this one they agree to RTOL.
DATA_SEED = 105
HIDDEN = (5, 4)
N_OUTPUTS = {"binary": 1, "multiclass": 3, "multilabel": 3}
# No stopping on the gradient (gtol 0): every fit runs its max_iter iterations.
LBFGS = dict(solver="lbfgs", tol=0.0, max_iter=N_ITER, alpha=1e-3)


@contextlib.contextmanager
def probabilities_clipped():
    """A list that gets True for each of scikit-learn's log-losses that clipped a probability
    to [eps, 1 - eps] (FastMLP computes the loss from the logits instead: where an output
    saturates, the two losses differ, and a line search may then take other steps)."""
    clipped = []
    with pytest.MonkeyPatch.context() as patch:
        for name in ("log_loss", "binary_log_loss"):
            loss = LOSS_FUNCTIONS[name]

            def recording(y_true, y_prob, sample_weight=None, loss=loss):
                eps = np.finfo(y_prob.dtype).eps
                clipped.append(bool(((y_prob < eps) | (y_prob > 1 - eps)).any()))
                return loss(y_true, y_prob, sample_weight)
            patch.setitem(LOSS_FUNCTIONS, name, recording)
        yield clipped


def lbfgs_pair(kind: str, backend: str = "numba", n: int = N_SAMPLES, hidden=HIDDEN,
               sample_weight=None, **params):
    """scikit-learn's and FastMLP's fits from the same weights. The labels are shuffled
    against the rows, so that no weights separate them: the line searches then rarely try
    weights that saturate an output, and the test checks they never did (see
    probabilities_clipped)."""
    X, y = make_labels(kind, n, seed=DATA_SEED)
    y = np.random.default_rng(DATA_SEED).permutation(y)
    coefs, intercepts = starting_weights([X.shape[1], *hidden, N_OUTPUTS[kind]], seed=92)
    settings = dict(LBFGS, hidden_layer_sizes=hidden) | params
    with probabilities_clipped() as clipped:
        oracle = train_sklearn(X, y, coefs, intercepts, sample_weight, **settings)
    assert not any(clipped), "an output saturated: the paths are not comparable to round-off"
    model = train_fastmlp(X, y, coefs, intercepts, sample_weight, backend=backend, **settings)
    return X, y, coefs, intercepts, model, oracle


def assert_same_lbfgs(model, oracle, X, coefs) -> None:
    assert model.n_iter_ == oracle.n_iter_ == len(model.loss_curve_)
    assert_relative_close(model.loss_, oracle.loss_, RTOL, "loss_")
    assert_same_model(model, oracle, X, coefs)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_lbfgs_walks_sklearns_path(backend, activation, kind):
    X, _, coefs, _, model, oracle = lbfgs_pair(kind, backend, activation=activation)
    assert model.n_iter_ >= 5
    assert_same_lbfgs(model, oracle, X, coefs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lbfgs_through_blas_walks_sklearns_path(backend):
    # Enough rows and units that the compiled backend's full-batch gradient goes through BLAS.
    X, _, coefs, _, model, oracle = lbfgs_pair("multiclass", backend, n=300, hidden=(40,))
    assert dispatch.use_blas(model._layout, X.shape[0])
    assert_same_lbfgs(model, oracle, X, coefs)


def test_lbfgs_loss_curve_holds_each_iterations_loss():
    X, y, coefs, intercepts, model, _ = lbfgs_pair("binary", max_iter=6)
    shorter = [train_fastmlp(X, y, coefs, intercepts, hidden_layer_sizes=HIDDEN,
                             **dict(LBFGS, max_iter=n_iter)) for n_iter in range(1, 7)]
    assert model.loss_curve_ == [fit.loss_ for fit in shorter]
    assert_same_weights(shorter[-1].coefs_, model.coefs_)


def test_lbfgs_stops_at_max_fun_as_sklearn_does():
    X, _, coefs, _, model, oracle = lbfgs_pair("multiclass", max_iter=50, max_fun=9)
    assert model.n_iter_ < 9
    assert_same_lbfgs(model, oracle, X, coefs)


def test_warm_started_lbfgs_restarts_from_the_weights_as_sklearn_does():
    X, y, coefs, intercepts, model, oracle = lbfgs_pair("multiclass", max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, SklearnConvergenceWarning))
        oracle.fit(X, y)
        model.set_params(warm_start=True).fit(X, y)
    # n_iter_ counts each fit's iterations, as scikit-learn's; the loss curve goes on.
    assert len(model.loss_curve_) == 10 and model.n_iter_ == oracle.n_iter_ == 5
    assert_relative_close(model.loss_, oracle.loss_, RTOL, "loss_")
    assert_same_model(model, oracle, X, coefs)


def test_compiled_and_reference_lbfgs_agree_in_float32():
    X, y = make_labels("multiclass", N_SAMPLES, seed=93)
    X = X.astype(np.float32)
    models = [FastMLP(HIDDEN, backend=backend, random_state=0, **dict(LBFGS, max_iter=5))
              for backend in BACKENDS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        compiled, reference = [model.fit(X, y) for model in models]
    assert compiled.coefs_[0].dtype == np.float32
    assert_relative_close(compiled.loss_curve_, reference.loss_curve_, 1e-4)
    for mine, theirs in zip(compiled.coefs_, reference.coefs_):
        assert_relative_close(mine, theirs, 1e-4)


def test_lbfgs_warns_as_sklearn_when_it_stops_before_converging():
    X, y = make_labels("binary", N_SAMPLES, seed=94)
    with pytest.warns(ConvergenceWarning, match=r"lbfgs failed to converge after 3 "
                      r"iteration\(s\) \(status=1\)(.|\n)*max_iter=3"):
        FastMLP(HIDDEN, random_state=0, **dict(LBFGS, max_iter=3)).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = FastMLP(HIDDEN, solver="lbfgs", random_state=0, max_iter=500).fit(X, y)
    assert model.n_iter_ < 500


def test_lbfgs_refuses_partial_fit_and_ignores_stochastic_settings():
    X, y = make_labels("binary", N_SAMPLES, seed=95)
    with pytest.raises(AttributeError, match="only available for stochastic optimizers"):
        FastMLP(solver="lbfgs").partial_fit(X, y, classes=np.unique(y))
    assert not hasattr(FastMLP(solver="lbfgs"), "partial_fit")
    assert hasattr(FastMLP(), "partial_fit")
    # early_stopping (even with a validation split too large to make), batch_size, shuffle
    # and momentum are SGD's: the fit is lbfgs's own.
    init = starting_weights([4, *HIDDEN, 1], seed=96)
    plain = train_fastmlp(X, y, *init, hidden_layer_sizes=HIDDEN, **LBFGS)
    odd = train_fastmlp(X, y, *init, hidden_layer_sizes=HIDDEN,
                        **dict(LBFGS, early_stopping=True, validation_fraction=0.99,
                               batch_size=3, shuffle=True, momentum=0.9))
    assert_same_weights(odd.coefs_ + odd.intercepts_, plain.coefs_ + plain.intercepts_)
    assert odd.validation_scores_ is None and odd.best_loss_ is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("point, call", [
    ("in-the-bookkeeping", ("_divergence", 4)),
    ("in-a-loss-evaluation", ("batch_gradient", 9)),
])
def test_interrupted_lbfgs_is_the_fit_of_its_completed_iterations(monkeypatch, backend, point,
                                                                  call):
    X, y = make_labels("multiclass", N_SAMPLES, seed=97)
    init = starting_weights([4, *HIDDEN, 3], seed=98)
    name, number = call
    owner = FastMLP if name == "_divergence" else BACKENDS[backend]
    with monkeypatch.context() as patch:
        interrupt_on_call(patch, owner, name, call=number)
        model = FastMLP(HIDDEN, init=init, backend=backend, **dict(LBFGS, max_iter=50))
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y)
    completed = model.n_iter_
    assert 0 < completed == len(model.loss_curve_)
    same = train_fastmlp(X, y, *init, backend=backend, hidden_layer_sizes=HIDDEN,
                         **dict(LBFGS, max_iter=completed))
    assert model.loss_curve_ == same.loss_curve_
    assert_same_weights(model.coefs_ + model.intercepts_, same.coefs_ + same.intercepts_)


def diverging_check(real):
    """FastMLP._divergence finding the 4th iteration's weights unusable (as an overflow of
    the outputs would make them)."""
    calls = []

    def check(self, *args):
        calls.append(None)
        return "the loss became inf" if len(calls) == 4 else real(self, *args)
    return check


def overflowing_loss(real):
    """batch_gradient whose loss overflows from the 8th evaluation on, wherever L-BFGS-B
    looks."""
    calls = []

    def gradient(*args):
        calls.append(None)
        loss = real(*args)
        return np.inf if len(calls) >= 8 else loss
    return gradient


@pytest.mark.parametrize("owner, name, make", [
    (FastMLP, "_divergence", diverging_check),
    (dispatch, "batch_gradient", overflowing_loss),
], ids=["unusable-weights", "overflowing-loss"])
def test_lbfgs_divergence_keeps_the_last_finite_iteration(monkeypatch, owner, name, make):
    X, y = make_labels("binary", N_SAMPLES, seed=99)
    init = starting_weights([4, *HIDDEN, 1], seed=100)
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, make(getattr(owner, name)))
        model = FastMLP(HIDDEN, init=init, **dict(LBFGS, max_iter=50))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X, y)
    completed = model.n_iter_
    assert [w.category for w in caught] == [DivergenceWarning]
    assert f"diverged in iteration {completed + 1}" in str(caught[0].message)
    same = train_fastmlp(X, y, *init, hidden_layer_sizes=HIDDEN,
                         **dict(LBFGS, max_iter=completed))
    assert 0 < completed and model.loss_curve_ == same.loss_curve_
    assert_same_weights(model.coefs_ + model.intercepts_, same.coefs_ + same.intercepts_)
    assert np.isfinite(model.predict_proba(X)).all()


def test_lbfgs_with_overflowing_features_warns_and_stays_usable():
    X, y = make_labels("binary", N_SAMPLES, seed=101)
    X = X * 1e150
    model = FastMLP(HIDDEN, solver="lbfgs", activation="relu", random_state=0, max_iter=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    # L-BFGS-B's line search gives up (or an iteration diverges): the fit says so.
    assert {w.category for w in caught} & {ConvergenceWarning, DivergenceWarning}
    assert all(np.isfinite(W).all() for W in model.coefs_ + model.intercepts_)
    assert np.isfinite(model.predict_proba(X)).all()


def test_lbfgs_model_files_round_trip(tmp_path):
    X, y, *_, model, _ = lbfgs_pair("multiclass", max_iter=5)
    model.save(tmp_path / "model.npz")
    loaded = fastmlp.load(tmp_path / "model.npz")
    assert loaded.get_training_state().optimizer.name == "lbfgs"
    assert loaded.loss_curve_ == model.loss_curve_ and loaded.n_iter_ == 5
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for continued in (model, loaded):
            continued.set_params(warm_start=True).fit(X, y)
    assert_same_weights(model.coefs_ + model.intercepts_, loaded.coefs_ + loaded.intercepts_)


def test_a_useless_lbfgs_fit_is_not_told_to_change_its_learning_rate():
    # Every ReLU unit starts inactive on every row: no gradient reaches the hidden layer.
    X, y = make_labels("binary", N_SAMPLES, seed=102)
    coefs, intercepts = starting_weights([4, 5, 1], seed=103)
    intercepts[0][:] = -100.0
    with pytest.warns(TrainingWarning, match="inactive") as caught:
        FastMLP(5, solver="lbfgs", init=(coefs, intercepts)).fit(X, y)
    message = next(str(w.message) for w in caught if w.category is TrainingWarning)
    assert "lbfgs has no learning rate" in message and "learning_rate_init" not in message
