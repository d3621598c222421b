"""The compiled kernels walk the NumPy reference's trajectory.

Whole trainings, not single calls: both backends run several epochs from the same weights over
the same sample orders, and the parameters, momentum state and epoch losses are compared after
every epoch. The estimator is then compared across backends the same way.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from conftest import (BACKENDS, HIDDEN_CODES, OUTPUTS, RTOL, assert_passes_with_jit_disabled,
                      assert_relative_close, make_inputs, make_labels, make_network,
                      make_targets)

from fastmlp import FastMLP
from fastmlp.exceptions import ConvergenceWarning
from fastmlp.kernels import dispatch, layers, losses, per_sample, reference, simd
from fastmlp.kernels.codes import (ADAM, BLAS_CHUNK_ROWS, EXP, FAN_OUT, LINEAR, LOGITS, MOMENTUM,
                                   NESTEROV, RELU, SGD, SIGMOID, SOFTMAX)
from fastmlp.kernels.batches import steps_in_epoch
from fastmlp.kernels.layout import make_layout

N_SAMPLES = 37        # prime: a mini-batch of 5 leaves a last batch of 2
N_FEATURES = 4
N_EPOCHS = 3
HIDDEN = {1: (6,), 2: (6, 5), 3: (6, 5, 4)}
BATCH_SIZES = {"per-sample": 1, "mini-batch": 5, "full": N_SAMPLES}
# (optimizer code, hyperparameters, alpha): momentum multiplies the effective step by ten,
# so the rate comes down with it; Adam's steps are about the rate whatever the gradient's size.
OPTIMIZERS = {"plain": (SGD, (0.1, 0.0), 0.0),
              "nesterov-l2": (NESTEROV, (0.01, 0.9), 0.01),
              "momentum": (MOMENTUM, (0.01, 0.9), 0.0),
              "adam-l2": (ADAM, (0.01, 0.9, 0.999, 1e-8), 0.01)}
DTYPES = {"float64": np.float64, "float32": np.float32}


SHUFFLES = ["permutation", "identity", "replacement"]


def epoch_orders(shuffle: str, n: int, seed: int) -> list[np.ndarray]:
    """The sample order of each epoch, as the estimator would make it."""
    rng = np.random.default_rng(seed)
    if shuffle == "permutation":
        return [rng.permutation(n) for _ in range(N_EPOCHS)]
    if shuffle == "replacement":
        return [rng.integers(0, n, n) for _ in range(N_EPOCHS)]
    return [np.arange(n)] * N_EPOCHS


class Training:
    """One backend's network and optimizer state (its buffers, as many as Adam's, and its
    step count), advanced an epoch at a time."""

    def __init__(self, kernels, params, layout, n_units):
        self.kernels = kernels
        self.layout = layout
        self.params = params.copy()
        self.state = (np.zeros_like(params), np.zeros_like(params))
        self.steps = 0
        self.grad = np.empty_like(params)
        self.scratch = np.empty(2 * n_units, dtype=params.dtype)

    def epoch(self, X, Y, order, batch_size, settings, hidden, output,
              sample_weight=None) -> float:
        optimizer, hyper, alpha = settings
        state = self.state if optimizer == ADAM else self.state[:1]
        loss = float(self.kernels.sgd_epoch(
            self.params, state, self.grad, self.layout, X, Y, sample_weight, order, batch_size,
            optimizer, hyper, self.steps, self.params.dtype.type(alpha), hidden, output,
            self.scratch))
        self.steps += steps_in_epoch(order, batch_size, sample_weight)
        return loss


# The hidden activation, the output and the optimizer are compile-time constants of the
# kernels, so their full product would compile 4 x 5 x 4 kernels per network kind and dtype.
# The grid takes a covering set instead, in which every pair of their values meets
# (activation = output + optimizer, mod 4), and every other factor in full.
KERNEL_CHOICES = [(list(HIDDEN_CODES)[(o + p) % len(HIDDEN_CODES)], output, optimizer)
                  for o, output in enumerate(OUTPUTS) for p, optimizer in enumerate(OPTIMIZERS)]


@pytest.mark.parametrize("n_hidden", HIDDEN)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shuffle", SHUFFLES)
@pytest.mark.parametrize("batch_mode", BATCH_SIZES)
@pytest.mark.parametrize("activation, output, optimizer", KERNEL_CHOICES)
def test_sgd_epoch_trajectories_match(activation, batch_mode, shuffle, dtype, n_hidden, output,
                                      optimizer):
    dtype = DTYPES[dtype]
    code, n_outputs = OUTPUTS[output]
    X = make_inputs(N_SAMPLES, N_FEATURES, dtype, seed=1)
    Y = make_targets(output, N_SAMPLES, dtype, seed=2)
    network = make_network([N_FEATURES, *HIDDEN[n_hidden], n_outputs], dtype, seed=3)
    assert_same_trajectory(network, X, Y, epoch_orders(shuffle, N_SAMPLES, seed=4),
                           BATCH_SIZES[batch_mode], OPTIMIZERS[optimizer], activation, code)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(n_samples=st.integers(1, 25), n_features=st.integers(1, 20),
       hidden=st.lists(st.integers(1, 40), min_size=0, max_size=3),
       output=st.sampled_from(list(OUTPUTS)), n_outputs=st.integers(1, 6),
       batch_fraction=st.floats(0, 1), shuffle=st.sampled_from(SHUFFLES),
       activation=st.sampled_from(list(HIDDEN_CODES)), dtype=st.sampled_from(list(DTYPES)),
       optimizer=st.sampled_from(list(OPTIMIZERS)))
def test_sgd_epoch_trajectories_match_for_any_shape(n_samples, n_features, hidden, output,
                                                    n_outputs, batch_fraction, shuffle,
                                                    activation, dtype, optimizer):
    """Widths, depths and batch sizes the grid above does not reach: layers wider than a
    vector register, single units, batches of any size, one-sample data sets."""
    dtype = DTYPES[dtype]
    code = OUTPUTS[output][0]
    n_outputs = max(n_outputs, 2) if code == SOFTMAX else n_outputs
    X = make_inputs(n_samples, n_features, dtype, seed=1)
    Y = make_targets(output, n_samples, dtype, seed=2, n_outputs=n_outputs)
    network = make_network([n_features, *hidden, n_outputs], dtype, seed=3)
    batch_size = 1 + round(batch_fraction * (n_samples - 1))
    assert_same_trajectory(network, X, Y, epoch_orders(shuffle, n_samples, seed=4), batch_size,
                           OPTIMIZERS[optimizer], activation, code)


# Batches the compiled backend sends through BLAS: a full batch over three chunks of
# BLAS_CHUNK_ROWS rows or less (the gradient summed across chunks), mini-batches with a short
# last one, and a network large enough for BLAS at a batch of 9.
BLAS_CASES = {"three-chunks": ([4, 6, 5], 600, 600), "mini-batches": ([4, 6, 5], 100, 40),
              "large-network": ([70, 60, 3], 50, 9)}


@pytest.mark.parametrize("optimizer", ["plain", "nesterov-l2", "adam-l2"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("case", BLAS_CASES)
def test_blas_minibatch_trajectories_match(case, activation, dtype, output, optimizer):
    hidden, n_samples, batch_size = BLAS_CASES[case]
    dtype = DTYPES[dtype]
    code, n_outputs = OUTPUTS[output]
    X = make_inputs(n_samples, hidden[0], dtype, seed=1)
    Y = make_targets(output, n_samples, dtype, seed=2)
    network = make_network([*hidden, n_outputs], dtype, seed=3)
    assert dispatch.use_blas(network[1], batch_size)
    assert 3 * BLAS_CHUNK_ROWS >= n_samples > 2 * BLAS_CHUNK_ROWS or \
        case != "three-chunks"
    assert_same_trajectory(network, X, Y, epoch_orders("permutation", n_samples, seed=4),
                           batch_size, OPTIMIZERS[optimizer], activation, code)


@pytest.mark.parametrize("width", [3, 8, 32, 83])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("alpha", [0.0, 0.01])
@pytest.mark.parametrize("dtype", DTYPES)
def test_per_sample_first_layer_blocks_match(width, optimizer, alpha, dtype):
    """The compiled first layer runs in blocks of four SIMD registers, then of two, then of
    one, then one masked partial block. With 4 to 16 lanes per register these widths reach
    every combination (83 = 2x32 + 2x8 + 3 = 64 + 16 + 3 with 16 lanes)."""
    dtype = DTYPES[dtype]
    X = make_inputs(N_SAMPLES, N_FEATURES, dtype, seed=1)
    Y = make_targets("binary", N_SAMPLES, dtype, seed=2)
    network = make_network([N_FEATURES, width, 1], dtype, seed=3)
    code, hyper, _ = OPTIMIZERS[optimizer]
    assert_same_trajectory(network, X, Y, epoch_orders("permutation", N_SAMPLES, seed=4), 1,
                           (code, hyper, alpha), "relu", OUTPUTS["binary"][0])


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov-l2", "adam-l2"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_per_sample_state_on_a_large_first_layer_matches(optimizer, dtype):
    """With optimizer state, a first layer whose weights and state buffers outgrow
    ROW_BY_ROW_ABOVE_BYTES is stepped row by row instead of in blocks."""
    dtype = DTYPES[dtype]
    width = 64
    n_features = layers.ROW_BY_ROW_ABOVE_BYTES // (2 * width * np.dtype(dtype).itemsize) + 1
    X = make_inputs(N_SAMPLES, n_features, dtype, seed=1)
    Y = make_targets("binary", N_SAMPLES, dtype, seed=2)
    network = make_network([n_features, width, 1], dtype, seed=3)
    assert_same_trajectory(network, X, Y, epoch_orders("permutation", N_SAMPLES, seed=4)[:1],
                           1, OPTIMIZERS[optimizer], "relu", OUTPUTS["binary"][0])


def assert_same_trajectory(network, X, Y, orders, batch_size, optimizer, activation, code,
                           sample_weight=None):
    """Both backends train ``network`` epoch by epoch from the same start (weighting the
    samples by ``sample_weight`` unless None); their losses, parameters and momentum agree
    after every epoch."""
    dtype = network[0].dtype.type
    fast, slow = (Training(kernels, *network) for kernels in (dispatch, reference))
    rtol = RTOL[dtype]
    for epoch, order in enumerate(orders, start=1):
        args = (X, Y, order, batch_size, optimizer, HIDDEN_CODES[activation], code,
                sample_weight)
        fast_loss, slow_loss = fast.epoch(*args), slow.epoch(*args)
        assert fast.params.dtype == dtype
        assert_relative_close(fast_loss, slow_loss, rtol, f"loss of epoch {epoch}")
        assert_relative_close(fast.params, slow.params, rtol, f"params after epoch {epoch}")
        for buffer, (fast_state, slow_state) in enumerate(zip(fast.state, slow.state)):
            assert_relative_close(fast_state, slow_state, rtol,
                                  f"state buffer {buffer} after epoch {epoch}")
    # A trajectory that went nowhere would match trivially.
    assert not np.allclose(fast.params, network[0])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_an_optimizer_the_per_sample_kernel_lacks_trains_on_the_generic_path(optimizer,
                                                                            monkeypatch):
    """Batch size 1 goes through the per-sample kernel only for the optimizer codes it
    implements (per_sample.OPTIMIZERS); any other trains on the generic path of mini-batches
    of one sample, which must walk the reference's trajectory too."""
    def no_per_sample_kernel(*codes):
        raise AssertionError("the per-sample kernel was asked for an optimizer it lacks")

    monkeypatch.setattr(dispatch, "PER_SAMPLE_OPTIMIZERS", ())
    monkeypatch.setattr(dispatch, "per_sample_kernel", no_per_sample_kernel)
    code, n_outputs = OUTPUTS["binary"]
    X = make_inputs(N_SAMPLES, N_FEATURES, np.float64, seed=1)
    Y = make_targets("binary", N_SAMPLES, np.float64, seed=2)
    network = make_network([N_FEATURES, 6, n_outputs], np.float64, seed=3)
    assert_same_trajectory(network, X, Y, epoch_orders("permutation", N_SAMPLES, seed=4), 1,
                           OPTIMIZERS[optimizer], "tanh", code)


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_refuses_an_output_code_without_a_loss(backend):
    params, layout, n_units = make_network([N_FEATURES, 6, 1], np.float64, seed=3)
    X = make_inputs(N_SAMPLES, N_FEATURES, np.float64, seed=1)
    with pytest.raises(ValueError, match="output code"):
        Training(BACKENDS[backend], params, layout, n_units).epoch(
            X, X[:, :1] > 0, np.arange(N_SAMPLES), 1, OPTIMIZERS["plain"], RELU, LOGITS)


def test_the_per_sample_kernel_refuses_an_optimizer_it_lacks():
    with pytest.raises(ValueError, match="optimizer"):
        per_sample.per_sample_kernel(True, True, max(per_sample.OPTIMIZERS) + 1)


def run_forward(kernels, network, X, activation: str, code: int) -> np.ndarray:
    params, layout, n_units = network
    out = np.full((X.shape[0], layout[-1, FAN_OUT]), np.nan, dtype=params.dtype)
    # Scratch for 7 rows: the compiled kernel takes rows through in blocks of that many, and 7
    # divides no sample count used here, so a partial last block is always exercised.
    kernels.forward(params, layout, X, HIDDEN_CODES[activation], code,
                    np.empty(7 * n_units, dtype=params.dtype), out)
    return out


@pytest.mark.parametrize("output", [*OUTPUTS, "logits"])
@pytest.mark.parametrize("n_hidden", [0, *HIDDEN])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN_CODES)
def test_forward_matches(activation, dtype, n_hidden, output):
    dtype = DTYPES[dtype]
    code, n_outputs = OUTPUTS.get(output, (LOGITS, 3))
    X = make_inputs(N_SAMPLES, N_FEATURES, dtype, seed=5)
    network = make_network([N_FEATURES, *HIDDEN.get(n_hidden, ()), n_outputs], dtype, seed=6,
                           scale=2.0)
    assert_relative_close(run_forward(dispatch, network, X, activation, code),
                          run_forward(reference, network, X, activation, code), RTOL[dtype])


@settings(max_examples=100, deadline=None, derandomize=True)
@given(n_samples=st.integers(1, 30), n_features=st.integers(1, 40),
       hidden=st.lists(st.integers(1, 40), min_size=0, max_size=3),
       code=st.sampled_from(sorted({code for code, _ in OUTPUTS.values()} | {LOGITS})),
       n_outputs=st.integers(1, 6), activation=st.sampled_from(list(HIDDEN_CODES)),
       dtype=st.sampled_from(list(DTYPES)))
def test_forward_matches_for_any_shape(n_samples, n_features, hidden, code, n_outputs,
                                       activation, dtype):
    dtype = DTYPES[dtype]
    X = make_inputs(n_samples, n_features, dtype, seed=9)
    network = make_network([n_features, *hidden, n_outputs], dtype, seed=10, scale=2.0)
    assert_relative_close(run_forward(dispatch, network, X, activation, code),
                          run_forward(reference, network, X, activation, code), RTOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_forward_probabilities_are_the_output_layer_applied_to_logits(backend, output):
    code, n_outputs = OUTPUTS[output]
    X = make_inputs(N_SAMPLES, N_FEATURES, np.float64, seed=7)
    network = make_network([N_FEATURES, 5, n_outputs], np.float64, seed=8, scale=2.0)
    logits = run_forward(BACKENDS[backend], network, X, "tanh", LOGITS)
    probabilities = run_forward(BACKENDS[backend], network, X, "tanh", code)
    expected = {SOFTMAX: np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True),
                SIGMOID: 1 / (1 + np.exp(-logits)), LINEAR: logits, EXP: np.exp(logits)}[code]
    assert_relative_close(probabilities, expected, 1e-14)


def test_kernels_still_run_with_jit_disabled():
    """NUMBA_DISABLE_JIT=1 (coverage, debugging) runs the compiled kernels as plain Python; it
    must still walk the reference's trajectories. A subset of the tests above, rerun so."""
    assert_passes_with_jit_disabled(__file__, "test_sgd_epoch_trajectories_match and relu and "
                                    "permutation and (softmax or squared_error or poisson) or "
                                    "test_forward_matches and relu")


# ------------------------------------------------------------------ estimator, both backends

ESTIMATOR_CASES = {
    "per-sample relu binary": dict(kind="binary", hidden_layer_sizes=(6,)),
    "mini-batch tanh multiclass momentum": dict(
        kind="multiclass", activation="tanh", batch_size=7, momentum=0.9, alpha=1e-3,
        hidden_layer_sizes=(5, 4)),
    "full-batch logistic multilabel": dict(
        kind="multilabel", activation="logistic", batch_size="full", learning_rate_init=0.5),
    "replacement identity no hidden layer": dict(
        kind="multiclass", activation="identity", shuffle="replacement",
        hidden_layer_sizes=()),
    "early stopping": dict(kind="multiclass", early_stopping=True, validation_fraction=0.2,
                           n_iter_no_change=3, tol=1e-3, max_iter=40),
    "per-sample adam deep": dict(kind="multilabel", solver="adam", alpha=1e-3,
                                 hidden_layer_sizes=(6, 5)),
    "mini-batch adam early stopping": dict(
        kind="multiclass", solver="adam", batch_size=8, early_stopping=True,
        validation_fraction=0.2, n_iter_no_change=3, tol=1e-3, max_iter=40),
}


def fit_both_backends(kind: str, dtype=np.float64, **params) -> list[FastMLP]:
    X, y = make_labels(kind, 60, seed=9)
    settings = dict(hidden_layer_sizes=(6,), learning_rate_init=0.05, max_iter=8,
                    random_state=0) | params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return [FastMLP(backend=backend, **settings).fit(X.astype(dtype), y)
                for backend in BACKENDS]


def assert_same_training(fast: FastMLP, slow: FastMLP, rtol: float) -> None:
    assert fast.n_iter_ == slow.n_iter_
    assert_relative_close(fast.loss_curve_, slow.loss_curve_, rtol, "loss_curve_")
    for layer, (W_fast, W_slow) in enumerate(zip(fast.coefs_, slow.coefs_)):
        assert_relative_close(W_fast, W_slow, rtol, f"coefs_[{layer}]")
    for layer, (b_fast, b_slow) in enumerate(zip(fast.intercepts_, slow.intercepts_)):
        assert_relative_close(b_fast, b_slow, rtol, f"intercepts_[{layer}]")


@pytest.mark.parametrize("case", ESTIMATOR_CASES)
def test_estimator_backends_train_alike(case):
    fast, slow = fit_both_backends(**ESTIMATOR_CASES[case])
    assert_same_training(fast, slow, RTOL[np.float64])


def test_estimator_backends_train_alike_in_float32():
    fast, slow = fit_both_backends("multiclass", np.float32, activation="tanh", batch_size=4)
    assert fast.coefs_[0].dtype == slow.coefs_[0].dtype == np.float32
    assert_same_training(fast, slow, RTOL[np.float32])


def test_early_stopping_case_really_stops_early():
    # Otherwise the early-stopping case above would only compare two full runs.
    fast, _ = fit_both_backends(**ESTIMATOR_CASES["early stopping"])
    assert fast.n_iter_ < fast.max_iter and len(fast.validation_scores_) == fast.n_iter_


def test_estimator_backends_partial_fit_alike():
    X, y = make_labels("multiclass", 60, seed=10)
    models = [FastMLP((6,), learning_rate_init=0.05, momentum=0.5, random_state=0,
                      backend=backend) for backend in BACKENDS]
    for _ in range(4):
        for model in models:
            model.partial_fit(X, y, classes=np.unique(y))
    assert_same_training(*models, RTOL[np.float64])


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_of_infinite_logits_is_its_limit(backend):
    # One input of 1e308 through weights (2, 2, -1) gives logits (inf, inf, -1e308): the
    # max-shift alone would compute inf - inf.
    layout, _, n_units = make_layout([1, 3])
    params = np.array([2.0, 2.0, -1.0, 0.0, 0.0, 0.0])
    out = np.empty((2, 3))
    with np.errstate(over="ignore"):
        BACKENDS[backend].forward(params, layout, np.array([[1e308], [1.0]]),
                                  HIDDEN_CODES["relu"], SOFTMAX, np.empty(n_units), out)
    np.testing.assert_array_equal(out[0], [0.5, 0.5, 0.0])
    logits = np.array([2.0, 2.0, -1.0])
    np.testing.assert_allclose(out[1], np.exp(logits) / np.exp(logits).sum(), rtol=1e-15)


@pytest.mark.parametrize("scale", ["mixed", "tiny"])
def test_sigmoid_loss_logarithms_sum_like_log1p(scale):
    # The compiled kernels sum a sigmoid output's log1p(e) terms as the log of a running
    # product, with a series for small e. Against the exactly rounded sum of the log1p terms,
    # that is as accurate as adding them one by one: each term costs at most one rounding of
    # the running total and one of its factor (2**-53 absolute, in the product's log).
    rng = np.random.default_rng(61)
    if scale == "mixed":
        e = np.concatenate([rng.uniform(0, 1, 4000), 10.0 ** rng.uniform(-20, -1, 4000),
                            [0.0, 1.0, 2.0**-10, np.nextafter(2.0**-10, 0), 2.0**-53]])
    else:   # a loss so small that an absolute rounding error of 1e-16 per sample would show
        e = 10.0 ** rng.uniform(-30, -11, 4000)
    logs, product = 0.0, 1.0
    for value in e:
        logs, product = losses._add_log1p(logs, product, value)
    total = logs + np.log(product)
    exact = math.fsum(np.log1p(e))
    assert abs(total - exact) <= len(e) * 2.0**-53 * (exact + (scale == "mixed"))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_as_matrix_is_a_checked_view(dtype):
    # The kernels' 2-D views of slices of the parameter and scratch buffers: what reshape
    # gives, sharing the buffer, and refused like reshape when the sizes do not match.
    @njit(_nrt=False)
    def view_and_write(vector, rows, cols):
        matrix = simd.as_matrix(vector, rows, cols)
        matrix[rows - 1, 0] = -1
        return matrix[rows - 1, cols - 1]

    buffer = np.arange(14, dtype=dtype)
    vector = buffer[1:13]
    expected = vector.reshape((3, 4)).copy()
    expected[2, 0] = -1
    assert view_and_write(vector, 3, 4) == expected[2, 3]
    np.testing.assert_array_equal(buffer[1:13].reshape((3, 4)), expected)
    assert buffer[0] == 0 and buffer[13] == 13
    with pytest.raises(ValueError, match="size"):
        view_and_write(vector, 5, 2)


def test_blas_thread_limit_holds_until_the_last_concurrent_epoch_ends():
    # The one-thread limit is process-wide. Epochs of fits in different threads can start and
    # end in any order: the limit must hold while any of them runs, and BLAS must get its own
    # setting back when the last one ends (a limit per epoch would restore, at the end of the
    # last one, the limit it found in force when it started).
    from threadpoolctl import threadpool_info

    def blas_threads():
        return sorted(pool["num_threads"] for pool in threadpool_info()
                      if pool["user_api"] == "blas")

    limit = dispatch.ONE_BLAS_THREAD
    with limit:         # loads SciPy's BLAS, so that it is counted below
        pass
    before = blas_threads()
    limit.__enter__()   # epoch A starts
    limit.__enter__()   # epoch B starts
    limit.__exit__(None, None, None)    # A ends first
    assert set(blas_threads()) == {1}
    limit.__exit__(None, None, None)    # B ends
    assert blas_threads() == before
