"""How an epoch's sample order splits into batches, in plain NumPy (the front and both
backends count steps alike)."""

import numpy as np


def steps_in_epoch(order: np.ndarray, batch: int, sample_weight) -> int:
    """The optimizer steps of an epoch over ``order`` in batches of ``batch``: one a batch,
    but none for a batch whose weights (non-negative; None: all alike) sum to zero (the
    kernels skip it)."""
    if sample_weight is None:
        return -(-len(order) // batch)
    weighted = sample_weight[order] != 0
    return int(np.logical_or.reduceat(weighted, np.arange(0, len(order), batch)).sum())
