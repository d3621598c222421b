"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's classes with their training and
prediction loops compiled.

Each is a subclass of scikit-learn's own class, so its constructor, parameter validation,
input checks, label handling, warnings, errors, fitted attributes and RNG draws (initial
weights, shuffles, the early-stopping split) are scikit-learn's code, and replacing the import
changes nothing but the speed. Three private methods of scikit-learn's are replaced:

- ``_fit_stochastic`` (solvers "sgd" and "adam"): scikit-learn's epoch loop, each epoch one
  call of fastmlp's kernels (``sgd_epoch``) over the epoch's sample order;
- ``_loss_grad_lbfgs``: the full-batch loss and gradient that SciPy's L-BFGS-B calls, computed
  by the compiled ``batch_gradient``;
- ``_forward_pass_fast`` (predict, predict_proba, score, early stopping): the compiled
  forward pass.

The network lives in fastmlp's flat parameter buffer and ``coefs_`` / ``intercepts_`` are
views of it (:class:`_Network`); scikit-learn's optimizer object keeps its state buffers as
views of flat buffers laid out the same way, so its learning-rate schedules and stopping rule
run unchanged on the state the kernels update.
"""

import inspect
import warnings

import numpy as np
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SklearnMLPClassifier
from sklearn.neural_network import MLPRegressor as _SklearnMLPRegressor
from sklearn.neural_network._multilayer_perceptron import BaseMultilayerPerceptron
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
from sklearn.utils import shuffle
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import _check_sample_weight, validate_data

from ._base import _kernels, _sklearn_order, forward_pass
from ._validation import _is_sparse, check_X, kernel_array
from .kernels import registry
from .kernels.batches import steps_in_epoch
from .kernels.layout import aligned_copy, make_layout, unpack
from .kernels.registry import optimizer_code

__all__ = ["MLPClassifier", "MLPRegressor"]

# The scikit-learn methods replaced here, with the parameters this module relies on: an
# upgrade of scikit-learn that changes them fails at import, not with a wrong model.
_REPLACED = {
    "_fit_stochastic": ["self", "X", "y", "sample_weight", "activations", "deltas",
                        "coef_grads", "intercept_grads", "layer_units", "incremental"],
    "_fit_lbfgs": ["self", "X", "y", "sample_weight", "activations", "deltas", "coef_grads",
                   "intercept_grads", "layer_units"],
    "_loss_grad_lbfgs": ["self", "packed_coef_inter", "X", "y", "sample_weight", "activations",
                         "deltas", "coef_grads", "intercept_grads"],
    "_forward_pass_fast": ["self", "X", "check_input"],
}


def _check_scikit_learn() -> None:
    for name, expected in _REPLACED.items():
        method = getattr(BaseMultilayerPerceptron, name, None)
        found = None if method is None else list(inspect.signature(method).parameters)
        if found != expected:
            import sklearn
            raise ImportError(f"fastmlp's MLPClassifier/MLPRegressor replace scikit-learn's "
                              f"BaseMultilayerPerceptron.{name}{tuple(expected[1:])}, which "
                              f"scikit-learn {sklearn.__version__} does not have as such "
                              f"({found}). Install a scikit-learn version fastmlp supports "
                              "(see its pyproject.toml).")


_check_scikit_learn()


class _Network:
    """An estimator's network in fastmlp's layout: one cache-line-aligned buffer ``params``
    whose views ``views`` (coefs, then intercepts) are the estimator's ``coefs_`` and
    ``intercepts_``."""

    def __init__(self, layer_units, dtype):
        self.layout, n_params, self.n_units = make_layout(layer_units)
        self.params = aligned_copy(np.zeros(n_params, dtype=dtype))
        coefs, intercepts = unpack(self.params, self.layout)
        self.views = coefs + intercepts

    def buffer_like(self, arrays) -> tuple[np.ndarray, list]:
        """A flat buffer laid out like ``params`` holding ``arrays`` (one per coef and
        intercept), and its views in that order."""
        flat = aligned_copy(np.zeros_like(self.params))
        coefs, intercepts = unpack(flat, self.layout)
        views = coefs + intercepts
        for view, array in zip(views, arrays):
            view[...] = array
        return flat, views


def _are_views(arrays, views, flat) -> bool:
    """Whether ``arrays`` are ``views`` and still views of ``flat`` (pickling and copying
    keep the objects' identity but give each array memory of its own)."""
    start, stop = flat.ctypes.data, flat.ctypes.data + flat.nbytes
    return len(arrays) == len(views) and all(
        array is view and start <= array.ctypes.data < stop
        for array, view in zip(arrays, views))


def _network(est) -> _Network:
    """``est``'s network in the flat layout: the buffer its ``coefs_`` and ``intercepts_``
    are views of, or a new one holding their values when they are not (scikit-learn's lbfgs
    and early stopping assign new arrays, and so may users); it is then bound as theirs."""
    arrays = [*est.coefs_, *est.intercepts_]
    network = vars(est).get("_network")
    if network is not None and _are_views(arrays, network.views, network.params):
        return network
    units = [est.coefs_[0].shape[0], *(coef.shape[1] for coef in est.coefs_)]
    network = _Network(units, np.result_type(*arrays))
    for view, array in zip(network.views, arrays):
        view[...] = array
    n = len(est.coefs_)
    est.coefs_, est.intercepts_ = network.views[:n], network.views[n:]
    est._network = network
    return network


def _as_kernel_input(X, dtype):
    """X as the kernels take it: C-contiguous of ``dtype``, or a canonical CSR matrix of it
    (scikit-learn's checks have run: the conversion is all that is left)."""
    if _is_sparse(X):
        return check_X(X, "", dtype)
    return kernel_array(X, dtype)


def _as_kernel_weight(sample_weight, dtype) -> np.ndarray | None:
    return None if sample_weight is None else kernel_array(sample_weight, dtype)


class _CompiledLoops:
    """The methods that replace scikit-learn's loops (see the module's docstring)."""

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        network = _network(self)
        params = network.params
        # scikit-learn computes in the wider of the input's and the weights' types.
        dtype = np.result_type(X.dtype, params.dtype)
        if params.dtype != dtype:
            params = aligned_copy(params.astype(dtype))
        output = registry.OUTPUT_BY_NAME[self.out_activation_].code
        X = _as_kernel_input(X, dtype)
        return forward_pass(_kernels("numba", X), params, network.layout, network.n_units, X,
                            registry.ACTIVATION_BY_NAME[self.activation].code, output)

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, activations, deltas,
                         coef_grads, intercept_grads):
        problem = vars(self).get("_lbfgs_problem")
        if problem is None or problem[0] is not X:
            problem = (X, _LbfgsProblem(self, X, y, sample_weight))
        return problem[1].loss_and_gradient(packed_coef_inter)

    def _fit_lbfgs(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads,
                   layer_units):
        self._lbfgs_problem = (X, _LbfgsProblem(self, X, y, sample_weight))
        try:
            super()._fit_lbfgs(X, y, sample_weight, activations, deltas, coef_grads,
                               intercept_grads, layer_units)
        finally:
            del self._lbfgs_problem
        _network(self)

    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads,
                        intercept_grads, layer_units, incremental):
        network = _network(self)
        if not incremental or not hasattr(self, "_optimizer"):
            if self.solver == "sgd":
                self._optimizer = SGDOptimizer(network.views, self.learning_rate_init,
                                               self.learning_rate, self.momentum,
                                               self.nesterovs_momentum, self.power_t)
            else:
                self._optimizer = AdamOptimizer(network.views, self.learning_rate_init,
                                                self.beta_1, self.beta_2, self.epsilon)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # don't stratify in multilabel classification (scikit-learn's split, its RNG draws)
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            split = train_test_split(
                *(X, y) if sample_weight is None else (X, y, sample_weight),
                random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
            X_train, X_val, y_train, y_val = split[:4]
            sample_weight_train, sample_weight_val = split[4:] or (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = sample_weight_val = None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.int64)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        run_epoch = _EpochRunner(self, network, X_train, y_train, sample_weight_train)

        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = shuffle(sample_idx, random_state=self._random_state)
                self.loss_ = run_epoch(sample_idx, batch_size)
                self.n_iter_ += 1
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(early_stopping, X_val, y_val,
                                                  sample_weight_val)
                self._optimizer.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self._optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and "
                                  "the optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        if early_stopping:
            # restore best weights (into the flat buffer, which coefs_ stay views of)
            for view, best in zip(network.views, [*self._best_coefs, *self._best_intercepts]):
                view[...] = best


class _EpochRunner:
    """One epoch of the estimator's stochastic solver in one kernel call, on the network's
    flat buffer and the flat state buffers whose views the scikit-learn optimizer holds."""

    def __init__(self, est, network: _Network, X, y, sample_weight):
        self._est = est
        self._network = network
        dtype = network.params.dtype
        self._X = _as_kernel_input(X, dtype)
        self._kernels = _kernels("numba", self._X)
        self._Y = kernel_array(y.reshape(len(y), -1), dtype)
        self._weight = _as_kernel_weight(sample_weight, dtype)
        self._grad = np.empty_like(network.params)
        self._scratch = np.empty(2 * network.n_units, dtype=dtype)
        self._code = optimizer_code(est.solver, est.momentum, est.nesterovs_momentum)
        self._state = tuple(_flat_state(est._optimizer, name, network)
                            for name in _SKLEARN_STATE[est.solver])

    def __call__(self, order, batch_size: int) -> float:
        est, network = self._est, self._network
        optimizer = est._optimizer
        adam = est.solver == "adam"
        if adam:
            hyper = (optimizer.learning_rate_init, optimizer.beta_1, optimizer.beta_2,
                     optimizer.epsilon)
        else:
            hyper = (optimizer.learning_rate, optimizer.momentum)
        loss = float(self._kernels.sgd_epoch(
            network.params, self._state, self._grad, network.layout, self._X, self._Y,
            self._weight, order, batch_size, self._code, hyper, optimizer.t if adam else 0,
            network.params.dtype.type(est.alpha),
            registry.ACTIVATION_BY_NAME[est.activation].code,
            registry.OUTPUT_BY_NAME[est.out_activation_].code, self._scratch))
        if adam:
            # scikit-learn's AdamOptimizer after the epoch's last step.
            optimizer.t += steps_in_epoch(order, batch_size, self._weight)
            optimizer.learning_rate = (optimizer.learning_rate_init
                                       * np.sqrt(1 - optimizer.beta_2 ** optimizer.t)
                                       / (1 - optimizer.beta_1 ** optimizer.t))
        return loss


# The state lists of scikit-learn's optimizer objects, in the order of the kernels' state
# tuples (kernels.registry.OPTIMIZERS' buffers).
_SKLEARN_STATE = {"sgd": ("velocities",), "adam": ("ms", "vs")}


def _flat_state(optimizer, name: str, network: _Network) -> np.ndarray:
    """The flat buffer that the optimizer's state list ``name`` (one array per coef and
    intercept) is made views of, so that the kernels update the optimizer's own state."""
    arrays = getattr(optimizer, name)
    flat, views = getattr(optimizer, "_flat_" + name, (None, ()))
    if flat is not None and _are_views(arrays, views, flat):
        return flat
    flat, views = network.buffer_like(arrays)
    setattr(optimizer, name, views)
    setattr(optimizer, "_flat_" + name, (flat, views))
    return flat


class _LbfgsProblem:
    """The full-batch loss and gradient of one lbfgs fit, on parameters packed in
    scikit-learn's order, computed by the compiled ``batch_gradient``."""

    def __init__(self, est, X, y, sample_weight):
        units = [X.shape[1], *(coef.shape[1] for coef in est.coefs_)]
        self._layout, n_params, n_units = make_layout(units)
        dtype = X.dtype
        self._trial = aligned_copy(np.zeros(n_params, dtype=dtype))
        self._grad = np.empty_like(self._trial)
        self._scratch = np.empty(2 * n_units, dtype=dtype)
        self._packing = _sklearn_order(self._layout)
        self._X = _as_kernel_input(X, dtype)
        self._kernels = _kernels("numba", self._X)
        self._Y = kernel_array(y.reshape(len(y), -1), dtype)
        self._weight = _as_kernel_weight(sample_weight, dtype)
        self._rows = np.arange(X.shape[0])
        self._alpha = dtype.type(est.alpha)
        self._hidden = registry.ACTIVATION_BY_NAME[est.activation].code
        self._output = registry.OUTPUT_BY_NAME[est.out_activation_].code

    def loss_and_gradient(self, packed) -> tuple[float, np.ndarray]:
        self._trial[self._packing] = packed
        loss = self._kernels.batch_gradient(self._trial, self._layout, self._X, self._Y,
                                            self._weight, self._rows, self._alpha, self._hidden,
                                            self._output, self._scratch, self._grad)
        return float(loss), self._grad[self._packing].astype(np.float64)


class MLPClassifier(_CompiledLoops, _SklearnMLPClassifier):
    # What the tags say, for libraries that still read it (dask-ml's searches); scikit-learn
    # 1.6 stopped setting it.
    _estimator_type = "classifier"
    _parameter_constraints: dict = {**_SklearnMLPClassifier._parameter_constraints,
                                    "class_weight": [dict, StrOptions({"balanced"}), None]}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun)
        self.class_weight = class_weight

    def _fit(self, X, y, sample_weight=None, incremental=False):
        if self.class_weight is not None:
            if incremental and isinstance(self.class_weight, str):
                # "balanced" on one batch would weigh each batch's classes differently.
                raise ValueError(
                    "class_weight 'balanced' is not supported for partial_fit. To use "
                    "'balanced' weights, compute them once with sklearn.utils.class_weight."
                    "compute_class_weight('balanced', classes=classes, y=y) on the whole "
                    "training set (or a large sample of it) and pass the resulting dict as "
                    "class_weight.")
            weights = compute_sample_weight(self.class_weight, y)
            if sample_weight is not None:
                weights = weights * _check_sample_weight(sample_weight, weights)
            sample_weight = weights
        return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)


MLPClassifier.__doc__ = _SklearnMLPClassifier.__doc__.replace(
    "    Attributes\n", """    class_weight : dict, "balanced" or None, default=None
        fastmlp's addition: weights of the classes, as sample weights of their samples
        (exactly ``sklearn.utils.class_weight.compute_sample_weight(class_weight, y)``,
        multiplied into any ``sample_weight``). "balanced" weighs each class by
        ``n_samples / (n_classes * its count)`` in the data of each ``fit``; ``partial_fit``
        takes a dict only.

    Attributes\n""", 1)


class MLPRegressor(_CompiledLoops, _SklearnMLPRegressor):
    __doc__ = _SklearnMLPRegressor.__doc__
    _estimator_type = "regressor"   # as MLPClassifier's
