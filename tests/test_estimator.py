"""FastMLP as an estimator: scikit-learn's protocol, targets, the training state it exposes,
initial weights, and the seed notebooks' loan-approval scenario."""

import copy
import os
import pickle
import re
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import sklearn.exceptions
from conftest import assert_relative_close, assert_same_weights, make_labels, weights
from sklearn.base import clone, is_classifier
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmlp import FastMLP, _targets
from fastmlp.exceptions import ConvergenceWarning, DivergenceWarning, NotFittedError
from fastmlp.initialization import initialize
from fastmlp.kernels.layout import make_layout, unpack
from fastmlp.kernels.shuffle import shuffled

N_SAMPLES = 60


def fit_quietly(model: FastMLP, X, y) -> FastMLP:
    """fit, without the ConvergenceWarning a short max_iter is meant to produce."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def small_model(**params) -> FastMLP:
    settings = dict(hidden_layer_sizes=(6,), learning_rate_init=0.05, max_iter=5,
                    random_state=0) | params
    return FastMLP(**settings)


# ------------------------------------------------------------------ the scikit-learn protocol

def expected_failed_checks(estimator) -> dict:
    """What scikit-learn's weighted batch mean (sum_i w_i * l_i / sum_i w_i per batch) cannot
    give stochastic descent in small batches, where these instances train:

    - weights as repeated rows holds for full-batch solvers only (tested for lbfgs here and
      for full-batch SGD in test_sample_weight): stochastic descent steps once per batch, so
      a repeated row takes two steps where a row of weight 2 takes one (scikit-learn checks
      its MLPClassifier with lbfgs for the same reason);
    - class_weight only reweighs samples within each batch: at batch size 1 a weight cancels
      (but in the L2 penalty), so class weights cannot tilt a per-sample fit."""
    if estimator.solver == "lbfgs":
        return {}
    repeated_rows = "stochastic descent steps per batch: a repeated row is not a weight of 2"
    return {"check_sample_weight_equivalence_on_dense_data": repeated_rows,
            "check_sample_weight_equivalence_on_sparse_data": repeated_rows,
            "check_class_weight_classifiers":
            "weights act within each batch only, and cancel in batches of one sample"}


with warnings.catch_warnings():
    # FastMLP implements the protocol without inheriting BaseEstimator (it does not import
    # scikit-learn, see fastmlp/_base.py); the checks below are what that warning asks for.
    warnings.filterwarnings("ignore", "Estimator FastMLP does not inherit", UserWarning)
    ESTIMATOR_CHECKS = parametrize_with_checks([
        FastMLP(hidden_layer_sizes=(5,), max_iter=20, random_state=0),
        FastMLP(hidden_layer_sizes=(5,), max_iter=50, random_state=0, batch_size=8,
                learning_rate_init=0.1, momentum=0.5, alpha=1e-3, shuffle="replacement",
                early_stopping=True, backend="numpy"),
        FastMLP(hidden_layer_sizes=(5,), max_iter=50, random_state=0, solver="lbfgs"),
        FastMLP(hidden_layer_sizes=(5,), max_iter=30, random_state=0, batch_size=4,
                learning_rate="adaptive", learning_rate_init=0.1, n_iter_no_change=2),
    ], expected_failed_checks=expected_failed_checks)


@ESTIMATOR_CHECKS
@pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_is_a_classifier():
    assert is_classifier(FastMLP())


def test_clone_copies_parameters_not_the_fit():
    X, y = make_labels("binary", N_SAMPLES, seed=31)
    model = fit_quietly(small_model(activation="tanh", batch_size="full"), X, y)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "coefs_")


def test_pipeline_with_standard_scaler():
    X, y = make_labels("multiclass", N_SAMPLES, seed=32)
    pipeline = make_pipeline(StandardScaler(), small_model(max_iter=40))
    assert fit_quietly(pipeline, 10 * X + 3, y).score(10 * X + 3, y) > 0.9


def test_grid_search_picks_and_refits():
    X, y = make_labels("binary", N_SAMPLES, seed=33, label_type="str")
    grid = {"hidden_layer_sizes": [(3,), (6,)], "learning_rate_init": [0.01, 0.1]}
    search = fit_quietly(GridSearchCV(small_model(max_iter=10), grid, cv=3), X, y)
    (width,) = search.best_params_["hidden_layer_sizes"]
    assert search.best_estimator_.coefs_[0].shape == (4, width)
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert set(search.predict(X)) <= set(y)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba",
                                    "decision_function"])
def test_not_fitted_error_is_fastmlps_and_sklearns(method):
    with pytest.raises(NotFittedError) as raised:
        getattr(FastMLP(), method)(np.ones((2, 3)))
    # joblib workers send exceptions back pickled: the copy must still be caught.
    for error in (raised.value, pickle.loads(pickle.dumps(raised.value))):
        assert isinstance(error, NotFittedError)
        assert isinstance(error, sklearn.exceptions.NotFittedError)


def test_fit_and_predict_never_import_sklearn():
    # Importing scikit-learn costs about a second; fastmlp's cold start must stay without it.
    script = """
import sys, warnings
import numpy as np
from fastmlp import FastMLP
warnings.simplefilter("ignore")
X = np.random.default_rng(0).normal(size=(20, 3))
for y in (X[:, 0] > 0, np.digitize(X[:, 0], [-0.5, 0.5])):
    FastMLP((3,), max_iter=2).fit(X, y).predict_proba(X)
try:
    FastMLP().predict(X)
except ValueError:
    pass
print(sorted(name for name in sys.modules if name.split(".")[0] == "sklearn"))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("batch_size, compiled_only, never", [
    (64, "blas_batch_gradient", "batch_gradient"),
    (8, "batch_gradient", "blas_batch_gradient"),
], ids=["blas", "streaming"])
def test_a_minibatch_fit_compiles_only_its_own_gradient_kernel(batch_size, compiled_only,
                                                               never, tmp_path):
    # Each gradient kernel costs seconds of a first fit's compile, and a branch Numba keeps
    # would compile the other one too. A fresh interpreter and an empty kernel cache: kernels
    # loaded from the cache come as one piece, their callees not listed.
    script = f"""
import warnings
import numpy as np
from fastmlp import FastMLP
from fastmlp.kernels import minibatch
warnings.simplefilter("ignore")
X = np.random.default_rng(0).normal(size=(200, 3))
FastMLP((5,), batch_size={batch_size}, max_iter=2).fit(X, X[:, 0] > 0)
print(len(minibatch.{compiled_only}.overloads), len(minibatch.{never}.overloads))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env=os.environ | {"NUMBA_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "0"]


@pytest.mark.parametrize("change, rows, match", [
    (dict(init=([np.zeros((4, 9))], [np.zeros(9)])), slice(None), "init"),
    (dict(early_stopping=True), slice(0, 1), "validation_fraction"),
    (dict(), slice(0, 1), "only one class"),
], ids=["wrong-init", "no-room-for-validation", "one-class"])
def test_a_fit_that_raises_leaves_the_fitted_model_intact(change, rows, match):
    X, y = make_labels("multiclass", N_SAMPLES, seed=34)
    model = fit_quietly(small_model(), X, y)
    before = model.predict_proba(X)
    with pytest.raises(ValueError, match=match):
        model.set_params(hidden_layer_sizes=(9,), **change).fit(X[rows, :3], y[rows])
    assert model.n_features_in_ == 4
    np.testing.assert_array_equal(model.predict_proba(X), before)


def test_hidden_layer_sizes_accepts_numpy_ints():
    X, y = make_labels("binary", N_SAMPLES, seed=35)
    model = fit_quietly(small_model(hidden_layer_sizes=np.int64(3)), X, y)
    assert [W.shape for W in model.coefs_] == [(4, 3), (3, 1)]


# ------------------------------------------------------------------ targets

@pytest.mark.parametrize("kind, label_type", [("binary", "int"), ("binary", "str"),
                                              ("multiclass", "int"), ("multiclass", "str")])
def test_single_label_targets(kind, label_type):
    X, y = make_labels(kind, N_SAMPLES, seed=36, label_type=label_type)
    model = fit_quietly(small_model(max_iter=60), X, y)
    np.testing.assert_array_equal(model.classes_, np.unique(y))
    P = model.predict_proba(X)
    assert P.shape == (N_SAMPLES, len(model.classes_))
    assert_relative_close(P.sum(axis=1), np.ones(N_SAMPLES), 1e-12)
    np.testing.assert_array_equal(model.predict(X), model.classes_[P.argmax(axis=1)])
    decision = model.decision_function(X)
    assert decision.shape == ((N_SAMPLES,) if kind == "binary" else P.shape)
    assert model.score(X, y) > 0.9


def test_prediction_split_over_threads_matches_one_block():
    X, y = make_labels("multiclass", N_SAMPLES, seed=53)
    model = fit_quietly(small_model(), X, y)
    X_big = np.random.default_rng(54).normal(size=(25_000, 4))
    blocks = [model.predict_proba(block) for block in np.array_split(X_big, 10)]
    np.testing.assert_array_equal(model.predict_proba(X_big), np.vstack(blocks))


def test_binary_decision_function_is_the_logit_of_the_positive_class():
    X, y = make_labels("binary", N_SAMPLES, seed=37)
    model = fit_quietly(small_model(), X, y)
    assert_relative_close(model.predict_proba(X)[:, 1],
                          1 / (1 + np.exp(-model.decision_function(X))), 1e-14)


def test_multilabel_targets():
    X, Y = make_labels("multilabel", N_SAMPLES, seed=38)
    model = fit_quietly(small_model(max_iter=60), X, Y)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    P = model.predict_proba(X)
    assert P.shape == model.decision_function(X).shape == Y.shape
    np.testing.assert_array_equal(model.predict(X), (P > 0.5).astype(int))
    assert model.score(X, Y) > 0.8


def test_partial_fit_needs_classes_first_and_keeps_them():
    X, y = make_labels("multiclass", N_SAMPLES, seed=39)
    with pytest.raises(ValueError, match="classes"):
        small_model().partial_fit(X, y)
    model = small_model().partial_fit(X[y != 11], y[y != 11], classes=[3, 7, 11])
    np.testing.assert_array_equal(model.classes_, [3, 7, 11])
    model.partial_fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(X, y, classes=[3, 7])



def general_encoding(monkeypatch, y, classes, kind, dtype) -> np.ndarray:
    """The target matrix from the general (binary search) path, with the fast path off."""
    with monkeypatch.context() as patch:
        patch.setattr(_targets, "_codes_as_index", lambda y, classes: None)
        return _targets.encode(y, classes, kind, dtype)


def assert_same_array(actual: np.ndarray, expected: np.ndarray) -> None:
    assert (actual.dtype, actual.shape, actual.strides) == \
        (expected.dtype, expected.shape, expected.strides)
    assert actual.flags.c_contiguous and expected.flags.c_contiguous
    np.testing.assert_array_equal(actual, expected)


CODE_LABELS = {
    "int64": lambda codes: codes,
    "int8": lambda codes: codes.astype(np.int8),
    "uint8": lambda codes: codes.astype(np.uint8),
    "uint64": lambda codes: codes.astype(np.uint64),
    "int32-strided": lambda codes: np.repeat(codes.astype(np.int32), 2)[::2],
    "reversed": lambda codes: codes[::-1].copy()[::-1],
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("labels", CODE_LABELS)
def test_label_codes_encode_as_the_general_path_does(monkeypatch, labels, n_classes, dtype):
    # Integer labels 0..k-1 skip the binary search; the target matrix must be the same array.
    codes = np.random.default_rng(48).integers(0, n_classes, 101)
    y = CODE_LABELS[labels](codes)
    kind = _targets.BINARY if n_classes == 2 else _targets.MULTICLASS
    for classes in (np.arange(n_classes), np.arange(n_classes, dtype=np.uint8)):
        assert _targets._codes_as_index(y, classes) is y
        assert_same_array(_targets.encode(y, classes, kind, dtype),
                          general_encoding(monkeypatch, y, classes, kind, dtype))


@pytest.mark.parametrize("y, classes", [
    (np.array([1, 2, 2, 1]), np.array([1, 2])),                 # classes not from 0
    (np.array([0, 2, 2, 0]), np.array([0, 2])),                 # not consecutive
    (np.array([-1, 1, 1, -1]), np.array([-1, 1])),
    (np.array([0.0, 1.0, 1.0]), np.array([0, 1])),              # float labels
    (np.array([0, 1, 1]), np.array([0.0, 1.0])),                # float classes
    (np.array([False, True, True]), np.array([False, True])),   # bool labels
    (np.array(["0", "1", "1"]), np.array(["0", "1"])),          # text labels
    (np.array([0, 1, 2], dtype=object), np.array([0, 1, 2], dtype=object)),
], ids=["from-1", "gap", "minus-one", "float-y", "float-classes", "bool", "str", "object"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_other_labels_take_the_general_path(monkeypatch, y, classes, dtype):
    assert _targets._codes_as_index(y, classes) is None
    kind = _targets.BINARY if len(classes) == 2 else _targets.MULTICLASS
    assert_same_array(_targets.encode(y, classes, kind, dtype),
                      general_encoding(monkeypatch, y, classes, kind, dtype))


@pytest.mark.parametrize("y, classes, unknown", [
    (np.array([0, 1, 2, 1]), np.array([0, 1]), [2]),
    (np.array([0, -1, 1, -3]), np.array([0, 1]), [-3, -1]),
    (np.array([0, 1, 3], dtype=np.uint8), np.array([0, 1, 2]), [3]),
], ids=["above", "negative", "uint8-above"])
def test_label_codes_outside_classes_are_named(y, classes, unknown):
    assert _targets._codes_as_index(y, classes) is None
    kind = _targets.BINARY if len(classes) == 2 else _targets.MULTICLASS
    with pytest.raises(ValueError, match=re.escape(f"labels not in classes_ "
                                                   f"{classes.tolist()}: {unknown}")):
        _targets.encode(y, classes, kind, np.float64)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_label_codes_train_like_any_other_labels(kind):
    # The same classes as codes 0..k-1, as other integers, as floats and as text: the same
    # target matrix, so bitwise the same partial_fit trajectory.
    X, y = make_labels(kind, N_SAMPLES, seed=49)
    codes = np.searchsorted(np.unique(y), y)
    trained = []
    for labels in (codes, y, codes.astype(np.float32), np.array(["a", "b", "c"])[codes]):
        model = small_model(hidden_layer_sizes=(4,))
        for _ in range(3):
            model.partial_fit(X, labels, classes=np.unique(labels))
        trained.append(model)
    for model in trained[1:]:
        assert model.loss_curve_ == trained[0].loss_curve_
        assert_same_weights(weights(model), weights(trained[0]))

# ------------------------------------------------------------------ training state

@pytest.mark.parametrize("settings", [
    dict(),
    dict(shuffle="replacement", batch_size=7, momentum=0.9),
    dict(shuffle=False, batch_size="full", alpha=0.01, momentum=0.5, nesterovs_momentum=False),
], ids=["per-sample", "mini-batch-replacement-momentum", "full-batch-nesterov-off"])
@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_partial_fit_k_times_is_fit_for_k_epochs(kind, settings):
    X, y = make_labels(kind, N_SAMPLES, seed=40)
    k = 4
    fitted = fit_quietly(small_model(max_iter=k, tol=0.0, n_iter_no_change=k, **settings),
                         X, y)
    stepped = small_model(**settings)
    for _ in range(k):
        stepped.partial_fit(X, y, classes=np.unique(y))
    assert stepped.loss_curve_ == fitted.loss_curve_
    assert stepped.t_ == fitted.t_ == k * N_SAMPLES
    assert (stepped.n_iter_, fitted.n_iter_) == (1, k)   # n_iter_ counts each call's epochs
    assert_same_weights(weights(stepped), weights(fitted))


def test_partial_fit_reuses_its_setup_only_while_it_serves():
    # partial_fit carries its checked parameters and its epoch's set-up to the next call
    # (_base._Carried). Whatever changes between calls must still take effect: a twin
    # unpickled before each call (a pickle carries nothing) walks the same trajectory.
    import scipy.sparse
    X, y = make_labels("multiclass", N_SAMPLES, seed=41)
    steps = [dict(), dict(), dict(learning_rate_init=0.02), dict(momentum=0.9), dict(alpha=1e-3),
             dict(rows=25), dict(rows=25), dict(sparse=True), dict(), dict(batch_size=7),
             dict(solver="adam"), dict(), dict(backend="numpy"), dict(backend="numba"), dict()]
    carried, twin = small_model(), small_model()
    built, build = [], carried._kernel_arguments
    carried._kernel_arguments = lambda n: built.append(n) or build(n)
    for step in steps:
        step = dict(step)
        rows, sparse = step.pop("rows", N_SAMPLES), step.pop("sparse", False)
        X_step = scipy.sparse.csr_matrix(X[:rows]) if sparse else X[:rows]
        carried.set_params(**step).partial_fit(X_step, y[:rows], classes=np.unique(y))
        twin = pickle.loads(pickle.dumps(twin.set_params(**step)))
        assert "_carried" not in vars(twin)
        twin.partial_fit(X_step, y[:rows], classes=np.unique(y))
        assert carried.loss_curve_ == twin.loss_curve_
        assert_same_weights(weights(carried), weights(twin))
    # Reused by the calls that change nothing after a dense call of as many rows.
    assert len(steps) - len(built) == 4


def test_partial_fit_checks_parameters_changed_between_calls():
    X, y = make_labels("binary", N_SAMPLES, seed=42)
    model = small_model().partial_fit(X, y, classes=np.unique(y))
    model.learning_rate_init = -1.0
    with pytest.raises(ValueError, match="learning_rate_init"):
        model.partial_fit(X, y)
    model.learning_rate_init = 0.05
    model.partial_fit(X, y)
    # A list can change in place, so it is checked on every call.
    model = small_model(hidden_layer_sizes=[6]).partial_fit(X, y, classes=np.unique(y))
    model.hidden_layer_sizes.append(3)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        model.partial_fit(X, y)


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox,
                                           np.random.SFC64])
@pytest.mark.parametrize("rows", ["all", "subset"])
def test_each_epochs_order_is_a_shuffle_of_the_rows_drawn_from_the_models_stream(bit_generator,
                                                                                  rows):
    # Each epoch's order is a permutation of the rows, made by shuffled() from the model's
    # random state alone (whatever the bit generator), so trajectories and resumed models
    # keep their stream; the rows passed in stay as they were.
    X, y = make_labels("binary", N_SAMPLES, seed=50)
    model = small_model(max_iter=1, random_state=np.random.Generator(bit_generator(51)))
    model = fit_quietly(model, X, y)
    rows = np.arange(N_SAMPLES) if rows == "all" else np.sort(
        np.random.default_rng(52).choice(N_SAMPLES, N_SAMPLES // 3, replace=False))
    given = rows.copy()
    expected_rng = copy.deepcopy(model._rng)
    orders = []
    for _ in range(3):
        order = model._epoch_order(rows)
        np.testing.assert_array_equal(order, shuffled(rows, expected_rng))
        np.testing.assert_array_equal(np.sort(order), rows)
        assert order.dtype == rows.dtype and order is not rows
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])
    np.testing.assert_equal(model._rng.bit_generator.state, expected_rng.bit_generator.state)
    np.testing.assert_array_equal(rows, given)


def test_warm_start_continues_where_fit_stopped():
    X, y = make_labels("multiclass", N_SAMPLES, seed=41)
    settings = dict(tol=0.0, n_iter_no_change=10)
    straight = fit_quietly(small_model(max_iter=5, **settings), X, y)
    warm = fit_quietly(small_model(max_iter=3, warm_start=True, **settings), X, y)
    fit_quietly(warm.set_params(max_iter=2), X, y)
    assert warm.loss_curve_ == straight.loss_curve_
    np.testing.assert_array_equal(warm.coefs_[0], straight.coefs_[0])


def test_n_iter_counts_the_iterations_of_each_call():
    # scikit-learn's semantics since its 1.3: the loss curve and t_ accumulate, n_iter_ not.
    X, y = make_labels("binary", N_SAMPLES, seed=45)
    model = fit_quietly(small_model(max_iter=3, warm_start=True, tol=0.0), X, y)
    fit_quietly(model.set_params(max_iter=2), X, y)
    assert model.n_iter_ == 2 and len(model.loss_curve_) == 5 and model.t_ == 5 * N_SAMPLES
    model.partial_fit(X, y)
    assert model.n_iter_ == 1 and len(model.loss_curve_) == 6


def test_warm_start_with_other_classes_raises_and_keeps_the_model():
    X, y = make_labels("multiclass", N_SAMPLES, seed=46)
    model = fit_quietly(small_model(warm_start=True), X, y)
    before = model.coefs_[0].copy()
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same "
                                         "classes"):
        model.fit(X[y != y[0]], y[y != y[0]])
    np.testing.assert_array_equal(model.coefs_[0], before)


def test_n_iter_no_change_inf_trains_every_epoch():
    X, y = make_labels("binary", N_SAMPLES, seed=47)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        model = small_model(max_iter=8, n_iter_no_change=np.inf, tol=1e9).fit(X, y)
    assert model.n_iter_ == 8


def test_early_stopping_refuses_a_class_of_one_sample():
    X, y = make_labels("multiclass", N_SAMPLES, seed=48)
    y = y.copy()
    y[0] = 9
    with pytest.raises(ValueError, match="least populated class in y has only 1 member"):
        small_model(early_stopping=True).fit(X, y)


def test_partial_fit_refuses_early_stopping():
    X, y = make_labels("binary", N_SAMPLES, seed=49)
    model = small_model(early_stopping=True)
    assert not hasattr(model, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit does not support early_stopping=True"):
        model.partial_fit(X, y, classes=np.unique(y))


def test_fit_without_warm_start_starts_over():
    X, y = make_labels("multiclass", N_SAMPLES, seed=42)
    model = fit_quietly(small_model(), X, y)
    first = [W.copy() for W in model.coefs_]
    fit_quietly(model, X, y)
    assert model.n_iter_ == 5 and len(model.loss_curve_) == 5
    for W, W_first in zip(model.coefs_, first):
        np.testing.assert_array_equal(W, W_first)


def test_training_state_attributes():
    X, y = make_labels("binary", N_SAMPLES, seed=43)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        model = small_model(max_iter=7).fit(X, y)
    assert model.n_iter_ == len(model.loss_curve_) == 7
    assert model.t_ == 7 * N_SAMPLES
    assert model.best_loss_ == min(model.loss_curve_)
    assert model.n_layers_ == 3 and model.n_outputs_ == 1
    assert model.out_activation_ == "logistic" and model.n_features_in_ == 4


def test_stopping_rule_stops_before_max_iter():
    X, y = make_labels("binary", N_SAMPLES, seed=44)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = small_model(max_iter=500, tol=0.5, n_iter_no_change=2).fit(X, y)
    # Nothing improves by 0.5, so epochs 2, 3 and 4 each add to the count and 4 stops.
    assert model.n_iter_ == 4


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_divergence_keeps_the_last_finite_epoch(backend):
    X, y = make_labels("multiclass", N_SAMPLES, seed=55)
    X = 30 * X      # unscaled features and a large step blow up a linear network
    settings = dict(hidden_layer_sizes=(5, 5), activation="identity", learning_rate_init=0.1,
                    batch_size="full", momentum=0.9, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diverged = small_model(max_iter=100, **settings).fit(X, y)
    # One warning that says what happened, not NumPy's overflow warnings on the way there.
    assert [warning.category for warning in caught] == [DivergenceWarning]
    n_epochs = diverged.n_iter_
    assert 0 < n_epochs == len(diverged.loss_curve_) < 100
    before = fit_quietly(small_model(max_iter=n_epochs, **settings), X, y)
    assert_same_weights(weights(diverged), weights(before))


def test_full_batch_loss_curve_is_the_log_loss_before_each_step():
    X, y = make_labels("multiclass", N_SAMPLES, seed=45)
    longer = fit_quietly(small_model(batch_size="full", max_iter=4), X, y)
    shorter = fit_quietly(small_model(batch_size="full", max_iter=3), X, y)
    assert longer.loss_curve_[3] == pytest.approx(log_loss(y, shorter.predict_proba(X)),
                                                  rel=1e-12)


def test_early_stopping_keeps_the_best_epochs_weights():
    X, y = make_labels("multiclass", N_SAMPLES, seed=46)
    settings = dict(early_stopping=True, validation_fraction=0.2, tol=1e-3, n_iter_no_change=3,
                    learning_rate_init=0.02)
    stopped = fit_quietly(small_model(max_iter=200, **settings), X, y)
    scores = stopped.validation_scores_
    best_epoch = int(np.argmax(scores)) + 1
    assert stopped.n_iter_ == len(scores) > best_epoch, "the run must go past its best epoch"
    assert stopped.best_validation_score_ == max(scores) and stopped.best_loss_ is None
    # The same run cut at its best epoch ends with the weights early stopping kept.
    at_best = fit_quietly(small_model(max_iter=best_epoch, **settings), X, y)
    assert_same_weights(weights(stopped), weights(at_best))


def test_coefs_and_intercepts_are_views_of_one_buffer():
    X, y = make_labels("multiclass", N_SAMPLES, seed=47)
    model = fit_quietly(small_model(hidden_layer_sizes=(5, 4)), X, y)
    views = model.coefs_ + model.intercepts_
    buffer = model._params
    assert buffer.ndim == 1 and buffer.size == sum(view.size for view in views)
    assert all(np.shares_memory(view, buffer) for view in views)
    model.coefs_[-1][...] = 0
    model.intercepts_[-1][...] = 0
    np.testing.assert_allclose(model.predict_proba(X), 1 / 3)


# catch_warnings is not thread-safe: the filter is set for the whole test instead.
@pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")
def test_models_trained_in_threads_match_sequential_ones():
    # The kernels release the GIL; concurrent fits must not share any state.
    X, y = make_labels("multiclass", N_SAMPLES, seed=56)
    models = [small_model(random_state=seed, max_iter=20) for seed in range(4)]
    sequential = [clone(model).fit(X, y) for model in models]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(lambda model: model.fit(X, y), models))
    for alone, together in zip(sequential, threaded):
        assert alone.loss_curve_ == together.loss_curve_


def test_verbose_reports_each_epoch(capsys):
    X, y = make_labels("binary", N_SAMPLES, seed=57)
    fit_quietly(small_model(max_iter=3, verbose=True), X, y)
    assert "3/3" in capsys.readouterr().err
    model = small_model(verbose=True).partial_fit(X, y, classes=np.unique(y))
    assert capsys.readouterr().out == f"Iteration 1, loss = {model.loss_curve_[0]:.8f}\n"


# ------------------------------------------------------------------ dtype

@pytest.mark.parametrize("dtype, trained", [(np.float32, np.float32), (np.float64, np.float64),
                                            (np.int64, np.float64)])
def test_training_dtype_follows_the_input(dtype, trained):
    X, y = make_labels("binary", N_SAMPLES, seed=48)
    model = fit_quietly(small_model(), (10 * X).astype(dtype), y)
    assert {W.dtype for W in model.coefs_ + model.intercepts_} == {np.dtype(trained)}
    assert model.predict_proba(X).dtype == trained


def test_same_random_state_same_initial_weights_in_both_dtypes():
    X, y = make_labels("binary", N_SAMPLES, seed=49)
    # A step of 1e-12 leaves float32 weights where they started and float64 weights within
    # 1e-10 of it: both models show their initial weights.
    models = [fit_quietly(small_model(max_iter=1, learning_rate_init=1e-12), X.astype(dtype),
                          y) for dtype in (np.float32, np.float64)]
    for W32, W64 in zip(models[0].coefs_, models[1].coefs_):
        np.testing.assert_allclose(W32, W64, rtol=1e-7)


# ------------------------------------------------------------------ initial weights

SIZES = [300, 200, 2]


def initial_weights(init, activation: str = "relu", seed: int = 0):
    layout, n_params, _ = make_layout(SIZES)
    params = np.full(n_params, np.nan)
    initialize(params, layout, init, activation, np.random.default_rng(seed))
    return unpack(params, layout)


@pytest.mark.parametrize("activation, factor", [("relu", 6.0), ("tanh", 6.0),
                                                ("logistic", 2.0), ("sigmoid", 2.0)])
def test_glorot_is_sklearns_uniform_scheme(activation, factor):
    coefs, intercepts = initial_weights("glorot", activation)
    for W, b in zip(coefs, intercepts):
        bound = np.sqrt(factor / sum(W.shape))
        for values in (W, b):
            assert np.abs(values).max() <= bound
        # U(-r, r) has variance r**2 / 3.
        assert W.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)


@pytest.mark.parametrize("init, variance", [("he", lambda fan_in: 2 / fan_in),
                                            ("xavier", lambda fan_in: 1 / fan_in),
                                            ("normal", lambda fan_in: 1e-4)])
def test_normal_schemes_have_their_variance_and_zero_biases(init, variance):
    coefs, intercepts = initial_weights(init)
    W = coefs[0]
    assert W.mean() == pytest.approx(0, abs=0.05 * W.std())
    assert W.var() == pytest.approx(variance(W.shape[0]), rel=0.05)
    assert all((b == 0).all() for b in intercepts)


def test_constant_init_sets_every_weight_and_zero_biases():
    coefs, intercepts = initial_weights(0.25)
    assert all((W == 0.25).all() for W in coefs) and all((b == 0).all() for b in intercepts)


def test_same_seed_same_weights_other_seed_other_weights():
    first, again, other = (initial_weights("he", seed=seed)[0][0] for seed in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_explicit_init_copies_the_given_arrays():
    rng = np.random.default_rng(50)
    coefs = [rng.normal(size=(a, b)) for a, b in zip(SIZES[:-1], SIZES[1:])]
    intercepts = [rng.normal(size=b) for b in SIZES[1:]]
    got_coefs, got_intercepts = initial_weights((coefs, intercepts))
    for got, given in zip(got_coefs + got_intercepts, coefs + intercepts):
        np.testing.assert_array_equal(got, given)


def test_explicit_init_is_not_modified_by_training():
    X, y = make_labels("binary", N_SAMPLES, seed=51)
    coefs, intercepts = [np.full((4, 3), 0.1), np.full((3, 1), -0.2)], [np.zeros(3), np.ones(1)]
    model = fit_quietly(small_model(hidden_layer_sizes=(3,), init=(coefs, intercepts)), X, y)
    assert not np.allclose(model.coefs_[0], 0.1)
    assert (coefs[0] == 0.1).all() and (intercepts[1] == 1).all()


@pytest.mark.parametrize("init, match", [
    (([np.zeros((4, 3))], [np.zeros(3)]), "2 weight matrices"),
    (([np.zeros((4, 2)), np.zeros((3, 1))], [np.zeros(3), np.zeros(1)]), "layer 0"),
    (([np.zeros((4, 3)), np.zeros((3, 1))], [np.zeros(3), np.zeros(2)]), "layer 1"),
    (([np.full((4, 3), np.nan), np.zeros((3, 1))], [np.zeros(3), np.zeros(1)]), "finite"),
    ("uniform", "init"),
    (np.inf, "init"),
], ids=["too-few-layers", "wrong-coef-shape", "wrong-intercept-shape", "nan", "unknown-name",
        "infinite-constant"])
def test_invalid_init_raises(init, match):
    X, y = make_labels("binary", N_SAMPLES, seed=52)
    with pytest.raises(ValueError, match=match):
        small_model(hidden_layer_sizes=(3,), init=init).fit(X, y)


# ------------------------------------------------------------------ the seed scenario

def assert_loan_scenario(loan_data, **params) -> FastMLP:
    """The seed notebooks' network: 3-5-1 ReLU, full batch, rate 0.1, N(0, 0.01**2) weights;
    all ten applicants right, and the three unseen ones decided as the data says."""
    (X, decisions), (X_unseen, expected) = loan_data
    model = FastMLP(hidden_layer_sizes=(5,), activation="relu", batch_size="full",
                    learning_rate_init=0.1, max_iter=1000, init="normal", **params)
    fit_quietly(model, X, decisions)
    assert [W.shape for W in model.coefs_] == [(3, 5), (5, 1)]
    assert model.score(X, decisions) == 1.0
    np.testing.assert_array_equal(model.predict(X_unseen), expected)
    return model


def test_loan_approval_seed_scenario(loan_data):
    assert_loan_scenario(loan_data, random_state=0)


@pytest.mark.parametrize("seed", range(1, 6))
def test_loan_approval_for_a_thousand_epochs_from_any_seed(loan_data, seed):
    # The notebooks run all 1000 epochs. With the default stopping rule some seeds stop in
    # the first dozen epochs, while tiny weights still give a nearly flat loss (seed 4).
    model = assert_loan_scenario(loan_data, random_state=seed, n_iter_no_change=1000)
    assert model.n_iter_ == 1000
