"""The NumPy reference backend: the same functions as :mod:`fastmlp.kernels.dispatch`, written
to read like the math, one line per formula. Tests run whole trainings through both backends
and compare them; users pick it with ``FastMLP(backend="numpy")`` to debug.

Notation: ``A[l]`` is the input of layer ``l`` (``A[0]`` the batch of samples), ``W, b`` its
weights ``(fan_in, fan_out)`` and biases, ``Z = A @ W + b`` the pre-activations, ``delta`` the
gradient of the batch loss with respect to ``Z`` (times the batch size).
"""

import numpy as np

from .codes import (ADAM, EXP, LINEAR, LOGISTIC, NESTEROV, RELU, SGD, SIGMOID, SOFTMAX,
                    TANH)
from .layout import unpack
from .csr import DenseKernels, in_dense_groups


def activate(Z, code):
    if code == RELU:
        return np.maximum(Z, 0)
    if code == LOGISTIC:
        return 1 / (1 + np.exp(-Z))
    if code == TANH:
        return np.tanh(Z)
    return Z


def _derivative(A, code):
    """f'(Z) written in terms of the activation A = f(Z)."""
    if code == RELU:
        return (A > 0).astype(A.dtype)
    if code == LOGISTIC:
        return A * (1 - A)
    if code == TANH:
        return 1 - A * A
    return np.ones_like(A)


def _output(Z, code):
    if code == EXP:
        return np.exp(Z)
    if code == SIGMOID:
        return 1 / (1 + np.exp(-Z))
    if code == SOFTMAX:
        with np.errstate(invalid="ignore"):
            E = np.exp(Z - Z.max(axis=1, keepdims=True))
        # Rows with +inf logits (and no NaN) take the limit: those logits share the
        # probability; the max-shift gave inf - inf = NaN there.
        top = Z == np.inf
        limit = top.any(axis=1) & ~np.isnan(Z).any(axis=1)
        E[limit] = top[limit]
        return E / E.sum(axis=1, keepdims=True)
    return Z


def _sample_losses(Z, Y, code):
    """The loss of each sample, computed from the logits so it never takes log(0)."""
    if code == LINEAR:
        return ((Z - Y) ** 2).sum(axis=1) / (2 * Y.shape[1])
    if code == EXP:
        y_log_y = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0)
        return (y_log_y - Y * Z - Y + np.exp(Z)).sum(axis=1)
    if code == SOFTMAX:
        M = Z.max(axis=1, keepdims=True)
        log_sum_exp = M[:, 0] + np.log(np.exp(Z - M).sum(axis=1))
        return (Y * (log_sum_exp[:, None] - Z)).sum(axis=1)
    if code == SIGMOID:
        return (np.maximum(Z, 0) - Y * Z + np.log1p(np.exp(-np.abs(Z)))).sum(axis=1)
    raise ValueError(f"no loss for output code {code}")


def forward(params, layout, X, hidden_activation, output_activation, scratch, out):
    """Write the network's outputs for the rows of ``X`` into ``out``: probabilities for
    ``SIGMOID`` / ``SOFTMAX``, ``exp`` of the logits for ``EXP``, logits for any other output
    code. (``scratch`` is the compiled
    kernel's work space; NumPy allocates its own.)"""
    coefs, intercepts = unpack(params, layout)
    A = X
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        A = activate(A @ W + b, hidden_activation)
    out[...] = _output(A @ coefs[-1] + intercepts[-1], output_activation)


def batch_gradient(params, layout, X, Y, sample_weight, rows, alpha, hidden_activation,
                   output_activation, scratch, grad):
    """Mean loss of the batch ``X[rows]`` (its output's loss plus the L2 penalty
    ``alpha / 2 * sum(W**2) / len(rows)``, as scikit-learn defines it) and its gradient,
    written into ``grad`` (laid out like ``params``). With ``sample_weight`` (a weight per row
    of X) both are scikit-learn's weighted means: the losses and deltas weighted, the sums and
    the penalty divided by the batch's total weight instead of its size; a batch of total
    weight zero has zero loss and gradient (it counts as absent)."""
    coefs, intercepts = unpack(params, layout)
    grad_coefs, grad_intercepts = unpack(grad, layout)
    w = np.ones(len(rows), dtype=params.dtype) if sample_weight is None else sample_weight[rows]
    n = len(rows) if sample_weight is None else w.sum()
    if n == 0:
        grad[...] = 0
        return 0.0
    A = [X[rows]]
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        A.append(activate(A[-1] @ W + b, hidden_activation))
    Z = A[-1] @ coefs[-1] + intercepts[-1]
    Y = Y[rows]
    penalty = sum((W * W).sum() for W in coefs)
    loss = (w * _sample_losses(Z, Y, output_activation)).sum() / n + alpha / 2 * penalty / n
    delta = w[:, None] * (_output(Z, output_activation) - Y)
    for layer in reversed(range(len(coefs))):
        grad_coefs[layer][...] = (A[layer].T @ delta + alpha * coefs[layer]) / n
        grad_intercepts[layer][...] = delta.sum(axis=0) / n
        if layer:
            delta = (delta @ coefs[layer].T) * _derivative(A[layer], hidden_activation)
    return loss


def descend(params, state, grad, optimizer, hyper, steps):
    """One optimizer step of code ``optimizer`` (see :mod:`fastmlp.kernels.optimizers` for
    ``state``, ``hyper`` and ``steps``): scikit-learn's SGD with (Nesterov) momentum, or its
    Adam."""
    T = params.dtype.type
    if optimizer == ADAM:
        m, v = state
        learning_rate_init, beta_1, beta_2, epsilon = hyper
        t = steps + 1
        m[...] = beta_1 * m + (1 - beta_1) * grad
        v[...] = beta_2 * v + (1 - beta_2) * grad**2
        lr_t = T(learning_rate_init * np.sqrt(1 - beta_2**t) / (1 - beta_1**t))
        params += -lr_t * m / (np.sqrt(v) + epsilon)
        return
    lr, momentum = T(hyper[0]), T(hyper[1])
    if optimizer == SGD or momentum == 0:
        params -= lr * grad
        return
    velocity, = state
    velocity[...] = momentum * velocity - lr * grad
    params += momentum * velocity - lr * grad if optimizer == NESTEROV else velocity


def sgd_epoch(params, state, grad, layout, X, Y, sample_weight, order, batch_size, optimizer,
              hyper, steps, alpha, hidden_activation, output_activation, scratch):
    """One epoch of (mini-batch) gradient descent over ``X[order]``, in batches of
    ``batch_size`` consecutive entries of ``order``, one optimizer step each (see
    ``descend``). Returns the mean loss over the epoch's samples, each batch's loss taken
    before its step (scikit-learn's ``loss_curve_``). ``sample_weight``: see batch_gradient;
    a batch of total weight zero takes no step, and counts none."""
    total = 0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        if sample_weight is not None and not sample_weight[rows].any():
            continue
        loss = batch_gradient(params, layout, X, Y, sample_weight, rows, alpha,
                              hidden_activation, output_activation, scratch, grad)
        descend(params, state, grad, optimizer, hyper, steps)
        steps += 1
        total += loss * len(rows)
    return total / len(order)


def sparse_sgd_epoch(params, state, grad, layout, data, indices, indptr, Y, sample_weight,
                     order, batch_size, optimizer, hyper, steps, alpha, hidden_activation,
                     output_activation, scratch):
    """sgd_epoch on the rows of a CSR matrix ``(data, indices, indptr)``: each batch's rows
    densified (in groups of whole batches), then the math above."""
    return in_dense_groups(_DENSE, params, state, grad, layout, data, indices, indptr, Y,
                           sample_weight, order, batch_size, optimizer, hyper, steps, alpha,
                           hidden_activation, output_activation, scratch)


# What sparse_sgd_epoch runs on densified rows.
_DENSE = DenseKernels(sgd_epoch, batch_gradient, descend)
