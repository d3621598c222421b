"""Compiled kernels: the same functions as :mod:`fastmlp.kernels.reference`, written to be fast.

Every kernel is ``@njit(cache=True, nogil=True)``, and none allocates (scratch vectors come
from the caller), so they also run without Numba's reference-counting runtime
(``_nrt=False``): otherwise every array view made in a hot loop costs an atomic
incref/decref pair (measured: +15-40% samples/s on 3-5-1 and 30-16-1 nets). Helpers that
return views are inlined at Numba-IR level, since a function compiled without the runtime
cannot return an array. (The one exception, the BLAS path for mini-batches (see use_blas),
keeps the runtime: Numba's ``np.dot`` needs it.) Numba's cache only notices edits to the file
that defines a kernel, so the whole call graph of these kernels lives in this module; delete
``kernels/__pycache__/*.nbi`` / ``*.nbc`` (or set ``NUMBA_CACHE_DIR``) to force recompilation.

Hot loops index 2-D weight views ``W[k, j]`` with range variables rather than
``params[offset + j]``: Numba wraps negative indices, and for an offset it cannot prove
non-negative that check stays in the loop and stops LLVM from vectorizing it. The 2-D views
come from _as_matrix, a few instructions where Numba's reshape calls a C helper (~25 ns); the
epoch kernel still makes the first and last layers' views once per epoch.

Constants are made with the array's own dtype (``T = params.dtype.type``) so that a float32
network never promotes to float64 in a hot loop.

Per-sample SGD streams every weight through the cache for every sample, so the epoch kernel
is written to touch each weight as few times as possible: a layer's backward pass reads each
weight once, uses the old value for the previous layer's delta and writes the updated value;
and the first layer's update for sample ``i`` is fused with the first layer's forward pass for
sample ``i + 1``. That fused layer (most of the work in a one-hidden-layer net) is written
with a few LLVM intrinsics (the "SIMD building blocks" below) because Numba cannot express
what makes it fast: pre-activations held in registers across the rows of W, and fused
multiply-adds. Its arithmetic is the reference's up to rounding, as is that of the other
layers: their forward passes use the same building blocks, and the sums of their backward
passes and narrow forward passes go in SIMD partial sums (``fused_sums``). Prediction
(``forward``) uses the building blocks for tiles of rows.
"""

import contextlib
import functools
import threading

import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.core.codegen import get_host_cpu_features
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from .codes import (B_OFF, CACHE_LINE_BYTES, FAN_IN, FAN_OUT, FORWARD_TILE_ROWS, LOGISTIC, RELU,
                    SIGMOID, SOFTMAX, TANH, UNIT_OFF, W_OFF)

kernel = njit(cache=True, nogil=True, _nrt=False)
# Inlined at Numba-IR level: helpers that return array views (see above); small ones, since
# each kernel compiled on its own costs ~0.1-0.2 s in the first run (unless they branch on a
# None that their caller takes out of a tuple: Numba prunes such branches only on arguments);
# and those that pick an activation by its code, so that a kernel holding the code as a
# constant compiles only that activation.
view = njit(cache=True, nogil=True, _nrt=False, inline="always")
# Compiled once on its own, then inlined by LLVM into each caller: a plain call to a kernel
# that takes a dozen arrays pushes about 80 words, which costs as much as a small layer's
# work (25-35% of the samples/s at 3-5-1 and 30-16-1). Only kernels call them, so they go
# without the wrappers that let Python and C call a kernel: generating those made the
# first fit's compile ~10% longer (medians of eight interleaved pairs, two runs). Even the
# smallest called from several places (_gradient, _step_biases) compile faster this way than
# inlined at IR level into each (ratio 1.09, eight pairs).
_INLINED = dict(cache=True, nogil=True, _nrt=False, forceinline=True,
                no_cpython_wrapper=True, no_cfunc_wrapper=True)
fused = njit(**_INLINED)
# The same, with LLVM free to reorder sums and to fuse multiply-adds (fastmath's reassociation
# and contraction only), for loops whose sums should go in SIMD partial sums.
fused_sums = njit(**_INLINED, fastmath={"reassoc", "contract"})

# Layers with fewer units than this (output layers) loop over inputs innermost.
NARROW = 4


# --- SIMD building blocks -------------------------------------------------------------------
# LLVM would keep the first layer's pre-activations in registers only if it knew they cannot
# alias the weights, and Numba has no way to say so; and Numba leaves LLVM's SLP vectorizer
# off, so an unrolled block of scalar updates stays scalar. These intrinsics write the vector
# code directly: a block of columns lives in stack buffers (which LLVM promotes to registers,
# since a stack slot provably aliases nothing), and one call updates a block of a weight row.


def _register_bytes() -> int:
    """Bytes in one SIMD register of the CPU Numba compiles for: 64 with AVX-512, else 32.

    A block of four registers keeps its sums and its -lr * delta in eight registers. Blocks
    sized for AVX-512 on an AVX2 CPU become sixteen of its sixteen 32-byte registers, which
    spills, and a narrow layer's masked block does twice the masked work it needs (measured
    on a Zen 3: 10-25% fewer samples/s at 100-64-1, 784-128-1 and float32 3-5-1). Numba keys
    its cache by the CPU's features, so each kind of CPU gets kernels compiled for its own
    width."""
    features = config.CPU_FEATURES
    if features is None:
        features = get_host_cpu_features()
    return 64 if "+avx512f" in features.split(",") else 32


REGISTER_BYTES = _register_bytes()


def _lanes(dtype) -> int:
    return REGISTER_BYTES // np.dtype(str(dtype)).itemsize


def _fma(builder, a, b, c):
    """a * b + c with one rounding (llvm.fma), for scalars or vectors."""
    t = a.type
    suffix = (f"v{t.count}{t.element.intrinsic_name}" if isinstance(t, ir.VectorType)
              else t.intrinsic_name)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t, t, t]),
                                        f"llvm.fma.{suffix}")
    return builder.call(fn, [a, b, c])


def _intrinsic_or(python):
    """Compile the decorated intrinsic; but with Numba's JIT disabled (coverage, debugging),
    where intrinsics cannot run, use ``python``, the same operation in NumPy.

    The intrinsics need their block sizes as literals, so they are typed with literal
    arguments first (Numba's default tries non-literal types first, and where an argument is
    Optional its retry then fails inside Numba with "unhashable type: 'list'")."""
    def decorate(generator):
        return python if config.DISABLE_JIT else intrinsic(prefer_literal=True)(generator)
    return decorate


def _literal_block(registers, masked) -> bool:
    return (isinstance(registers, types.IntegerLiteral)
            and isinstance(masked, types.BooleanLiteral))


class _Block:
    """Code generation for one block of ``registers`` SIMD registers of ``dtype`` lanes, read
    from or written to consecutive elements of an array's last dimension; with ``masked``,
    only the first ``count`` lanes are read from or written to arrays (the others read as
    zero)."""

    def __init__(self, context, builder, dtype, registers, masked, count):
        self.context = context
        self.builder = builder
        self.dtype = dtype
        self.item = context.get_data_type(dtype)
        self.n = _lanes(dtype) * registers.literal_value
        self.vector = ir.VectorType(self.item, self.n)
        self.align = context.get_abi_sizeof(self.item)
        self.zero = context.get_constant(types.intp, 0)
        self.mask = None
        if masked.literal_value:
            index = ir.VectorType(count.type, self.n)
            self.mask = builder.icmp_unsigned("<", ir.Constant(index, list(range(self.n))),
                                              self.splat(count, index))

    def splat(self, scalar, vector=None):
        vector = vector or self.vector
        lane0 = self.builder.insert_element(ir.Constant(vector, ir.Undefined), scalar,
                                            self.zero)
        return self.builder.shuffle_vector(lane0, lane0, ir.Constant(
            ir.VectorType(ir.IntType(32), self.n), [0] * self.n))

    def _element(self, array_type, array, index):
        """The address of element ``index`` (one index, or a list of one per dimension)."""
        ary = make_array(array_type)(self.context, self.builder, value=array)
        dims = array_type.ndim
        return cgutils.get_item_pointer2(
            self.context, self.builder, data=ary.data,
            shape=cgutils.unpack_tuple(self.builder, ary.shape, dims),
            strides=cgutils.unpack_tuple(self.builder, ary.strides, dims),
            layout=array_type.layout, inds=index if isinstance(index, list) else [index])

    def _pointer(self, array_type, array, index):
        return self.builder.bitcast(self._element(array_type, array, index),
                                    self.vector.as_pointer())

    def scalar(self, array_type, array, index):
        """Element ``index`` of ``array``, in the block's dtype."""
        value = self.builder.load(self._element(array_type, array, index))
        return self.context.cast(self.builder, value, array_type.dtype, self.dtype)

    def _masked_intrinsic(self, name, return_type, pointer):
        i32 = ir.IntType(32)
        bits = ir.VectorType(ir.IntType(1), self.n)
        operands = ([pointer.type, i32, bits, self.vector] if name == "load"
                    else [self.vector, pointer.type, i32, bits])
        return cgutils.get_or_insert_function(
            self.builder.module, ir.FunctionType(return_type, operands),
            f"llvm.masked.{name}.v{self.n}{self.item.intrinsic_name}.p0"), i32(self.align)

    def load(self, array_type, array, index, whole=False):
        """The block of ``array`` from ``index``; ``whole`` for a stack buffer (never masked)."""
        pointer = self._pointer(array_type, array, index)
        if self.mask is None or whole:
            return self.builder.load(pointer, align=self.align)
        load, align = self._masked_intrinsic("load", self.vector, pointer)
        return self.builder.call(load, [pointer, align, self.mask,
                                        ir.Constant(self.vector, None)])

    def store(self, value, array_type, array, index, whole=False):
        pointer = self._pointer(array_type, array, index)
        if self.mask is None or whole:
            self.builder.store(value, pointer, align=self.align)
            return
        store, align = self._masked_intrinsic("store", ir.VoidType(), pointer)
        self.builder.call(store, [value, pointer, align, self.mask])

    def fma(self, a, b, c):
        return _fma(self.builder, a, b, c)


def _lane_buffer_numpy(like, registers):
    return np.empty(_lanes(like.dtype) * registers, like.dtype)


@_intrinsic_or(_lane_buffer_numpy)
def _lane_buffer(typingctx, like, registers):
    """An uninitialized 1-D stack array of ``registers`` (a literal) SIMD registers' worth of
    ``like``'s dtype. Stack slots provably alias nothing, so LLVM keeps one that is only read
    and written whole (by the intrinsics below) in a register."""
    if not isinstance(registers, types.IntegerLiteral):
        return None
    n = _lanes(like.dtype) * registers.literal_value
    array_type = types.Array(like.dtype, 1, "C")

    def codegen(context, builder, sig, args):
        item = context.get_data_type(like.dtype)
        itemsize = context.get_abi_sizeof(item)
        intp = context.get_value_type(types.intp)
        array = make_array(array_type)(context, builder)
        populate_array(array, data=cgutils.alloca_once(builder, item, size=n),
                       shape=[intp(n)], strides=[intp(itemsize)], itemsize=intp(itemsize),
                       meminfo=None)
        return array._getvalue()
    return array_type(like, registers), codegen


def _lanes_numpy(like):
    return _lanes(like.dtype)


@_intrinsic_or(_lanes_numpy)
def _lanes_in(typingctx, like):
    """How many elements of ``like``'s dtype one SIMD register holds (a compile-time constant,
    where ``REGISTER_BYTES // like.itemsize`` would divide at run time)."""
    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, _lanes(like.dtype))
    return types.intp(like), codegen


def _load_scaled_numpy(buffer, array, start, count, scale, registers, masked):
    buffer[:] = 0
    buffer[:count] = scale * array[start:start + count]


@_intrinsic_or(_load_scaled_numpy)
def _load_scaled(typingctx, buffer, array, start, count, scale, registers, masked):
    """``buffer[:] = scale * array[start:]``, one block (see _Block)."""
    if not _literal_block(registers, masked):
        return None

    def codegen(context, builder, sig, args):
        buffer_, array_, start_, count_, scale_ = args[:5]
        block = _Block(context, builder, array.dtype, registers, masked, count_)
        scale_ = context.cast(builder, scale_, scale, array.dtype)
        values = builder.fmul(block.splat(scale_), block.load(sig.args[1], array_, start_))
        block.store(values, sig.args[0], buffer_, block.zero, whole=True)
        return context.get_dummy_value()
    return types.none(buffer, array, start, count, scale, registers, masked), codegen


def _store_block_numpy(array, start, count, buffer, registers, masked):
    array[start:start + count] = buffer[:count]


@_intrinsic_or(_store_block_numpy)
def _store_block(typingctx, array, start, count, buffer, registers, masked):
    """``array[start:] = buffer``, one block (see _Block)."""
    if not _literal_block(registers, masked):
        return None

    def codegen(context, builder, sig, args):
        array_, start_, count_, buffer_ = args[:4]
        block = _Block(context, builder, array.dtype, registers, masked, count_)
        block.store(block.load(sig.args[3], buffer_, block.zero, whole=True), sig.args[0],
                    array_, start_)
        return context.get_dummy_value()
    return types.none(array, start, count, buffer, registers, masked), codegen


def _step_and_accumulate_numpy(W, VW, k, start, count, minus_lr_delta, z, squares, x, x_next,
                               lr, alpha, momentum, nesterov, registers, masked):
    w = W[k, start:start + count]
    if VW is None:
        if alpha is not None:
            w -= lr * alpha * w
        w += x * minus_lr_delta[:count]
    else:
        step = x * minus_lr_delta[:count]
        if alpha is not None:
            step -= lr * alpha * w
        v = VW[k, start:start + count]
        v[:] = momentum * v + step
        w += momentum * v + step if nesterov else v
    if alpha is not None and VW is None:
        squares[:count] += w * w
    z[:count] += x_next * w


@_intrinsic_or(_step_and_accumulate_numpy)
def _step_and_accumulate(typingctx, W, VW, k, start, count, minus_lr_delta, z, squares, x,
                         x_next, lr, alpha, momentum, nesterov, registers, masked):
    """For one block of lanes j of row ``k`` of ``W`` from ``start`` (see _Block): the SGD
    step of ``w = W[k, j]``, stored back, then ``z[j] += x_next * w``; and with an L2 penalty
    (``alpha`` not None) but no momentum, ``squares[j] += w * w`` for the next sample's
    penalty.

    Without momentum (``VW`` None) the step is ``w - (lr * alpha) * w + x * minus_lr_delta[j]``
    -- a multiply and an add per vector, after a multiply-add when ``alpha`` is given (an L2
    penalty); z's sum is a multiply-add. With momentum, ``-lr * gradient`` is
    ``x * minus_lr_delta[j] - (lr * alpha) * w``, the velocity ``v = momentum * VW[k, j] - lr *
    gradient`` is stored back, and w moves by ``v`` (or by ``momentum * v - lr * gradient``
    with ``nesterov``): scikit-learn's step, in multiply-adds.
    The caller negates lr * delta once per block rather than x once per row: the same values,
    one instruction less per row (+4-7% at 30-16-1 on a Zen 3)."""
    if not _literal_block(registers, masked):
        return None

    def codegen(context, builder, sig, args):
        W_, VW_, k_, start_, count_, minus_lr_delta_, z_, squares_ = args[:8]
        x_, x_next_ = (context.cast(builder, value, type_, W.dtype)
                       for value, type_ in zip(args[8:10], sig.args[8:10]))
        block = _Block(context, builder, W.dtype, registers, masked, count_)
        index = [k_, start_]
        w = block.load(sig.args[0], W_, index)
        minus_lr_delta_v = block.load(sig.args[5], minus_lr_delta_, block.zero, whole=True)
        if not isinstance(alpha, types.NoneType):
            # lr * alpha in their common type, as the kernel would compute it, then cast.
            common = context.typing_context.unify_types(lr, alpha)
            lr_alpha = builder.fmul(context.cast(builder, args[10], lr, common),
                                    context.cast(builder, args[11], alpha, common))
            minus_lr_alpha = builder.fneg(
                block.splat(context.cast(builder, lr_alpha, common, W.dtype)))
        if isinstance(VW, types.NoneType):
            if not isinstance(alpha, types.NoneType):
                w = block.fma(minus_lr_alpha, w, w)
            # A multiply and an add, not a multiply-add, make the value stored back to W:
            # on a Zen 3 this loop ran at ~2 cycles a register with a multiply-add's result
            # stored and ~1.15 with an add's (benchmarks/c_baseline/store_after_fma.c;
            # 100-64-1 trained 46% faster in float32, 18% in float64). The product is
            # rounded, as the reference rounds it.
            w = builder.fadd(w, builder.fmul(block.splat(x_), minus_lr_delta_v))
        else:
            minus_lr_g = builder.fmul(block.splat(x_), minus_lr_delta_v)
            if not isinstance(alpha, types.NoneType):
                minus_lr_g = block.fma(minus_lr_alpha, w, minus_lr_g)
            momentum_ = block.splat(context.cast(builder, args[12], momentum, W.dtype))
            # The epoch kernel's velocity views arrive as Optional(array) (see _optimizer_state).
            velocity = VW.type if isinstance(VW, types.Optional) else VW
            VW_ = context.cast(builder, VW_, VW, velocity)
            v = block.fma(momentum_, block.load(velocity, VW_, index), minus_lr_g)
            block.store(v, velocity, VW_, index)
            move = builder.select(args[13], block.fma(momentum_, v, minus_lr_g), v)
            w = builder.fadd(w, move)
        block.store(w, sig.args[0], W_, index)
        if not isinstance(alpha, types.NoneType) and isinstance(VW, types.NoneType):
            block.store(block.fma(w, w, block.load(sig.args[7], squares_, block.zero, whole=True)),
                        sig.args[7], squares_, block.zero, whole=True)
        z_sum = block.fma(block.splat(x_next_), w,
                          block.load(sig.args[6], z_, block.zero, whole=True))
        block.store(z_sum, sig.args[6], z_, block.zero, whole=True)
        return context.get_dummy_value()
    return (types.none(W, VW, k, start, count, minus_lr_delta, z, squares, x, x_next, lr, alpha,
                       momentum, nesterov, registers, masked), codegen)


def _dense_tile_numpy(Z, A, W, b, row, start, count, rows, registers, masked):
    columns = slice(start, start + count)
    Z[row:row + rows, columns] = A[row:row + rows] @ W[:, columns] + b[columns]


@_intrinsic_or(_dense_tile_numpy)
def _dense_tile(typingctx, Z, A, W, b, row, start, count, rows, registers, masked):
    """``Z[row + r, j] = b[j] + sum over k of A[row + r, k] * W[k, j]`` for the ``rows`` (a
    literal) rows of a tile and one block of columns j from ``start`` (see _Block), terms
    added in the order of k. The tile's sums stay in registers down the rows of W, and each
    vector of W loaded serves every row of the tile."""
    if not (_literal_block(registers, masked) and isinstance(rows, types.IntegerLiteral)):
        return None

    def codegen(context, builder, sig, args):
        Z_, A_, W_, b_ = args[:4]
        row_, start_, count_ = (context.cast(builder, value, type_, types.intp)
                                for value, type_ in zip(args[4:7], sig.args[4:7]))
        block = _Block(context, builder, W.dtype, registers, masked, count_)
        bias = block.load(sig.args[3], b_, start_)
        sums = [cgutils.alloca_once_value(builder, bias) for _ in range(rows.literal_value)]
        tile_rows = [builder.add(row_, row_.type(r)) for r in range(rows.literal_value)]
        W_rows = builder.extract_value(make_array(sig.args[2])(context, builder, W_).shape, 0)
        with cgutils.for_range(builder, W_rows) as loop:
            w = block.load(sig.args[2], W_, [loop.index, start_])
            for total, r in zip(sums, tile_rows):
                a = block.splat(block.scalar(sig.args[1], A_, [r, loop.index]))
                builder.store(block.fma(a, w, builder.load(total)), total)
        for total, r in zip(sums, tile_rows):
            block.store(builder.load(total), sig.args[0], Z_, [r, start_])
        return context.get_dummy_value()
    return types.none(Z, A, W, b, row, start, count, rows, registers, masked), codegen


def _prefetch_numpy(array, byte_offset):
    pass


@_intrinsic_or(_prefetch_numpy)
def _prefetch(typingctx, array, byte_offset):
    """Ask the CPU to start loading the cache line ``byte_offset`` bytes into ``array``'s
    data."""
    def codegen(context, builder, sig, args):
        byte = ir.IntType(8).as_pointer()
        data = builder.bitcast(make_array(sig.args[0])(context, builder, value=args[0]).data,
                               byte)
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.gep(data, [args[1]]), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.none(array, byte_offset), codegen


@view
def _prefetch_row(row):
    for offset in range(0, row.size * row.itemsize, CACHE_LINE_BYTES):
        _prefetch(row, offset)


@view
def _activate(z, code):
    """Hidden activation, in place."""
    T = z.dtype.type
    if code == RELU:
        # A select rather than a branch: ReLU's sign pattern is unpredictable. NaN stays NaN.
        # Adding zero changes no value (only a zero's sign), but it stops LLVM from storing
        # only the lanes that change (a masked store: on AVX2 CPUs a slow instruction, and
        # loads from it cannot be forwarded; 5-7% of the time at 30-16-1 and 100-64-1 on a
        # Zen 3).
        for j in range(z.size):
            z[j] = (T(0) if z[j] < T(0) else z[j]) + T(0)
    elif code == LOGISTIC:
        for j in range(z.size):
            z[j] = T(1) / (T(1) + np.exp(-z[j]))
    elif code == TANH:
        for j in range(z.size):
            z[j] = np.tanh(z[j])


@view
def _scale_by_derivative(delta, a, code):
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


@view
def _max(z):
    m = z[0]
    for j in range(1, z.size):
        m = max(m, z[j])
    return m


@kernel
def _output_activate(z, code):
    """Output activation, in place: logits to probabilities (``LOGITS`` leaves them)."""
    T = z.dtype.type
    if code == SIGMOID:
        for j in range(z.size):
            z[j] = T(1) / (T(1) + np.exp(-z[j]))
    elif code == SOFTMAX:
        m = _max(z)
        if m == np.inf:
            # The limit: the +inf logits share the probability (the max-shift would give
            # inf - inf = NaN). A NaN logit has no limit: the row stays NaN below.
            n_top = 0
            n_nan = 0
            for j in range(z.size):
                n_top += z[j] == m
                n_nan += z[j] != z[j]
            if n_nan == 0:
                for j in range(z.size):
                    z[j] = T(1) / T(n_top) if z[j] == m else T(0)
                return
        _softmax_from(z, m)


@view
def _softmax_from(z, m):
    """z = exp(z - m) / sum(exp(z - m)), in place, for ``m`` the largest of z."""
    s = z.dtype.type(0)
    for j in range(z.size):
        z[j] = np.exp(z[j] - m)
        s += z[j]
    for j in range(z.size):
        z[j] /= s


# A sigmoid output's loss has a log1p(e) term, and the libm call is the slowest part of a
# small network's sample (~10% of the time at 30-16-1). log(a) + log(b) = log(a * b), so the
# kernels carry a sum of logarithms as ``(logs, product)`` -- worth logs + log(product) -- and
# multiply each 1 + e into the product (float64, whatever the network's dtype), taking its log
# only when it passes PRODUCT_LIMIT: a few hundred samples or more per log call. A factor is
# at most 2, so the product cannot overflow, and each multiplication adds one rounding (~1e-16),
# no more than each addition to the loss total already does. Where 1 + e would round away
# most of a small e, log1p(e) comes from its series instead (LOG1P_SERIES_BELOW).
PRODUCT_LIMIT = 2.0 ** 500
# Below 2**-10 the series to e**6 is log1p(e) to within e**7 / 7 < 2**-60 relative, and above
# it 1 + e keeps all but 10 of e's 53 bits.
LOG1P_SERIES_BELOW = 2.0 ** -10


@view
def _add_log1p(logs, product, e):
    """``(logs, product)`` with log1p(e) added to the sum they stand for, for 0 <= e <= 1."""
    e = np.float64(e)
    if e < LOG1P_SERIES_BELOW:
        series = e * (1.0 - e * (0.5 - e * (1 / 3 - e * (0.25 - e * (0.2 - e * (1 / 6))))))
        return logs + series, product
    product *= 1.0 + e
    if product > PRODUCT_LIMIT:
        return logs + np.log(product), 1.0
    return logs, product


@view
def _loss_and_delta(z, y, code, delta, logs, product):
    """Cross-entropy of one sample from its logits ``z``; turns ``z`` into probabilities and
    writes the output delta ``p - y``. Returns ``(loss, logs, product)``: the sample's loss is
    ``loss`` plus what it added to the sum of logarithms ``(logs, product)`` (see
    PRODUCT_LIMIT). Inlined at IR level, so a kernel whose ``code`` is a constant compiles
    only its own output's helper; the helpers' loops inlined at IR level too trained 3-5-1
    8-11% slower (interleaved runs in both orders)."""
    if code == SOFTMAX:
        loss = _softmax_loss(z, y)
    else:
        loss, logs, product = _sigmoid_loss(z, y, logs, product)
    for j in range(z.size):
        delta[j] = z[j] - y[j]
    return loss, logs, product


@fused
def _softmax_loss(z, y):
    """Softmax cross-entropy of the logits ``z``, which become the probabilities."""
    T = z.dtype.type
    m = _max(z)
    s = T(0)
    for j in range(z.size):
        s += np.exp(z[j] - m)
    log_sum_exp = m + np.log(s)
    loss = T(0)
    for j in range(z.size):
        loss += y[j] * (log_sum_exp - z[j])
    # _output_activate without its limit for +inf logits: here those make the loss NaN, and
    # the front rolls the epoch back. Calling it (compiled on its own, then inlined) made the
    # epoch kernel's first compile 7-14% longer, for every network (medians of interleaved
    # pairs, two runs).
    _softmax_from(z, m)
    return loss


@fused
def _sigmoid_loss(z, y, logs, product):
    """Sigmoid cross-entropy of each logit in ``z``, which become the probabilities; the
    logarithms go in ``(logs, product)``."""
    T = z.dtype.type
    loss = T(0)
    for j in range(z.size):
        # One exp serves the loss and the sigmoid: e = exp(-|z|).
        e = np.exp(-abs(z[j]))
        # A select, where max() would be compiled as a function of its own.
        loss += (z[j] if z[j] > T(0) else T(0)) - y[j] * z[j]
        logs, product = _add_log1p(logs, product, e)
        z[j] = T(1) / (T(1) + e) if z[j] >= T(0) else e / (T(1) + e)
    return loss, logs, product


def _as_matrix_numpy(vector, rows, cols):
    return vector.reshape((rows, cols))


@_intrinsic_or(_as_matrix_numpy)
def _as_matrix(typingctx, vector, rows, cols):
    """``vector.reshape((rows, cols))`` for a C-contiguous 1-D array. Numba's reshape calls a
    C helper that LLVM cannot inline (~25 ns a view); this builds the view in place, which
    made mini-batch training (views per sample and layer; batch 32) 19-44% faster at 100-64-1
    and 30-16-1, per-sample training of 100-64-32-1 (a middle layer's views per sample) 3%
    faster in float64 and 17% in float32, and of 30-16-10 (softmax) 6% (Zen 3). Raises
    ValueError, as reshape does, when the sizes do not match."""
    if not (isinstance(vector, types.Array) and vector.ndim == 1 and vector.layout == "C"):
        return None
    matrix_type = vector.copy(ndim=2, layout="C")

    def codegen(context, builder, sig, args):
        source = make_array(vector)(context, builder, args[0])
        rows, cols = (context.cast(builder, value, type_, types.intp)
                      for value, type_ in zip(args[1:], sig.args[1:]))
        size = cgutils.unpack_tuple(builder, source.shape, 1)[0]
        with cgutils.if_unlikely(builder, builder.icmp_signed("!=", builder.mul(rows, cols),
                                                              size)):
            context.call_conv.return_user_exc(builder, ValueError,
                                              ("total size of new array must be unchanged",))
        matrix = make_array(matrix_type)(context, builder)
        populate_array(matrix, data=source.data, shape=[rows, cols],
                       strides=[builder.mul(cols, source.itemsize), source.itemsize],
                       itemsize=source.itemsize, meminfo=source.meminfo, parent=source.parent)
        return impl_ret_borrowed(context, builder, matrix_type, matrix._getvalue())
    return matrix_type(vector, rows, cols), codegen


def _as_vector_numpy(matrix):
    return matrix.reshape(-1)


@_intrinsic_or(_as_vector_numpy)
def _as_vector(typingctx, matrix):
    """``matrix.reshape(-1)`` for a C-contiguous 2-D array, built in place as _as_matrix
    builds its views."""
    if not (isinstance(matrix, types.Array) and matrix.ndim == 2 and matrix.layout == "C"):
        return None
    vector_type = matrix.copy(ndim=1, layout="C")

    def codegen(context, builder, sig, args):
        source = make_array(matrix)(context, builder, args[0])
        rows, cols = cgutils.unpack_tuple(builder, source.shape, 2)
        vector = make_array(vector_type)(context, builder)
        populate_array(vector, data=source.data, shape=[builder.mul(rows, cols)],
                       strides=[source.itemsize], itemsize=source.itemsize,
                       meminfo=source.meminfo, parent=source.parent)
        return impl_ret_borrowed(context, builder, vector_type, vector._getvalue())
    return vector_type(matrix), codegen


@view
def _layer(buffer, layout, layer):
    """Views (W, b) of one layer in a buffer laid out like the parameters: W is 2-D
    (fan_in, fan_out), so hot loops index it with non-negative range variables."""
    w_off = layout[layer, W_OFF]
    b_off = layout[layer, B_OFF]
    fan_out = layout[layer, FAN_OUT]
    return (_as_matrix(buffer[w_off:b_off], layout[layer, FAN_IN], fan_out),
            buffer[b_off:b_off + fan_out])


@view
def _units(buffer, layout, layer):
    """The slice of an activation or delta vector that belongs to ``layer``."""
    u_off = layout[layer, UNIT_OFF]
    return buffer[u_off:u_off + layout[layer, FAN_OUT]]


# Reassociation lets LLVM split a narrow layer's dot products into SIMD partial sums: as one
# chain of dependent additions, the 64 terms of a 64-1 output layer cost about 256 cycles.
@fused_sums
def _dense(W, b, a, z):
    """z = a @ W + b. Wide layers go row by row of W in register blocks of columns, as
    prediction does (_dense_one_row: the sums stay in registers, where a loop over z would
    store and reload them for every row); narrow ones (an output layer) take one dot product
    per unit, which spares a short inner loop per row, in partial sums (the terms' order is
    the compiler's)."""
    if z.size < NARROW:
        _dense_narrow(W, b, a, z)
        return
    _in_column_blocks(_dense_one_row, z.size, _lanes_in(W),
                      (W, b, _as_matrix(a, 1, a.size), _as_matrix(z, 1, z.size)), 4)


@fused_sums
def _dense_narrow(W, b, a, z):
    """_dense for a narrow layer, its dot products in partial sums: a function of its own, so
    that the shallow kernel's output layer gets them too (inlined there at IR level, the
    64-term sums of 100-64-1 became one chain: 5% slower)."""
    _dense_by_units(W, b, a, z)


@view
def _dense_by_units(W, b, a, z):
    """z = a @ W + b, one dot product per unit."""
    for j in range(z.size):
        acc = b[j]
        for k in range(a.size):
            acc += a[k] * W[k, j]
        z[j] = acc


@view
def _dense_one_row(operands, start, count, registers, masked):
    """One block of columns of _dense's z, for ``operands = (W, b, a, z)`` with a and z as
    1-row matrices. Prediction's path (_dense_rows) would do the same work, but compiling its
    multi-row tiles, which a single row never takes, made the first training run's compile
    15% longer (9.4 s against 8.1 s, Zen 3)."""
    W, b, A, Z = operands
    _dense_tile(Z, A, W, b, 0, start, count, 1, registers, masked)


@fused
def _forward_sample(params, layout, x, acts, hidden_activation):
    """Forward pass of one sample, leaving the last layer's logits in ``acts``."""
    last = layout.shape[0] - 1
    for layer in range(last + 1):
        z = _units(acts, layout, layer)
        W, b = _layer(params, layout, layer)
        _dense(W, b, x if layer == 0 else _units(acts, layout, layer - 1), z)
        if layer < last:
            _activate(z, hidden_activation)


@kernel
def _step(w, g, velocity, i, lr, momentum, nesterov):
    """scikit-learn's SGD step for one parameter ``w`` with gradient ``g``."""
    if momentum == 0:
        return w - lr * g
    v = momentum * velocity[i] - lr * g
    velocity[i] = v
    if nesterov:
        return w + (momentum * v - lr * g)
    return w + v


@fused
def _gradient(g, alpha, w):
    """The gradient of weight ``w`` whose loss gradient is ``g``: g + alpha * w, or g itself
    when ``alpha`` is None (no L2 penalty: see _per_sample_epoch)."""
    if alpha is None:
        return g
    return g + alpha * w


@fused
def _step_biases(b, vb, delta, lr, momentum, nesterov):
    """The biases' SGD step; ``vb`` is None without momentum (see _per_sample_epoch)."""
    if vb is None:
        for j in range(b.size):
            b[j] -= lr * delta[j]
        return
    for j in range(b.size):
        b[j] = _step(b[j], delta[j], vb, j, lr, momentum, nesterov)


# Reassociation lets LLVM sum each row's w * delta in SIMD partial sums, where one chain of
# dependent additions per row kept the whole loop scalar (60% of the time of 100-64-32-1).
@fused_sums
def _backprop_step(W, b, VW, vb, a, delta, delta_prev, lr, alpha, momentum, nesterov):
    """One pass over a hidden-fed layer's weights: delta_prev = W @ delta with the old
    weights, and the SGD step W -= lr * (outer(a, delta) + alpha * W); the velocities ``VW``
    and ``vb`` are None without momentum. Returns the new weights' sum of squares when
    ``alpha`` is given (the next sample's L2 penalty), else zero."""
    T = W.dtype.type
    if delta.size < NARROW:
        return _backprop_step_narrow(W, b, VW, vb, a, delta, delta_prev, lr, alpha, momentum,
                                     nesterov)
    squares = T(0)
    for k in range(a.size):
        ak = a[k]
        acc = T(0)
        # Without momentum the loop touches no velocity, which lets LLVM vectorize it; the
        # arithmetic is _step's for momentum 0.
        if VW is None:
            for j in range(delta.size):
                w = W[k, j]
                acc += w * delta[j]
                w = w - lr * _gradient(ak * delta[j], alpha, w)
                W[k, j] = w
                if alpha is not None:
                    squares += w * w
        else:
            for j in range(delta.size):
                w = W[k, j]
                acc += w * delta[j]
                w = _step(w, _gradient(ak * delta[j], alpha, w), VW[k], j, lr, momentum,
                          nesterov)
                W[k, j] = w
                if alpha is not None:
                    squares += w * w
        delta_prev[k] = acc
    _step_biases(b, vb, delta, lr, momentum, nesterov)
    return squares


# Compiled with _backprop_step's flags, as it was when only _backprop_step called it: without
# them, called from the shallow kernel, it rounded differently (float32 100-64-1's loss moved
# in the 8th digit) and trained 3-7% slower at 100-64-1 and 784-128-1 float32.
@fused_sums
def _backprop_step_narrow(W, b, VW, vb, a, delta, delta_prev, lr, alpha, momentum, nesterov):
    """_backprop_step for a layer with few units (an output layer): one pass down each column,
    so the inner loop runs over the many inputs. delta_prev sums its terms in the same order."""
    T = W.dtype.type
    for k in range(a.size):
        delta_prev[k] = T(0)
    for j in range(delta.size):
        dj = delta[j]
        if VW is None:
            for k in range(a.size):
                w = W[k, j]
                delta_prev[k] += w * dj
                W[k, j] = w - lr * _gradient(a[k] * dj, alpha, w)
        else:
            for k in range(a.size):
                w = W[k, j]
                delta_prev[k] += w * dj
                W[k, j] = _step(w, _gradient(a[k] * dj, alpha, w), VW[k], j, lr, momentum,
                                nesterov)
    _step_biases(b, vb, delta, lr, momentum, nesterov)
    # A narrow layer's few weights in a pass of their own: summed down the columns, their
    # squares would be one chain of dependent additions.
    return _sum_of_squares(W) if alpha is not None else T(0)


@view
def _in_column_blocks(block, n, lanes, operands, widest):
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


# With momentum the first layer streams its weights and their velocities. Where the two
# outgrow L2, reading them in column blocks (row after row, a block's width apart) is slower
# than one pass row by row: 784-128-1 float64 (1.6 MB) ran 21% slower in blocks, while
# 30-16-1, 100-64-1 and 100-64-32-1 ran 24-46%, 4-11% and 7-42% faster (two runs; Zen 3,
# 512 KB L2).
ROW_BY_ROW_ABOVE_BYTES = 512 * 1024


@view
def _step_and_forward_block(operands, start, count, registers, masked):
    """_step_first_and_forward (``operands`` are its arguments but ``vb``) for the ``count``
    columns from ``start``, at most a block of ``registers`` SIMD registers (fewer only if
    ``masked``). The block's z and -lr * delta stay in registers while it runs down the rows
    of W."""
    W, b, VW, x, delta, x_next, z_next, lr, alpha, momentum, nesterov, squares = operands
    z = _lane_buffer(W, registers)
    minus_lr_delta = _lane_buffer(W, registers)
    _load_scaled(z, b, start, count, 1, registers, masked)
    _load_scaled(minus_lr_delta, delta, start, count, -lr, registers, masked)
    for k in range(x.size):
        _step_and_accumulate(W, VW, k, start, count, minus_lr_delta, z, squares, x[k],
                             x_next[k], lr, alpha, momentum, nesterov, registers, masked)
    _store_block(z_next, start, count, z, registers, masked)


@fused
def _step_first_and_forward(W, b, VW, vb, x, delta, x_next, z_next, lr, alpha, momentum,
                            nesterov):
    """The first layer's SGD step for sample x fused with its forward pass for the next
    sample: each weight is read once, updated, and used at once for z_next = x_next @ W + b.

    The reference's arithmetic up to rounding: z's sums are fused multiply-adds (one rounding
    where the reference rounds twice), as are the update's momentum and penalty terms (see
    _step_and_accumulate). Returns the new weights' sum of squares when ``alpha`` is given
    (the next sample's L2 penalty), else zero."""
    T = W.dtype.type
    _step_biases(b, vb, delta, lr, momentum, nesterov)
    if VW is not None and 2 * W.size * W.itemsize > ROW_BY_ROW_ABOVE_BYTES:
        for j in range(b.size):
            z_next[j] = b[j]
        for k in range(x.size):
            xn = x_next[k]
            for j in range(delta.size):
                w = _step(W[k, j], _gradient(x[k] * delta[j], alpha, W[k, j]), VW[k], j, lr,
                          momentum, nesterov)
                W[k, j] = w
                z_next[j] += xn * w
        return _sum_of_squares(W) if alpha is not None else T(0)
    # Each block's z is one chain of multiply-adds down the rows, so the wider blocks of
    # _in_column_blocks also hide latency a block of one register would wait for. With
    # momentum a block of four registers also holds four of weights and four of velocities,
    # more than AVX2's sixteen, and spilled its sums to the stack: blocks of two trained
    # 12-40% faster at 30-16-1 float64 and 100-64-1 / 100-64-32-1 float32, within noise
    # elsewhere (Zen 3, interleaved runs in both orders).
    # With a penalty and no momentum, each block adds its new weights' squares into the first
    # of its lanes here (the blocks' widths differ; the sum does not care which lane holds
    # what): a pass over W less per sample, 5-12% faster at 30-16-1 and 100-64-1. With
    # momentum the squares' registers spilled the block's (9-23% slower): a pass of their own.
    squares = _lane_buffer(W, 4)
    if alpha is not None:
        squares[:] = T(0)
    operands = (W, b, VW, x, delta, x_next, z_next, lr, alpha, momentum, nesterov, squares)
    if VW is None:
        _in_column_blocks(_step_and_forward_block, delta.size, _lanes_in(W), operands, 4)
        return _sum_lanes(squares) if alpha is not None else T(0)
    _in_column_blocks(_step_and_forward_block, delta.size, _lanes_in(W), operands, 2)
    return _sum_of_squares(W) if alpha is not None else T(0)


@fused_sums
def _sum_of_squares(W):
    """The sum of the squares of a weight matrix's elements, in SIMD partial sums over the
    flat matrix (row by row, a narrow matrix's sums were one chain: 4x slower)."""
    T = W.dtype.type
    w = _as_vector(W)
    s = T(0)
    for i in range(w.size):
        s += w[i] * w[i]
    return s


@fused_sums
def _sum_lanes(values):
    """The sum of a lane buffer's elements."""
    T = values.dtype.type
    s = T(0)
    for i in range(values.size):
        s += values[i]
    return s


@fused_sums
def _sum_squared_weights(params, layout):
    """The L2 penalty's sum of squared weights (biases excluded), in SIMD partial sums over a
    slice per layer (indexing params by offsets kept it a scalar chain: 4-6x slower training
    with alpha > 0)."""
    T = params.dtype.type
    s = T(0)
    for layer in range(layout.shape[0]):
        W = params[layout[layer, W_OFF]:layout[layer, B_OFF]]
        for i in range(W.size):
            s += W[i] * W[i]
    return s


@view
def _optimizer_state(params, velocity, layout, layer):
    """The layer's weights and the velocity views its step needs (None without momentum)."""
    W, b = _layer(params, layout, layer)
    if velocity is None:
        return W, b, None, None
    VW, vb = _layer(velocity, layout, layer)
    return W, b, VW, vb


@functools.cache
def _per_sample_epoch(hidden_activation: int, output_activation: int, shallow: bool):
    """The per-sample epoch kernel for a pair of activation codes, made on first use; with
    ``shallow``, for a network with one hidden layer and a narrow output layer only.

    These are constants of the kernel rather than arguments: Numba prunes the branches that
    test them (in _activate, _scale_by_derivative and _loss_and_delta, and here), so a kernel
    types and compiles only the activations and the layer paths its network uses. The codes
    made the first fit's compile 11-14% shorter (medians of ten interleaved pairs, three runs);
    ``shallow`` (the default network's kind and most users'), which leaves out the layer loops
    and the wide layers' paths of _dense and _backprop_step, took 27% off the instructions of
    a process that compiles a 3-5-1 kernel (Valgrind's count: 19.8 G to 14.3 G) and 25-27%
    off its time (ratio medians of two runs of eight interleaved pairs). The price is a
    compile per combination a user trains (Numba's disk cache keys closures by their
    constants)."""

    @kernel
    def per_sample_epoch(params, velocity, layout, X, Y, order, lr, alpha, momentum, nesterov,
                         scratch):
        """Batch size 1: the whole epoch in one call, nothing allocated. Returns the summed
        loss.

        ``velocity`` is None without momentum and ``alpha`` None without an L2 penalty: Numba
        then compiles a kernel with no momentum or penalty code at all (it prunes branches on
        ``is None``), which is what the default settings run; it compiles in about a second
        less, and the first layer's update takes one multiply-add per weight less.

        Layer 0's pre-activations for a sample are computed by the previous sample's fused
        step (and before the loop for the first sample)."""
        T = params.dtype.type
        last = layout.shape[0] - 1
        n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
        acts = scratch[:n_units]
        deltas = scratch[n_units:2 * n_units]
        W0, b0, VW0, vb0 = _optimizer_state(params, velocity, layout, 0)
        WL, bL, VWL, vbL = _optimizer_state(params, velocity, layout, last)
        z0 = _units(acts, layout, 0)
        delta0 = _units(deltas, layout, 0)
        zL = _units(acts, layout, last)
        deltaL = _units(deltas, layout, last)
        total = 0.0
        logs, product = 0.0, 1.0
        # The L2 penalty's sum of squared weights: each sample's update sums the squares of the
        # weights it stores, for the next sample (one pass over the weights less per sample).
        squares = _sum_squared_weights(params, layout) if alpha is not None else T(0)
        # Each sample prefetches the row needed three samples later; one sample later for rows
        # over a kilobyte, whose samples take long enough, and four of which would crowd the
        # weights out of L1 (Zen 3, against one sample for all: +6-9% at 30-16-1, and -6% at
        # 784-128-1 float32 had it applied there).
        ahead = 2 if X.shape[1] * X.itemsize > 1024 else 4
        # Each inlined copy of a helper lengthens the first run's compile, so this once-per-epoch
        # pass takes _dense's plainest path, and the loop calls each helper from one place (one
        # _dense for the middle and last layers, picking the views made once per epoch: made
        # again per sample, 3-5-1 ran 7-10% slower). Against a copy for the first hidden layer's
        # activation, one per middle and last layer and a full _dense here: the epoch kernel
        # compiles in 6-16% less time (medians of six interleaved pairs, two runs), at the same
        # speed.
        _dense_by_units(W0, b0, X[order[0]], z0)
        for s in range(order.size):
            i = order[s]
            # A shallow network's layer loops, unrolled to their one narrow layer.
            if shallow:
                _activate(z0, hidden_activation)
                _dense_narrow(WL, bL, z0, zL)
            else:
                for layer in range(1, last + 1):
                    a = z0 if layer == 1 else _units(acts, layout, layer - 1)
                    _activate(a, hidden_activation)
                    if layer == last:
                        W, b, z = WL, bL, zL
                    else:
                        W, b = _layer(params, layout, layer)
                        z = _units(acts, layout, layer)
                    _dense(W, b, a, z)
            loss, logs, product = _loss_and_delta(zL, Y[i], output_activation, deltaL, logs,
                                                  product)
            total += loss
            if alpha is not None:
                total += alpha / 2 * squares
            squares = T(0)
            if shallow:
                squares += _backprop_step_narrow(WL, bL, VWL, vbL, z0, deltaL, delta0, lr, alpha,
                                                 momentum, nesterov)
                _scale_by_derivative(delta0, z0, hidden_activation)
            else:
                for layer in range(last, 0, -1):
                    if layer == last:
                        W, b, VW, vb = WL, bL, VWL, vbL
                    else:
                        W, b, VW, vb = _optimizer_state(params, velocity, layout, layer)
                    a = _units(acts, layout, layer - 1)
                    delta_prev = _units(deltas, layout, layer - 1)
                    squares += _backprop_step(W, b, VW, vb, a, _units(deltas, layout, layer),
                                              delta_prev, lr, alpha, momentum, nesterov)
                    _scale_by_derivative(delta_prev, a, hidden_activation)
            # The last sample's fused forward pass computes an unused z for order[0]: one wasted
            # forward pass per epoch buys a branch-free inner loop.
            next_i = order[s + 1] if s + 1 < order.size else order[0]
            # Rows come in shuffled order, so the hardware cannot guess the rows to come: without
            # this hint their load latency stalls every sample (~25% at 30-16-1).
            if s + ahead < order.size:
                _prefetch_row(X[order[s + ahead]])
            squares += _step_first_and_forward(W0, b0, VW0, vb0, X[i], delta0, X[next_i], z0,
                                               lr, alpha, momentum, nesterov)
        return total + logs + np.log(product)

    return per_sample_epoch


@kernel
def batch_gradient(params, layout, X, Y, rows, alpha, hidden_activation, output_activation,
                   scratch, grad):
    """Mean loss of the batch ``X[rows]`` (cross-entropy plus scikit-learn's L2 penalty) and
    its gradient, written into ``grad``; samples are streamed one at a time."""
    T = params.dtype.type
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    acts = scratch[:n_units]
    deltas = scratch[n_units:2 * n_units]
    grad[:] = T(0)
    loss = T(0)
    logs, product = 0.0, 1.0
    for i in rows:
        _forward_sample(params, layout, X[i], acts, hidden_activation)
        sample_loss, logs, product = _loss_and_delta(_units(acts, layout, last), Y[i],
                                                     output_activation,
                                                     _units(deltas, layout, last), logs,
                                                     product)
        loss += sample_loss
        for layer in range(last, -1, -1):
            W, _ = _layer(params, layout, layer)
            G, g = _layer(grad, layout, layer)
            delta = _units(deltas, layout, layer)
            a = X[i] if layer == 0 else _units(acts, layout, layer - 1)
            for k in range(a.size):
                ak = a[k]
                for j in range(delta.size):
                    G[k, j] += ak * delta[j]
            for j in range(delta.size):
                g[j] += delta[j]
            if layer > 0:
                delta_prev = _units(deltas, layout, layer - 1)
                for k in range(a.size):
                    acc = T(0)
                    for j in range(delta.size):
                        acc += W[k, j] * delta[j]
                    delta_prev[k] = acc
                _scale_by_derivative(delta_prev, a, hidden_activation)
    return _batch_mean(params, layout, grad, rows.size, alpha, loss + logs + np.log(product))


@kernel
def _batch_mean(params, layout, grad, n, alpha, loss):
    """Turn the batch's summed cross-entropy ``loss`` and gradient ``grad`` into their means
    over its ``n`` samples with scikit-learn's L2 penalty added; returns the mean loss."""
    for layer in range(layout.shape[0]):
        W, _ = _layer(params, layout, layer)
        G, g = _layer(grad, layout, layer)
        for k in range(W.shape[0]):
            for j in range(W.shape[1]):
                G[k, j] = (G[k, j] + alpha * W[k, j]) / n
        for j in range(g.size):
            g[j] /= n
    return loss / n + alpha / 2 * _sum_squared_weights(params, layout) / n


@kernel
def descend(params, velocity, grad, lr, momentum, nesterov):
    """One optimizer step, scikit-learn's SGD with (Nesterov) momentum."""
    for i in range(params.size):
        params[i] = _step(params[i], grad[i], velocity, i, lr, momentum, nesterov)


# Numba's np.dot(a, b, out) returns ``out``, which needs the reference-counting runtime (set
# explicitly: a kernel called from one compiled without it would inherit that).
blas_kernel = njit(cache=True, nogil=True, _nrt=True)
# The BLAS path multiplies matrices of up to this many rows at a time: enough for BLAS to run
# at speed, and a full batch of a large X needs no copy of it.
BLAS_CHUNK_ROWS = 256


@view
def _chunk_block(work, at, rows, layout, layer):
    """Layer ``layer``'s units for a chunk of ``rows`` samples, as a (rows, fan_out) matrix
    in ``work`` from ``at`` (laid out like the scratch vectors, each unit a row longer): the
    layout of the BLAS path's and prediction's blocks of rows."""
    u_off = layout[layer, UNIT_OFF]
    fan_out = layout[layer, FAN_OUT]
    return _as_matrix(work[at + rows * u_off:at + rows * (u_off + fan_out)], rows, fan_out)


@blas_kernel
def _blas_batch_gradient(params, layout, X, Y, rows, alpha, hidden_activation,
                         output_activation, work, grad):
    """batch_gradient with each layer's products over a chunk of samples done by BLAS
    (``np.dot``): A @ W forward, A.T @ delta for the gradient and delta @ W.T backward.
    ``work`` (see blas_work) holds a chunk's inputs, activations and deltas and one layer's
    gradient. The loss and the output deltas are batch_gradient's, row by row."""
    T = params.dtype.type
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    d = X.shape[1]
    chunk = min(rows.size, BLAS_CHUNK_ROWS)
    acts_at = chunk * d
    deltas_at = acts_at + chunk * n_units
    partial_at = deltas_at + chunk * n_units
    loss = T(0)
    logs, product = 0.0, 1.0
    for start in range(0, rows.size, chunk):
        c = min(chunk, rows.size - start)
        inputs = _as_matrix(work[:c * d], c, d)
        # Element by element: a row assigned whole (inputs[r] = X[i]) compiles Numba's
        # shape-mismatch message, ~2 s of the first fit on this path.
        for r in range(c):
            x = X[rows[start + r]]
            for k in range(d):
                inputs[r, k] = x[k]
        for layer in range(last + 1):
            W, b = _layer(params, layout, layer)
            Z = _chunk_block(work, acts_at, c, layout, layer)
            np.dot(inputs if layer == 0 else _chunk_block(work, acts_at, c, layout, layer - 1),
                   W, Z)
            for r in range(c):
                for j in range(b.size):
                    Z[r, j] += b[j]
            if layer < last:
                _activate(Z.ravel(), hidden_activation)
        Z = _chunk_block(work, acts_at, c, layout, last)
        D = _chunk_block(work, deltas_at, c, layout, last)
        for r in range(c):
            sample_loss, logs, product = _loss_and_delta(Z[r], Y[rows[start + r]],
                                                         output_activation, D[r], logs,
                                                         product)
            loss += sample_loss
        for layer in range(last, -1, -1):
            W, _ = _layer(params, layout, layer)
            G, g = _layer(grad, layout, layer)
            D = _chunk_block(work, deltas_at, c, layout, layer)
            A = inputs if layer == 0 else _chunk_block(work, acts_at, c, layout, layer - 1)
            if start == 0:
                # The first chunk writes the weights' gradient outright: no zeroing pass.
                np.dot(A.T, D, G)
                g[:] = T(0)
            else:
                partial = _as_matrix(work[partial_at:partial_at + W.size], W.shape[0],
                                     W.shape[1])
                np.dot(A.T, D, partial)
                for k in range(W.shape[0]):
                    for j in range(W.shape[1]):
                        G[k, j] += partial[k, j]
            for r in range(c):
                for j in range(g.size):
                    g[j] += D[r, j]
            if layer > 0:
                previous = _chunk_block(work, deltas_at, c, layout, layer - 1)
                np.dot(D, W.T, previous)
                _scale_by_derivative(previous.ravel(), A.ravel(), hidden_activation)
    return _batch_mean(params, layout, grad, rows.size, alpha, loss + logs + np.log(product))


@kernel
def _minibatch_epoch(params, velocity, grad, layout, X, Y, order, batch_size, lr, alpha,
                     momentum, nesterov, hidden_activation, output_activation, scratch, work):
    """Batches of more than one sample: mean gradient, then one step. Returns the summed
    loss, each batch's loss weighted by its size. Exactly one of ``scratch`` and ``work`` is
    None: the gradient streams samples one at a time (batch_gradient) in ``scratch``, or goes
    through BLAS (_blas_batch_gradient) in ``work``.

    Numba prunes a branch on ``is None`` only where the argument is None, so each path sits
    under a test that is False when its own buffer is None: with one if/else, an array
    ``work`` would compile both kernels (batch_gradient was ~2.5 s of the first fit that takes
    the BLAS path)."""
    total = 0.0
    for start in range(0, order.size, batch_size):
        rows = order[start:min(start + batch_size, order.size)]
        loss = 0.0
        if scratch is not None:
            loss = batch_gradient(params, layout, X, Y, rows, alpha, hidden_activation,
                                  output_activation, scratch, grad)
        if work is not None:
            loss = _blas_batch_gradient(params, layout, X, Y, rows, alpha, hidden_activation,
                                        output_activation, work, grad)
        descend(params, velocity, grad, lr, momentum, nesterov)
        total += loss * rows.size
    return total


def sgd_epoch(params, velocity, grad, layout, X, Y, order, batch_size, lr, alpha, momentum,
              nesterov, hidden_activation, output_activation, scratch):
    """One epoch of (mini-batch) gradient descent over ``X[order]``, in batches of
    ``batch_size`` consecutive entries of ``order``. Returns the mean loss over the epoch's
    samples, each batch's loss taken before its step (scikit-learn's ``loss_curve_``).

    Plain Python, called once per epoch: choosing the kernel here rather than inside one
    compiled entry point means a fit compiles only the kernel its batch mode runs (the first
    per-sample fit compiles in about half the time)."""
    if batch_size == 1:
        shallow = layout.shape[0] == 2 and layout[1, FAN_OUT] < NARROW
        epoch = _per_sample_epoch(hidden_activation, output_activation, shallow)
        total = epoch(params, velocity if momentum != 0 else None, layout, X, Y, order, lr,
                      alpha if alpha != 0 else None, momentum, nesterov, scratch)
    else:
        batch = min(batch_size, order.size)
        work, threads = None, contextlib.nullcontext()
        if use_blas(layout, batch):
            work, scratch = blas_work(layout, X.shape[1], batch, params.dtype), None
            if not (_large_network(layout) and batch >= BLAS_THREADS_FROM_BATCH):
                threads = ONE_BLAS_THREAD
        with threads:
            total = _minibatch_epoch(params, velocity, grad, layout, X, Y, order, batch_size,
                                     lr, alpha, momentum, nesterov, hidden_activation,
                                     output_activation, scratch, work)
    return total / order.size


@functools.cache
def _blas_threads():
    # Numba's np.dot calls SciPy's BLAS: loaded first, so that the controller finds it.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


class _OneBlasThread:
    """A context keeping BLAS to one thread while any epoch in it runs. The limit is
    process-wide, so epochs running at once in several threads share it: the first one in
    sets it and the last one out restores BLAS's own setting (with one limit per epoch, an
    epoch that finished first would restore the limit a later one had found)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._limiter = None

    def __enter__(self):
        with self._lock:
            if self._inside == 0:
                self._limiter = _blas_threads().limit(limits=1, user_api="blas")
            self._inside += 1

    def __exit__(self, *exc_info):
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._limiter.restore_original_limits()


ONE_BLAS_THREAD = _OneBlasThread()


# Mini-batches of at least BLAS_MIN_BATCH samples go through BLAS (of BLAS_MIN_BATCH_LARGE on
# networks of LARGE_NETWORK_WEIGHTS weights or more); smaller ones stream samples one at a
# time, which is faster there: the BLAS path per sample of the streaming one's speed at
# batches of 8 / 16 / 32 / 4000-20000, one BLAS thread, Zen 3: 3-5-1 0.64 / 0.90 / 1.09 /
# 1.44, 30-16-1 0.93 / 1.14 / 1.20 / 1.42, 100-64-1 1.18 / 1.55 / 1.63 / 1.98, 784-128-1
# 1.57 / 2.01 / 2.44 / 2.85.
BLAS_MIN_BATCH = 32
BLAS_MIN_BATCH_LARGE = 8
LARGE_NETWORK_WEIGHTS = 4096
# BLAS may use its threads for batches of this many samples or more on large networks; else
# it is kept to one. A second thread (of two cores, Zen 3) gave 784-128-1 +29-52% samples/s at
# batches of 64, 128, 200 and full, 100-64-1 +26-29% at 200 and full, but 784-128-1 -28-35%
# at 32 and 30-16-1 -24% at full (its products are too small to share).
BLAS_THREADS_FROM_BATCH = 64


def _large_network(layout) -> bool:
    return (layout[:, FAN_IN] * layout[:, FAN_OUT]).sum() >= LARGE_NETWORK_WEIGHTS


def use_blas(layout, batch_size: int) -> bool:
    """Whether batches of ``batch_size`` samples should go through BLAS."""
    return batch_size >= (BLAS_MIN_BATCH_LARGE if _large_network(layout) else BLAS_MIN_BATCH)


def blas_work(layout, n_features: int, batch_size: int, dtype) -> np.ndarray:
    """Work space for _blas_batch_gradient on batches of up to ``batch_size`` samples."""
    weights = layout[:, FAN_IN] * layout[:, FAN_OUT]
    chunk = min(batch_size, BLAS_CHUNK_ROWS)
    n_units = int(layout[-1, UNIT_OFF] + layout[-1, FAN_OUT])
    return np.empty(chunk * (n_features + 2 * n_units) + int(weights.max()), dtype)


@view
def _dense_columns(operands, start, count, registers, masked):
    """Columns ``start:start + count`` (one block, see _Block) of ``Z = A @ W + b`` for
    ``operands = (W, b, A, Z)``, in tiles of FORWARD_TILE_ROWS rows and then single rows."""
    W, b, A, Z = operands
    r = 0
    while A.shape[0] - r >= FORWARD_TILE_ROWS:
        _dense_tile(Z, A, W, b, r, start, count, FORWARD_TILE_ROWS, registers, masked)
        r += FORWARD_TILE_ROWS
    while r < A.shape[0]:
        _dense_tile(Z, A, W, b, r, start, count, 1, registers, masked)
        r += 1


@view
def _dense_rows(W, b, A, Z):
    """Z = A @ W + b for a block of rows, in column blocks of at most two registers: a tile
    keeps its 6 x 2 sums in registers, where 4 x 4 tiles (sixteen sums) spilled to the stack
    on AVX2's sixteen vector registers (Zen 3, one thread, 16-row blocks against 24, same
    outputs bit for bit: 100-64-1 +30-38% rows/s in float64 and +16-21% in float32,
    784-128-1 +17% / +20-44%, 100-64-32-1 +32% / +12-20%; 3-5-1 and 30-16-1 within noise).
    Twelve sums also fit AVX-512's thirty-two registers, where 4 x 4 tiles were measured
    first; 6 x 2 has not been timed there."""
    _in_column_blocks(_dense_columns, W.shape[1], _lanes_in(W), (W, b, A, Z), 2)


@kernel
def forward(params, layout, X, hidden_activation, output_activation, scratch, out):
    """Write the network's outputs for the rows of ``X`` into ``out``: probabilities for
    ``SIGMOID`` / ``SOFTMAX``, logits for any other output code. Releases the GIL, so callers
    spread row blocks over threads.

    Rows go through the network in blocks of as many rows as ``scratch`` holds activation
    vectors, layer by layer, and each layer in register tiles (_dense_rows): a tile's sums stay
    in registers, and each vector of weights loaded serves a tile's rows. Each sum adds its terms
    in the order of the inputs, each product and sum rounded once (fused multiply-add)."""
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    block = max(1, scratch.size // n_units)
    for start in range(0, X.shape[0], block):
        stop = min(start + block, X.shape[0])
        rows = stop - start
        for layer in range(last + 1):
            W, b = _layer(params, layout, layer)
            u_off = layout[layer, UNIT_OFF]
            fan_out = layout[layer, FAN_OUT]
            Z = _chunk_block(scratch, 0, rows, layout, layer)
            if layer == 0:
                A = X[start:stop]
            else:
                A = _chunk_block(scratch, 0, rows, layout, layer - 1)
            _dense_rows(W, b, A, Z)
            if layer < last:
                _activate(scratch[rows * u_off:rows * (u_off + fan_out)], hidden_activation)
            else:
                for r in range(rows):
                    _output_activate(Z[r], output_activation)
                    for j in range(fan_out):
                        out[start + r, j] = Z[r, j]
