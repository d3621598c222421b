"""``FastMLP``: scikit-learn's ``MLPClassifier`` interface on compiled per-sample SGD kernels."""

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from . import _targets
from ._base import ClassifierBase
from ._diagnostics import warn_training_problems
from ._validation import (check_labels, check_params, check_X, check_y, feature_names,
                          hidden_sizes)
from .exceptions import ConvergenceWarning, DivergenceWarning, not_fitted_error
from .initialization import initialize
from .kernels import codes
from .kernels.layout import aligned_copy, is_aligned, make_layout, unpack

HIDDEN_CODES = {"identity": codes.IDENTITY, "linear": codes.IDENTITY,
                "logistic": codes.LOGISTIC, "sigmoid": codes.LOGISTIC,
                "tanh": codes.TANH, "relu": codes.RELU}

# Below this many rows prediction runs in the calling thread: starting workers costs more.
_PARALLEL_ROWS = 20_000
# Rows the compiled forward pass takes through the network together (see kernels.forward):
# whole tiles (blocks of 12 to 36 rows ran within 3% of one another; 16 left a quarter of
# each block to single-row tiles).
_FORWARD_BLOCK = 4 * codes.FORWARD_TILE_ROWS


def _backend(name: str):
    if name == "numpy":
        from .kernels import reference
        return reference
    from .kernels import compiled
    return compiled


def _make_rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**32, dtype=np.uint64))
    return np.random.default_rng(random_state)


def _overflow_bound(layout, activation: str, x_abs_max: float, dtype):
    """A cheap test that the network's forward pass on the training data X (of ``dtype``,
    largest |feature| ``x_abs_max``) cannot overflow: ``cannot_overflow(params)`` bounds the
    outputs from the largest |weight or bias| w, in one pass over the weights instead of one
    over the data. A layer's pre-activations are at most fan_in * w * (its largest |input|)
    + w, logistic and tanh units at most 1; keeping the bound below a quarter of the dtype's
    largest float leaves room for rounding. When the test cannot promise, the caller runs
    the forward pass itself."""
    fan_ins = [int(fan_in) for fan_in in layout[:, codes.FAN_IN]]
    squashing = activation in ("logistic", "sigmoid", "tanh")
    limit = float(np.finfo(dtype).max) / 4

    def cannot_overflow(params) -> bool:
        w = float(np.abs(params).max())     # NaN when any weight is, and then the bound
        bound = x_abs_max
        for layer, fan_in in enumerate(fan_ins):
            if layer and squashing:
                bound = 1.0
            bound = fan_in * w * bound + w
            if not bound <= limit:      # also when the bound is NaN or inf
                return False
        return True
    return cannot_overflow


@dataclass
class _Validation:
    """Early stopping's held-out rows and the weights of its best epoch so far."""
    X: np.ndarray
    y: np.ndarray
    best_params: np.ndarray


class _Checkpoint:
    """The training state at the start of the epoch in progress, to roll back to when that
    epoch diverges or is interrupted (Ctrl-C). After a roll-back the model is exactly what a
    fit with ``max_iter`` = its completed epochs gives, random state included.

    A KeyboardInterrupt can arrive between any two Python statements; the snapshot counts as
    taken only once its last field is bound, and ``commit`` marks the epoch as complete in
    one statement, so whichever statement is interrupted the roll-back restores a whole,
    consistent state (or leaves an already consistent one alone)."""

    def __init__(self, est: "FastMLP"):
        self._est = est
        self._params = np.empty_like(est._params)
        self._velocity = np.empty_like(est._velocity)
        self._state = None      # None: nothing to roll back to

    def save(self) -> None:
        est = self._est
        self._state = None
        self._params[:] = est._params
        self._velocity[:] = est._velocity
        self._state = dict(n_iter_=est.n_iter_, t_=est.t_, best_loss_=est.best_loss_,
                           _no_improvement_count=est._no_improvement_count,
                           best_validation_score_=est.best_validation_score_,
                           n_scores=len(est.validation_scores_ or ()),
                           rng=est._rng.bit_generator.state)

    def commit(self) -> None:
        self._state = None

    def roll_back(self) -> None:
        if self._state is None:
            return
        est, state = self._est, dict(self._state)
        est._params[:] = self._params
        est._velocity[:] = self._velocity
        est._rng.bit_generator.state = state.pop("rng")
        n_scores = state.pop("n_scores")
        if est.validation_scores_ is not None:
            del est.validation_scores_[n_scores:]
        del est.loss_curve_[state["n_iter_"]:]
        vars(est).update(state)
        self._state = None


class FastMLP(ClassifierBase):
    """Multilayer-perceptron classifier trained by (per-sample) stochastic gradient descent.

    The network, loss and optimizer are scikit-learn's ``MLPClassifier(solver="sgd",
    learning_rate="constant")``: dense layers with a hidden activation, a sigmoid output with
    binary cross-entropy (binary and multi-label targets) or a softmax with cross-entropy
    (multiclass), L2 penalty ``alpha``, (Nesterov) momentum. Training runs in compiled
    kernels (``backend="numba"``) or in the NumPy reference (``backend="numpy"``); both walk
    the same trajectory.

    Defaults differ from ``MLPClassifier`` where fastmlp's purpose asks for it: plain
    per-sample SGD (``batch_size=1``, ``momentum=0``, ``alpha=0``) with
    ``learning_rate_init=0.01``, the textbook algorithm the seed notebooks write by hand.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Widths of the hidden layers; ``()`` gives logistic/softmax regression.
    activation : {"relu", "logistic" (alias "sigmoid"), "tanh", "identity" (alias "linear")}
    batch_size : int or "full", default 1
        Samples per gradient step; the step uses the batch's mean gradient. ``"full"`` is
        full-batch gradient descent. Clipped to the number of training samples.
    learning_rate_init : float > 0, default 0.01
        Constant step size.
    max_iter : int, default 200
        Epochs (passes over the training data) for ``fit``.
    shuffle : True, False or "replacement", default True
        Each epoch visits a new permutation (True), the samples in the order given (False), or
        n samples drawn with replacement ("replacement").
    random_state : None, int, numpy Generator, RandomState or SeedSequence
        Seeds the initial weights, the validation split and every epoch's order. The same
        seed gives the same weights for float32 and float64 training.
    tol, n_iter_no_change : float, int
        scikit-learn's stopping rule: stop when the training loss (or, with early stopping,
        the validation accuracy) has not improved by ``tol`` for ``n_iter_no_change``
        consecutive epochs.
    momentum : float in [0, 1), default 0
    nesterovs_momentum : bool, default True
    alpha : float >= 0, default 0
        L2 penalty, scaled as in scikit-learn (``alpha / 2 * ||W||^2 / batch size``).
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified), stop on its accuracy and
        keep the best epoch's weights.
    validation_fraction : float in (0, 1), default 0.1
    warm_start : bool, default False
        ``fit`` continues from the current weights.
    verbose : bool, default False
        Show a progress bar over epochs with the running loss.
    init : "glorot", "he", "xavier", "normal", a number, or (coefs, intercepts)
        Starting weights: scikit-learn's Glorot-uniform scheme (the default); He or Xavier
        normal; N(0, 0.01**2); every weight equal to the number with zero biases; or explicit
        arrays shaped like ``coefs_`` / ``intercepts_``.
    backend : {"numba", "numpy"}, default "numba"

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (DataFrame input only), coefs_, intercepts_
    (views of one flat parameter buffer), loss_curve_, n_iter_, t_, best_loss_,
    validation_scores_, best_validation_score_, n_layers_, n_outputs_, out_activation_.
    """

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *,
                 batch_size: int | Literal["full"] = 1,
                 learning_rate_init: float = 0.01,
                 max_iter: int = 200,
                 shuffle: bool | Literal["replacement"] = True,
                 random_state=None,
                 tol: float = 1e-4,
                 momentum: float = 0.0,
                 nesterovs_momentum: bool = True,
                 alpha: float = 0.0,
                 n_iter_no_change: int = 10,
                 early_stopping: bool = False,
                 validation_fraction: float = 0.1,
                 warm_start: bool = False,
                 verbose: bool = False,
                 init="glorot",
                 backend: Literal["numba", "numpy"] = "numba"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.alpha = alpha
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.verbose = verbose
        self.init = init
        self.backend = backend

    # ---------------------------------------------------------------- fitted state

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_params")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise not_fitted_error(f"This {type(self).__name__} instance is not fitted yet. "
                                   "Call 'fit' with appropriate arguments before using this "
                                   "estimator.")

    @property
    def coefs_(self) -> list[np.ndarray]:
        self._check_fitted()
        return unpack(self._params, self._layout)[0]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        self._check_fitted()
        return unpack(self._params, self._layout)[1]

    @property
    def n_layers_(self) -> int:
        self._check_fitted()
        return len(self._layout) + 1

    @property
    def n_outputs_(self) -> int:
        self._check_fitted()
        return int(self._layout[-1, codes.FAN_OUT])

    @property
    def out_activation_(self) -> str:
        self._check_fitted()
        return "softmax" if self._kind == _targets.MULTICLASS else "logistic"

    @property
    def _output_code(self) -> int:
        return _targets.output_activation(self._kind)

    # ---------------------------------------------------------------- training

    def fit(self, X, y) -> "FastMLP":
        """Train for up to ``max_iter`` epochs (from the current weights with ``warm_start``)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None) -> "FastMLP":
        """One epoch over ``(X, y)``. ``classes`` (all labels that will ever be seen) is
        required on the first call unless y is a multi-label indicator matrix. Successive
        calls on the same data walk the same trajectory as ``fit`` with the same settings."""
        return self._fit(X, y, incremental=True, classes=classes)

    def _fit(self, X, y, incremental: bool, classes=None) -> "FastMLP":
        # Every check runs before the estimator changes, so a call that raises leaves a
        # fitted model as it was (a half-replaced network would predict from garbage).
        check_params(self)
        name = type(self).__name__
        fresh = not self.__sklearn_is_fitted__() or not (incremental or self.warm_start)
        names = feature_names(X)
        X, x_abs_max = check_X(X, name, dtype=None if fresh else self._dtype,
                               return_abs_max=True)
        y = check_y(y, name, X.shape[0])
        if self.early_stopping and not incremental:
            self._validation_size(X.shape[0])
        if fresh:
            kind, labels = self._target_kind_and_classes(y, classes if incremental else None,
                                                         incremental)
            Y = _targets.encode(y, labels, kind, X.dtype)
            self._start(X, names, kind, labels)
        else:
            self._check_features(X, names)
            self._check_same_architecture()
            self._check_same_targets(y)
            if incremental:
                self._check_same_classes(classes)
            Y = _targets.encode(y, self.classes_, self._kind, self._dtype)
            if not incremental:
                self._velocity[:] = 0
        self._train(X, Y, y, x_abs_max, n_epochs=1 if incremental else self.max_iter,
                    incremental=incremental)
        return self

    def _target_kind_and_classes(self, y, classes, incremental: bool):
        kind = _targets.target_kind(y)
        if kind == _targets.MULTILABEL:
            return kind, _targets.classes_of(y, kind)
        if incremental and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is None:
            labels = _targets.classes_of(y, kind)
            if len(labels) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes "
                                 "in the data, but the data contains only one class: "
                                 f"{labels[:1].tolist()[0]!r}.")
        else:
            labels = np.asarray(classes)
            check_labels(labels, "classes")
            labels = np.unique(labels)
            if len(labels) < 2:
                raise ValueError(f"classes must name at least 2 classes; got "
                                 f"{labels.tolist()!r}.")
        return (_targets.BINARY if len(labels) == 2 else _targets.MULTICLASS), labels

    def _check_same_classes(self, classes) -> None:
        if classes is None or self._kind == _targets.MULTILABEL:
            return
        if not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={np.asarray(classes).tolist()!r} is not the same as on "
                             f"the first call to partial_fit: {self.classes_.tolist()!r}.")

    def _check_same_targets(self, y) -> None:
        """Continued training needs targets shaped like the first fit's: the kernels read one
        target per network output from each row."""
        if self._kind != _targets.MULTILABEL:
            if y.ndim != 1:
                raise ValueError(f"y has shape {y.shape}, but the network was fitted to "
                                 f"{self._kind} targets: continued training needs a label per "
                                 "row.")
            return
        if y.ndim != 2 or y.shape[1] != len(self.classes_):
            raise ValueError(f"y has shape {y.shape}, but the network was fitted to a multi-label "
                             f"indicator with {len(self.classes_)} label columns: continued "
                             "training needs the same columns.")
        _targets.target_kind(y)     # refuses values other than 0 and 1

    def _check_same_architecture(self) -> None:
        fitted = [int(width) for width in self._layout[:-1, codes.FAN_OUT]]
        if hidden_sizes(self.hidden_layer_sizes) != fitted:
            raise ValueError(f"hidden_layer_sizes={self.hidden_layer_sizes!r} does not match the "
                             f"fitted network's hidden layers {tuple(fitted)}: continued "
                             "training keeps the network. Fit with warm_start=False (or a new "
                             "estimator, for partial_fit) to train a new one.")

    def _start(self, X, names, kind: str, classes: np.ndarray) -> None:
        """Set up a new network for this data: classes, shapes, initial weights."""
        n_outputs = 1 if kind == _targets.BINARY else len(classes)
        sizes = [X.shape[1], *hidden_sizes(self.hidden_layer_sizes), n_outputs]
        layout, n_params, n_units = make_layout(sizes)
        rng = _make_rng(self.random_state)
        params = np.zeros(n_params, dtype=np.float64)
        initialize(params, layout, self.init, self.activation, rng)
        fitted = dict(classes_=classes, _kind=kind, _dtype=X.dtype, n_features_in_=X.shape[1],
                      _layout=layout, _n_units=n_units, _rng=rng,
                      _params=params.astype(X.dtype), _velocity=np.zeros(n_params, X.dtype),
                      loss_curve_=[], n_iter_=0, t_=0, _no_improvement_count=0,
                      best_loss_=np.inf, validation_scores_=None, best_validation_score_=None)
        if names is not None:
            fitted["feature_names_in_"] = names
        else:
            vars(self).pop("feature_names_in_", None)
        # One update, so that an interrupt (Ctrl-C) cannot leave half an old model and half a
        # new one.
        vars(self).update(fitted)

    def _train(self, X, Y, y, x_abs_max: float, n_epochs: int, incremental: bool) -> None:
        train_rows, validation = self._stopping_setup(X, y, early=self.early_stopping and
                                                      not incremental)
        run_epoch = self._epoch_runner(X, Y, len(train_rows))
        checkpoint = _Checkpoint(self)
        cannot_overflow = _overflow_bound(self._layout, self.activation, x_abs_max, X.dtype)
        bar = self._progress_bar(n_epochs) if self.verbose and not incremental else None
        stopped, problem = False, None
        try:
            # Overflow is reported once, as the DivergenceWarning, by both backends alike
            # (NumPy would also warn at each operation that overflows).
            with np.errstate(over="ignore", invalid="ignore"):
                for _ in range(n_epochs):
                    checkpoint.save()
                    loss = run_epoch(self._epoch_order(train_rows))
                    problem = self._divergence(loss, X, cannot_overflow)
                    if problem is not None:
                        checkpoint.roll_back()
                        self._warn_divergence(problem)
                        stopped = True
                        break
                    stopped = self._record_epoch(loss, len(train_rows), validation) and \
                        not incremental
                    checkpoint.commit()
                    self._report_epoch(bar, loss)
                    if stopped:
                        break
        except KeyboardInterrupt:
            # The interrupted epoch is discarded: weights, loss curve, n_iter_ and the random
            # state all describe the last completed one.
            checkpoint.roll_back()
            raise
        finally:
            if bar is not None:
                bar.close()
        if validation is not None:
            self._params[:] = validation.best_params
            self.best_loss_ = None
        if not stopped and not incremental:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)
        if not incremental and problem is None:     # partial_fit stays a kernel call
            warn_training_problems(self, X, Y, stacklevel=4)

    def _stopping_setup(self, X, y, early: bool):
        """The rows to train on, and with early stopping the held-out validation data."""
        if not early:
            self.best_loss_ = np.inf if self.best_loss_ is None else self.best_loss_
            return np.arange(X.shape[0]), None
        train_rows, val_rows = self._validation_split(y)
        self.validation_scores_ = self.validation_scores_ or []
        if self.best_validation_score_ is None:
            self.best_validation_score_ = -np.inf
        return train_rows, _Validation(X[val_rows], y[val_rows], self._params.copy())

    def _epoch_runner(self, X, Y, n: int):
        """A function that trains the weights in place for one epoch over the given sample
        order and returns the epoch's mean loss."""
        kernels = _backend(self.backend)
        batch = n if self.batch_size == "full" else min(int(self.batch_size), n)
        T = self._dtype.type
        lr, alpha, momentum = T(self.learning_rate_init), T(self.alpha), T(self.momentum)
        nesterov = bool(self.nesterovs_momentum)
        hidden, output = HIDDEN_CODES[self.activation], self._output_code
        if not is_aligned(self._params):
            # The kernels want the buffer on a cache line, and NumPy does not promise one.
            # Before the first epoch nothing holds views of it (a loaded model is aligned on
            # load, so its coefs_ stay views of the trained buffer).
            self._params = aligned_copy(self._params)
        params, velocity, layout = self._params, self._velocity, self._layout
        grad = np.empty_like(params)
        scratch = np.empty(2 * self._n_units, dtype=self._dtype)

        def run_epoch(order) -> float:
            return float(kernels.sgd_epoch(params, velocity, grad, layout, X, Y, order, batch,
                                           lr, alpha, momentum, nesterov, hidden, output,
                                           scratch))
        return run_epoch

    def _divergence(self, loss: float, X, cannot_overflow) -> str | None:
        """What makes the epoch just trained unusable, or None: a non-finite loss or weight,
        or weights so large that the network's outputs overflow on the training data."""
        if not math.isfinite(loss):
            return f"the loss became {loss}"
        if cannot_overflow(self._params):
            return None
        if not np.isfinite(self._params).all():
            return "the weights became non-finite"
        if not np.isfinite(self._forward(X, codes.LOGITS)).all():
            return "the weights grew so large that the network's outputs overflow"
        return None

    def _warn_divergence(self, problem: str) -> None:
        warnings.warn(f"Training diverged in epoch {self.n_iter_ + 1}: {problem}. The model "
                      f"keeps the weights of epoch {self.n_iter_}. Try a smaller "
                      f"learning_rate_init (now {self.learning_rate_init}) or standardise the "
                      "features.", DivergenceWarning, stacklevel=5)

    def _record_epoch(self, loss: float, n: int, validation) -> bool:
        """Book a finished epoch: its loss, its validation score with early stopping.
        Returns whether the stopping rule says stop."""
        self.loss_curve_.append(loss)
        self.n_iter_ += 1
        self.t_ += n
        if validation is not None:
            score = self._score_rows(validation.X, validation.y)
            self.validation_scores_.append(score)
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                validation.best_params = self._params.copy()
        else:
            improved = loss <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        return self._no_improvement_count > self.n_iter_no_change

    def _report_epoch(self, bar, loss: float) -> None:
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.6g}", refresh=False)
            bar.update()
        elif self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")

    def _progress_bar(self, total: int):
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=type(self).__name__, unit="epoch", leave=True)

    def _epoch_order(self, rows: np.ndarray) -> np.ndarray:
        if self.shuffle == "replacement":
            return rows[self._rng.integers(0, len(rows), len(rows))]
        if self.shuffle:
            from .kernels.shuffle import shuffled     # imports Numba: only when training
            return shuffled(rows, self._rng)
        return rows

    def _validation_size(self, n: int) -> int:
        n_val = math.ceil(self.validation_fraction * n)
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"validation_fraction={self.validation_fraction} of {n} samples "
                             "leaves none for training or none for validation.")
        return n_val

    def _validation_split(self, y) -> tuple[np.ndarray, np.ndarray]:
        """Rows for training and validation, stratified by class: the shuffled rows are
        grouped by class and every k-th goes to validation."""
        n = len(y)
        n_val = self._validation_size(n)
        rows = self._rng.permutation(n)
        if self._kind != _targets.MULTILABEL:
            rows = rows[np.argsort(np.searchsorted(self.classes_, y[rows]), kind="stable")]
        picked = np.zeros(n, dtype=bool)
        picked[np.round(np.linspace(0, n - 1, n_val)).astype(np.int64)] = True
        return np.sort(rows[~picked]), np.sort(rows[picked])

    def save(self, path) -> None:
        """Write the fitted model to ``path`` atomically (arrays plus JSON metadata, no
        pickle); read it back with :func:`fastmlp.load`."""
        from .persistence import save
        save(self, path)

    # ---------------------------------------------------------------- prediction

    def _check_features(self, X, names) -> None:
        name = type(self).__name__
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {name} is expecting "
                             f"{self.n_features_in_} features as input.")
        fitted_names = getattr(self, "feature_names_in_", None)
        if names is None and fitted_names is not None:
            warnings.warn(f"X does not have valid feature names, but {name} was fitted with "
                          "feature names", UserWarning, stacklevel=4)
        elif names is not None and fitted_names is None:
            warnings.warn(f"X has feature names, but {name} was fitted without feature names",
                          UserWarning, stacklevel=4)
        elif names is not None and not np.array_equal(names, fitted_names):
            raise ValueError("The feature names should match those that were passed during "
                             f"fit. Fitted with {fitted_names.tolist()}, got {names.tolist()}.")

    def _outputs(self, X, logits: bool = False) -> np.ndarray:
        """Probabilities for the rows of X, or with ``logits`` the output layer's logits."""
        self._check_fitted()
        names = feature_names(X)
        X = check_X(X, type(self).__name__, dtype=self._dtype)
        self._check_features(X, names)
        code = codes.LOGITS if logits else self._output_code
        # Overflow is handled below, the same for both backends (NumPy's would also warn).
        with np.errstate(over="ignore", invalid="ignore"):
            out = self._forward(X, code)
            if np.isnan(out.sum()):
                self._refuse_overflow(X, out)
        return out

    def _refuse_overflow(self, X, out) -> None:
        """Raise for rows of ``out`` holding NaN because the network overflowed on them
        (features far larger than the weights were trained for). Infinite logits alone give
        limit probabilities (the kernels' softmax and sigmoid handle them)."""
        rows = np.flatnonzero(np.isnan(out).any(axis=1))
        if rows.size:
            raise ValueError(f"The network's outputs overflow to NaN on {rows.size} row(s) of X "
                             f"(first: row {rows[0]}, largest |feature| "
                             f"{np.abs(X[rows[0]]).max():.3g}): these features are far too "
                             "large for its weights. Scale X as the training data was scaled.")

    def _forward(self, X, output: int) -> np.ndarray:
        kernels = _backend(self.backend)
        out = np.empty((X.shape[0], self.n_outputs_), dtype=self._dtype)
        hidden = HIDDEN_CODES[self.activation]

        def run(start, stop):
            scratch = np.empty(_FORWARD_BLOCK * self._n_units, dtype=self._dtype)
            kernels.forward(self._params, self._layout, X[start:stop], hidden, output, scratch,
                            out[start:stop])

        # Small inputs do not ask for the CPU count: os.cpu_count() reads /sys on Linux, ~15 us,
        # a fifth of a one-row predict_proba.
        workers = 1 if X.shape[0] < _PARALLEL_ROWS else os.cpu_count() or 1
        if workers == 1:
            run(0, X.shape[0])
            return out
        bounds = np.linspace(0, X.shape[0], 4 * workers + 1).astype(np.int64)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, bounds[:-1], bounds[1:]))
        return out

    def _score_rows(self, X, y) -> float:
        """Accuracy on already-validated rows (the early-stopping score)."""
        P = self._forward(X, self._output_code)
        correct = _targets.decode(P, self.classes_, self._kind) == y
        return float((correct.all(axis=1) if correct.ndim == 2 else correct).mean())

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (for multi-label, the
        probability of each label)."""
        P = self._outputs(X)
        if self._kind == _targets.BINARY:
            return np.hstack([1 - P, P])
        return P

    def predict_log_proba(self, X) -> np.ndarray:
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):      # a saturated probability of 0 is -inf
            return np.log(P)

    def decision_function(self, X) -> np.ndarray:
        """The output layer's logits: shape (n_samples,) for a binary problem."""
        Z = self._outputs(X, logits=True)
        return Z[:, 0] if self._kind == _targets.BINARY else Z

    def predict(self, X) -> np.ndarray:
        """Predicted labels, in the values of ``classes_`` (an indicator matrix for
        multi-label)."""
        P = self._outputs(X)
        return _targets.decode(P, self.classes_, self._kind)
