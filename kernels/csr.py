"""CSR matrices ``(data, indices, indptr)`` as the kernels take them, in plain NumPy (the
reference backend needs no Numba): which settings the sparse kernel trains, and dense blocks
of rows within a memory budget for everything else."""

from typing import Callable, NamedTuple

import numpy as np

from .batches import steps_in_epoch
from .codes import FAN_IN, SGD

# The most bytes of dense rows a sparse X becomes at a time (a group of batches, a block of
# rows to predict): a wide sparse X is never densified whole.
DENSE_BLOCK_BYTES = 16 * 1024 * 1024


def trains_sparse(batch_size: int, alpha: float, optimizer: int) -> bool:
    """Whether sparse_per_sample_kernel trains these settings (plain per-sample SGD); other
    settings touch every weight at every step and run on densified groups of rows."""
    return batch_size == 1 and alpha == 0 and optimizer == SGD


class DenseKernels(NamedTuple):
    """A backend's dense entry points that epochs on CSR rows run on densified rows."""
    sgd_epoch: Callable
    batch_gradient: Callable
    descend: Callable


def block_rows(n_features: int, itemsize: int, multiple: int = 1) -> int:
    """Rows of ``n_features`` features a dense block holds within DENSE_BLOCK_BYTES, a
    multiple of ``multiple`` (whole batches) when one fits, and at least one row."""
    rows = max(1, DENSE_BLOCK_BYTES // (n_features * itemsize))
    return rows // multiple * multiple if rows >= multiple else rows


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


def _weights_of(sample_weight, rows):
    return None if sample_weight is None else sample_weight[rows]


def _total_weight(sample_weight, rows) -> float:
    return rows.size if sample_weight is None else float(sample_weight[rows].sum())


def batch_gradient_in_blocks(batch_gradient, params, layout, data, indices, indptr, Y,
                             sample_weight, rows, alpha, hidden_activation, output_activation,
                             scratch, grad):
    """A backend's dense ``batch_gradient`` of the CSR rows ``rows``, densified: at once when
    they fit in a block; else the sum of the blocks' (weighted) mean gradients and losses,
    each weighted by its share of the rows' total weight (their count without weights) and
    given that share of the penalty ``alpha``, which is the batch's mean with the whole
    penalty, to rounding."""
    n_features = int(layout[0, FAN_IN])
    most = block_rows(n_features, params.dtype.itemsize)
    n = rows.size
    if n <= most:
        return batch_gradient(params, layout, dense_rows(data, indices, indptr, rows, n_features),
                              Y[rows], _weights_of(sample_weight, rows), np.arange(n), alpha,
                              hidden_activation, output_activation, scratch, grad)
    T = params.dtype.type
    part = np.empty_like(grad)
    grad[:] = 0
    loss = 0.0
    total = _total_weight(sample_weight, rows)
    if total == 0:
        return 0.0      # the batch takes no step (see minibatch._weighted_mean)
    for start in range(0, n, most):
        block = rows[start:start + most]
        share = _total_weight(sample_weight, block) / total
        loss += share * float(batch_gradient(
            params, layout, dense_rows(data, indices, indptr, block, n_features), Y[block],
            _weights_of(sample_weight, block), np.arange(block.size), T(alpha * share),
            hidden_activation, output_activation, scratch, part))
        grad += T(share) * part
    return loss


def in_dense_groups(dense: DenseKernels, params, state, grad, layout, data, indices, indptr, Y,
                    sample_weight, order, batch_size, optimizer, hyper, steps, alpha,
                    hidden_activation, output_activation, scratch):
    """A backend's dense ``sgd_epoch`` over the CSR rows ``order``, given consecutive groups
    of whole batches densified (block_rows). Batches and their order are the epoch's, so the
    weights are the dense epoch's; the mean loss is the groups' losses summed, to rounding.
    Per-sample epochs restart the dense kernel's fused first-layer pass at each group, so
    they round as the dense kernel does to within a few ulps per group. A batch larger than
    a block is never densified whole: its gradient is summed over blocks
    (batch_gradient_in_blocks), then the step is taken, weights and loss to rounding.

    ``sample_weight`` (None or a weight per row) weighs the rows as the dense entry points
    do; a batch of zero total weight takes no step, and the optimizer counts none
    (``steps``: those it took before this epoch)."""
    n_features = int(layout[0, FAN_IN])
    group = block_rows(n_features, params.dtype.itemsize, batch_size)
    total = 0.0
    if group < batch_size:
        for start in range(0, order.size, batch_size):
            rows = order[start:start + batch_size]
            if _total_weight(sample_weight, rows) == 0:
                continue
            loss = batch_gradient_in_blocks(dense.batch_gradient, params, layout, data, indices,
                                            indptr, Y, sample_weight, rows, alpha,
                                            hidden_activation, output_activation, scratch, grad)
            dense.descend(params, state, grad, optimizer, hyper, steps)
            steps += 1
            total += loss * rows.size
        return total / order.size
    for start in range(0, order.size, group):
        rows = order[start:start + group]
        block = dense_rows(data, indices, indptr, rows, n_features)
        weights = _weights_of(sample_weight, rows)
        loss = dense.sgd_epoch(params, state, grad, layout, block, Y[rows], weights,
                               np.arange(rows.size), batch_size, optimizer, hyper, steps, alpha,
                               hidden_activation, output_activation, scratch)
        total += float(loss) * rows.size
        steps += steps_in_epoch(np.arange(rows.size), batch_size, weights)
    return total / order.size
