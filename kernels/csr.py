"""CSR matrices ``(data, indices, indptr)`` as the kernels take them, in plain NumPy (the
reference backend needs no Numba): which settings the sparse kernel trains, and dense blocks
of rows within a memory budget for everything else."""

import numpy as np

from .codes import FAN_IN

# The most bytes of dense rows a sparse X becomes at a time (a group of batches, a block of
# rows to predict): a wide sparse X is never densified whole.
DENSE_BLOCK_BYTES = 16 * 1024 * 1024


def trains_sparse(batch_size: int, alpha: float, momentum: float) -> bool:
    """Whether sparse_per_sample_kernel trains these settings (plain per-sample SGD); other
    settings touch every weight at every step and run on densified groups of rows."""
    return batch_size == 1 and alpha == 0 and momentum == 0


def block_rows(n_features: int, itemsize: int, multiple: int = 1) -> int:
    """Rows of ``n_features`` features a dense block holds within DENSE_BLOCK_BYTES, a
    multiple of ``multiple`` (whole batches), and at least ``multiple``."""
    rows = DENSE_BLOCK_BYTES // (n_features * itemsize)
    return max(multiple, rows // multiple * multiple)


def dense_rows(data, indices, indptr, rows, n_features: int) -> np.ndarray:
    """The rows ``rows`` of the CSR matrix, as a C-contiguous dense array of data's dtype."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    block = np.zeros((len(rows), n_features), dtype=data.dtype)
    # Each stored entry's position in data: the row's start plus its rank within the row.
    first = np.cumsum(counts) - counts
    at = np.repeat(starts - first, counts) + np.arange(counts.sum())
    block[np.repeat(np.arange(len(rows)), counts), indices[at]] = data[at]
    return block


def in_dense_groups(sgd_epoch, params, velocity, grad, layout, data, indices, indptr, Y,
                    sample_weight, order, batch_size, lr, alpha, momentum, nesterov,
                    hidden_activation, output_activation, scratch):
    """A backend's dense ``sgd_epoch`` over the CSR rows ``order``, given consecutive groups
    of whole batches densified (block_rows). Batches and their order are the epoch's, so the
    weights are the dense epoch's; the mean loss is the groups' losses summed, to rounding.
    Per-sample epochs restart the dense kernel's fused first-layer pass at each group, so
    they round as the dense kernel does to within a few ulps per group.

    ``sample_weight`` is accepted for the dense entry points' signature; None only, until
    they take it."""
    if sample_weight is not None:
        raise ValueError("sample_weight on sparse X needs the dense kernels' sample_weight")
    n_features = int(layout[0, FAN_IN])
    group = block_rows(n_features, params.dtype.itemsize, batch_size)
    total = 0.0
    for start in range(0, order.size, group):
        rows = order[start:start + group]
        block = dense_rows(data, indices, indptr, rows, n_features)
        loss = sgd_epoch(params, velocity, grad, layout, block, Y[rows],
                         np.arange(rows.size), batch_size, lr, alpha, momentum, nesterov,
                         hidden_activation, output_activation, scratch)
        total += float(loss) * rows.size
    return total / order.size


def merge_width(indptr) -> int:
    """The length of the merged work arrays of sparse_per_sample_kernel: two rows' non-zeros."""
    return 2 * int(np.diff(indptr).max(initial=0))
