"""Both backends' ``batch_gradient`` against central finite differences of the loss."""

import numpy as np
import pytest
from conftest import (BACKENDS, HIDDEN_CODES, OUTPUTS, assert_relative_close, make_inputs,
                      make_network, make_targets)

from fastmlp.kernels import dispatch, minibatch
from fastmlp.kernels.codes import EXP, LINEAR
from fastmlp.kernels.layout import unpack

N_SAMPLES = 9
N_FEATURES = 3
ROWS = np.array([3, 0, 5, 3, 8])     # a batch with a repeated sample
ALPHA = 0.1
STEP = 1e-5
# Central differences err by O(STEP**2) from truncation and O(eps / STEP) from rounding,
# both near 1e-10 here.
FD_RTOL = 1e-7
# ReLU has a kink at 0: every hidden pre-activation stays this far from it, well beyond the
# reach of a STEP-sized change of any weight.
KINK_MARGIN = 1e-3
# Unweighted, and weights per row of X (one of the batch's rows weighs zero).
SAMPLE_WEIGHTS = {"unweighted": None,
                  "weighted": np.array([0.5, 2.0, 1.0, 3.0, 0.7, 0.0, 1.3, 0.2, 1.9])}


class BlasGradient:
    """The compiled backend's BLAS path for mini-batches, called like batch_gradient."""

    @staticmethod
    def batch_gradient(params, layout, X, Y, sample_weight, rows, alpha, hidden, output,
                       scratch, grad):
        work = dispatch.blas_work(layout, X.shape[1], rows.size, params.dtype)
        return minibatch.blas_batch_gradient(params, layout, X, Y, sample_weight, rows, alpha,
                                             hidden, output, work, grad)


GRADIENTS = {**BACKENDS, "numba-blas": BlasGradient}


def hidden_pre_activations(params, layout, X, activation):
    coefs, intercepts = unpack(params, layout)
    A, Zs = X, []
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        Zs.append(A @ W + b)
        A = np.maximum(Zs[-1], 0) if activation == "relu" else Zs[-1]
    return np.concatenate([Z.ravel() for Z in Zs])


def loss_and_gradient(kernels, params, layout, n_units, X, Y, activation, code,
                      sample_weight=None):
    grad = np.full_like(params, np.nan)
    scratch = np.empty(2 * n_units)
    loss = kernels.batch_gradient(params, layout, X, Y, sample_weight, ROWS, ALPHA,
                                  HIDDEN_CODES[activation], code, scratch, grad)
    return float(loss), grad


def penalty(params, layout, sample_weight=None) -> float:
    """scikit-learn's L2 penalty of the batch: alpha / 2 * ||W||^2 / its total weight."""
    coefs, _ = unpack(params, layout)
    total = len(ROWS) if sample_weight is None else sample_weight[ROWS].sum()
    return ALPHA / 2 * sum((W * W).sum() for W in coefs) / total


def objective(kernels, params, layout, n_units, X, Y, activation, code, sample_weight) -> float:
    """The function whose gradient batch_gradient computes: the batch loss, but for squared
    error with the error summed over the outputs rather than averaged: scikit-learn reports
    the mean over outputs as the loss yet steps along the output delta p - y, the gradient of
    the sum."""
    loss, _ = loss_and_gradient(kernels, params, layout, n_units, X, Y, activation, code,
                                sample_weight)
    if code != LINEAR:
        return loss
    n_outputs = Y.shape[1]
    return n_outputs * loss - (n_outputs - 1) * penalty(params, layout, sample_weight)


def finite_difference_gradient(kernels, params, layout, n_units, X, Y, activation, code,
                               sample_weight):
    grad = np.empty_like(params)
    for i in range(params.size):
        shifted = params.copy()
        shifted[i] += STEP
        up = objective(kernels, shifted, layout, n_units, X, Y, activation, code, sample_weight)
        shifted[i] -= 2 * STEP
        down = objective(kernels, shifted, layout, n_units, X, Y, activation, code,
                         sample_weight)
        grad[i] = (up - down) / (2 * STEP)
    return grad


@pytest.mark.parametrize("weights", SAMPLE_WEIGHTS)
@pytest.mark.parametrize("hidden", [(4,), (4, 3)], ids=["1-hidden", "2-hidden"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", HIDDEN_CODES)
@pytest.mark.parametrize("backend", GRADIENTS)
def test_batch_gradient_matches_finite_differences(backend, activation, output, hidden,
                                                   weights):
    code, n_outputs = OUTPUTS[output]
    X = make_inputs(N_SAMPLES, N_FEATURES, np.float64, seed=11)
    Y = make_targets(output, N_SAMPLES, np.float64, seed=12)
    params, layout, n_units = make_network([N_FEATURES, *hidden, n_outputs], np.float64,
                                           seed=13, scale=1.0)
    kernels = GRADIENTS[backend]
    if activation == "relu":
        margin = np.abs(hidden_pre_activations(params, layout, X[ROWS], activation)).min()
        assert margin > KINK_MARGIN, "test data puts a ReLU pre-activation near its kink"
    sample_weight = SAMPLE_WEIGHTS[weights]
    before = params.copy()
    _, grad = loss_and_gradient(kernels, params, layout, n_units, X, Y, activation, code,
                                sample_weight)
    np.testing.assert_array_equal(params, before, "batch_gradient changed the parameters")
    expected = finite_difference_gradient(kernels, params, layout, n_units, X, Y, activation,
                                          code, sample_weight)
    assert_relative_close(grad, expected, FD_RTOL)


@pytest.mark.parametrize("backend", GRADIENTS)
def test_batch_loss_is_mean_cross_entropy_plus_l2(backend):
    """The loss the gradient is checked against, written out for a network without hidden
    layers: logistic regression with scikit-learn's penalty alpha / 2 * ||W||^2 / n."""
    X = make_inputs(N_SAMPLES, N_FEATURES, np.float64, seed=14)
    Y = make_targets("binary", N_SAMPLES, np.float64, seed=15)
    params, layout, n_units = make_network([N_FEATURES, 1], np.float64, seed=16, scale=2.0)
    code, _ = OUTPUTS["binary"]
    loss, _ = loss_and_gradient(GRADIENTS[backend], params, layout, n_units, X, Y, "identity",
                                code)
    W, b = params[:N_FEATURES], params[N_FEATURES]
    p = 1 / (1 + np.exp(-(X[ROWS] @ W + b)))
    y = Y[ROWS, 0]
    cross_entropy = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss == pytest.approx(cross_entropy + ALPHA / 2 * (W @ W) / len(ROWS), rel=1e-13)


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("output", ["squared_error", "poisson"])
@pytest.mark.parametrize("backend", GRADIENTS)
def test_regression_batch_loss_is_scikit_learns(backend, output, n_outputs):
    """The batch loss of the regression outputs is scikit-learn's own loss function (half the
    mean squared error over samples and outputs; the Poisson loss summed over outputs) of the
    predictions, plus its L2 penalty."""
    from sklearn.neural_network._base import poisson_loss, squared_loss

    code, _ = OUTPUTS[output]
    X = make_inputs(N_SAMPLES, N_FEATURES, np.float64, seed=17)
    Y = make_targets(output, N_SAMPLES, np.float64, seed=18, n_outputs=n_outputs)
    params, layout, n_units = make_network([N_FEATURES, 4, n_outputs], np.float64, seed=19)
    loss, _ = loss_and_gradient(GRADIENTS[backend], params, layout, n_units, X, Y, "tanh",
                                code)
    coefs, intercepts = unpack(params, layout)
    Z = np.tanh(X[ROWS] @ coefs[0] + intercepts[0]) @ coefs[1] + intercepts[1]
    expected = poisson_loss(Y[ROWS], np.exp(Z)) if code == EXP else squared_loss(Y[ROWS], Z)
    assert loss == pytest.approx(expected + penalty(params, layout), rel=1e-13)
