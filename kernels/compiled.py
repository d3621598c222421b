"""Compiled kernels: the same functions as :mod:`fastmlp.kernels.reference`, written to be fast.

Every kernel is ``@njit(cache=True, nogil=True)``. Numba's cache only notices edits to the file
that defines a kernel, so the whole call graph of these kernels lives in this module; delete
``kernels/__pycache__/*.nbi`` / ``*.nbc`` (or set ``NUMBA_CACHE_DIR``) to force recompilation.

Constants are made with the array's own dtype (``T = params.dtype.type``) so that a float32
network never promotes to float64 in a hot loop.

Per-sample SGD streams every weight through the cache for every sample, so the epoch kernel
is written to touch each weight as few times as possible: a layer's backward pass reads each
weight once, uses the old value for the previous layer's delta and writes the updated value;
and the first layer's update for sample ``i`` is fused with the first layer's forward pass for
sample ``i + 1``. The arithmetic of each update is the reference's, in the reference's order.
"""

import numpy as np
from numba import njit

from .codes import (B_OFF, FAN_IN, FAN_OUT, LOGISTIC, RELU, SIGMOID, SOFTMAX, TANH, UNIT_OFF,
                    W_OFF)


@njit(cache=True, nogil=True)
def _activate(z, code):
    """Hidden activation, in place."""
    T = z.dtype.type
    if code == RELU:
        for j in range(z.size):
            if z[j] < T(0):
                z[j] = T(0)
    elif code == LOGISTIC:
        for j in range(z.size):
            z[j] = T(1) / (T(1) + np.exp(-z[j]))
    elif code == TANH:
        for j in range(z.size):
            z[j] = np.tanh(z[j])


@njit(cache=True, nogil=True)
def _scale_by_derivative(delta, a, code):
    """delta *= f'(z), with f' written in terms of the activation a = f(z)."""
    T = delta.dtype.type
    if code == RELU:
        for k in range(delta.size):
            if not a[k] > T(0):
                delta[k] = T(0)
    elif code == LOGISTIC:
        for k in range(delta.size):
            delta[k] *= a[k] * (T(1) - a[k])
    elif code == TANH:
        for k in range(delta.size):
            delta[k] *= T(1) - a[k] * a[k]


@njit(cache=True, nogil=True)
def _output_activate(z, code):
    """Output activation, in place: logits to probabilities (``LOGITS`` leaves them)."""
    T = z.dtype.type
    if code == SIGMOID:
        for j in range(z.size):
            z[j] = T(1) / (T(1) + np.exp(-z[j]))
    elif code == SOFTMAX:
        m = z.max()
        s = T(0)
        for j in range(z.size):
            z[j] = np.exp(z[j] - m)
            s += z[j]
        for j in range(z.size):
            z[j] /= s


@njit(cache=True, nogil=True)
def _loss_and_delta(z, y, code, delta):
    """Cross-entropy of one sample from its logits ``z``; turns ``z`` into probabilities and
    writes the output delta ``p - y``."""
    T = z.dtype.type
    loss = T(0)
    if code == SOFTMAX:
        m = z.max()
        s = T(0)
        for j in range(z.size):
            s += np.exp(z[j] - m)
        log_sum_exp = m + np.log(s)
        for j in range(z.size):
            loss += y[j] * (log_sum_exp - z[j])
    else:
        for j in range(z.size):
            loss += max(z[j], T(0)) - y[j] * z[j] + np.log1p(np.exp(-abs(z[j])))
    _output_activate(z, code)
    for j in range(z.size):
        delta[j] = z[j] - y[j]
    return loss


@njit(cache=True, nogil=True)
def _dense(params, w_off, b_off, fan_in, fan_out, a, z):
    """z = a @ W + b, accumulated row by row so the inner loop runs along a row of W."""
    for j in range(fan_out):
        z[j] = params[b_off + j]
    for k in range(fan_in):
        ak = a[k]
        row = w_off + k * fan_out
        for j in range(fan_out):
            z[j] += ak * params[row + j]


@njit(cache=True, nogil=True)
def _forward_sample(params, layout, x, acts, hidden_activation, first_done):
    """Forward pass of one sample, leaving the last layer's logits in ``acts``. With
    ``first_done`` the first layer's pre-activations are already in ``acts`` (computed by the
    fused step of the previous sample)."""
    last = layout.shape[0] - 1
    for layer in range(last + 1):
        w_off, b_off, fan_in, fan_out, u_off = layout[layer]
        z = acts[u_off:u_off + fan_out]
        if layer > 0:
            a = acts[layout[layer - 1, UNIT_OFF]:u_off]
            _dense(params, w_off, b_off, fan_in, fan_out, a, z)
        elif not first_done:
            _dense(params, w_off, b_off, fan_in, fan_out, x, z)
        if layer < last:
            _activate(z, hidden_activation)


@njit(cache=True, nogil=True)
def _step(w, g, velocity, i, lr, momentum, nesterov):
    """scikit-learn's SGD step for one parameter ``w`` with gradient ``g``."""
    if momentum == 0:
        return w - lr * g
    v = momentum * velocity[i] - lr * g
    velocity[i] = v
    if nesterov:
        return w + (momentum * v - lr * g)
    return w + v


@njit(cache=True, nogil=True)
def _backprop_step(params, velocity, w_off, b_off, fan_in, fan_out, a, delta, delta_prev, lr,
                   alpha, momentum, nesterov):
    """One pass over a hidden-fed layer's weights: delta_prev = W @ delta with the old
    weights, and the SGD step W -= lr * (outer(a, delta) + alpha * W)."""
    T = params.dtype.type
    for k in range(fan_in):
        ak = a[k]
        row = w_off + k * fan_out
        acc = T(0)
        for j in range(fan_out):
            w = params[row + j]
            acc += w * delta[j]
            params[row + j] = _step(w, ak * delta[j] + alpha * w, velocity, row + j, lr,
                                    momentum, nesterov)
        delta_prev[k] = acc
    for j in range(fan_out):
        params[b_off + j] = _step(params[b_off + j], delta[j], velocity, b_off + j, lr,
                                  momentum, nesterov)


@njit(cache=True, nogil=True)
def _step_first_and_forward(params, velocity, w_off, b_off, fan_in, fan_out, x, delta, x_next,
                            z_next, lr, alpha, momentum, nesterov):
    """The first layer's SGD step for sample x fused with its forward pass for the next
    sample: each weight is read once, updated, and used at once for z_next = x_next @ W + b."""
    for j in range(fan_out):
        b = _step(params[b_off + j], delta[j], velocity, b_off + j, lr, momentum, nesterov)
        params[b_off + j] = b
        z_next[j] = b
    for k in range(fan_in):
        xk = x[k]
        xn = x_next[k]
        row = w_off + k * fan_out
        for j in range(fan_out):
            w = params[row + j]
            w = _step(w, xk * delta[j] + alpha * w, velocity, row + j, lr, momentum, nesterov)
            params[row + j] = w
            z_next[j] += xn * w


@njit(cache=True, nogil=True)
def _sum_squared_weights(params, layout):
    T = params.dtype.type
    s = T(0)
    for layer in range(layout.shape[0]):
        for i in range(layout[layer, W_OFF], layout[layer, B_OFF]):
            s += params[i] * params[i]
    return s


@njit(cache=True, nogil=True)
def _per_sample_epoch(params, velocity, layout, X, Y, order, lr, alpha, momentum, nesterov,
                      hidden_activation, output_activation, scratch):
    """Batch size 1: the whole epoch in one call, nothing allocated. Returns the summed loss."""
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    acts = scratch[:n_units]
    deltas = scratch[n_units:2 * n_units]
    w0, b0, fan_in0, fan_out0, _ = layout[0]
    out_off = layout[last, UNIT_OFF]
    total = 0.0
    _dense(params, w0, b0, fan_in0, fan_out0, X[order[0]], acts[:fan_out0])
    for s in range(order.size):
        i = order[s]
        _forward_sample(params, layout, X[i], acts, hidden_activation, True)
        total += _loss_and_delta(acts[out_off:], Y[i], output_activation, deltas[out_off:])
        if alpha != 0:
            total += alpha / 2 * _sum_squared_weights(params, layout)
        for layer in range(last, 0, -1):
            w_off, b_off, fan_in, fan_out, u_off = layout[layer]
            prev = layout[layer - 1, UNIT_OFF]
            _backprop_step(params, velocity, w_off, b_off, fan_in, fan_out, acts[prev:u_off],
                           deltas[u_off:u_off + fan_out], deltas[prev:u_off], lr, alpha,
                           momentum, nesterov)
            _scale_by_derivative(deltas[prev:u_off], acts[prev:u_off], hidden_activation)
        # The last sample's fused forward pass computes an unused z for order[0]: one wasted
        # forward pass per epoch buys a branch-free inner loop.
        next_i = order[s + 1] if s + 1 < order.size else order[0]
        _step_first_and_forward(params, velocity, w0, b0, fan_in0, fan_out0, X[i],
                                deltas[:fan_out0], X[next_i], acts[:fan_out0], lr, alpha,
                                momentum, nesterov)
    return total


@njit(cache=True, nogil=True)
def batch_gradient(params, layout, X, Y, rows, alpha, hidden_activation, output_activation,
                   scratch, grad):
    """Mean loss of the batch ``X[rows]`` (cross-entropy plus scikit-learn's L2 penalty) and
    its gradient, written into ``grad``; samples are streamed one at a time."""
    T = params.dtype.type
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    acts = scratch[:n_units]
    deltas = scratch[n_units:2 * n_units]
    out_off = layout[last, UNIT_OFF]
    grad[:] = T(0)
    loss = T(0)
    for i in rows:
        _forward_sample(params, layout, X[i], acts, hidden_activation, False)
        loss += _loss_and_delta(acts[out_off:], Y[i], output_activation, deltas[out_off:])
        for layer in range(last, -1, -1):
            w_off, b_off, fan_in, fan_out, u_off = layout[layer]
            delta = deltas[u_off:u_off + fan_out]
            prev = layout[layer - 1, UNIT_OFF] if layer > 0 else 0
            a = X[i] if layer == 0 else acts[prev:u_off]
            for k in range(fan_in):
                ak = a[k]
                row = w_off + k * fan_out
                for j in range(fan_out):
                    grad[row + j] += ak * delta[j]
            for j in range(fan_out):
                grad[b_off + j] += delta[j]
            if layer > 0:
                delta_prev = deltas[prev:u_off]
                for k in range(fan_in):
                    row = w_off + k * fan_out
                    acc = T(0)
                    for j in range(fan_out):
                        acc += params[row + j] * delta[j]
                    delta_prev[k] = acc
                _scale_by_derivative(delta_prev, a, hidden_activation)
    n = rows.size
    for layer in range(last + 1):
        w_off, b_off, _, fan_out, _ = layout[layer]
        for i in range(w_off, b_off):
            grad[i] = (grad[i] + alpha * params[i]) / n
        for i in range(b_off, b_off + fan_out):
            grad[i] /= n
    return loss / n + alpha / 2 * _sum_squared_weights(params, layout) / n


@njit(cache=True, nogil=True)
def descend(params, velocity, grad, lr, momentum, nesterov):
    """One optimizer step, scikit-learn's SGD with (Nesterov) momentum."""
    for i in range(params.size):
        params[i] = _step(params[i], grad[i], velocity, i, lr, momentum, nesterov)


@njit(cache=True, nogil=True)
def sgd_epoch(params, velocity, grad, layout, X, Y, order, batch_size, lr, alpha, momentum,
              nesterov, hidden_activation, output_activation, scratch):
    """One epoch of (mini-batch) gradient descent over ``X[order]``, in batches of
    ``batch_size`` consecutive entries of ``order``. Returns the mean loss over the epoch's
    samples, each batch's loss taken before its step (scikit-learn's ``loss_curve_``)."""
    n = order.size
    if batch_size == 1:
        return _per_sample_epoch(params, velocity, layout, X, Y, order, lr, alpha, momentum,
                                 nesterov, hidden_activation, output_activation, scratch) / n
    total = 0.0
    for start in range(0, n, batch_size):
        rows = order[start:min(start + batch_size, n)]
        loss = batch_gradient(params, layout, X, Y, rows, alpha, hidden_activation,
                              output_activation, scratch, grad)
        descend(params, velocity, grad, lr, momentum, nesterov)
        total += loss * rows.size
    return total / n


@njit(cache=True, nogil=True)
def forward(params, layout, X, hidden_activation, output_activation, out):
    """Write the network's outputs for the rows of ``X`` into ``out``: probabilities for
    ``SIGMOID`` / ``SOFTMAX``, logits for any other output code. Releases the GIL, so callers
    spread row blocks over threads."""
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    out_off = layout[last, UNIT_OFF]
    acts = np.empty(n_units, dtype=params.dtype)
    for i in range(X.shape[0]):
        _forward_sample(params, layout, X[i], acts, hidden_activation, False)
        z = acts[out_off:]
        _output_activate(z, output_activation)
        out[i, :] = z
