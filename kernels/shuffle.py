"""The epoch's sample order: a Fisher-Yates shuffle driven by raw draws of the model's NumPy
random generator, compiled.

``Generator.shuffle`` makes a bounded draw through its bit generator per row, a noticeable
part of a small network's epoch. Here one vectorised call draws all the bits and the swaps
run in compiled code. Both backends train on the order this module makes, so it is shared,
not part of a backend.
"""

import numpy as np

from ._jit import standalone

MASK_32 = np.uint64(0xFFFFFFFF)
TWO_32 = np.uint64(1 << 32)
# NumPy's bit generators whose raw output is 64 random bits (MT19937's is 32).
RAW_64_BITS = (np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64)


@standalone
def _fisher_yates(order, draws, stop):
    """Shuffle ``order[:stop]`` in place from its end, position ``i`` swapped with a uniform
    ``j`` in ``0..i``, and return the length still to shuffle: 1 when done, more when the
    32-bit ``draws`` ran out first.

    ``j`` is Lemire's multiply-shift of a 32-bit draw r: the high half of ``r * (i + 1)``,
    after rejecting the few draws whose low half falls under ``2**32 mod (i + 1)`` (which
    makes every ``j`` exactly equally likely). Needs ``stop <= 2**32``."""
    i = stop - 1
    k = 0
    while i > 0:
        if k == draws.size:
            return i + 1
        r = np.uint64(draws[k])
        k += 1
        bound = np.uint64(i + 1)
        product = r * bound
        low = product & MASK_32
        if low < bound and low < (TWO_32 - bound) % bound:
            continue
        j = np.intp(product >> np.uint64(32))
        order[i], order[j] = order[j], order[i]
        i -= 1
    return 1


def _draws(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` (or one more) uniform 32-bit draws from ``rng``."""
    if type(rng.bit_generator) in RAW_64_BITS:
        return rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)
    return rng.integers(0, 1 << 32, size=n, dtype=np.uint32)


def shuffled(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly shuffled copy of the 1-D integer array ``rows``, drawn from ``rng``."""
    order = rows.copy()
    if order.size > 1 << 32:
        rng.shuffle(order)
        return order
    stop = order.size
    while stop > 1:
        # A draw per swap, and a few over for the rare rejected draw (a rejection has
        # probability below stop / 2**32; running short only costs another call).
        stop = _fisher_yates(order, _draws(rng, stop + 32), stop)
    return order
