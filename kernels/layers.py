"""Layer math: views of a layer in the flat buffers, hidden activations and their derivatives,
and the fused dense forward and backward passes (each backward pass also takes the layer's
optimizer step, so that every weight is read once per sample).

Hot loops index 2-D weight views ``W[k, j]`` with range variables rather than
``params[offset + j]``: Numba wraps negative indices, and for an offset it cannot prove
non-negative that check stays in the loop and stops LLVM from vectorizing it.

Constants are made with the array's own dtype (``T = params.dtype.type``) so that a float32
network never promotes to float64 in a hot loop.
"""

import numpy as np

from ._jit import inline_ir, inline_llvm, inline_llvm_reassociating, standalone
from .codes import (B_OFF, FAN_IN, FAN_OUT, FORWARD_TILE_ROWS, LOGISTIC, RELU, TANH, UNIT_OFF,
                    W_OFF)
from .optimizers import ADAM_BUFFERS, l2_gradient, sgd_update, step_biases, update
from .simd import (as_matrix, as_vector, dense_tile, lane_buffer, lanes_in, load_scaled,
                   step_and_accumulate, store_block, strided)


# Layers with fewer units than this (output layers) loop over inputs innermost.
NARROW = 4


@inline_ir
def activate(z, code):
    """Hidden activation, in place."""
    T = z.dtype.type
    if code == RELU:
        # A select rather than a branch: ReLU's sign pattern is unpredictable. NaN stays NaN.
        # Adding zero changes no value (only a zero's sign), but it stops LLVM from storing
        # only the lanes that change (a masked store: on AVX2 CPUs a slow instruction, and
        # loads from it cannot be forwarded).
        for j in range(z.size):
            z[j] = (T(0) if z[j] < T(0) else z[j]) + T(0)
    elif code == LOGISTIC:
        for j in range(z.size):
            z[j] = T(1) / (T(1) + np.exp(-z[j]))
    elif code == TANH:
        for j in range(z.size):
            z[j] = np.tanh(z[j])


@inline_ir
def scale_by_derivative(delta, a, code):
    """delta *= f'(z), with f' written in terms of the activation a = f(z)."""
    T = delta.dtype.type
    if code == RELU:
        for k in range(delta.size):
            delta[k] *= T(1) if a[k] > T(0) else T(0)
    elif code == LOGISTIC:
        for k in range(delta.size):
            delta[k] *= a[k] * (T(1) - a[k])
    elif code == TANH:
        for k in range(delta.size):
            delta[k] *= T(1) - a[k] * a[k]


@inline_ir
def layer_views(buffer, layout, layer):
    """Views (W, b) of one layer in a buffer laid out like the parameters: W is 2-D
    (fan_in, fan_out), so hot loops index it with non-negative range variables."""
    w_off = layout[layer, W_OFF]
    b_off = layout[layer, B_OFF]
    fan_out = layout[layer, FAN_OUT]
    return (as_matrix(buffer[w_off:b_off], layout[layer, FAN_IN], fan_out),
            buffer[b_off:b_off + fan_out])


@inline_ir
def units(buffer, layout, layer):
    """The slice of an activation or delta vector that belongs to ``layer``."""
    u_off = layout[layer, UNIT_OFF]
    return buffer[u_off:u_off + layout[layer, FAN_OUT]]


# Reassociation lets LLVM split a narrow layer's dot products into SIMD partial sums: as one
# chain of dependent additions, the 64 terms of a 64-1 output layer cost about 256 cycles.
@inline_llvm_reassociating
def dense(W, b, a, z):
    """z = a @ W + b. Wide layers go row by row of W in register blocks of columns, as
    prediction does (_dense_one_row: the sums stay in registers, where a loop over z would
    store and reload them for every row); narrow ones (an output layer) take one dot product
    per unit, which spares a short inner loop per row, in partial sums (the terms' order is
    the compiler's)."""
    if z.size < NARROW:
        dense_narrow(W, b, a, z)
        return
    in_column_blocks(_dense_one_row, z.size, lanes_in(W),
                      (W, b, as_matrix(a, 1, a.size), as_matrix(z, 1, z.size)), 4)


@inline_llvm_reassociating
def dense_narrow(W, b, a, z):
    """dense for a narrow layer, its dot products in partial sums: a function of its own, so
    that the shallow kernel's output layer gets them too (inlined there at IR level, its sums
    became one chain)."""
    dense_by_units(W, b, a, z)


@inline_ir
def dense_by_units(W, b, a, z):
    """z = a @ W + b, one dot product per unit."""
    for j in range(z.size):
        acc = b[j]
        for k in range(a.size):
            acc += a[k] * W[k, j]
        z[j] = acc


@inline_ir
def _dense_one_row(operands, start, count, registers, masked):
    """One block of columns of dense's z, for ``operands = (W, b, a, z)`` with a and z as
    1-row matrices. Prediction's path (dense_rows) would do the same work, but compiling its
    multi-row tiles, which a single row never takes, lengthens the first training run's
    compile."""
    W, b, A, Z = operands
    dense_tile(Z, A, W, b, 0, start, count, 1, registers, masked)


@inline_llvm
def forward_sample(params, layout, x, acts, hidden_activation):
    """Forward pass of one sample, leaving the last layer's logits in ``acts``."""
    last = layout.shape[0] - 1
    for layer in range(last + 1):
        z = units(acts, layout, layer)
        W, b = layer_views(params, layout, layer)
        dense(W, b, x if layer == 0 else units(acts, layout, layer - 1), z)
        if layer < last:
            activate(z, hidden_activation)


# Reassociation lets LLVM sum each row's w * delta in SIMD partial sums, where one chain of
# dependent additions per row kept the whole loop scalar.
@inline_llvm_reassociating
def backprop_step(W, b, SW, sb, a, delta, delta_prev, alpha, step, nesterov):
    """One pass over a hidden-fed layer's weights: delta_prev = W @ delta with the old
    weights, and the optimizer's step on the gradient outer(a, delta) + alpha * W (see
    optimizers: ``step`` holds its scalars; the state views ``SW`` and ``sb`` are None for
    plain SGD). Returns the new weights' sum of squares when ``alpha`` is given (the next
    sample's L2 penalty), else zero."""
    T = W.dtype.type
    if delta.size < NARROW:
        return backprop_step_narrow(W, b, SW, sb, a, delta, delta_prev, alpha, step, nesterov)
    squares = T(0)
    for k in range(a.size):
        ak = a[k]
        acc = T(0)
        # Without optimizer state the loop touches no other buffer, which lets LLVM vectorize
        # it.
        if SW is None:
            for j in range(delta.size):
                w = W[k, j]
                acc += w * delta[j]
                w = sgd_update(w, l2_gradient(ak * delta[j], alpha, w), step[0])
                W[k, j] = w
                if alpha is not None:
                    squares += w * w
        else:
            for j in range(delta.size):
                w = W[k, j]
                acc += w * delta[j]
                w = update(w, l2_gradient(ak * delta[j], alpha, w), SW, (k, j), step, nesterov)
                W[k, j] = w
                if alpha is not None:
                    squares += w * w
        delta_prev[k] = acc
    step_biases(b, sb, delta, step, nesterov)
    return squares


# Compiled with backprop_step's flags, as it was when only backprop_step called it: without
# them, called from the shallow kernel, it rounds differently and runs slower.
@inline_llvm_reassociating
def backprop_step_narrow(W, b, SW, sb, a, delta, delta_prev, alpha, step, nesterov):
    """backprop_step for a layer with few units (an output layer): one pass down each column,
    so the inner loop runs over the many inputs. delta_prev sums its terms in the same order."""
    T = W.dtype.type
    for j in range(delta.size):
        dj = delta[j]
        # The first column starts the sums: LLVM made a loop zeroing them a call to memset.
        if SW is None:
            for k in range(a.size):
                w = W[k, j]
                delta_prev[k] = (delta_prev[k] if j else T(0)) + w * dj
                W[k, j] = sgd_update(w, l2_gradient(a[k] * dj, alpha, w), step[0])
        else:
            for k in range(a.size):
                w = W[k, j]
                delta_prev[k] = (delta_prev[k] if j else T(0)) + w * dj
                W[k, j] = update(w, l2_gradient(a[k] * dj, alpha, w), SW, (k, j), step,
                                 nesterov)
    step_biases(b, sb, delta, step, nesterov)
    # A narrow layer's few weights in a pass of their own: summed down the columns, their
    # squares would be one chain of dependent additions.
    return sum_of_squares(W) if alpha is not None else T(0)


@inline_ir
def in_column_blocks(block, n, lanes, operands, widest):
    """Call ``block(operands, start, count, registers, masked)`` over columns 0..n: blocks of
    ``widest`` registers (of ``lanes`` elements; a literal, 4 or 2) while they fit, since each
    block is one pass over the rows of a weight matrix; then at most one of two and one of
    one, then one masked block for the last few columns. ``block`` is a view, compiled once
    per literal block size."""
    j = 0
    while n - j >= widest * lanes:
        block(operands, j, widest * lanes, widest, False)
        j += widest * lanes
    if widest > 2 and n - j >= 2 * lanes:
        block(operands, j, 2 * lanes, 2, False)
        j += 2 * lanes
    if n - j >= lanes:
        block(operands, j, lanes, 1, False)
        j += lanes
    if j < n:
        block(operands, j, n - j, 1, True)


@inline_ir
def _dense_columns(operands, start, count, registers, masked):
    """Columns ``start:start + count`` (one block, see _Block) of ``Z = A @ W + b`` for
    ``operands = (W, b, A, Z)``, in tiles of FORWARD_TILE_ROWS rows and then single rows."""
    W, b, A, Z = operands
    r = 0
    while A.shape[0] - r >= FORWARD_TILE_ROWS:
        dense_tile(Z, A, W, b, r, start, count, FORWARD_TILE_ROWS, registers, masked)
        r += FORWARD_TILE_ROWS
    while r < A.shape[0]:
        dense_tile(Z, A, W, b, r, start, count, 1, registers, masked)
        r += 1


@inline_ir
def dense_rows(W, b, A, Z):
    """Z = A @ W + b for a block of rows (prediction's layers, the mini-batch products), in
    column blocks of at most two registers: a tile keeps its 6 x 2 sums in registers, where
    4 x 4 tiles (sixteen sums) spilled to the stack on AVX2's sixteen vector registers. W's
    rows must be contiguous (a vector load reads a block of a row); A may be any view (a
    transposed one: its elements are read one at a time through its strides). A is passed on
    as any-layout (simd.strided), so that one compiled kernel serves every caller."""
    _dense_rows_strided(W, b, strided(A), Z)


# Called, not inlined: a call costs nothing next to a product of matrices, and each inlined
# copy of the tiles' loops lengthens the caller's compile by seconds.
@standalone
def _dense_rows_strided(W, b, A, Z):
    in_column_blocks(_dense_columns, W.shape[1], lanes_in(W), (W, b, A, Z), 2)


# With optimizer state the first layer streams its weights and their state buffers. Where
# these outgrow L2, reading them in column blocks (row after row, a block's width apart) is
# slower than one pass row by row (the threshold is a 512 KB L2).
ROW_BY_ROW_ABOVE_BYTES = 512 * 1024


@inline_ir
def _step_and_forward_block(operands, start, count, registers, masked):
    """step_first_and_forward (``operands`` are its arguments but ``sb``, and the delta's
    scale) for the ``count`` columns from ``start``, at most a block of ``registers`` SIMD
    registers (fewer only if ``masked``). The block's z and scaled delta stay in registers
    while it runs down the rows of W."""
    W, b, SW, x, delta, x_next, z_next, alpha, step, nesterov, scale, squares = operands
    z = lane_buffer(W, registers)
    scaled_delta = lane_buffer(W, registers)
    load_scaled(z, b, start, count, 1, registers, masked)
    load_scaled(scaled_delta, delta, start, count, scale, registers, masked)
    for k in range(x.size):
        step_and_accumulate(W, SW, k, start, count, scaled_delta, z, squares, x[k],
                             x_next[k], alpha, step, nesterov, registers, masked)
    store_block(z_next, start, count, z, registers, masked)


@inline_llvm
def step_first_and_forward(W, b, SW, sb, x, delta, x_next, z_next, alpha, step, nesterov):
    """The first layer's optimizer step for sample x fused with its forward pass for the next
    sample: each weight is read once, updated, and used at once for z_next = x_next @ W + b.
    ``SW`` and ``sb`` are the layer's optimizer-state views (None for plain SGD), ``step`` the
    step's scalars (see optimizers).

    The reference's arithmetic up to rounding: z's sums are fused multiply-adds (one rounding
    where the reference rounds twice), as are the update's momentum, moment and penalty terms
    (see step_and_accumulate). Returns the new weights' sum of squares when ``alpha`` is given
    (the next sample's L2 penalty), else zero."""
    T = W.dtype.type
    step_biases(b, sb, delta, step, nesterov)
    if SW is not None and len(SW) != ADAM_BUFFERS and \
            (1 + len(SW)) * W.size * W.itemsize > ROW_BY_ROW_ABOVE_BYTES:
        for j in range(b.size):
            z_next[j] = b[j]
        for k in range(x.size):
            xn = x_next[k]
            for j in range(delta.size):
                w = update(W[k, j], l2_gradient(x[k] * delta[j], alpha, W[k, j]), SW, (k, j),
                           step, nesterov)
                W[k, j] = w
                z_next[j] += xn * w
        return sum_of_squares(W) if alpha is not None else T(0)
    # Each block's z is one chain of multiply-adds down the rows, so the wider blocks of
    # in_column_blocks also hide latency a block of one register would wait for. With state
    # a block of four registers also holds four of weights and four of each state buffer,
    # more than AVX2's sixteen, and spills its sums to the stack: state takes blocks of two.
    # With a penalty and no state, each block adds its new weights' squares into the first
    # of its lanes here (the blocks' widths differ; the sum does not care which lane holds
    # what): a pass over W less per sample. With state the squares' registers would spill
    # the block's: a pass of their own.
    squares = lane_buffer(W, 4)
    if alpha is not None:
        squares[:] = T(0)
    if SW is None:
        operands = (W, b, SW, x, delta, x_next, z_next, alpha, step, nesterov, -step[0],
                    squares)
        in_column_blocks(_step_and_forward_block, delta.size, lanes_in(W), operands, 4)
        return _sum_lanes(squares) if alpha is not None else T(0)
    # SGD's steps scale the delta by -lr once per block, Adam's take the gradient itself.
    scale = T(1) if len(SW) == ADAM_BUFFERS else -step[0]
    operands = (W, b, SW, x, delta, x_next, z_next, alpha, step, nesterov, scale, squares)
    in_column_blocks(_step_and_forward_block, delta.size, lanes_in(W), operands, 2)
    return sum_of_squares(W) if alpha is not None else T(0)


@inline_llvm_reassociating
def sum_of_squares(W):
    """The sum of the squares of a weight matrix's elements, in SIMD partial sums over the
    flat matrix (row by row, a narrow matrix's sums would be one chain)."""
    T = W.dtype.type
    w = as_vector(W)
    s = T(0)
    for i in range(w.size):
        s += w[i] * w[i]
    return s


@inline_llvm_reassociating
def _sum_lanes(values):
    """The sum of a lane buffer's elements."""
    T = values.dtype.type
    s = T(0)
    for i in range(values.size):
        s += values[i]
    return s


@inline_llvm_reassociating
def sum_squared_weights(params, layout):
    """The L2 penalty's sum of squared weights (biases excluded), in SIMD partial sums over a
    slice per layer (indexing params by offsets kept it a scalar chain)."""
    T = params.dtype.type
    s = T(0)
    for layer in range(layout.shape[0]):
        W = params[layout[layer, W_OFF]:layout[layer, B_OFF]]
        for i in range(W.size):
            s += W[i] * W[i]
    return s


@inline_ir
def chunk_block(work, at, rows, layout, layer):
    """Layer ``layer``'s units for a chunk of ``rows`` samples, as a (rows, fan_out) matrix
    in ``work`` from ``at`` (laid out like the scratch vectors, each unit a row longer): the
    layout of the BLAS path's and prediction's blocks of rows."""
    u_off = layout[layer, UNIT_OFF]
    fan_out = layout[layer, FAN_OUT]
    return as_matrix(work[at + rows * u_off:at + rows * (u_off + fan_out)], rows, fan_out)
