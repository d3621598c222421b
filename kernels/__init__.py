"""fastmlp's numerical core: arrays in, arrays out.

Two backends with the same function signatures:

- ``fastmlp.kernels.compiled``: Numba kernels (``@njit(cache=True, nogil=True)``), the default.
- ``fastmlp.kernels.reference``: plain NumPy, written to read like the math; the oracle the
  tests compare the compiled kernels against, and ``FastMLP(backend="numpy")``.

Both take the network as one flat parameter buffer plus an int64 ``layout`` table
(see :mod:`fastmlp.kernels.codes` and :func:`fastmlp.kernels.layout.make_layout`).
"""
