"""Sparse X (a SciPy CSR matrix or array, as check_X leaves it) through the kernels: plain
per-sample SGD on its rows as they are (the backend's sparse_sgd_epoch), everything else on
blocks of rows densified within ``kernels.csr.DENSE_BLOCK_BYTES``, so that a wide sparse X
never becomes a dense array whole."""

import numpy as np

from .kernels import csr


def dense_block(X, rows) -> np.ndarray:
    """The rows ``rows`` of the CSR ``X`` as a dense C-contiguous array."""
    return csr.dense_rows(X.data, X.indices, X.indptr, np.asarray(rows), X.shape[1])


def dense_blocks(X, most_rows: int):
    """``(start, dense rows)`` for consecutive blocks of at most ``most_rows`` rows of ``X``
    (dense or CSR), a CSR X's blocks also within the dense block budget."""
    if not isinstance(X, np.ndarray):
        most_rows = min(most_rows, csr.block_rows(X.shape[1], X.dtype.itemsize))
    for start in range(0, X.shape[0], most_rows):
        stop = min(start + most_rows, X.shape[0])
        yield start, (X[start:stop] if isinstance(X, np.ndarray)
                      else dense_block(X, np.arange(start, stop)))


class SparseKernels:
    """A backend's training and prediction entry points, with a CSR ``X`` where the backend
    takes a dense one (the same signatures otherwise)."""

    def __init__(self, backend):
        self._backend = backend

    def sgd_epoch(self, params, state, grad, layout, X, Y, sample_weight, order, batch_size,
                  optimizer, hyper, steps, alpha, hidden_activation, output_activation, scratch):
        return self._backend.sparse_sgd_epoch(params, state, grad, layout, X.data, X.indices,
                                              X.indptr, Y, sample_weight, order, batch_size,
                                              optimizer, hyper, steps, alpha, hidden_activation,
                                              output_activation, scratch)

    def forward(self, params, layout, X, hidden_activation, output_activation, scratch, out):
        for start, block in dense_blocks(X, X.shape[0]):
            self._backend.forward(params, layout, block, hidden_activation, output_activation,
                                  scratch, out[start:start + block.shape[0]])

    def batch_gradient(self, params, layout, X, Y, sample_weight, rows, alpha, hidden_activation,
                       output_activation, scratch, grad):
        return csr.batch_gradient_in_blocks(self._backend.batch_gradient, params, layout, X.data,
                                            X.indices, X.indptr, Y, sample_weight, rows, alpha,
                                            hidden_activation, output_activation, scratch, grad)
