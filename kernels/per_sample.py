"""The per-sample (batch size 1) epoch kernel, specialised per network kind and optimizer.

Per-sample SGD streams every weight through the cache for every sample, so the epoch is
written to touch each weight as few times as possible: a layer's backward pass reads each
weight once, uses the old value for the previous layer's delta and writes the updated value;
and the first layer's update for sample ``i`` is fused with its forward pass for sample
``i + 1`` (layers.step_first_and_forward, written with the SIMD building blocks).
"""

import functools

import numpy as np

from ._jit import inline_ir, specialised, standalone
from .codes import (ADAM, CACHE_LINE_BYTES, EXP, FAN_OUT, LINEAR, MOMENTUM, NESTEROV, SGD, SIGMOID,
                    SOFTMAX, UNIT_OFF)
from .layers import (activate, backprop_step, backprop_step_narrow, dense, dense_by_units,
                     dense_narrow, layer_views, scale_by_derivative, step_first_and_forward,
                     sum_squared_weights, units)
from .losses import loss_and_delta
from .optimizers import adam_step
from .simd import prefetch


@inline_ir
def prefetch_row(row):
    for offset in range(0, row.size * row.itemsize, CACHE_LINE_BYTES):
        prefetch(row, offset)


@inline_ir
def _optimizer_state(params, state, layout, layer, optimizer):
    """The layer's weights and the views of the optimizer's state its step needs: tuples
    (weights, biases) of one view per buffer, or None for plain SGD. Picked by the code, a
    constant of the kernel, so that Numba types only the optimizer's own views."""
    W, b = layer_views(params, layout, layer)
    if optimizer == SGD:
        return W, b, None, None
    if optimizer == ADAM:
        MW, mb = layer_views(state[0], layout, layer)
        VW, vb = layer_views(state[1], layout, layer)
        return W, b, (MW, VW), (mb, vb)
    VW, vb = layer_views(state[0], layout, layer)
    return W, b, (VW,), (vb,)


@inline_ir
def _step_scalars(params, hyper, t, optimizer):
    """The scalars of the optimizer's ``t``-th step (see optimizers) and whether every later
    step's are the same."""
    if optimizer == ADAM:
        return adam_step(params, hyper, t)
    T = params.dtype.type
    return (T(hyper[0]), T(hyper[1])), True


# The optimizer codes this kernel implements (its update helpers and its first layer's SIMD
# step, simd.step_and_accumulate); dispatch.sgd_epoch trains any other on the generic path.
OPTIMIZERS = (SGD, MOMENTUM, NESTEROV, ADAM)


@functools.cache
def per_sample_kernel(sigmoid: bool, shallow: bool, optimizer: int):
    """The per-sample epoch kernel for an optimizer code (one of OPTIMIZERS), made on first
    use; with ``sigmoid``, for a sigmoid output only (binary and multilabel classification),
    else for every other output; with ``shallow``, for a network with one hidden layer and a
    narrow output layer only.

    These are constants of the kernel rather than arguments: Numba prunes the branches that
    test them (in loss_and_delta, and here), so a kernel types and compiles only the layer
    paths its network uses, and the default network's kind (``sigmoid`` and ``shallow``, most
    users') only its own loss, and none of the layer loops and the wide layers' paths of dense
    and backprop_step. The price is a compile per combination a user trains (Numba's disk
    cache keys closures by their constants). The hidden activation, and any other output's
    code, are arguments: their branches cost little compile, against a whole kernel's compile
    for each activation and output (docs/kernels.md)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"the per-sample kernel has no optimizer of code {optimizer}")
    nesterov = optimizer == NESTEROV
    upper = upper_layers(sigmoid, shallow, optimizer)

    @standalone
    @specialised(sigmoid, shallow, optimizer)
    def per_sample_epoch(params, state, layout, X, Y, sample_weight, order, hyper, steps, alpha,
                         hidden, output, scratch):
        """Batch size 1: the whole epoch in one call, nothing allocated. Returns the summed
        loss. Each sample is one step of the optimizer (see optimizers for ``state``, its
        buffers, ``hyper`` and ``steps``, the steps it took before this epoch).

        ``sample_weight`` (None, or a positive weight per row of X) is scikit-learn's: a
        batch of one sample of weight w has loss (w * l + alpha / 2 * ||W||^2) / w, so the
        weight cancels but in the penalty, which becomes alpha / w; without a penalty (alpha
        None) weights change nothing. (dispatch.sgd_epoch leaves out samples of zero weight.)

        ``state`` is None for plain SGD and ``alpha`` None without an L2 penalty: Numba
        then compiles a kernel with no optimizer-state or penalty code at all (it prunes
        branches on ``is None``), which is what the default settings run; it compiles in about
        a second less, and the first layer's update takes one multiply-add per weight less.

        ``hidden`` is the hidden layers' activation code, ``output`` the output's (SIGMOID in
        the sigmoid kernel). Layer 0's pre-activations for a sample are computed by the
        previous sample's fused step (and before the loop for the first sample)."""
        T = params.dtype.type
        last = layout.shape[0] - 1
        n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
        acts = scratch[:n_units]
        deltas = scratch[n_units:2 * n_units]
        W0, b0, SW0, sb0 = _optimizer_state(params, state, layout, 0, optimizer)
        WL, bL, SWL, sbL = _optimizer_state(params, state, layout, last, optimizer)
        step, settled = _step_scalars(params, hyper, steps + 1, optimizer)
        z0 = units(acts, layout, 0)
        delta0 = units(deltas, layout, 0)
        total = 0.0
        logs, product = 0.0, 1.0
        # The L2 penalty's sum of squared weights: each sample's update sums the squares of the
        # weights it stores, for the next sample (one pass over the weights less per sample).
        squares = sum_squared_weights(params, layout) if alpha is not None else T(0)
        # Each sample prefetches the row needed three samples later; one sample later for rows
        # over a kilobyte, whose samples take long enough, and four of which would crowd the
        # weights out of L1.
        ahead = 2 if X.shape[1] * X.itemsize > 1024 else 4
        # Each inlined copy of a helper lengthens the first run's compile, so this once-per-epoch
        # pass takes dense's plainest path.
        dense_by_units(W0, b0, X[order[0]], z0)
        penalty = alpha
        for s in range(order.size):
            i = order[s]
            # Two pows a step, until Adam's bias corrections settle (after some 37,000 steps
            # with scikit-learn's betas).
            if optimizer == ADAM and not settled:
                step, settled = adam_step(params, hyper, steps + s + 1)
            if alpha is not None:
                if sample_weight is not None:
                    penalty = alpha / sample_weight[i]
            loss, logs, product, new_squares = upper(params, state, layout, hidden, output,
                                                     acts, deltas, WL, bL, SWL, sbL, Y[i],
                                                     penalty, step, logs, product)
            total += loss
            if alpha is not None:
                total += penalty / 2 * squares
            squares = new_squares
            # The last sample's fused forward pass computes an unused z for order[0]: one wasted
            # forward pass per epoch buys a branch-free inner loop.
            next_i = order[s + 1] if s + 1 < order.size else order[0]
            # Rows come in shuffled order, so the hardware cannot guess the rows to come: without
            # this hint their load latency stalls every sample.
            if s + ahead < order.size:
                prefetch_row(X[order[s + ahead]])
            squares += step_first_and_forward(W0, b0, SW0, sb0, X[i], delta0, X[next_i], z0,
                                               penalty, step, nesterov)
        return total + logs + np.log(product)

    return per_sample_epoch


@functools.cache
def upper_layers(sigmoid: bool, shallow: bool, optimizer: int):
    """The per-sample kernels' work between the first layer's forward pass and its step, for
    an output and a network kind (see per_sample_kernel) and an optimizer code as constants:
    ``upper(params, state, layout, hidden, output, acts, deltas, WL, bL, SWL, sbL, y, alpha,
    step, logs, product)`` activates layer 0's pre-activations (in ``acts``) by the hidden
    activation of code ``hidden``, runs the later layers forward, takes the loss and output
    delta (of the output of code ``output``; SIGMOID's with ``sigmoid``) for target ``y``,
    and backward steps every later layer down to layer 0's delta (in ``deltas``, scaled by the
    derivative). ``WL, bL, SWL, sbL`` are the last layer's views, made once per epoch;
    ``step`` holds the optimizer step's scalars (see kernels.optimizers). Returns ``(loss,
    logs, product, squares)`` (see loss_and_delta and backprop_step).

    Shared by the dense (per_sample_kernel) and the sparse (kernels.sparse) kernels, which
    differ only in the first layer."""
    nesterov = optimizer == NESTEROV

    @inline_ir
    def upper(params, state, layout, hidden, output, acts, deltas, WL, bL, SWL, sbL, y, alpha,
              step, logs, product):
        T = params.dtype.type
        last = layout.shape[0] - 1
        z0 = units(acts, layout, 0)
        delta0 = units(deltas, layout, 0)
        zL = units(acts, layout, last)
        deltaL = units(deltas, layout, last)
        # Each inlined copy of a helper lengthens the first run's compile, so each is called
        # from one place (one dense for the middle and last layers, picking the last layer's
        # views made once per epoch rather than per sample).
        # A shallow network's layer loops, unrolled to their one narrow layer.
        if shallow:
            activate(z0, hidden)
            dense_narrow(WL, bL, z0, zL)
        else:
            for layer in range(1, last + 1):
                a = z0 if layer == 1 else units(acts, layout, layer - 1)
                activate(a, hidden)
                if layer == last:
                    W, b, z = WL, bL, zL
                else:
                    W, b = layer_views(params, layout, layer)
                    z = units(acts, layout, layer)
                dense(W, b, a, z)
        # Each call a constant code, so that the other outputs' kernel compiles no sigmoid loss.
        if sigmoid:
            loss, logs, product = loss_and_delta(zL, y, SIGMOID, deltaL, logs, product)
        elif output == SOFTMAX:
            loss, logs, product = loss_and_delta(zL, y, SOFTMAX, deltaL, logs, product)
        elif output == LINEAR:
            loss, logs, product = loss_and_delta(zL, y, LINEAR, deltaL, logs, product)
        else:
            loss, logs, product = loss_and_delta(zL, y, EXP, deltaL, logs, product)
        squares = T(0)
        if shallow:
            squares += backprop_step_narrow(WL, bL, SWL, sbL, z0, deltaL, delta0, alpha, step,
                                             nesterov)
            scale_by_derivative(delta0, z0, hidden)
        else:
            for layer in range(last, 0, -1):
                if layer == last:
                    W, b, SW, sb = WL, bL, SWL, sbL
                else:
                    W, b, SW, sb = _optimizer_state(params, state, layout, layer, optimizer)
                a = units(acts, layout, layer - 1)
                delta_prev = units(deltas, layout, layer - 1)
                squares += backprop_step(W, b, SW, sb, a, units(deltas, layout, layer),
                                          delta_prev, alpha, step, nesterov)
                scale_by_derivative(delta_prev, a, hidden)
        return loss, logs, product, squares

    return upper
