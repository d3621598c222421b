"""The scikit-learn estimator protocol, implemented without importing scikit-learn.

``import sklearn`` costs about a second (it pulls in SciPy); fastmlp's cold start must beat
scikit-learn's own, so the protocol (``get_params`` / ``set_params`` / tags / ``score``) is
written here and scikit-learn is imported only by the code paths that hand the estimator to
scikit-learn itself (``__sklearn_tags__``).
"""

import inspect

import numpy as np

from ._validation import check_sample_weight, check_y


class ClassifierBase:
    """get_params/set_params/repr/tags/score for an estimator whose ``__init__`` only stores
    its keyword arguments (scikit-learn's convention)."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self!r}. "
                                 f"Valid parameters are: {valid!r}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default
                    for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name, value in self.get_params().items():
            default = defaults[name]
            if not (value is default or _same(value, default)):
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier",
                    target_tags=TargetTags(required=True),
                    transformer_tags=None,
                    regressor_tags=None,
                    classifier_tags=ClassifierTags(multi_label=True),
                    input_tags=InputTags(allow_nan=False, sparse=False))

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy of ``predict(X)`` against ``y`` (subset accuracy for multi-label)."""
        y_pred = self.predict(X)
        if y is not None and np.ndim(y) == 2 and np.shape(y)[1] == 1 and y_pred.ndim == 1:
            y = np.asarray(y)[:, 0]
        y = check_y(y, type(self).__name__, len(y_pred))
        if y.shape != y_pred.shape:
            raise ValueError(f"y has shape {y.shape}, but the predictions have shape "
                             f"{y_pred.shape}.")
        correct = y_pred == y
        if correct.ndim == 2:
            correct = correct.all(axis=1)
        return float(np.average(correct, weights=check_sample_weight(sample_weight, len(y))))


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
