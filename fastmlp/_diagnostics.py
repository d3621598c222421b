"""Training that failed without an error: the checks ``fit`` runs on the model it made.

A network can finish ``fit`` with finite weights and a loss that stopped improving and still
be useless: every ReLU unit of a layer dead, every logistic/tanh unit saturated, or a loss no
better than predicting the class frequencies. Each check here is a statement about the
fitted weights on the training rows, so it cannot fire on a model that learned something:

- a dead ReLU layer (every unit <= 0 on every training row) passes no signal and no gradient;
- outputs equal on every training row mean the network ignores its input;
- a training loss within ``NO_BETTER`` of the class-frequency loss (for a regressor, of the
  loss of predicting the targets' mean), once the stopping rule has fired, means training
  ended without learning from the features (with early stopping, only when the loss did not
  move either: data with nothing to learn stop there rightly).

A saturated layer (every unit's slope below ``SATURATED_SLOPE`` on every row) passes no
gradient, so it and the layers before it have stopped learning; it is named as the cause of
the last two, not reported alone: the layers after it can still learn from its units' signs.

Training rows that are all alike are exempt from the last two: no network can do better.

The forward pass runs layer by layer through the model's own compiled kernel, on chunks of
``CHUNK_ROWS`` rows, so the check costs about two predictions over the training data and
never copies a large X; on small data (``COMPILED_FROM_MACS``) it runs in NumPy, so that a
first fit does not compile the prediction kernel for it.
"""

import contextlib
import copy
import math
import warnings

import numpy as np

from ._sparse import dense_blocks
from .exceptions import TrainingWarning
from .kernels import codes
from .kernels.reference import _sample_losses, activate
from .kernels.registry import ACTIVATION_BY_NAME, OPTIMIZER_BY_NAME

# A chunk's activations stay within a few MB: the reductions over rows run at cache speed.
CHUNK_ROWS = 8192
# Below this many multiply-adds (rows times weights) the forward pass runs in NumPy: the
# compiled one would make a first fit compile the prediction kernel (seconds) to save
# milliseconds.
COMPILED_FROM_MACS = 10**8
# Rows of the sample that can clear a model before the full pass (see training_problem).
WITNESS_ROWS = 256
# A slope this small scales the gradient that reaches a unit to nothing; the |pre-activation|
# beyond which a unit's slope is smaller: logistic e^-|z| / (1 + e^-|z|)^2 ~ e^-|z|, tanh
# 4 / (e^z + e^-z)^2 ~ 4 e^-2|z|.
SATURATED_SLOPE = 1e-8
SATURATED_Z = {codes.LOGISTIC: -math.log(SATURATED_SLOPE),
               codes.TANH: 0.5 * math.log(4 / SATURATED_SLOPE)}
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
    stopped = est._no_improvement_count > est.n_iter_no_change
    if not stopped and X.shape[0] > WITNESS_ROWS:
        # A unit alive or an output that varies on some rows clears the model for all rows:
        # a spread-out sample of rows usually proves it, at a fraction of the full pass
        # (which otherwise held the GIL for a fifth of a small fit run in a thread pool).
        step = -(-X.shape[0] // WITNESS_ROWS)
        witness = _Statistics.of(est, X[::step], Y[::step])
        if _first(witness.alive) is None and not witness.constant_outputs():
            return None
    stats = _Statistics.of(est, X, Y)
    name = type(est).__name__
    lr = f"learning_rate_init (now {est.learning_rate_init})"
    # lbfgs picks its own steps: what it can change is the starting point.
    restart = None if OPTIMIZER_BY_NAME[est.solver].stochastic else \
        "try another random_state or init (lbfgs has no learning rate)."
    dead = _first(stats.alive)
    saturated = _first(stats.lively)
    because = "" if not saturated else (
        f": every {est.activation} unit of hidden layer {saturated} is saturated on every "
        "training sample, so no gradient reaches it or the layers before it")
    if dead:
        cause = "large unscaled features" if stats.unscaled() else "too large a learning rate"
        problem = (f"{name}: every ReLU unit of hidden layer {dead} is inactive (<= 0) on "
                   "every training sample, so the network predicts the same output for every "
                   f"input and cannot learn; the usual cause is {cause} in the first epochs")
        fix = restart or f"use a smaller {lr}."
    elif stats.constant_outputs():
        problem = (f"{name}: the network's outputs are the same for every training sample, "
                   f"so it predicts {stats.constant} whatever the input{because}")
        fix = restart or f"try another {lr}."
    elif stopped and stats.learned_nothing() and (not est.early_stopping or _flat(est)):
        problem = (f"{name} stopped after {est.n_iter_} epochs with a training loss of "
                   f"{stats.loss():.4g}, no better than predicting {stats.prior} "
                   f"({stats.prior_loss():.4g})"
                   f"{because or ': the network did not learn from the features'}")
        fix = _learning_rate_advice(est, lr)
    else:
        return None
    if not dead and not stats.inputs_vary():
        return None     # rows all alike: nothing to learn beyond the class frequencies
    # These read X again, so only for a model found useless.
    scale = f"{STANDARDISE}; " if stats.unscaled() else ""
    return f"{problem}. Fix: {scale}{fix}"


def _first(flags: list) -> int | None:
    """The first layer (from 1) none of whose units is flagged, or None."""
    return next((layer for layer, units in enumerate(flags, start=1)
                 if units is not None and not units.any()), None)


def _flat(est) -> bool:
    """Whether the training loss moved by less than 0.1% from the first epoch to the last."""
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

    def __init__(self, est, X: np.ndarray, Y: np.ndarray):
        n_hidden = len(est._layout) - 1
        self.activation = ACTIVATION_BY_NAME[est.activation].code
        self.code = est._output_code
        self.regression = self.code in (codes.LINEAR, codes.EXP)
        self.constant = "the same values" if self.regression else "one class"
        self.prior = "the targets' mean" if self.regression else "the class frequencies"
        self.X = X
        self.Y = Y
        self.peak = [None] * n_hidden       # per unit: largest pre-activation on any row
        self.least = [None] * n_hidden      # per unit: smallest |pre-activation| on any row
        self.out_min = self.out_max = self.target_sum = None
        self.loss_sum = 0.0
        self.n = 0

    @classmethod
    def of(cls, est, X: np.ndarray, Y: np.ndarray) -> "_Statistics":
        weights = int((est._layout[:, codes.FAN_IN] * est._layout[:, codes.FAN_OUT]).sum())
        backend = est.backend if X.shape[0] * weights >= COMPILED_FROM_MACS else "numpy"
        layers = [_one_layer(est, layer, backend) for layer in range(len(est._layout))]
        stats = cls(est, X, Y)
        # Huge features overflow the NumPy products as they do the kernels: the statistics
        # take the infinities, and the fit has already said what diverged.
        with _one_blas_thread(backend), np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, X.shape[0], CHUNK_ROWS):
                stats._add(layers, X[start:start + CHUNK_ROWS], Y[start:start + CHUNK_ROWS])
        return stats

    def _add(self, layers, X, Y) -> None:
        A = X
        for layer, pre_activations in enumerate(layers[:-1]):
            Z = pre_activations(A)
            # Reductions over rows, not elementwise tests: they cost a fraction as much.
            if self.activation == codes.RELU:
                self.peak[layer] = _fold(np.maximum, self.peak[layer], Z.max(axis=0))
            elif self.activation in SATURATED_Z:
                self.least[layer] = _fold(np.minimum, self.least[layer],
                                          np.abs(Z).min(axis=0))
            with np.errstate(over="ignore"):
                A = activate(Z, self.activation)    # the reference's formula, for any code
        logits = layers[-1](A).astype(np.float64)
        self.out_min = _fold(np.minimum, self.out_min, logits.min(axis=0))
        self.out_max = _fold(np.maximum, self.out_max, logits.max(axis=0))
        with np.errstate(over="ignore"):    # an exp output's overflow is an infinite loss
            self.loss_sum += float(_sample_losses(logits, Y.astype(np.float64), self.code).sum())
        self.target_sum = _fold(np.add, self.target_sum, Y.sum(axis=0, dtype=np.float64))
        self.n += X.shape[0]

    @property
    def alive(self) -> list:
        """Per ReLU layer, which units are > 0 on some row (None for other activations)."""
        return [None if peak is None else peak > 0 for peak in self.peak]

    @property
    def lively(self) -> list:
        """Per logistic/tanh layer, which units are not saturated on some row."""
        return [None if least is None else least <= SATURATED_Z[self.activation]
                for least in self.least]

    def inputs_vary(self) -> bool:
        """Whether the training rows are not all the same (then no output could vary)."""
        first = None
        for _, block in dense_blocks(self.X, CHUNK_ROWS):
            first = block[:1] if first is None else first
            if (block != first).any():
                return True
        return False

    def unscaled(self) -> bool:
        """Whether some feature's root mean square is off the standardised scale: asked only
        about a model found useless, so it reads X again rather than slow every check."""
        # Features past 1e154 square to inf: unscaled, which is the answer, not a warning.
        with np.errstate(over="ignore"):
            sum_squares = sum(np.square(block, dtype=np.float64).sum(axis=0)
                              for _, block in dense_blocks(self.X, CHUNK_ROWS))
        return bool(np.sqrt(sum_squares.max() / self.n) > UNSCALED_RMS)

    def constant_outputs(self) -> bool:
        # A spread within rounding of the outputs' size: the input changes nothing.
        size = np.maximum(np.abs(self.out_min), np.abs(self.out_max)) + 1
        return bool((self.out_max - self.out_min <= 1e-9 * size).all())

    def loss(self) -> float:
        return self.loss_sum / self.n

    def prior_loss(self) -> float:
        """The loss of predicting every row's class (or label) frequencies, or for a regressor
        the targets' mean."""
        if self.regression:
            mean = self.target_sum / self.n
            # The exp output's logits are log-predictions: a mean of 0 is the limit -> -inf.
            logits = mean if self.code == codes.LINEAR else np.log(np.maximum(mean, 1e-300))
            return float(_sample_losses(np.broadcast_to(logits, self.Y.shape),
                                        self.Y.astype(np.float64), self.code).mean())
        p = np.clip(self.target_sum / self.n, 1e-300, 1)
        if self.code == codes.SOFTMAX:
            return float(-(p * np.log(p)).sum())
        q = np.clip(1 - self.target_sum / self.n, 1e-300, 1)
        return float(-(p * np.log(p) + q * np.log(q)).sum())

    def learned_nothing(self) -> bool:
        return self.loss() >= (1 - NO_BETTER) * self.prior_loss()


def _one_layer(est, layer: int, backend: str):
    """The function from a layer's inputs to its pre-activations: ``est``'s forward pass (in
    ``backend``) on a network of that layer alone (its row of the layout, its units from 0)."""
    single = copy.copy(est)
    single.backend = backend
    row = est._layout[layer:layer + 1].copy()
    row[:, codes.UNIT_OFF] = 0
    single._layout, single._n_units = row, int(row[0, codes.FAN_OUT])

    def pre_activations(A):
        if isinstance(A, np.ndarray):
            return single._forward(np.ascontiguousarray(A), codes.LOGITS)
        # A sparse X's rows: SciPy's sparse product costs a fraction of densifying them.
        return np.asarray(A @ est.coefs_[layer]) + est.intercepts_[layer]
    return pre_activations

def _one_blas_thread(backend: str):
    """BLAS kept to one thread for NumPy's products of a chunk of rows by a layer: too small
    to share, its threads cost many times the product on a busy machine or when fits run
    at once in threads (a sweep's); the compiled forward pass uses no BLAS."""
    if backend != "numpy":
        return contextlib.nullcontext()
    from .kernels.dispatch import ONE_BLAS_THREAD   # imports Numba, which training has
    return ONE_BLAS_THREAD



def _union(seen, new):
    return new if seen is None else seen | new


def _fold(combine, total, value):
    return value if total is None else combine(total, value)
