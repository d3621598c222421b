"""``FastMLPRegressor``: scikit-learn's ``MLPRegressor`` interface on the compiled kernels."""

from typing import Literal, Sequence

import numpy as np

from ._base import BaseMLP, stochastic_only
from ._validation import check_continuous_y, check_sample_weight, kernel_array
from .kernels.registry import (CONTINUOUS, CONTINUOUS_MULTIOUTPUT, OUTPUT_BY_NAME,
                               REGRESSION_KINDS, REGRESSION_OUTPUT_BY_LOSS, Output)


class FastMLPRegressor(BaseMLP):
    """Multilayer-perceptron regressor trained by (per-sample) stochastic gradient descent,
    Adam or L-BFGS.

    The network, losses and optimizers are scikit-learn's ``MLPRegressor`` with
    ``solver="sgd"``, ``"adam"`` or ``"lbfgs"``: an identity output trained with half the
    squared error (``loss="squared_error"``) or an exponential output trained with half the
    Poisson deviance (``loss="poisson"``, for counts and other non-negative targets). As
    scikit-learn, the squared error reported in ``loss_curve_`` is averaged over samples and
    outputs, while its steps follow the output delta ``p - y`` (the gradient of the error
    summed over outputs).

    Parameters are :class:`fastmlp.FastMLP`'s (the same defaults: per-sample SGD, no momentum,
    no L2 penalty, ``learning_rate_init=0.01``) but ``class_weight``, plus ``loss``; early
    stopping holds out a random (unstratified) ``validation_fraction`` of the rows and scores
    them by R².

    Attributes
    ----------
    n_features_in_, feature_names_in_ (DataFrame input only), coefs_, intercepts_, loss_curve_,
    loss_, n_iter_, t_, best_loss_, validation_scores_, best_validation_score_, n_layers_,
    n_outputs_, out_activation_ ("identity" or "exp").
    """

    _target_kinds = tuple(kind.name for kind in REGRESSION_KINDS)
    # What the tags say, for libraries that still read it (dask-ml's searches).
    _estimator_type = "regressor"

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *,
                 loss: Literal["squared_error", "poisson"] = "squared_error",
                 solver: Literal["sgd", "adam", "lbfgs"] = "sgd",
                 batch_size: int | Literal["full"] = 1,
                 learning_rate: Literal["constant", "invscaling", "adaptive"] = "constant",
                 learning_rate_init: float = 0.01,
                 power_t: float = 0.5,
                 max_iter: int = 200,
                 max_fun: int = 15000,
                 shuffle: bool | Literal["replacement"] = True,
                 random_state=None,
                 tol: float = 1e-4,
                 momentum: float = 0.0,
                 nesterovs_momentum: bool = True,
                 alpha: float = 0.0,
                 n_iter_no_change: int = 10,
                 early_stopping: bool = False,
                 validation_fraction: float = 0.1,
                 beta_1: float = 0.9,
                 beta_2: float = 0.999,
                 epsilon: float = 1e-8,
                 warm_start: bool = False,
                 verbose: bool = False,
                 init="glorot",
                 backend: Literal["numba", "numpy"] = "numba"):
        arguments = locals()
        for name in self._get_param_names():
            setattr(self, name, arguments[name])

    def fit(self, X, y, sample_weight=None) -> "FastMLPRegressor":
        """Train for up to ``max_iter`` epochs (from the current weights with ``warm_start``).
        ``sample_weight`` as in :meth:`fastmlp.FastMLP.fit` (early stopping's R² weighted)."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @stochastic_only
    def partial_fit(self, X, y, sample_weight=None) -> "FastMLPRegressor":
        """One epoch over ``(X, y)``. Successive calls on the same data walk the same
        trajectory as ``fit`` with the same settings. Only for the stochastic solver
        ("sgd"), as in scikit-learn."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _check_targets(self, y, n_samples: int) -> np.ndarray:
        self._loss_output()     # every fit checks the parameter, before anything changes
        return check_continuous_y(y, type(self).__name__, n_samples)

    def _new_targets(self, y, classes, incremental: bool, dtype):
        """The target matrix for a new network, its number of outputs and the fitted
        attributes that describe the targets."""
        output = self._loss_output()
        self._check_target_range(y, output.loss)
        kind = CONTINUOUS if y.ndim == 1 else CONTINUOUS_MULTIOUTPUT
        Y = self._target_matrix(y, dtype)
        return Y, Y.shape[1], dict(_kind=kind.name, _out_activation=output.name)

    def _more_targets(self, y, classes, incremental: bool) -> np.ndarray:
        """The target matrix for continued training, once y is shown to fit the network."""
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} output(s), but the network was fitted to "
                             f"{self.n_outputs_}: continued training needs the same outputs.")
        # The fitted output layer's loss: a loss changed by set_params takes effect on a new fit.
        self._check_target_range(y, OUTPUT_BY_NAME[self._out_activation].loss)
        return self._target_matrix(y, self._dtype)

    def _loss_output(self) -> Output:
        """The output layer and loss that ``loss`` names."""
        if not (isinstance(self.loss, str) and self.loss in REGRESSION_OUTPUT_BY_LOSS):
            raise ValueError(f"The 'loss' parameter of {type(self).__name__} must be a str "
                             f"among {sorted(REGRESSION_OUTPUT_BY_LOSS)}. Got {self.loss!r} "
                             "instead.")
        return REGRESSION_OUTPUT_BY_LOSS[self.loss]

    @staticmethod
    def _check_target_range(y, loss: str) -> None:
        if loss == "poisson" and (y < 0).any():
            raise ValueError("loss='poisson' requires non-negative y (counts or rates); y has "
                             f"{int((y < 0).sum())} negative value(s), the least {y.min():g}.")

    @staticmethod
    def _target_matrix(y, dtype) -> np.ndarray:
        return kernel_array(y.reshape(len(y), -1), dtype)

    def _stratify(self, y, rows: np.ndarray) -> np.ndarray:
        return rows     # continuous targets have no classes to stratify by

    def _score_rows(self, X, y, sample_weight=None) -> float:
        """R² on already-validated rows (the early-stopping score), weighted by
        ``sample_weight`` unless None."""
        return r2_score(y, self._predictions(self._forward(X, self._output_code)),
                        sample_weight)

    def _predictions(self, P: np.ndarray) -> np.ndarray:
        """The network's outputs as scikit-learn shapes them: 1-D for one output."""
        return P[:, 0] if P.shape[1] == 1 else P

    def predict(self, X) -> np.ndarray:
        """Predicted values: shape (n_samples,) for a network with one output, else
        (n_samples, n_outputs)."""
        return self._predictions(self._outputs(X))

    def score(self, X, y, sample_weight=None) -> float:
        """R² of ``predict(X)`` against ``y`` (scikit-learn's ``r2_score``: weighted by
        ``sample_weight``, averaged uniformly over outputs)."""
        y_pred = self.predict(X)
        y = check_continuous_y(y, type(self).__name__, len(y_pred))
        if y.shape != y_pred.shape:
            raise ValueError(f"y has shape {y.shape}, but the predictions have shape "
                             f"{y_pred.shape}.")
        return r2_score(y, y_pred, check_sample_weight(sample_weight, len(y)))

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor",
                    target_tags=TargetTags(required=True, multi_output=True,
                                           single_output=True),
                    transformer_tags=None,
                    regressor_tags=RegressorTags(),
                    classifier_tags=None,
                    input_tags=InputTags(allow_nan=False, sparse=True))


def r2_score(y, y_pred, sample_weight=None) -> float:
    """scikit-learn's ``r2_score`` (``force_finite=True``, uniform average over outputs):
    per output 1 - (weighted residual sum of squares) / (weighted sum of squares about the
    weighted mean); 1 for a perfect fit and 0 for an imperfect fit of a constant target. NaN
    for fewer than two samples or non-finite predictions."""
    if len(y) < 2 or not np.isfinite(y_pred).all():
        return float("nan")
    Y, P = y.reshape(len(y), -1), y_pred.reshape(len(y), -1)
    weight = 1.0 if sample_weight is None else sample_weight[:, None]
    residual = (weight * (Y - P) ** 2).sum(axis=0)
    spread = (weight * (Y - np.average(Y, axis=0, weights=sample_weight)) ** 2).sum(axis=0)
    scores = np.ones(Y.shape[1])
    fitted = (residual != 0) & (spread != 0)
    scores[fitted] = 1 - residual[fitted] / spread[fitted]
    scores[(residual != 0) & (spread == 0)] = 0.0
    return float(scores.mean())
