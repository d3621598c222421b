"""Mini-batch epochs: each batch's mean gradient, streamed a sample at a time
(batch_gradient) or a chunk of rows at a time through BLAS (blas_batch_gradient), then one
optimizer step.

``sample_weight`` (None, or one weight per row of X) makes a batch's loss and gradient
scikit-learn's weighted means: sum_i w_i * l_i / sum_i w_i, the L2 penalty divided by
sum_i w_i too. Each sample's output delta is scaled by its weight, and backpropagation, being
linear in the deltas, carries the weight to every layer. A batch whose weights sum to zero has
no mean: it counts as absent (zero loss and gradient, and minibatch_epoch takes no step for
it), where scikit-learn would divide by zero. With None, Numba prunes every weighted branch
(they test ``sample_weight is None``), so unweighted training compiles and runs as before."""

import numpy as np

from ._jit import inline_ir, standalone
from .codes import BLAS_CHUNK_ROWS, FAN_IN, FAN_OUT, UNIT_OFF
from .layers import (activate, chunk_block, dense_rows, forward_sample, layer_views,
                     scale_by_derivative, sum_squared_weights, units)
from .losses import loss_and_delta
from .optimizers import descend
from .simd import as_matrix, as_vector


@inline_ir
def _weighed_loss_and_delta(z, Y, sample_weight, i, code, delta, logs, product):
    """loss_and_delta for row ``i``, its loss and ``delta`` multiplied by its weight unless
    ``sample_weight`` is None. A weighted sample's logarithms are its own, summed at once:
    ``(logs, product)`` carries an unweighted sum only."""
    if sample_weight is None:
        return loss_and_delta(z, Y[i], code, delta, logs, product)
    w = sample_weight[i]
    loss, own_logs, own_product = loss_and_delta(z, Y[i], code, delta, 0.0, 1.0)
    for j in range(delta.size):
        delta[j] *= w
    return w * (loss + own_logs + np.log(own_product)), logs, product


@standalone
def has_weight(sample_weight, rows):
    """Whether any of the batch's ``rows`` has a non-zero weight."""
    for i in rows:
        if sample_weight[i] != 0:
            return True
    return False


@inline_ir
def _weighted_mean(params, layout, grad, sample_weight, rows, alpha, loss):
    """_batch_mean over the batch's total weight (its size without weights); a batch of zero
    total weight gets zero loss and gradient."""
    if sample_weight is None:
        return _batch_mean(params, layout, grad, rows.size, alpha, loss)
    total = 0.0
    for i in rows:
        total += sample_weight[i]
    if total == 0:
        grad[:] = grad.dtype.type(0)
        return 0.0
    return _batch_mean(params, layout, grad, total, alpha, loss)


@standalone
def batch_gradient(params, layout, X, Y, sample_weight, rows, alpha, hidden_activation,
                   output_activation, scratch, grad):
    """Mean loss of the batch ``X[rows]`` (its output's loss plus scikit-learn's L2 penalty) and
    its gradient, written into ``grad``; samples are streamed one at a time. The output code
    is one of losses.TRAINED_OUTPUTS. Weighted means with ``sample_weight`` (see the module's
    docstring)."""
    T = params.dtype.type
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    acts = scratch[:n_units]
    deltas = scratch[n_units:2 * n_units]
    grad[:] = T(0)
    loss = T(0)
    logs, product = 0.0, 1.0
    for i in rows:
        forward_sample(params, layout, X[i], acts, hidden_activation)
        sample_loss, logs, product = _weighed_loss_and_delta(units(acts, layout, last), Y,
                                                              sample_weight, i,
                                                              output_activation,
                                                              units(deltas, layout, last),
                                                              logs, product)
        loss += sample_loss
        for layer in range(last, -1, -1):
            W, _ = layer_views(params, layout, layer)
            G, g = layer_views(grad, layout, layer)
            delta = units(deltas, layout, layer)
            a = X[i] if layer == 0 else units(acts, layout, layer - 1)
            for k in range(a.size):
                ak = a[k]
                for j in range(delta.size):
                    G[k, j] += ak * delta[j]
            for j in range(delta.size):
                g[j] += delta[j]
            if layer > 0:
                delta_prev = units(deltas, layout, layer - 1)
                for k in range(a.size):
                    acc = T(0)
                    for j in range(delta.size):
                        acc += W[k, j] * delta[j]
                    delta_prev[k] = acc
                scale_by_derivative(delta_prev, a, hidden_activation)
    return _weighted_mean(params, layout, grad, sample_weight, rows, alpha,
                          loss + logs + np.log(product))


@standalone
def _batch_mean(params, layout, grad, n, alpha, loss):
    """Turn the batch's summed loss ``loss`` and gradient ``grad`` into their means
    over its ``n`` samples with scikit-learn's L2 penalty added; returns the mean loss."""
    for layer in range(layout.shape[0]):
        W, _ = layer_views(params, layout, layer)
        G, g = layer_views(grad, layout, layer)
        for k in range(W.shape[0]):
            for j in range(W.shape[1]):
                G[k, j] = (G[k, j] + alpha * W[k, j]) / n
        for j in range(g.size):
            g[j] /= n
    return loss / n + alpha / 2 * sum_squared_weights(params, layout) / n



@inline_ir
def _transposed_size(layout):
    """The elements of every layer's weights but the first's: blas_work's room for their W.T."""
    size = 0
    for layer in range(1, layout.shape[0]):
        size += layout[layer, FAN_IN] * layout[layer, FAN_OUT]
    return size


@inline_ir
def _transposed(work, at, layout, layer):
    """Layer ``layer``'s (> 0) W.T, row-major in ``work`` after the earlier layers' from
    ``at``."""
    for earlier in range(1, layer):
        at += layout[earlier, FAN_IN] * layout[earlier, FAN_OUT]
    fan_in, fan_out = layout[layer, FAN_IN], layout[layer, FAN_OUT]
    return as_matrix(work[at:at + fan_in * fan_out], fan_out, fan_in)


@standalone
def blas_batch_gradient(params, layout, X, Y, sample_weight, rows, alpha, hidden_activation,
                         output_activation, work, grad):
    """batch_gradient with each layer's products over a chunk of samples in register tiles
    (layers.dense_rows): A @ W + b forward, A.T @ delta for the gradient and delta @ W.T
    backward (W.T copied row-major: the tiles read vectors of its rows). Twice BLAS's speed
    here, whose OpenBLAS runs its AVX2 kernels on this AVX-512 CPU. ``work`` (see blas_work)
    holds a chunk's inputs, activations and deltas, a zero bias, the transposed weights of
    every layer but the first, and one layer's gradient. The loss and the output deltas are
    batch_gradient's, row by row."""
    T = params.dtype.type
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    d = X.shape[1]
    chunk = min(rows.size, BLAS_CHUNK_ROWS)
    acts_at = chunk * d
    deltas_at = acts_at + chunk * n_units
    zeros_at = deltas_at + chunk * n_units
    zeros = work[zeros_at:zeros_at + n_units]
    for j in range(n_units):
        zeros[j] = T(0)
    # Every layer's W.T but the first's, copied once for all the chunks.
    transposed_at = zeros_at + n_units
    for layer in range(1, last + 1):
        W, _ = layer_views(params, layout, layer)
        WT = _transposed(work, transposed_at, layout, layer)
        for k in range(W.shape[0]):
            for j in range(W.shape[1]):
                WT[j, k] = W[k, j]
    matrix_at = transposed_at + _transposed_size(layout)
    loss = T(0)
    logs, product = 0.0, 1.0
    for start in range(0, rows.size, chunk):
        c = min(chunk, rows.size - start)
        inputs = as_matrix(work[:c * d], c, d)
        # Element by element: a row assigned whole (inputs[r] = X[i]) compiles Numba's
        # shape-mismatch message, seconds of the first fit on this path.
        for r in range(c):
            x = X[rows[start + r]]
            for k in range(d):
                inputs[r, k] = x[k]
        for layer in range(last + 1):
            W, b = layer_views(params, layout, layer)
            Z = chunk_block(work, acts_at, c, layout, layer)
            dense_rows(W, b, inputs if layer == 0 else
                       chunk_block(work, acts_at, c, layout, layer - 1), Z)
            if layer < last:
                activate(as_vector(Z), hidden_activation)
        Z = chunk_block(work, acts_at, c, layout, last)
        D = chunk_block(work, deltas_at, c, layout, last)
        for r in range(c):
            sample_loss, logs, product = _weighed_loss_and_delta(Z[r], Y, sample_weight,
                                                                  rows[start + r],
                                                                  output_activation, D[r],
                                                                  logs, product)
            loss += sample_loss
        for layer in range(last, -1, -1):
            W, _ = layer_views(params, layout, layer)
            G, g = layer_views(grad, layout, layer)
            D = chunk_block(work, deltas_at, c, layout, layer)
            A = inputs if layer == 0 else chunk_block(work, acts_at, c, layout, layer - 1)
            if start == 0:
                # The first chunk writes the weights' gradient outright: no zeroing pass.
                dense_rows(D, zeros[:D.shape[1]], A.T, G)
                for j in range(g.size):
                    g[j] = T(0)
            else:
                partial = as_matrix(work[matrix_at:matrix_at + W.size], W.shape[0],
                                     W.shape[1])
                dense_rows(D, zeros[:D.shape[1]], A.T, partial)
                for k in range(W.shape[0]):
                    for j in range(W.shape[1]):
                        G[k, j] += partial[k, j]
            for r in range(c):
                for j in range(g.size):
                    g[j] += D[r, j]
            if layer > 0:
                WT = _transposed(work, transposed_at, layout, layer)
                previous = chunk_block(work, deltas_at, c, layout, layer - 1)
                dense_rows(WT, zeros[:WT.shape[1]], D, previous)
                scale_by_derivative(as_vector(previous), as_vector(A), hidden_activation)
    return _weighted_mean(params, layout, grad, sample_weight, rows, alpha,
                          loss + logs + np.log(product))


@standalone
def minibatch_epoch(params, state, grad, layout, X, Y, sample_weight, order, batch_size,
                     optimizer, hyper, steps, alpha, hidden_activation, output_activation,
                     scratch, work):
    """Batches of more than one sample: mean gradient, then one step of the optimizer (see
    optimizers.descend; ``steps`` is the steps it took before this epoch). Returns the summed
    loss, each batch's loss weighted by its size; a batch of zero total weight takes no step
    (and counts none) and adds nothing. Exactly one of ``scratch`` and ``work`` is
    None: the gradient streams samples one at a time (batch_gradient) in ``scratch``, or goes
    through BLAS (blas_batch_gradient) in ``work``.

    Numba prunes a branch on ``is None`` only where the argument is None, so each path sits
    under a test that is False when its own buffer is None: with one if/else, an array
    ``work`` would compile both kernels, seconds of the first fit."""
    total = 0.0
    for start in range(0, order.size, batch_size):
        rows = order[start:min(start + batch_size, order.size)]
        if sample_weight is not None:
            if not has_weight(sample_weight, rows):
                continue
        loss = 0.0
        if scratch is not None:
            loss = batch_gradient(params, layout, X, Y, sample_weight, rows, alpha,
                                  hidden_activation, output_activation, scratch, grad)
        if work is not None:
            loss = blas_batch_gradient(params, layout, X, Y, sample_weight, rows, alpha,
                                        hidden_activation, output_activation, work, grad)
        descend(params, state, grad, optimizer, hyper, steps)
        steps += 1
        total += loss * rows.size
    return total
