"""Warnings and errors fastmlp raises.

They mirror scikit-learn's classes of the same names (same bases, same meaning) but are
defined here because importing ``sklearn`` costs about a second, which fastmlp keeps out of
``import fastmlp`` and ``fit``.
"""


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``."""


class ConvergenceWarning(UserWarning):
    """``max_iter`` epochs ran before the stopping rule was met."""


class DataConversionWarning(UserWarning):
    """The input was converted in a way the user may not expect (e.g. a column-vector y)."""


class DivergenceWarning(RuntimeWarning):
    """Training produced a non-finite loss or weight; the model keeps the last finite weights."""
