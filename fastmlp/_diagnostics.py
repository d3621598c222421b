"""Training that failed without an error: the checks ``fit`` runs on the model it made.

A network can finish ``fit`` with finite weights and a loss that stopped improving and still
be useless: every ReLU unit of a layer dead, every logistic/tanh unit saturated, or a loss no
better than predicting the class frequencies. Each check here is a statement about the
fitted weights on the training rows, so it cannot fire on a model that learned something:

- a dead ReLU layer (every unit <= 0 on every training row) passes no signal and no gradient;
- outputs equal on every training row mean the network ignores its input;
- a training loss within ``NO_BETTER`` of the class-frequency loss, once the stopping rule
  has fired, means training ended without learning from the features (with early stopping,
  only when the loss did not move either: data with nothing to learn stop there rightly).

A saturated layer (every unit's slope below ``SATURATED_SLOPE`` on every row) passes no
gradient, so it and the layers before it have stopped learning; it is named as the cause of
the last two, not reported alone: the layers after it can still learn from its units' signs.

The forward pass runs in NumPy on chunks of ``CHUNK_ROWS`` rows, so the check costs about
one prediction over the training data and never copies a large X.
"""

import warnings

import numpy as np

from . import _targets
from .exceptions import TrainingWarning

CHUNK_ROWS = 4096
# A slope this small scales the gradient that reaches a unit to nothing: logistic units
# beyond |z| = 18.4, tanh units beyond |z| = 10.1.
SATURATED_SLOPE = 1e-8
# "No better than the class frequencies": within 1% of their loss.
NO_BETTER = 0.01
# Features whose root mean square exceeds this are not on a standardised scale.
UNSCALED_RMS = 5.0
STANDARDISE = "standardise the features (e.g. sklearn.preprocessing.StandardScaler)"


def warn_training_problems(est, X: np.ndarray, Y: np.ndarray, stacklevel: int = 2) -> None:
    """Warn (:class:`TrainingWarning`) when the fitted ``est`` is useless on its training rows
    ``X`` with encoded targets ``Y``; one warning, for the first problem found."""
    problem = training_problem(est, X, Y)
    if problem is not None:
        warnings.warn(problem, TrainingWarning, stacklevel=stacklevel + 1)


def training_problem(est, X: np.ndarray, Y: np.ndarray) -> str | None:
    """What makes the fitted ``est`` useless on ``(X, Y)``, with its cause and fix, or None.
    A dead or saturated layer is named as the cause only of a useless model: a saturated
    layer still passes its units' signs on, and the layers after it can learn from them."""
    stats = _Statistics.of(est, X, Y)
    name = type(est).__name__
    scale = f"{STANDARDISE}; " if stats.unscaled() else ""
    lr = f"learning_rate_init (now {est.learning_rate_init})"
    dead = _first(stats.alive)
    if dead:
        cause = "large unscaled features" if stats.unscaled() else "too large a learning rate"
        return (f"{name}: every ReLU unit of hidden layer {dead} is inactive (<= 0) on every "
                "training sample, so the network predicts the same output for every input "
                f"and cannot learn; the usual cause is {cause} in the first epochs. Fix: "
                f"{scale}use a smaller {lr}.")
    saturated = _first(stats.lively)
    because = "" if not saturated else (
        f": every {est.activation} unit of hidden layer {saturated} is saturated on every "
        "training sample, so no gradient reaches it or the layers before it")
    if stats.constant_outputs():
        return (f"{name}: the network's outputs are the same for every training sample, so "
                f"it predicts one class whatever the input{because}. Fix: {scale}try another "
                f"{lr}.")
    stopped = est._no_improvement_count > est.n_iter_no_change
    if stopped and stats.learned_nothing() and (not est.early_stopping or _flat(est)):
        because = because or ": the network did not learn from the features"
        return (f"{name} stopped after {est.n_iter_} epochs with a training loss of "
                f"{stats.loss():.4g}, no better than predicting the class frequencies "
                f"({stats.prior_loss():.4g}){because}. Fix: {scale}"
                f"{_learning_rate_advice(est, lr)}")
    return None


def _first(flags: list) -> int | None:
    """The first layer (from 1) none of whose units is flagged, or None."""
    return next((layer for layer, units in enumerate(flags, start=1)
                 if units is not None and not units.any()), None)


def _flat(est) -> bool:
    curve = est.loss_curve_
    return len(curve) > 1 and abs(curve[0] - curve[-1]) <= 1e-3 * abs(curve[0])


def _learning_rate_advice(est, lr: str) -> str:
    if _flat(est):
        return f"the loss barely moved: use a larger {lr}."
    if est.alpha > 0:
        return f"try another {lr}, or a smaller alpha (now {est.alpha})."
    return f"try another {lr}."


class _Statistics:
    """What the checks need from one forward pass over the training rows."""

    def __init__(self, n_hidden: int):
        self.alive = [None] * n_hidden       # per ReLU layer: units > 0 on some row
        self.lively = [None] * n_hidden      # per logistic/tanh layer: units not saturated
        self.sum_squares = None
        self.out_min = self.out_max = None
        self.log_loss_sum = 0.0
        self.target_sum = None
        self.n = 0
        self.multiclass = False

    @classmethod
    def of(cls, est, X: np.ndarray, Y: np.ndarray) -> "_Statistics":
        coefs, intercepts = est.coefs_, est.intercepts_
        stats = cls(len(coefs) - 1)
        stats.multiclass = est._kind == _targets.MULTICLASS
        for start in range(0, X.shape[0], CHUNK_ROWS):
            stats._add(est.activation, coefs, intercepts, X[start:start + CHUNK_ROWS],
                       Y[start:start + CHUNK_ROWS])
        return stats

    def _add(self, activation: str, coefs, intercepts, X, Y) -> None:
        A = X
        for layer, (W, b) in enumerate(zip(coefs[:-1], intercepts[:-1])):
            Z = A @ W + b
            if activation == "relu":
                A = np.maximum(Z, 0)
                self.alive[layer] = _union(self.alive[layer], (A > 0).any(axis=0))
            elif activation in ("logistic", "sigmoid", "tanh"):
                with np.errstate(over="ignore"):
                    A = 1 / (1 + np.exp(-Z)) if activation != "tanh" else np.tanh(Z)
                slope = A * (1 - A) if activation != "tanh" else 1 - A * A
                self.lively[layer] = _union(self.lively[layer],
                                            (slope >= SATURATED_SLOPE).any(axis=0))
            else:
                A = Z
        logits = (A @ coefs[-1] + intercepts[-1]).astype(np.float64)
        self.out_min = _fold(np.minimum, self.out_min, logits.min(axis=0))
        self.out_max = _fold(np.maximum, self.out_max, logits.max(axis=0))
        self.log_loss_sum += float(_log_loss(logits, Y.astype(np.float64), self.multiclass))
        self.target_sum = _fold(np.add, self.target_sum, Y.sum(axis=0, dtype=np.float64))
        self.sum_squares = _fold(np.add, self.sum_squares,
                                 np.square(X, dtype=np.float64).sum(axis=0))
        self.n += X.shape[0]

    def unscaled(self) -> bool:
        return bool(np.sqrt(self.sum_squares.max() / self.n) > UNSCALED_RMS)

    def constant_outputs(self) -> bool:
        # A spread within rounding of the outputs' size: the input changes nothing.
        size = np.maximum(np.abs(self.out_min), np.abs(self.out_max)) + 1
        return bool((self.out_max - self.out_min <= 1e-9 * size).all())

    def loss(self) -> float:
        return self.log_loss_sum / self.n

    def prior_loss(self) -> float:
        """The loss of predicting every row's class (or label) frequencies."""
        p = np.clip(self.target_sum / self.n, 1e-300, 1)
        if self.multiclass:
            return float(-(p * np.log(p)).sum())
        q = np.clip(1 - self.target_sum / self.n, 1e-300, 1)
        return float(-(p * np.log(p) + q * np.log(q)).sum())

    def learned_nothing(self) -> bool:
        return self.loss() >= (1 - NO_BETTER) * self.prior_loss()


def _log_loss(logits: np.ndarray, Y: np.ndarray, multiclass: bool) -> float:
    """Summed cross-entropy of the rows, from the logits (no overflow for large ones)."""
    if multiclass:
        top = logits.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        return (log_norm - (logits * Y).sum(axis=1)).sum()
    return (np.logaddexp(0, logits) - Y * logits).sum()


def _union(seen, new):
    return new if seen is None else seen | new


def _fold(combine, total, value):
    return value if total is None else combine(total, value)
