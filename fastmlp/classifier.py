"""``FastMLP``: scikit-learn's ``MLPClassifier`` interface on compiled per-sample SGD kernels."""

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Sequence

import numpy as np

from . import _targets
from ._base import ClassifierBase
from ._validation import check_params, check_X, check_y, feature_names, hidden_sizes
from .exceptions import ConvergenceWarning, DivergenceWarning, not_fitted_error
from .initialization import initialize
from .kernels import codes
from .kernels.layout import make_layout, unpack

HIDDEN_CODES = {"identity": codes.IDENTITY, "linear": codes.IDENTITY,
                "logistic": codes.LOGISTIC, "sigmoid": codes.LOGISTIC,
                "tanh": codes.TANH, "relu": codes.RELU}

# Below this many rows prediction runs in the calling thread: starting workers costs more.
_PARALLEL_ROWS = 20_000
# Rows the compiled forward pass takes through the network together (see kernels.forward).
_FORWARD_BLOCK = 16


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
        X = check_X(X, name, dtype=None if fresh else self._dtype)
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
            if incremental:
                self._check_same_classes(classes)
            Y = _targets.encode(y, self.classes_, self._kind, self._dtype)
            if not incremental:
                self._velocity[:] = 0
        self._train(X, Y, y, n_epochs=1 if incremental else self.max_iter,
                    incremental=incremental)
        return self

    def _target_kind_and_classes(self, y, classes, incremental: bool):
        kind = _targets.target_kind(y)
        if kind == _targets.MULTILABEL:
            return kind, _targets.classes_of(y, kind)
        if incremental and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        labels = np.unique(np.asarray(classes)) if classes is not None else \
            _targets.classes_of(y, kind)
        if len(labels) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in the "
                             "data, but the data contains only one class: "
                             f"{labels[0]!r}.")
        return (_targets.BINARY if len(labels) == 2 else _targets.MULTICLASS), labels

    def _check_same_classes(self, classes) -> None:
        if classes is None or self._kind == _targets.MULTILABEL:
            return
        if not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={np.asarray(classes).tolist()!r} is not the same as on "
                             f"the first call to partial_fit: {self.classes_.tolist()!r}.")

    def _start(self, X, names, kind: str, classes: np.ndarray) -> None:
        """Set up a new network for this data: classes, shapes, initial weights."""
        n_outputs = 1 if kind == _targets.BINARY else len(classes)
        sizes = [X.shape[1], *hidden_sizes(self.hidden_layer_sizes), n_outputs]
        layout, n_params, n_units = make_layout(sizes)
        rng = _make_rng(self.random_state)
        params = np.zeros(n_params, dtype=np.float64)
        initialize(params, layout, self.init, self.activation, rng)
        # Nothing below can fail.
        self.classes_ = classes
        self._kind = kind
        self._dtype = X.dtype
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._layout, self._n_units, self._rng = layout, n_units, rng
        self._params = params.astype(self._dtype)
        self._velocity = np.zeros_like(self._params)
        self.loss_curve_ = []
        self.n_iter_ = 0
        self.t_ = 0
        self._no_improvement_count = 0
        self.best_loss_ = np.inf
        self.validation_scores_ = None
        self.best_validation_score_ = None

    def _train(self, X, Y, y, n_epochs: int, incremental: bool) -> None:
        kernels = _backend(self.backend)
        early = self.early_stopping and not incremental
        if early:
            train_rows, val_rows = self._validation_split(y)
            X_val, y_val = X[val_rows], y[val_rows]
            self.validation_scores_ = self.validation_scores_ or []
            if self.best_validation_score_ is None:
                self.best_validation_score_ = -np.inf
            best_params = self._params.copy()
        else:
            train_rows = np.arange(X.shape[0])
            self.best_loss_ = np.inf if self.best_loss_ is None else self.best_loss_
        n = len(train_rows)
        batch = n if self.batch_size == "full" else min(int(self.batch_size), n)
        T = self._dtype.type
        lr, alpha, momentum = T(self.learning_rate_init), T(self.alpha), T(self.momentum)
        nesterov = bool(self.nesterovs_momentum)
        hidden = HIDDEN_CODES[self.activation]
        output = self._output_code
        params, velocity = self._params, self._velocity
        grad = np.empty_like(params)
        scratch = np.empty(2 * self._n_units, dtype=self._dtype)
        last_good, last_velocity = params.copy(), velocity.copy()
        bar = self._progress_bar(n_epochs) if self.verbose and not incremental else None
        converged = False
        try:
            for _ in range(n_epochs):
                order = self._epoch_order(train_rows)
                last_good[:], last_velocity[:] = params, velocity
                # Overflow is reported once, as the DivergenceWarning below, by both
                # backends alike (NumPy would also warn at each operation that overflows).
                with np.errstate(over="ignore", invalid="ignore"):
                    loss = float(kernels.sgd_epoch(params, velocity, grad, self._layout, X, Y,
                                                   order, batch, lr, alpha, momentum,
                                                   nesterov, hidden, output, scratch))
                if not (math.isfinite(loss) and np.isfinite(params).all()):
                    params[:], velocity[:] = last_good, last_velocity
                    warnings.warn(
                        f"Training diverged in epoch {self.n_iter_ + 1}: the loss became "
                        f"{loss}. The model keeps the weights of epoch {self.n_iter_}. Try a "
                        f"smaller learning_rate_init (now {self.learning_rate_init}) or "
                        "standardise the features.", DivergenceWarning, stacklevel=4)
                    converged = True
                    break
                self.loss_curve_.append(loss)
                self.n_iter_ += 1
                self.t_ += n
                if early:
                    score = self._score_rows(X_val, y_val)
                    self.validation_scores_.append(score)
                    improved = score >= self.best_validation_score_ + self.tol
                    if score > self.best_validation_score_:
                        self.best_validation_score_ = score
                        best_params = params.copy()
                else:
                    improved = loss <= self.best_loss_ - self.tol
                    self.best_loss_ = min(self.best_loss_, loss)
                self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.6f}", refresh=False)
                    bar.update()
                elif self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
                if self._no_improvement_count > self.n_iter_no_change and not incremental:
                    converged = True
                    break
        except KeyboardInterrupt:
            # The interrupted epoch is discarded: weights, loss curve and n_iter_ all describe
            # the last completed one.
            params[:], velocity[:] = last_good, last_velocity
            del self.loss_curve_[self.n_iter_:]
            raise
        finally:
            if bar is not None:
                bar.close()
        if early:
            params[:] = best_params
            self.best_loss_ = None
        if not converged and not incremental:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)

    def _progress_bar(self, total: int):
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=type(self).__name__, unit="epoch", leave=True)

    def _epoch_order(self, rows: np.ndarray) -> np.ndarray:
        if self.shuffle == "replacement":
            return rows[self._rng.integers(0, len(rows), len(rows))]
        if self.shuffle:
            return rows[self._rng.permutation(len(rows))]
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
        return self._forward(X, codes.LOGITS if logits else self._output_code)

    def _forward(self, X, output: int) -> np.ndarray:
        kernels = _backend(self.backend)
        out = np.empty((X.shape[0], self.n_outputs_), dtype=self._dtype)
        hidden = HIDDEN_CODES[self.activation]

        def run(start, stop):
            scratch = np.empty(_FORWARD_BLOCK * self._n_units, dtype=self._dtype)
            kernels.forward(self._params, self._layout, X[start:stop], hidden, output, scratch,
                            out[start:stop])

        workers = os.cpu_count() or 1
        if X.shape[0] < _PARALLEL_ROWS or workers == 1:
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
        return np.log(self.predict_proba(X))

    def decision_function(self, X) -> np.ndarray:
        """The output layer's logits: shape (n_samples,) for a binary problem."""
        Z = self._outputs(X, logits=True)
        return Z[:, 0] if self._kind == _targets.BINARY else Z

    def predict(self, X) -> np.ndarray:
        """Predicted labels, in the values of ``classes_`` (an indicator matrix for
        multi-label)."""
        P = self._outputs(X)
        return _targets.decode(P, self.classes_, self._kind)
