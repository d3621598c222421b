"""The epoch order's shuffle (fastmlp.kernels.shuffle): uniform over permutations for every
NumPy bit generator, and its rejection and continuation paths."""

import itertools
from collections import Counter

import numpy as np
import pytest

from fastmlp.kernels.shuffle import _fisher_yates, shuffled

# The chi-square statistic of 23 degrees of freedom (the 24 orders of 4 rows) exceeds this
# with probability 0.001 when every order is equally likely.
CHI2_23_P001 = 49.73


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.PCG64DXSM,
                                           np.random.MT19937, np.random.Philox,
                                           np.random.SFC64])
def test_every_order_of_four_rows_is_equally_likely(bit_generator):
    rng = np.random.Generator(bit_generator(7))
    n_draws = 24_000
    counts = Counter(tuple(shuffled(np.arange(4), rng)) for _ in range(n_draws))
    assert set(counts) == set(itertools.permutations(range(4)))
    expected = n_draws / 24
    chi2 = sum((count - expected) ** 2 / expected for count in counts.values())
    assert chi2 < CHI2_23_P001


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937])
def test_each_row_lands_at_each_position_equally_often(bit_generator):
    # A long array: every swap position's bound differs, and a biased bounded draw (the
    # high half of r * bound without the rejection, or a 32-bit generator read as 64-bit)
    # would show in where row 0 ends up.
    rng = np.random.Generator(bit_generator(8))
    n, n_draws = 1000, 20_000
    positions = np.array([np.flatnonzero(shuffled(np.arange(n), rng) == 0)[0]
                          for _ in range(n_draws)])
    counts = np.bincount(positions // 100, minlength=10)     # ten bins of 100 positions
    expected = n_draws / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.88     # chi-square, 9 degrees of freedom, p = 0.001


def test_a_draw_that_would_bias_the_bound_is_rejected():
    # Bound 3 at the first swap: 2**32 mod 3 = 1, so the draw 0 (low half 0 < 1) is
    # rejected, and the next draw, 2**32 - 1, picks j = 2 (no move); bound 2 then takes the
    # draw 0, j = 0, which swaps the first two rows.
    order = np.arange(3)
    draws = np.array([0, 2**32 - 1, 0], dtype=np.uint32)
    assert _fisher_yates(order, draws, 3) == 1
    np.testing.assert_array_equal(order, [1, 0, 2])


def test_running_out_of_draws_returns_the_length_left():
    order = np.arange(5)
    draws = np.array([2**32 - 1], dtype=np.uint32)      # j = 4: the last row stays
    assert _fisher_yates(order, draws, 5) == 4
    np.testing.assert_array_equal(order, np.arange(5))


@pytest.mark.parametrize("n", [0, 1, 2])
def test_short_arrays(n):
    rows = np.arange(n)
    order = shuffled(rows, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(order), rows)
    assert order is not rows
