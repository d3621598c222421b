"""Warnings and errors fastmlp raises.

They mirror scikit-learn's classes of the same names (same bases, same meaning) but are
defined here because importing ``sklearn`` costs about a second, which fastmlp keeps out of
``import fastmlp`` and ``fit``.
"""

import functools
import sys


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``.

    Raise it through :func:`not_fitted_error`, which makes it scikit-learn's
    ``NotFittedError`` as well whenever scikit-learn is loaded.
    """

    def __reduce__(self):
        # Rebuilt through the factory, so that the copy a joblib worker sends back is an
        # instance of scikit-learn's class too.
        return not_fitted_error, self.args


def not_fitted_error(message: str) -> NotFittedError:
    """A :class:`NotFittedError` that is also ``sklearn.exceptions.NotFittedError`` when
    scikit-learn is already imported, so that ``except`` clauses and checks written against
    scikit-learn's class catch it. When scikit-learn is not imported, no code can be holding
    its class, and fastmlp does not pay for importing it."""
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return NotFittedError(message)
    return _with_sklearn_base(sklearn_exceptions.NotFittedError)(message)


@functools.cache
def _with_sklearn_base(sklearn_class: type) -> type:
    return type("NotFittedError", (NotFittedError, sklearn_class),
                {"__module__": __name__, "__doc__": NotFittedError.__doc__})


class ConvergenceWarning(UserWarning):
    """``max_iter`` epochs ran before the stopping rule was met."""


class DataConversionWarning(UserWarning):
    """The input was converted in a way the user may not expect (e.g. a column-vector y)."""


class DivergenceWarning(RuntimeWarning):
    """Training produced a non-finite loss or weight; the model keeps the last finite weights."""


class TrainingWarning(ConvergenceWarning):
    """``fit`` ended with a model that cannot have learned (a dead ReLU layer, constant
    outputs, a loss no better than the class frequencies); the message names the cause and
    the fix.

    A kind of ConvergenceWarning, as scikit-learn reports an optimisation that ended badly:
    code that handles how training ended handles this too. Its own class because the fix
    differs: more epochs will not help, and it can be caught or filtered on its own."""
