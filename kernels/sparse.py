"""The sparse per-sample SGD kernel: training on the rows of a CSR matrix (``data, indices,
indptr`` with sorted, unique column indices per row).

Plain per-sample SGD (batch size 1, no momentum, no L2 penalty) has a kernel of its own: the
first layer's forward pass ``z = b + sum over the row's non-zeros of x_k * W[k, :]`` and its
step ``W[k, :] -= lr * x_k * delta`` touch only the weight rows of the row's non-zero
features, where the dense kernel streams all of W for every sample. It does the dense kernel's
arithmetic in the dense kernel's order, leaving out only terms whose feature is zero, which
change no sum (adding ``0 * w`` to a sum leaves it as it was, but for the sign of a zero), so
it trains bitwise the weights the dense kernel trains on ``X.toarray()`` while they are
finite. Every other setting (mini-batches,
momentum, a penalty) updates every weight at every step anyway: those epochs run the dense
kernels on consecutive groups of whole batches, each group densified within
csr.DENSE_BLOCK_BYTES (csr.in_dense_groups).
"""

import functools

import numpy as np

from ._jit import inline_ir, specialised, standalone
from .codes import FAN_OUT, SGD, UNIT_OFF
from .layers import in_column_blocks, layer_views, units
from .optimizers import step_biases
from .per_sample import prefetch_row, upper_layers
from .simd import (accumulate_row, lane_buffer, lanes_in, load_scaled, step_and_accumulate,
                   store_block)


@inline_ir
def _sparse_forward(W, b, data, indices, start, stop, z):
    """z = x @ W + b for the row of non-zeros ``start:stop``, each sum in the order of the
    columns with a product and an addition per term, as layers.dense_by_units sums a dense
    row (the dense kernel's first forward pass of an epoch)."""
    for j in range(z.size):
        z[j] = b[j]
    for p in range(start, stop):
        k = indices[p]
        xk = data[p]
        for j in range(z.size):
            z[j] += xk * W[k, j]


@inline_ir
def _sparse_step_block(operands, start, count, registers, masked):
    """layers._step_and_forward_block without momentum or penalty, for sample x's and the
    next sample's non-zeros only: the step of x's weight rows, then z_next's sum down the
    next sample's rows (on the stepped weights, as the dense block sums them). Every other
    row of W has a zero feature in both samples, where the dense block changes no weight and
    adds nothing to z; so z's sum has the dense sum's non-zero terms in the dense sum's
    order."""
    W, b, data, indices, x_start, x_stop, next_start, next_stop, delta, z_next, step = operands
    lr = step[0]
    T = W.dtype.type
    z = lane_buffer(W, registers)
    minus_lr_delta = lane_buffer(W, registers)
    # The step's own sum (of zero terms) goes here, unread, rather than lengthen z's chain.
    unused = lane_buffer(W, registers)
    load_scaled(z, b, start, count, 1, registers, masked)
    load_scaled(minus_lr_delta, delta, start, count, -lr, registers, masked)
    for p in range(x_start, x_stop):
        step_and_accumulate(W, None, np.intp(indices[p]), start, count, minus_lr_delta, unused,
                            unused, data[p], T(0), None, step, False, registers, masked)
    for p in range(next_start, next_stop):
        accumulate_row(z, W, indices[p], start, count, data[p], registers, masked)
    store_block(z_next, start, count, z, registers, masked)


@functools.cache
def sparse_per_sample_kernel(sigmoid: bool, shallow: bool):
    """The sparse per-sample epoch kernel for an output and a network kind (see
    per_sample.per_sample_kernel), made on first use."""
    upper = upper_layers(sigmoid, shallow, SGD)

    @standalone
    @specialised(sigmoid, shallow)
    def sparse_per_sample_epoch(params, layout, data, indices, indptr, Y, order, lr, hidden,
                                output, scratch):
        """Plain per-sample SGD over the CSR rows ``order``, activation codes ``hidden`` and
        ``output``; returns the summed loss, as per_sample_epoch does.

        As in the dense kernel, the first layer's step for a sample is fused with its forward
        pass for the next one, in column blocks (_sparse_step_block)."""
        T = params.dtype.type
        last = layout.shape[0] - 1
        n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
        acts = scratch[:n_units]
        deltas = scratch[n_units:2 * n_units]
        W0, b0 = layer_views(params, layout, 0)
        WL, bL = layer_views(params, layout, last)
        z0 = units(acts, layout, 0)
        delta0 = units(deltas, layout, 0)
        total = 0.0
        logs, product = 0.0, 1.0
        step = (lr, T(0))   # plain SGD's step scalars (see kernels.optimizers)
        first = order[0]
        _sparse_forward(W0, b0, data, indices, indptr[first], indptr[first + 1], z0)
        for s in range(order.size):
            i = order[s]
            loss, logs, product, _ = upper(params, None, layout, hidden, output, acts, deltas,
                                           WL, bL, None, None, Y[i], None, step, logs, product)
            total += loss
            next_i = order[s + 1] if s + 1 < order.size else order[0]
            # The weight rows a sample touches are scattered over W, and W is often larger
            # than the cache: their loads are started a sample ahead.
            if s + 2 < order.size:
                ahead = order[s + 2]
                for p in range(indptr[ahead], indptr[ahead + 1]):
                    prefetch_row(W0[indices[p]])
            step_biases(b0, None, delta0, step, False)
            operands = (W0, b0, data, indices, indptr[i], indptr[i + 1], indptr[next_i],
                        indptr[next_i + 1], delta0, z0, step)
            in_column_blocks(_sparse_step_block, delta0.size, lanes_in(W0), operands, 4)
        return total + logs + np.log(product)

    return sparse_per_sample_epoch
