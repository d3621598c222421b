"""The decorators every kernel is compiled with, named for how a function is compiled.

All of them cache to disk (``cache=True``), release the GIL (``nogil=True``) and, but for
``standalone_with_runtime``, go without Numba's reference-counting runtime (``_nrt=False``):
no kernel allocates, and without the runtime an array view costs no atomic incref/decref.
See docs/kernels.md for why each exists and what it was measured to buy.
"""

from numba import njit

# Compiled on its own, callable from Python and from other kernels.
standalone = njit(cache=True, nogil=True, _nrt=False)
# Inlined into each caller at Numba-IR level: helpers that return array views (a function
# compiled without the runtime cannot return one), small helpers, and those that pick an
# activation or loss by its code, so that a caller holding the code as a constant compiles
# only that branch.
inline_ir = njit(cache=True, nogil=True, _nrt=False, inline="always")
# Compiled once, then inlined by LLVM into each caller: a call passing a dozen arrays costs as
# much as a small layer's work. Only kernels call these, so they go without the Python and C
# wrappers, which lengthen the first compile.
_LLVM_INLINED = dict(cache=True, nogil=True, _nrt=False, forceinline=True,
                     no_cpython_wrapper=True, no_cfunc_wrapper=True)
inline_llvm = njit(**_LLVM_INLINED)
# The same, with LLVM free to reassociate sums and contract multiply-adds (fastmath's "reassoc"
# and "contract" only), for loops whose sums should go in SIMD partial sums.
inline_llvm_reassociating = njit(**_LLVM_INLINED, fastmath={"reassoc", "contract"})
# With the reference-counting runtime, which Numba's np.dot(a, b, out) needs to return ``out``
# (set explicitly: a kernel called from one compiled without it would inherit that).
standalone_with_runtime = njit(cache=True, nogil=True, _nrt=True)
