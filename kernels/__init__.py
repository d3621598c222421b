"""fastmlp's numerical core: arrays in, arrays out.

Two backends with the same function signatures:

- ``fastmlp.kernels.dispatch``: Numba kernels, the default. It picks and specialises the
  kernel an epoch needs from ``per_sample`` (batch size 1), ``minibatch`` (streamed or BLAS),
  ``sparse`` (batch size 1 on CSR rows; ``csr`` densifies rows for the rest) and
  ``predict``, which are built from ``layers`` (activations, fused dense forward and
  backward passes), ``losses`` (output activations and cross-entropy), ``optimizers`` (the SGD
  and Adam update rules) and ``simd`` (LLVM building blocks); ``_jit`` holds the decorators.
- ``fastmlp.kernels.reference``: plain NumPy, written to read like the math; the oracle the
  tests compare the compiled kernels against, and ``FastMLP(backend="numpy")``.

Both take the network as one flat parameter buffer plus an int64 ``layout`` table
(see :mod:`fastmlp.kernels.codes` and :func:`fastmlp.kernels.layout.make_layout`).
See docs/kernels.md for how the compiled kernels are fast.
"""
