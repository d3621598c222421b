"""The engine every fastmlp estimator shares: the scikit-learn estimator protocol, the epoch
loop, checkpoint and roll-back, the stopping rules and early stopping, the training state's
get/set, and the forward pass. Subclasses say what their targets are (classes or values), how
they are encoded and scored, and which output layer and loss learn them.

The scikit-learn protocol (``get_params`` / ``set_params`` / tags) is written here without
importing scikit-learn: ``import sklearn`` costs about a second (it pulls in SciPy), and
fastmlp's cold start must beat scikit-learn's own. scikit-learn is imported only by the code
paths that hand an estimator to scikit-learn itself (``__sklearn_tags__``).
"""

import contextlib
import functools
import inspect
import math
import operator
import os
import time
import types
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ._diagnostics import warn_training_problems
from ._state import OptimizerState, TrainingState
from ._validation import (check_network_memory, check_params, check_sample_weight,
                          check_training_weights, check_X, feature_names, hidden_sizes)
from .exceptions import ConvergenceWarning, DivergenceWarning, not_fitted_error
from .initialization import initialize
from .kernels import codes
from .kernels.layout import aligned_copy, is_aligned, make_layout, unpack
from .kernels.batches import steps_in_epoch
from .kernels.registry import (ACTIVATION_BY_NAME, LEARNING_RATE_SCHEDULES, OPTIMIZER_BY_NAME,
                               OUTPUT_BY_NAME, TARGET_KIND_BY_NAME, optimizer_code)

# A call of many epochs (see BaseMLP._epochs_runner) runs for about this long, so that an
# interrupt (Ctrl-C) takes effect within 0.1 s; and draws at most this many random numbers.
EPOCHS_CALL_SECONDS = 0.05
_EPOCHS_CALL_DRAWS = 1 << 20

# Below this many rows prediction runs in the calling thread: starting workers costs more.
_PARALLEL_ROWS = 20_000


# Rows the compiled forward pass takes through the network together (see kernels.forward):
# whole tiles (blocks of 12 to 36 rows ran within 3% of one another; 16 left a quarter of
# each block to single-row tiles).
_FORWARD_BLOCK = 4 * codes.FORWARD_TILE_ROWS


@functools.cache
def _backend(name: str):
    """The kernels' module for a backend's name, imported on first use (the compiled one
    imports Numba)."""
    if name == "numpy":
        from .kernels import reference
        return reference
    from .kernels import dispatch
    return dispatch


def _kernels(name: str, X):
    """The entry points of backend ``name`` for this X: a sparse X's through
    _sparse.SparseKernels (imported only for sparse X)."""
    if isinstance(X, np.ndarray):
        return _backend(name)
    from ._sparse import SparseKernels
    return SparseKernels(_backend(name))


@functools.cache
def _param_names(init) -> tuple[str, ...]:
    """The constructor parameters of an ``__init__``, sorted: read once per class (a
    signature costs about 0.2 ms, and clone and GridSearchCV ask for it with every fit)."""
    signature = inspect.signature(init)
    return tuple(sorted(p.name for p in signature.parameters.values()
                        if p.name != "self" and p.kind != p.VAR_KEYWORD))


@functools.cache
def _param_getter(init):
    """A function returning an estimator's constructor parameters (see _param_names) as a
    tuple, in one call."""
    return operator.attrgetter(*_param_names(init))


# Parameter values that cannot change without becoming other objects: a parameter still the
# very object of these types that check_params accepted is still valid (see _Carried).
_IMMUTABLE_PARAMS = (type(None), bool, int, float, str, np.number, np.bool_)


def _immutable(values: tuple) -> bool:
    return all(isinstance(value, _IMMUTABLE_PARAMS) or type(value) is tuple and
               all(type(item) is int for item in value) for value in values)


# The public attributes that are views of the flat buffer (see BaseMLP._publish).
_WEIGHT_VIEWS = ("coefs_", "intercepts_")
# Attributes that only save work (see _Carried): not state, so neither pickled nor saved.
CACHES = ("_carried",)


def _network_attributes(params, layout, out_activation: str) -> dict:
    """The public attributes that describe a network: its weights (views of ``params``), its
    layer and output counts and its output activation's name."""
    coefs, intercepts = unpack(params, layout)
    return dict(coefs_=coefs, intercepts_=intercepts, n_layers_=len(layout) + 1,
                n_outputs_=int(layout[-1, codes.FAN_OUT]), out_activation_=out_activation)


def _make_rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**32, dtype=np.uint64))
    return np.random.default_rng(random_state)


def _overflow_bound(layout, activation: str, x_abs_max: float, dtype):
    """A cheap test that the network's forward pass on the training data X (of ``dtype``,
    largest |feature| ``x_abs_max``) cannot overflow: ``cannot_overflow(params)`` (see
    kernels.epochs.cannot_overflow, whose ``bound`` is ``cannot_overflow.bound``) bounds the
    outputs in one pass over the weights instead of one over the data. When the test cannot
    promise, the caller runs the forward pass itself."""
    from .kernels.epochs import cannot_overflow as compiled    # imports Numba: when training
    # A quarter of the dtype's largest float leaves room for rounding.
    bound = (float(x_abs_max), float(np.finfo(dtype).max) / 4,
             ACTIVATION_BY_NAME[activation].bounded)

    def cannot_overflow(params) -> bool:
        return compiled(params, layout, bound)
    cannot_overflow.bound = bound
    return cannot_overflow


@dataclass
class _Validation:
    """Early stopping's held-out rows (with their sample weights, None when unweighted) and
    the weights of its best epoch so far."""
    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    best_params: np.ndarray


@dataclass(eq=False)
class _Carried:
    """What a ``partial_fit`` call leaves for the next call on the same estimator, since a
    small call's Python costs more than its epoch: the parameter values it checked (kept only
    when all are immutable objects: while the estimator's parameters are those very objects,
    they are still valid), and the epoch's set-up (see BaseMLP._epoch_setup), which serves
    while the training state is the same objects and the data has as many rows. Holds no
    reference to the estimator, so that dropping one frees its buffers at once."""
    values: tuple
    setup: types.SimpleNamespace | None = None

    def checked(self, values: tuple) -> bool:
        return all(map(operator.is_, values, self.values))

    def serves(self, est: "BaseMLP", n: int) -> bool:
        setup = self.setup
        return setup is not None and setup.k.params is est._params and \
            setup.optimizer is est._optimizer and setup.k.layout is est._layout and \
            setup.n == n


class _Checkpoint:
    """The training state at the start of the epoch in progress, to roll back to when that
    epoch diverges or is interrupted (Ctrl-C). After a roll-back the model is exactly what a
    fit with ``max_iter`` = its completed epochs gives, random state included.

    A KeyboardInterrupt can arrive between any two Python statements; the snapshot counts as
    taken only once its last field is bound, and ``commit`` marks the epoch as complete in
    one statement, so whichever statement is interrupted the roll-back restores a whole,
    consistent state (or leaves an already consistent one alone)."""

    def __init__(self, est: "BaseMLP", spare: tuple | None = None):
        """``spare``: buffers of an earlier checkpoint of the same network to reuse, as
        ``spare()`` returns them."""
        self._est = est
        self._params, self._optimizer = spare or (np.empty_like(est._params),
                                                  est._optimizer.copy())
        self._state = None      # None: nothing to roll back to

    def spare(self) -> tuple:
        return self._params, self._optimizer

    def save(self) -> None:
        est = self._est
        self._state = None
        self._params[:] = est._params
        self._optimizer.assign(est._optimizer)
        self._state = dict(n_iter_=est.n_iter_, n_epochs=len(est.loss_curve_), t_=est.t_,
                           best_loss_=est.best_loss_,
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
        est._optimizer.assign(self._optimizer)
        est._rng.bit_generator.state = state.pop("rng")
        n_scores = state.pop("n_scores")
        if est.validation_scores_ is not None:
            del est.validation_scores_[n_scores:]
        del est.loss_curve_[state.pop("n_epochs"):]
        vars(est).update(state)
        self._state = None


class stochastic_only:
    """A method that exists only while the estimator's solver is stochastic and early stopping
    is off (scikit-learn's ``available_if`` on ``partial_fit``): ``hasattr(est,
    "partial_fit")`` says whether it may be called, and getting it otherwise raises
    AttributeError naming the reason."""

    def __init__(self, method):
        self._method = method
        functools.update_wrapper(self, method)

    def __get__(self, est, owner=None):
        if est is None:
            return self._method
        est._check_partial_fit_available()
        return types.MethodType(self._method, est)


# Every concrete estimator class by name, as model files name them (filled as classes are
# defined, so persistence reads it without importing the estimator modules).
ESTIMATORS: dict[str, type] = {}


class BaseMLP:
    """A multilayer perceptron on one flat parameter buffer, trained by the compiled kernels
    (or their NumPy reference). ``__init__`` of a subclass only stores its keyword arguments
    (scikit-learn's convention); everything fitted is set by ``fit``.

    Subclasses provide the targets: ``_new_targets`` (which names the output layer in the
    fitted ``_out_activation``), ``_more_targets``, ``_check_targets``, ``_score_rows`` (the
    early-stopping score), ``_stratify``, ``_check_stratifiable`` and ``_target_kinds`` (the
    registry's target kinds they fit); and may weigh samples by their targets
    (``_target_weights``: a classifier's ``class_weight``).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ESTIMATORS[cls.__name__] = cls

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return list(_param_names(cls.__init__))

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

    # ---------------------------------------------------------------- fitted state

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_params")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise not_fitted_error(f"This {type(self).__name__} instance is not fitted yet. "
                                   "Call 'fit' with appropriate arguments before using this "
                                   "estimator.")

    # coefs_, intercepts_, n_layers_, n_outputs_ and out_activation_ are plain instance
    # attributes, as scikit-learn's (dask-ml copies an estimator's fitted attributes from its
    # __dict__); the first two are views of the flat buffer, set by _publish whenever the
    # buffer is replaced.

    def _publish(self) -> None:
        """Set the public attributes that describe the network from its training state."""
        vars(self).update(_network_attributes(self._params, self._layout, self._out_activation))

    def __setattr__(self, name: str, value) -> None:
        if name in _WEIGHT_VIEWS:
            raise AttributeError(f"{name} is a list of views of the network's weights: assign "
                                 f"into its arrays ({name}[0][...] = ...), or pass starting "
                                 "weights as init=(coefs, intercepts).")
        super().__setattr__(name, value)

    def __getstate__(self) -> dict:
        # The views would pickle as copies of the weights: rebuilt on load instead.
        return {name: value for name, value in vars(self).items()
                if name not in _WEIGHT_VIEWS and name not in CACHES}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        if self.__sklearn_is_fitted__():
            self._own_read_only_arrays()
            self._publish()

    def _own_read_only_arrays(self) -> None:
        """Writable copies of the network's read-only arrays. A memory-mapped load (joblib's
        ``mmap_mode``, as scikit-learn's parallel searches load large estimators) gives
        read-only arrays, which training cannot update and Numba types apart from writable
        ones (prediction would compile its kernel again)."""
        if not self._params.flags.writeable:
            self._params = aligned_copy(self._params)
        if not self._layout.flags.writeable:
            self._layout = self._layout.copy()
        buffers = self._optimizer.buffers
        for name, buffer in buffers.items():
            if not buffer.flags.writeable:
                buffers[name] = buffer.copy()

    @property
    def _output_code(self) -> int:
        return OUTPUT_BY_NAME[self._out_activation].code

    @property
    def loss_(self) -> float:
        """The loss of the last completed epoch (lbfgs: iteration), as scikit-learn's."""
        self._check_fitted()
        if not self.loss_curve_:
            raise AttributeError(f"{type(self).__name__} has completed no iteration yet, so it "
                                 "has no loss_.")
        return self.loss_curve_[-1]

    def get_training_state(self) -> TrainingState:
        """The fitted network's state beyond its public attributes: the arrays themselves,
        not copies. Persistence saves it and the CLI transforms it through this method."""
        self._check_fitted()
        return TrainingState(self._params, self._layout, self._optimizer, self._rng,
                             self._kind, self._no_improvement_count, self._out_activation)

    def set_training_state(self, state: TrainingState) -> None:
        """Make ``state`` this estimator's (persistence's load), with the public attributes
        that describe the network; the others (``classes_``, ``loss_curve_`` ...) are set by
        the caller."""
        params = state.params if is_aligned(state.params) else aligned_copy(state.params)
        vars(self).update(_params=params, _dtype=params.dtype, _layout=state.layout,
                          _n_units=int(state.layout[:, codes.FAN_OUT].sum()),
                          _optimizer=state.optimizer, _rng=state.rng, _kind=state.target_kind,
                          _no_improvement_count=state.no_improvement_count,
                          _out_activation=state.out_activation or
                          TARGET_KIND_BY_NAME[state.target_kind].output.name)
        for name in CACHES:
            vars(self).pop(name, None)
        self._publish()

    # ---------------------------------------------------------------- training

    def _fit(self, X, y, incremental: bool, classes=None, sample_weight=None):
        # Every check runs before the estimator changes, so a call that raises leaves a
        # fitted model as it was (a half-replaced network would predict from garbage).
        values = _param_getter(type(self).__init__)(self)
        carried = vars(self).get("_carried")
        if carried is None or not carried.checked(values):
            check_params(self)
            carried = _Carried(values) if _immutable(values) else None
            vars(self)["_carried"] = carried
        elif not incremental:
            carried.setup = None    # only partial_fit reuses a set-up: free its buffers
        name = type(self).__name__
        stochastic = OPTIMIZER_BY_NAME[self.solver].stochastic
        if incremental:
            self._check_partial_fit_available()
        fresh = not self.__sklearn_is_fitted__() or not (incremental or self.warm_start)
        names = feature_names(X)
        X, x_abs_max = check_X(X, name, dtype=None if fresh else self._dtype,
                               return_abs_max=True, writable=True)
        y = self._check_targets(y, X.shape[0])
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        if self.early_stopping and stochastic and not incremental:
            self._validation_size(X.shape[0])
            self._check_stratifiable(y)
        if fresh:
            Y, n_outputs, fitted = self._new_targets(y, classes, incremental, X.dtype)
            weights = self._training_weights(y, sample_weight, fitted, incremental, X.dtype)
            self._start(X, names, n_outputs, fitted)
        else:
            self._check_features(X, names)
            if carried is None or not carried.serves(self, X.shape[0]):
                self._check_same_architecture()
            Y = self._more_targets(y, classes, incremental)
            weights = self._training_weights(y, sample_weight, vars(self), incremental, X.dtype)
            if not incremental or self._optimizer.name != self.solver:
                # scikit-learn's: fit starts a new optimizer, partial_fit continues its own.
                self._optimizer = self._new_optimizer(self._params)
        self.n_iter_ = 0    # the iterations of this call (scikit-learn's, since its 1.3)
        if stochastic:
            self._train(X, Y, y, weights, x_abs_max,
                        n_epochs=1 if incremental else self.max_iter, incremental=incremental)
        else:
            self._train_lbfgs(X, Y, weights, x_abs_max)
        return self

    def _training_weights(self, y, sample_weight, targets: dict, incremental: bool, dtype):
        """The weights training gives the rows (None: all alike): ``sample_weight`` (checked,
        float64 or None) times the target weights of ``_target_weights``, in the network's
        ``dtype``. ``targets`` holds the fitted attributes that describe the targets."""
        target_weights = check_sample_weight(self._target_weights(y, targets, incremental),
                                             len(y), "the sample weights of class_weight")
        if target_weights is not None:
            sample_weight = target_weights if sample_weight is None else \
                sample_weight * target_weights
        weights = check_training_weights(sample_weight, dtype)
        self._warn_if_weights_cancel(weights)
        return weights

    def _warn_if_weights_cancel(self, weights) -> None:
        """Say so when unequal weights cannot change training: scikit-learn's weighted mean per
        batch makes a single sample's weight cancel but in the L2 penalty, so per-sample SGD
        or Adam without ``alpha`` trains as unweighted (zero weights still leave samples out)."""
        if weights is None or self.alpha != 0 or not OPTIMIZER_BY_NAME[self.solver].stochastic:
            return
        if self.batch_size != 1:
            return
        kept = weights[weights != 0]
        if kept.size and kept.min() != kept.max():
            warnings.warn("sample_weight and class_weight have no effect with batch_size=1 and "
                          "alpha=0: each step is one sample's weighted mean, in which its weight "
                          "cancels (scikit-learn's semantics; zero weights still leave samples "
                          "out). Train in mini-batches (batch_size > 1) for weights to matter.",
                          UserWarning, stacklevel=5)

    def _target_weights(self, y, targets: dict, incremental: bool):
        """Weights of the rows for their targets (None: all alike); see _training_weights."""
        return None

    def _check_stratifiable(self, y) -> None:
        """Refuse targets that early stopping's split cannot divide (none, unless a subclass
        stratifies)."""

    def _check_partial_fit_available(self) -> None:
        # An unknown solver is left to check_params, which names it.
        solver = OPTIMIZER_BY_NAME.get(self.solver) if isinstance(self.solver, str) else None
        if solver is not None and not solver.stochastic:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        if self.early_stopping is True:
            # Its validation split would differ call by call (scikit-learn refuses it too).
            raise AttributeError("partial_fit does not support early_stopping=True")

    def _new_optimizer(self, params) -> OptimizerState:
        return OptimizerState.fresh(self.solver, params, float(self.learning_rate_init))

    def _check_same_architecture(self) -> None:
        fitted = [int(width) for width in self._layout[:-1, codes.FAN_OUT]]
        if hidden_sizes(self.hidden_layer_sizes) != fitted:
            raise ValueError(f"hidden_layer_sizes={self.hidden_layer_sizes!r} does not match the "
                             f"fitted network's hidden layers {tuple(fitted)}: continued "
                             "training keeps the network. Fit with warm_start=False (or a new "
                             "estimator, for partial_fit) to train a new one.")

    def _start(self, X, names, n_outputs: int, targets: dict) -> None:
        """Set up a new network for this data: shapes, initial weights, and the attributes
        ``targets`` that describe its targets (``classes_`` ...)."""
        sizes = [X.shape[1], *hidden_sizes(self.hidden_layer_sizes), n_outputs]
        batch_size = self.batch_size if OPTIMIZER_BY_NAME[self.solver].stochastic else "full"
        check_network_memory(sizes, X.dtype.itemsize, X.shape[0], batch_size)
        layout, n_params, n_units = make_layout(sizes)
        rng = _make_rng(self.random_state)
        params = np.zeros(n_params, dtype=np.float64)
        initialize(params, layout, self.init, self.activation, rng)
        params = aligned_copy(params.astype(X.dtype))     # the kernels' alignment
        fitted = dict(targets, **_network_attributes(params, layout, targets["_out_activation"]),
                      _dtype=X.dtype, n_features_in_=X.shape[1],
                      _layout=layout, _n_units=n_units, _rng=rng, _params=params,
                      _optimizer=self._new_optimizer(params),
                      loss_curve_=[], n_iter_=0, t_=0, _no_improvement_count=0,
                      best_loss_=np.inf, validation_scores_=None, best_validation_score_=None)
        if names is not None:
            fitted["feature_names_in_"] = names
        else:
            vars(self).pop("feature_names_in_", None)
        # One update, so that an interrupt (Ctrl-C) cannot leave half an old model and half a
        # new one.
        vars(self).update(fitted)

    def _train(self, X, Y, y, sample_weight, x_abs_max: float, n_epochs: int,
               incremental: bool) -> None:
        train_rows, validation = self._stopping_setup(X, y, sample_weight,
                                                      early=self.early_stopping and
                                                      not incremental)
        setup = self._epoch_setup(X, len(train_rows), x_abs_max, carry=incremental)
        run_epoch = self._epoch_runner(setup, X, Y, sample_weight)
        checkpoint = _Checkpoint(self, setup.spare)
        cannot_overflow = setup.cannot_overflow
        bar = self._progress_bar(n_epochs) if self.verbose and not incremental else None
        # Without Python to run between epochs, many run in one compiled call.
        run_epochs = None if validation is not None or self.verbose or incremental else \
            self._epochs_runner(X, Y, sample_weight, train_rows, cannot_overflow.bound)
        stopped, problem = False, None
        epoch = 0
        with _discarding_interrupted_step(checkpoint, bar):
            while epoch < n_epochs:
                checkpoint.save()
                if run_epochs is not None:
                    ran, stopped = run_epochs(n_epochs - epoch)
                    if ran is None:     # an epoch the front checks with more care: redo
                        checkpoint.roll_back()
                        run_epochs = None
                        continue
                    checkpoint.commit()
                    epoch += ran
                    if stopped:
                        break
                    continue
                epoch += 1
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
        if validation is not None:
            self._params[:] = validation.best_params
            self.best_loss_ = None
        if not stopped and not incremental:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)
        if not incremental and problem is None:     # partial_fit stays a kernel call
            warn_training_problems(self, X, Y, stacklevel=4)

    def _train_lbfgs(self, X, Y, sample_weight, x_abs_max: float) -> None:
        """scikit-learn's lbfgs solver: SciPy's L-BFGS-B on the full-batch loss, for up to
        ``max_iter`` iterations and ``max_fun`` loss evaluations, converged when the projected
        gradient is at most ``tol``. Each iteration is booked like an epoch (its loss in
        ``loss_curve_``, ``n_iter_``); the model is the last completed iteration's, also when
        a later one diverges or is interrupted (Ctrl-C)."""
        from scipy.optimize import minimize     # SciPy costs import time: only when used

        kernels = _kernels(self.backend, X)
        self._align_params()
        params, layout = self._params, self._layout
        alpha = self._dtype.type(self.alpha)
        hidden, output = ACTIVATION_BY_NAME[self.activation].code, self._output_code
        rows = np.arange(X.shape[0])
        packing = _sklearn_order(layout)
        # Loss evaluations run on their own buffer: a line search's trial points never reach
        # the model, so an interrupt leaves the last completed iteration.
        trial, grad = aligned_copy(params), np.empty_like(params)
        scratch = np.empty(2 * self._n_units, dtype=self._dtype)

        def loss_and_gradient(packed):
            trial[packing] = packed
            loss = kernels.batch_gradient(trial, layout, X, Y, sample_weight, rows, alpha,
                                          hidden, output, scratch, grad)
            return float(loss), grad[packing].astype(np.float64, copy=False)

        checkpoint = _Checkpoint(self)
        cannot_overflow = _overflow_bound(layout, self.activation, x_abs_max, X.dtype)
        bar = self._progress_bar(self.max_iter) if self.verbose else None
        problems = []

        def book_iteration(intermediate_result):
            checkpoint.save()
            params[packing] = intermediate_result.x
            loss = float(intermediate_result.fun)
            problem = self._divergence(loss, X, cannot_overflow)
            if problem is not None:
                checkpoint.roll_back()
                problems.append(problem)
                raise StopIteration     # halts L-BFGS-B
            self.loss_curve_.append(loss)
            self.n_iter_ += 1
            checkpoint.commit()
            self._report_epoch(bar, loss)

        self.best_loss_ = None      # the stochastic solvers' stopping rule is not used
        with _discarding_interrupted_step(checkpoint, bar):
            result = minimize(loss_and_gradient, params[packing].astype(np.float64),
                              method="L-BFGS-B", jac=True, callback=book_iteration,
                              options=dict(maxfun=self.max_fun, maxiter=self.max_iter,
                                           gtol=self.tol))
        if problems:
            self._warn_divergence(problems[0])
            return
        if result.status != 0:
            n_iter = min(result.nit, self.max_iter)
            advice = "Increase the number of iterations to improve the convergence (max_iter=" \
                f"{self.max_iter}).\n" if n_iter == self.max_iter else ""
            warnings.warn(f"lbfgs failed to converge after {n_iter} iteration(s) (status="
                          f"{result.status}):\n{result.message}\n\n{advice}You might also want "
                          "to scale the features.", ConvergenceWarning, stacklevel=4)
        warn_training_problems(self, X, Y, stacklevel=4)

    def _stopping_setup(self, X, y, sample_weight, early: bool):
        """The rows to train on, and with early stopping the held-out validation data (with
        their weights: the validation score is weighted)."""
        if not early:
            self.best_loss_ = np.inf if self.best_loss_ is None else self.best_loss_
            return np.arange(X.shape[0]), None
        train_rows, val_rows = self._validation_split(y)
        val_weight = None
        if sample_weight is not None:
            val_weight = sample_weight[val_rows]
            for rows, part in ((train_rows, "training"), (val_rows, "validation")):
                if not sample_weight[rows].any():
                    raise ValueError(f"Every sample that early stopping keeps for {part} "
                                     "has zero weight (it holds out validation_fraction of "
                                     "each class's samples), so there is nothing to "
                                     f"{'train on' if part == 'training' else 'score'}; "
                                     "change validation_fraction or random_state, or give "
                                     "more samples a weight.")
        self.validation_scores_ = self.validation_scores_ or []
        if self.best_validation_score_ is None:
            self.best_validation_score_ = -np.inf
        return train_rows, _Validation(X[val_rows], y[val_rows], val_weight,
                                       self._params.copy())

    def _epoch_setup(self, X, n: int, x_abs_max: float, carry: bool) -> types.SimpleNamespace:
        """What training epochs on ``n`` rows of X need beside the data: the kernels, their
        arguments (``k``, see _kernel_arguments), the checkpoint's buffers to reuse
        (``spare``) and the overflow test (``cannot_overflow``, see _overflow_bound). With
        ``carry`` (partial_fit), kept for the next call, and taken from the last one when it
        serves (see _Carried)."""
        carried = vars(self).get("_carried") if carry and isinstance(X, np.ndarray) else None
        if carried is not None and carried.serves(self, n):
            setup = carried.setup
            if setup.x_abs_max != x_abs_max:
                setup.x_abs_max = x_abs_max
                setup.cannot_overflow = _overflow_bound(self._layout, self.activation,
                                                        x_abs_max, X.dtype)
            return setup
        setup = types.SimpleNamespace(
            n=n, kernels=_kernels(self.backend, X), k=self._kernel_arguments(n),
            optimizer=self._optimizer, spare=None, x_abs_max=x_abs_max,
            cannot_overflow=_overflow_bound(self._layout, self.activation, x_abs_max, X.dtype))
        if carried is not None:
            setup.spare = _Checkpoint(self).spare()
            carried.setup = setup
        return setup

    def _epoch_runner(self, setup: types.SimpleNamespace, X, Y, sample_weight):
        """A function that trains the weights in place for one epoch over the given sample
        order and returns the epoch's mean loss (rows weighted by ``sample_weight`` unless
        None); ``setup`` is _epoch_setup's."""
        kernels, k = setup.kernels, setup.k
        optimizer = self._optimizer

        def run_epoch(order) -> float:
            hyper = (optimizer.learning_rate, *k.settings)   # the schedule's rate, this epoch
            loss = float(kernels.sgd_epoch(k.params, k.state, k.grad, k.layout, X, Y,
                                           sample_weight, order, k.batch, k.optimizer, hyper,
                                           optimizer.steps, k.alpha, k.hidden, k.output,
                                           k.scratch))
            optimizer.steps += steps_in_epoch(order, k.batch, sample_weight)
            return loss
        return run_epoch

    def _kernel_arguments(self, n: int) -> types.SimpleNamespace:
        """What the epoch kernels take for ``n`` training rows, but the data and the
        optimizer's step count and learning rate, which change as training goes."""
        self._align_params()
        solver = OPTIMIZER_BY_NAME[self.solver]
        params = self._params
        return types.SimpleNamespace(
            batch=n if self.batch_size == "full" else min(int(self.batch_size), n),
            alpha=self._dtype.type(self.alpha),
            hidden=ACTIVATION_BY_NAME[self.activation].code, output=self._output_code,
            params=params, layout=self._layout, grad=np.empty_like(params),
            scratch=np.empty(2 * self._n_units, dtype=self._dtype),
            optimizer=optimizer_code(self.solver, self.momentum, bool(self.nesterovs_momentum)),
            state=tuple(self._optimizer.buffers[name] for name in solver.buffers),
            settings=tuple(float(getattr(self, name)) for name in solver.hyperparameters))

    def _epochs_runner(self, X, Y, sample_weight, rows: np.ndarray, bound: tuple):
        """A function ``run_epochs(most)`` that trains up to ``most`` epochs over ``rows`` in
        one compiled call (kernels.epochs), as many as run in about EPOCHS_CALL_SECONDS, books
        them as ``_record_epoch`` does, and returns ``(epochs run, whether the stopping rule
        ended training)``, or ``(None, False)`` when the call's epochs must be redone one at a
        time (the caller rolls back); ``bound`` is _overflow_bound's. None where that path does
        not apply (the NumPy backend, sparse X, sample weights, sampling with replacement or a
        random generator whose draws it cannot split into epochs) or does not pay yet
        (kernels.dispatch.sgd_epochs_due)."""
        from .kernels.shuffle import RAW_64_BITS
        rng = self._rng
        if self.backend == "numpy" or not isinstance(X, np.ndarray) or \
                sample_weight is not None or self.shuffle == "replacement" or \
                (self.shuffle and type(rng.bit_generator) not in RAW_64_BITS):
            return None
        from .kernels import dispatch
        from .kernels.epochs import REDO, STOPPED
        n = len(rows)
        k = self._kernel_arguments(n)
        if not dispatch.sgd_epochs_due(k.layout, k.batch, k.optimizer, k.output, k.params.dtype):
            return None
        optimizer = self._optimizer
        schedule = LEARNING_RATE_SCHEDULES.index(self.learning_rate) \
            if OPTIMIZER_BY_NAME[self.solver].schedules else codes.CONSTANT_RATE
        order = np.empty_like(rows)
        # kernels.shuffle's draws for an epoch: 32-bit halves of (n + 33) // 2 raw draws.
        raw_per_epoch = (n + 33) // 2 if self.shuffle else 0
        most_epochs = max(1, _EPOCHS_CALL_DRAWS // max(raw_per_epoch, 1))
        seconds_per_epoch = None

        def run_epochs(most: int):
            nonlocal seconds_per_epoch
            epochs = 1 if seconds_per_epoch is None else \
                max(1, min(most, most_epochs, int(EPOCHS_CALL_SECONDS / seconds_per_epoch)))
            start = rng.bit_generator.state
            draws = rng.bit_generator.random_raw(epochs * raw_per_epoch).view(np.uint32)
            losses = np.empty(epochs)
            began = time.perf_counter()
            ran, status, steps, lr, t, best, count = dispatch.sgd_epochs(
                k.params, k.state, k.grad, k.layout, X, Y, rows, order, draws,
                2 * raw_per_epoch, k.batch, k.optimizer, k.settings, optimizer.steps, k.alpha,
                k.hidden, k.output, k.scratch, losses,
                (optimizer.learning_rate, schedule, float(self.learning_rate_init),
                 float(self.power_t), self.t_),
                (float(self.tol), float(self.n_iter_no_change), float(self.best_loss_),
                 self._no_improvement_count), bound)
            seconds_per_epoch = max(time.perf_counter() - began, 1e-9) / max(ran, 1)
            if status == REDO:
                return None, False
            if ran < epochs and raw_per_epoch:
                rng.bit_generator.state = start     # the draws of the epochs run only
                rng.bit_generator.random_raw(ran * raw_per_epoch)
            self.loss_curve_.extend(losses[:ran].tolist())
            self.n_iter_ += ran
            vars(self).update(t_=t, best_loss_=best, _no_improvement_count=count)
            optimizer.learning_rate, optimizer.steps = lr, steps
            return ran, status == STOPPED
        return run_epochs

    def _align_params(self) -> None:
        if not is_aligned(self._params):
            # The kernels want the buffer on a cache line, and NumPy does not promise one.
            # Before training nothing holds views of it (a loaded model is aligned on load, so
            # its coefs_ stay views of the trained buffer).
            self._params = aligned_copy(self._params)
            self._publish()

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
        if OPTIMIZER_BY_NAME[self.solver].stochastic:
            step, advice = "epoch", (f"Try a smaller learning_rate_init (now "
                                     f"{self.learning_rate_init}) or standardise the features.")
        else:
            step, advice = "iteration", "Try standardising the features."
        warnings.warn(f"Training diverged in {step} {self.n_iter_ + 1}: {problem}. The model "
                      f"keeps the weights of {step} {self.n_iter_}. {advice}",
                      DivergenceWarning, stacklevel=5)

    def _record_epoch(self, loss: float, n: int, validation) -> bool:
        """Book a finished epoch: its loss, its validation score with early stopping.
        Returns whether the stopping rule says stop."""
        self.loss_curve_.append(loss)
        self.n_iter_ += 1
        self.t_ += n
        if validation is not None:
            score = self._score_rows(validation.X, validation.y, validation.sample_weight)
            self.validation_scores_.append(score)
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                validation.best_params = self._params.copy()
        else:
            improved = loss <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if self.learning_rate == "invscaling" and OPTIMIZER_BY_NAME[self.solver].schedules:
            self._optimizer.learning_rate = \
                float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        return not self._slow_down()

    def _slow_down(self) -> bool:
        """The adaptive schedule's answer to the stopping rule: divide the learning rate by 5
        and count afresh, unless it is already too small. Returns whether training goes on."""
        optimizer = self._optimizer
        if self.learning_rate != "adaptive" or not OPTIMIZER_BY_NAME[self.solver].schedules or \
                optimizer.learning_rate <= codes.SMALLEST_ADAPTIVE_RATE:
            return False
        optimizer.learning_rate /= 5.0
        self._no_improvement_count = 0
        return True

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
        """Rows for training and validation: the shuffled rows are grouped by ``_stratify``
        (by class, for a classifier) and every k-th goes to validation."""
        n = len(y)
        n_val = self._validation_size(n)
        rows = self._rng.permutation(n)
        rows = self._stratify(y, rows)
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
        # Overflow is handled below, the same for both backends: NumPy's would also warn, and
        # the compiled kernels never do.
        with np.errstate(over="ignore", invalid="ignore") if self.backend == "numpy" else \
                contextlib.nullcontext():
            out = self._forward(X, code)
        if np.isnan(out).any():
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
        return forward_pass(_kernels(self.backend, X), self._params, self._layout,
                            self._n_units, X, ACTIVATION_BY_NAME[self.activation].code, output)


def forward_pass(kernels, params, layout, n_units: int, X, hidden: int,
                 output: int) -> np.ndarray:
    """The network's outputs (code ``output``) for the rows of X (C-contiguous of the
    parameters' dtype, or CSR) by ``kernels`` (see _kernels): large inputs in blocks of rows on
    every core."""
    out = np.empty((X.shape[0], int(layout[-1, codes.FAN_OUT])), dtype=params.dtype)

    def run(start, stop):
        scratch = np.empty(_FORWARD_BLOCK * n_units, dtype=params.dtype)
        kernels.forward(params, layout, X[start:stop], hidden, output, scratch,
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


@contextlib.contextmanager
def _discarding_interrupted_step(checkpoint: _Checkpoint, bar):
    """Training's context: on Ctrl-C the epoch (lbfgs: iteration) in progress is discarded, so
    that weights, loss curve, n_iter_ and the random state all describe the last completed
    one; the progress bar is closed however training ends. Overflow is reported once, as the
    DivergenceWarning, by both backends alike (NumPy would also warn at each operation)."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            yield
    except KeyboardInterrupt:
        checkpoint.roll_back()
        raise
    finally:
        if bar is not None:
            bar.close()


def _sklearn_order(layout) -> np.ndarray:
    """Indices of the flat buffer in scikit-learn's packed order (every layer's weights, then
    every layer's biases), so that L-BFGS-B's sums over the parameters add in its order."""
    weights = [np.arange(row[codes.W_OFF], row[codes.W_OFF] + row[codes.FAN_IN] *
                         row[codes.FAN_OUT]) for row in layout]
    biases = [np.arange(row[codes.B_OFF], row[codes.B_OFF] + row[codes.FAN_OUT])
              for row in layout]
    return np.concatenate(weights + biases)


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
