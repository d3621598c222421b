"""SIMD building blocks: Numba intrinsics that write LLVM vector code directly.

LLVM would keep a layer's pre-activations in registers only if it knew they cannot alias the
weights, and Numba has no way to say so; and Numba leaves LLVM's SLP vectorizer off, so an
unrolled block of scalar updates stays scalar. These intrinsics write the vector code: a block
of columns lives in stack buffers (which LLVM promotes to registers, since a stack slot
provably aliases nothing), and one call updates or sums a block of a weight row. The view
intrinsics (as_matrix, as_vector) build array views in place, where Numba's reshape calls a
C helper LLVM cannot inline.

With Numba's JIT disabled (``NUMBA_DISABLE_JIT=1``) each intrinsic is replaced by its NumPy
twin (the ``*_numpy`` function above it).
"""

import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.core.codegen import get_host_cpu_features
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


def _register_bytes() -> int:
    """Bytes in one SIMD register of the CPU Numba compiles for: 64 with AVX-512, else 32.

    A block of four registers keeps its sums and its -lr * delta in eight registers. Blocks
    sized for AVX-512 on an AVX2 CPU become sixteen of its sixteen 32-byte registers, which
    spills, and a narrow layer's masked block does twice the masked work it needs. Numba keys
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


def _sqrt(builder, value):
    """The correctly rounded square root of a vector (llvm.sqrt)."""
    t = value.type
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t]),
                                        f"llvm.sqrt.v{t.count}{t.element.intrinsic_name}")
    return builder.call(fn, [value])


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
        self.count = count
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
        """Store the block at ``index``; a masked block lane by lane where a load may soon
        overlap it: the CPU cannot forward a masked store to a load, and a load that overlaps
        one waits until it is written to the cache (some 17 cycles a row of a 3-5-1 network's
        first layer, whose rows are narrower than a register, so that each row's load
        overlaps the previous row's store). A 1-D block is read back element by element; a
        2-D one only when its rows are narrower than the block."""
        pointer = self._pointer(array_type, array, index)
        if self.mask is None or whole:
            self.builder.store(value, pointer, align=self.align)
            return
        if array_type.ndim == 1:
            self._store_lanes(value, array_type, array, index)
            return
        row_bytes = cgutils.unpack_tuple(
            self.builder, make_array(array_type)(self.context, self.builder, array).strides)[0]
        narrow = self.builder.icmp_signed("<", row_bytes,
                                          row_bytes.type(self.n * self.align))
        with self.builder.if_else(narrow) as (by_lanes, whole_block):
            with by_lanes:
                self._store_lanes(value, array_type, array, index)
            with whole_block:
                store, align = self._masked_intrinsic("store", ir.VoidType(), pointer)
                self.builder.call(store, [value, pointer, align, self.mask])

    def _store_lanes(self, value, array_type, array, index):
        """Store the first ``count`` lanes of the block at ``index`` one at a time."""
        builder = self.builder
        *rows, start = index if isinstance(index, list) else [index]
        for lane in range(self.n):
            with builder.if_then(builder.icmp_unsigned("<", self.count.type(lane), self.count),
                                 likely=True):
                builder.store(builder.extract_element(value, self.zero.type(lane)),
                              self._element(array_type, array,
                                            [*rows, builder.add(start, start.type(lane))]))

    def fma(self, a, b, c):
        return _fma(self.builder, a, b, c)

    def adam_step(self, w, g, m, v, index, scalars):
        """Adam's step of the block of parameters ``w`` with gradient ``g``, its moments
        ``m`` and ``v`` (each an (array type, array) pair) at ``index``, updated and stored
        back; ``scalars`` are the step's (optimizers.adam_step), in the block's dtype.
        scikit-learn's formula, its sums in multiply-adds. Returns the new parameters."""
        builder = self.builder
        lr_t, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, epsilon = \
            (self.splat(value) for value in scalars)
        m_new = self.fma(beta_1, self.load(*m, index), builder.fmul(one_minus_beta_1, g))
        v_new = self.fma(beta_2, self.load(*v, index),
                         builder.fmul(one_minus_beta_2, builder.fmul(g, g)))
        self.store(m_new, *m, index)
        self.store(v_new, *v, index)
        return builder.fadd(w, builder.fdiv(builder.fmul(builder.fneg(lr_t), m_new),
                                            builder.fadd(_sqrt(builder, v_new), epsilon)))


def _lane_buffer_numpy(like, registers):
    return np.empty(_lanes(like.dtype) * registers, like.dtype)


@_intrinsic_or(_lane_buffer_numpy)
def lane_buffer(typingctx, like, registers):
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
def lanes_in(typingctx, like):
    """How many elements of ``like``'s dtype one SIMD register holds (a compile-time constant,
    where ``REGISTER_BYTES // like.itemsize`` would divide at run time)."""
    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, _lanes(like.dtype))
    return types.intp(like), codegen


def _load_scaled_numpy(buffer, array, start, count, scale, registers, masked):
    buffer[:] = 0
    buffer[:count] = scale * array[start:start + count]


@_intrinsic_or(_load_scaled_numpy)
def load_scaled(typingctx, buffer, array, start, count, scale, registers, masked):
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
def store_block(typingctx, array, start, count, buffer, registers, masked):
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


def _step_and_accumulate_numpy(W, SW, k, start, count, scaled_delta, z, squares, x, x_next,
                               alpha, step, nesterov, registers, masked):
    w = W[k, start:start + count]
    lr = step[0]
    if SW is None:
        if alpha is not None:
            w -= lr * alpha * w
        w += x * scaled_delta[:count]
    elif len(SW) == 2:
        _, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, epsilon = step
        g = x * scaled_delta[:count]
        if alpha is not None:
            g += alpha * w
        m, v = (buffer[k, start:start + count] for buffer in SW)
        m[:] = beta_1 * m + one_minus_beta_1 * g
        v[:] = beta_2 * v + one_minus_beta_2 * (g * g)
        w += -lr * m / (np.sqrt(v) + epsilon)
    else:
        minus_lr_g = x * scaled_delta[:count]
        if alpha is not None:
            minus_lr_g -= lr * alpha * w
        v = SW[0][k, start:start + count]
        v[:] = step[1] * v + minus_lr_g
        w += step[1] * v + minus_lr_g if nesterov else v
    if alpha is not None and SW is None:
        squares[:count] += w * w
    z[:count] += x_next * w


@_intrinsic_or(_step_and_accumulate_numpy)
def step_and_accumulate(typingctx, W, SW, k, start, count, scaled_delta, z, squares, x,
                         x_next, alpha, step, nesterov, registers, masked):
    """For one block of lanes j of row ``k`` of ``W`` from ``start`` (see _Block): the
    optimizer's step of ``w = W[k, j]``, stored back, then ``z[j] += x_next * w``; and with an
    L2 penalty (``alpha`` not None) but no optimizer state, ``squares[j] += w * w`` for the
    next sample's penalty. The optimizer is told by its state views ``SW`` (see
    kernels.optimizers): None for plain SGD, one (the velocity) for SGD with momentum, two
    (the moments m and v) for Adam; ``step`` holds its step's scalars.

    Without state the step is ``w - (lr * alpha) * w + x * scaled_delta[j]`` (scaled_delta is
    -lr * delta) -- a multiply and an add per vector, after a multiply-add when ``alpha`` is
    given (an L2 penalty); z's sum is a multiply-add. With momentum, ``-lr * gradient`` is
    ``x * scaled_delta[j] - (lr * alpha) * w``, the velocity ``v = momentum * VW[k, j] - lr *
    gradient`` is stored back, and w moves by ``v`` (or by ``momentum * v - lr * gradient``
    with ``nesterov``): scikit-learn's step, in multiply-adds. The caller negates lr * delta
    once per block rather than x once per row: the same values, one instruction less per row.
    With Adam (scaled_delta is delta), the gradient is ``g = x * delta[j] + alpha * w``, the
    moments ``m = beta_1 * m + (1 - beta_1) * g`` and ``v = beta_2 * v + (1 - beta_2) * g * g``
    are stored back, and w moves by ``-lr_t * m / (sqrt(v) + epsilon)``: scikit-learn's step,
    its sums in multiply-adds."""
    if not _literal_block(registers, masked):
        return None
    state = SW.type if isinstance(SW, types.Optional) else SW
    plain = isinstance(state, types.NoneType)
    adam = not plain and len(state) == 2
    penalty = not isinstance(alpha, types.NoneType)

    def codegen(context, builder, sig, args):
        W_, SW_, k_, start_, count_, scaled_delta_, z_, squares_ = args[:8]
        x_, x_next_ = (context.cast(builder, value, type_, W.dtype)
                       for value, type_ in zip(args[8:10], sig.args[8:10]))
        block = _Block(context, builder, W.dtype, registers, masked, count_)
        scalars = [context.cast(builder, builder.extract_value(args[11], i), type_, W.dtype)
                   for i, type_ in enumerate(step)]
        index = [k_, start_]
        w = block.load(sig.args[0], W_, index)
        scaled_delta_v = block.load(sig.args[5], scaled_delta_, block.zero, whole=True)
        if penalty and not adam:
            # lr * alpha in their common type, as the kernel would compute it, then cast.
            common = context.typing_context.unify_types(step[0], alpha)
            lr_alpha = builder.fmul(
                context.cast(builder, builder.extract_value(args[11], 0), step[0], common),
                context.cast(builder, args[10], alpha, common))
            minus_lr_alpha = builder.fneg(
                block.splat(context.cast(builder, lr_alpha, common, W.dtype)))
        if not plain:
            SW_ = context.cast(builder, SW_, SW, state)
            buffers = [builder.extract_value(SW_, i) for i in range(len(state))]
        if plain:
            if penalty:
                w = block.fma(minus_lr_alpha, w, w)
            # A multiply and an add, not a multiply-add, make the value stored back to W: a
            # multiply-add's result stored back slows the loop
            # (benchmarks/c_baseline/store_after_fma.c). The product is rounded, as the
            # reference rounds it.
            w = builder.fadd(w, builder.fmul(block.splat(x_), scaled_delta_v))
        elif adam:
            g = builder.fmul(block.splat(x_), scaled_delta_v)
            if penalty:
                g = block.fma(block.splat(context.cast(builder, args[10], alpha, W.dtype)), w, g)
            m_type, v_type = state.types if isinstance(state, types.Tuple) else \
                (state.dtype, state.dtype)
            w = block.adam_step(w, g, (m_type, buffers[0]), (v_type, buffers[1]), index,
                                scalars)
        else:
            minus_lr_g = builder.fmul(block.splat(x_), scaled_delta_v)
            if penalty:
                minus_lr_g = block.fma(minus_lr_alpha, w, minus_lr_g)
            momentum_ = block.splat(scalars[1])
            velocity = state.types[0] if isinstance(state, types.Tuple) else state.dtype
            v = block.fma(momentum_, block.load(velocity, buffers[0], index), minus_lr_g)
            block.store(v, velocity, buffers[0], index)
            move = builder.select(args[12], block.fma(momentum_, v, minus_lr_g), v)
            w = builder.fadd(w, move)
        block.store(w, sig.args[0], W_, index)
        if penalty and plain:
            block.store(block.fma(w, w, block.load(sig.args[7], squares_, block.zero, whole=True)),
                        sig.args[7], squares_, block.zero, whole=True)
        z_sum = block.fma(block.splat(x_next_), w,
                          block.load(sig.args[6], z_, block.zero, whole=True))
        block.store(z_sum, sig.args[6], z_, block.zero, whole=True)
        return context.get_dummy_value()
    return (types.none(W, SW, k, start, count, scaled_delta, z, squares, x, x_next, alpha, step,
                       nesterov, registers, masked), codegen)


def _adam_block_numpy(params, grad, m, v, start, count, step, registers, masked):
    lr_t, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, epsilon = step
    block = slice(start, start + count)
    g = grad[block]
    m[block] = beta_1 * m[block] + one_minus_beta_1 * g
    v[block] = beta_2 * v[block] + one_minus_beta_2 * (g * g)
    params[block] += -lr_t * m[block] / (np.sqrt(v[block]) + epsilon)


@_intrinsic_or(_adam_block_numpy)
def adam_block(typingctx, params, grad, m, v, start, count, step, registers, masked):
    """Adam's step (see _Block.adam_step) of one block of ``params`` from ``start`` with
    gradient ``grad``, moments ``m`` and ``v`` (1-D arrays alike). Written here because LLVM
    leaves the scalar loop scalar: four arrays that may alias, one square root and one
    division per parameter."""
    if not _literal_block(registers, masked):
        return None

    def codegen(context, builder, sig, args):
        params_, grad_, m_, v_, start_, count_, step_ = args[:7]
        block = _Block(context, builder, params.dtype, registers, masked, count_)
        scalars = [context.cast(builder, builder.extract_value(step_, i), type_, params.dtype)
                   for i, type_ in enumerate(step)]
        w = block.load(sig.args[0], params_, start_)
        g = block.load(sig.args[1], grad_, start_)
        w = block.adam_step(w, g, (sig.args[2], m_), (sig.args[3], v_), start_, scalars)
        block.store(w, sig.args[0], params_, start_)
        return context.get_dummy_value()
    return types.none(params, grad, m, v, start, count, step, registers, masked), codegen


def _accumulate_row_numpy(z, W, k, start, count, x, registers, masked):
    z[:count] += x * W[k, start:start + count]


@_intrinsic_or(_accumulate_row_numpy)
def accumulate_row(typingctx, z, W, k, start, count, x, registers, masked):
    """``z += x * W[k, start:]`` for one block (see _Block) of a row of ``W``, into the lane
    buffer ``z``: a multiply-add per vector, as step_and_accumulate sums its z."""
    if not _literal_block(registers, masked):
        return None

    def codegen(context, builder, sig, args):
        z_, W_ = args[:2]
        k_, start_, count_ = (context.cast(builder, value, type_, types.intp)
                              for value, type_ in zip(args[2:5], sig.args[2:5]))
        block = _Block(context, builder, W.dtype, registers, masked, count_)
        x_ = block.splat(context.cast(builder, args[5], x, W.dtype))
        w = block.load(sig.args[1], W_, [k_, start_])
        total = block.fma(x_, w, block.load(sig.args[0], z_, block.zero, whole=True))
        block.store(total, sig.args[0], z_, block.zero, whole=True)
        return context.get_dummy_value()
    return types.none(z, W, k, start, count, x, registers, masked), codegen


def _dense_tile_numpy(Z, A, W, b, row, start, count, rows, registers, masked):
    columns = slice(start, start + count)
    Z[row:row + rows, columns] = A[row:row + rows] @ W[:, columns] + b[columns]


@_intrinsic_or(_dense_tile_numpy)
def dense_tile(typingctx, Z, A, W, b, row, start, count, rows, registers, masked):
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
        # Each tile row's first element's address, and the step between a row's elements in
        # bytes: A's layout may be any (see strided), and its addresses are computed once here
        # rather than from both strides per element.
        byte = ir.IntType(8).as_pointer()
        starts = [builder.bitcast(block._element(sig.args[1], A_, [builder.add(row_, row_.type(r)),
                                                                    row_.type(0)]), byte)
                  for r in range(rows.literal_value)]
        step = cgutils.unpack_tuple(builder, make_array(sig.args[1])(context, builder,
                                                                     A_).strides)[1]
        A_item = context.get_data_type(A.dtype).as_pointer()
        W_rows = builder.extract_value(make_array(sig.args[2])(context, builder, W_).shape, 0)
        with cgutils.for_range(builder, W_rows) as loop:
            w = block.load(sig.args[2], W_, [loop.index, start_])
            offset = builder.mul(loop.index, step)
            for total, first in zip(sums, starts):
                item = builder.load(builder.bitcast(builder.gep(first, [offset]), A_item))
                a = block.splat(context.cast(builder, item, A.dtype, W.dtype))
                builder.store(block.fma(a, w, builder.load(total)), total)
        for r, total in enumerate(sums):
            block.store(builder.load(total), sig.args[0], Z_, [builder.add(row_, row_.type(r)),
                                                             start_])
        return context.get_dummy_value()
    return types.none(Z, A, W, b, row, start, count, rows, registers, masked), codegen


def _prefetch_numpy(array, byte_offset):
    pass


@_intrinsic_or(_prefetch_numpy)
def prefetch(typingctx, array, byte_offset):
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


def _as_matrix_numpy(vector, rows, cols):
    return vector.reshape((rows, cols))


@_intrinsic_or(_as_matrix_numpy)
def as_matrix(typingctx, vector, rows, cols):
    """``vector.reshape((rows, cols))`` for a C-contiguous 1-D array. Numba's reshape calls a
    C helper that LLVM cannot inline; this builds the view in place. Raises ValueError, as
    reshape does, when the sizes do not match."""
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
def as_vector(typingctx, matrix):
    """``matrix.reshape(-1)`` for a C-contiguous 2-D array, built in place as as_matrix
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


def _strided_numpy(array):
    return array


@_intrinsic_or(_strided_numpy)
def strided(typingctx, array):
    """``array`` typed as any-layout (``"A"``): the same view, so that the kernels that read
    their operand element by element through its strides (dense_rows's A) compile once for
    a row-major matrix and a transposed one."""
    if not isinstance(array, types.Array):
        return None
    any_layout = array.copy(layout="A")

    def codegen(context, builder, sig, args):
        return impl_ret_borrowed(context, builder, any_layout, args[0])
    return any_layout(array), codegen
