"""The sparse per-sample SGD kernel: training on the rows of a CSR matrix (``data, indices,
indptr`` with sorted, unique column indices per row).

Plain per-sample SGD (batch size 1, no momentum, no L2 penalty) has a kernel of its own: the
first layer's forward pass ``z = b + sum over the row's non-zeros of x_k * W[k, :]`` and its
step ``W[k, :] -= lr * x_k * delta`` touch only the weight rows of the row's non-zero
features, where the dense kernel streams all of W for every sample. It does the dense kernel's
arithmetic in the dense kernel's order, leaving out only terms whose feature is zero, which
change no sum (adding ``0 * w`` to a sum leaves it as it was), so it trains bitwise the
weights the dense kernel trains on ``X.toarray()``. Every other setting (mini-batches,
momentum, a penalty) updates every weight at every step anyway: those epochs run the dense
kernels on consecutive groups of whole batches, each group densified within
csr.DENSE_BLOCK_BYTES (csr.in_dense_groups).
"""

import functools

import numpy as np

from ._jit import inline_ir, standalone
from .codes import FAN_OUT, UNIT_OFF
from .layers import in_column_blocks, layer_views, units
from .optimizers import step_biases
from .per_sample import upper_layers
from .simd import lane_buffer, lanes_in, load_scaled, step_and_accumulate, store_block

@inline_ir
def _merge_rows(data, indices, a, a_end, b, b_end, columns, values, next_values):
    """The union of the columns of two rows' non-zeros (entries ``a:a_end`` and ``b:b_end``),
    in increasing order, into ``columns``, with each row's value there (zero where it has
    none) in ``values`` and ``next_values``. Returns how many columns."""
    T = values.dtype.type
    n = 0
    while a < a_end or b < b_end:
        if b == b_end or (a < a_end and indices[a] < indices[b]):
            columns[n], values[n], next_values[n] = indices[a], data[a], T(0)
            a += 1
        elif a == a_end or indices[b] < indices[a]:
            columns[n], values[n], next_values[n] = indices[b], T(0), data[b]
            b += 1
        else:
            columns[n], values[n], next_values[n] = indices[a], data[a], data[b]
            a += 1
            b += 1
        n += 1
    return n


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
    """layers._step_and_forward_block without momentum or penalty over the merged columns
    only: the other rows of W have a zero feature in both samples, where the dense block
    adds nothing to their weights or to z."""
    W, b, columns, values, next_values, n, delta, z_next, lr = operands
    T = W.dtype.type
    z = lane_buffer(W, registers)
    minus_lr_delta = lane_buffer(W, registers)
    load_scaled(z, b, start, count, 1, registers, masked)
    load_scaled(minus_lr_delta, delta, start, count, -lr, registers, masked)
    for p in range(n):
        # No penalty: step_and_accumulate leaves its squares (here z) alone.
        step_and_accumulate(W, None, columns[p], start, count, minus_lr_delta, z, z,
                            values[p], next_values[p], lr, None, T(0), False, registers,
                            masked)
    store_block(z_next, start, count, z, registers, masked)


@functools.cache
def sparse_per_sample_kernel(hidden_activation: int, output_activation: int, shallow: bool):
    """The sparse per-sample epoch kernel for a pair of activation codes and a network kind
    (see per_sample.per_sample_kernel), made on first use."""
    upper = upper_layers(hidden_activation, output_activation, shallow, False)

    @standalone
    def sparse_per_sample_epoch(params, layout, data, indices, indptr, Y, order, lr, scratch,
                                columns, merged):
        """Plain per-sample SGD over the CSR rows ``order``; returns the summed loss, as
        per_sample_epoch does. ``columns`` and the two rows of ``merged`` are work space of
        csr.merge_width elements, for the union of two consecutive samples' non-zeros.

        As in the dense kernel, the first layer's step for a sample is fused with its forward
        pass for the next one: one pass down the union of the two rows' non-zero columns."""
        T = params.dtype.type
        last = layout.shape[0] - 1
        n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
        acts = scratch[:n_units]
        deltas = scratch[n_units:2 * n_units]
        W0, b0 = layer_views(params, layout, 0)
        WL, bL = layer_views(params, layout, last)
        z0 = units(acts, layout, 0)
        delta0 = units(deltas, layout, 0)
        values = merged[0]
        next_values = merged[1]
        total = 0.0
        logs, product = 0.0, 1.0
        first = order[0]
        _sparse_forward(W0, b0, data, indices, indptr[first], indptr[first + 1], z0)
        for s in range(order.size):
            i = order[s]
            loss, logs, product, _ = upper(params, None, layout, acts, deltas, WL, bL, None,
                                           None, Y[i], lr, None, T(0), logs, product)
            total += loss
            next_i = order[s + 1] if s + 1 < order.size else order[0]
            n = _merge_rows(data, indices, indptr[i], indptr[i + 1], indptr[next_i],
                            indptr[next_i + 1], columns, values, next_values)
            step_biases(b0, None, delta0, lr, T(0), False)
            in_column_blocks(_sparse_step_block, delta0.size, lanes_in(W0),
                             (W0, b0, columns, values, next_values, n, delta0, z0, lr), 4)
        return total + logs + np.log(product)

    return sparse_per_sample_epoch
