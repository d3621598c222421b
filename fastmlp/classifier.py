"""``FastMLP``: scikit-learn's ``MLPClassifier`` interface on compiled per-sample SGD kernels."""

from typing import Literal, Sequence

import numpy as np

from . import _targets
from ._base import BaseMLP, stochastic_only
from ._validation import check_class_weight, check_labels, check_sample_weight, check_y
from .kernels.registry import CLASSIFICATION_KINDS


class FastMLP(BaseMLP):
    """Multilayer-perceptron classifier trained by (per-sample) stochastic gradient descent,
    Adam or L-BFGS.

    The network, loss and optimizers are scikit-learn's ``MLPClassifier`` with
    ``solver="sgd"``, ``"adam"`` or ``"lbfgs"``: dense layers with a hidden activation, a
    sigmoid output with binary cross-entropy (binary and multi-label targets) or a softmax with
    cross-entropy (multiclass), L2 penalty ``alpha``, (Nesterov) momentum. Training runs in compiled
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
    solver : {"sgd", "adam", "lbfgs"}, default "sgd"
        "sgd": (mini-batch) stochastic gradient descent, one kernel call per epoch. "adam":
        scikit-learn's Adam (Kingma and Ba) on the same batches, each batch one step: its
        moments and step count are optimizer state (``fit`` starts them afresh, also with
        ``warm_start``; ``partial_fit`` continues them; model files keep them);
        ``learning_rate_init`` is its step size and the ``learning_rate`` schedules do not
        apply (as in scikit-learn). "lbfgs":
        SciPy's L-BFGS-B on the full-batch loss (scikit-learn's lbfgs, parameters packed in
        its order); ``batch_size``, ``shuffle``, ``momentum``, the learning rate and
        ``early_stopping`` do not apply, ``partial_fit`` is refused, and each iteration counts
        as an epoch: ``n_iter_`` and ``loss_curve_`` (the loss of each iteration's weights).
    batch_size : int or "full", default 1
        Samples per gradient step; the step uses the batch's mean gradient (weighted by
        ``sample_weight`` and ``class_weight``, see ``fit``). ``"full"`` is
        full-batch gradient descent. Clipped to the number of training samples.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        SGD's step-size schedule (solver "sgd" only), scikit-learn's: "constant" keeps
        ``learning_rate_init``;
        "invscaling" uses ``learning_rate_init / (t_ + 1) ** power_t`` after each epoch;
        "adaptive" divides the step size by 5 whenever the stopping rule would stop, and
        stops only once it is at most 1e-6. The current step size is optimizer state: ``fit``
        starts from ``learning_rate_init`` (also with ``warm_start``), ``partial_fit``
        continues, an interrupted or diverged epoch restores it, and model files keep it.
    learning_rate_init : float > 0, default 0.01
        The (initial) step size.
    power_t : float >= 0, default 0.5
        The exponent of the "invscaling" schedule.
    max_iter : int, default 200
        Epochs (passes over the training data) for ``fit``; for lbfgs, iterations.
    max_fun : int, default 15000
        lbfgs only: the most loss evaluations ``fit`` may make.
    shuffle : True, False or "replacement", default True
        Each epoch visits a new permutation (True), the samples in the order given (False), or
        n samples drawn with replacement ("replacement").
    random_state : None, int, numpy Generator, RandomState or SeedSequence
        Seeds the initial weights, the validation split and every epoch's order. The same
        seed gives the same weights for float32 and float64 training.
    tol, n_iter_no_change : float, int
        scikit-learn's stopping rule: stop when the training loss (or, with early stopping,
        the validation accuracy) has not improved by ``tol`` for ``n_iter_no_change``
        consecutive epochs. For lbfgs, ``tol`` is L-BFGS-B's ``gtol``.
    momentum : float in [0, 1), default 0
        SGD's momentum (solver "sgd" only).
    nesterovs_momentum : bool, default True
    beta_1, beta_2 : float in [0, 1), default 0.9 and 0.999
        Adam's decay rates of its first and second moment estimates (solver "adam" only).
    epsilon : float > 0, default 1e-8
        Adam's term added to the root of the second moment, for numerical stability.
    alpha : float >= 0, default 0
        L2 penalty, scaled as in scikit-learn (``alpha / 2 * ||W||^2 / batch size``, or
        over the batch's total sample weight).
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified), stop on its accuracy and
        keep the best epoch's weights.
    validation_fraction : float in (0, 1), default 0.1
    class_weight : None, "balanced", dict or list of dicts, default None
        Weights of the classes: each sample is weighted by
        ``sklearn.utils.class_weight.compute_sample_weight(class_weight, y)`` (times its
        ``sample_weight``): a dict ``{label: weight}`` (unlisted labels weigh 1); "balanced"
        weighs each class by ``n_samples / (n_classes * its count)`` in the data of each
        ``fit`` call; for multi-label targets, "balanced" or a list with a dict
        ``{0: weight, 1: weight}`` per label (the sample's weight is the product over its
        labels). ``partial_fit`` takes a dict (or list) but not "balanced", whose counts
        one chunk of the data cannot give, as scikit-learn's ``SGDClassifier``: compute
        the weights on the whole data with ``compute_class_weight`` and pass them as a dict.
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
    (views of one flat parameter buffer), loss_curve_, loss_ (its last entry), n_iter_, t_,
    best_loss_ (None after lbfgs),
    validation_scores_, best_validation_score_, n_layers_, n_outputs_, out_activation_.
    """
    # What the tags say, for libraries that still read it (dask-ml's searches).
    _estimator_type = "classifier"

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *,
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
                 class_weight: None | str | dict | list = None,
                 warm_start: bool = False,
                 verbose: bool = False,
                 init="glorot",
                 backend: Literal["numba", "numpy"] = "numba"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.max_fun = max_fun
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.alpha = alpha
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.verbose = verbose
        self.init = init
        self.backend = backend

    _target_kinds = tuple(kind.name for kind in CLASSIFICATION_KINDS)

    def fit(self, X, y, sample_weight=None) -> "FastMLP":
        """Train for up to ``max_iter`` epochs (from the current weights with ``warm_start``).

        ``sample_weight`` (one finite, non-negative weight per row, not all zero) makes each
        batch's loss and gradient scikit-learn's weighted means: ``sum_i w_i * l_i /
        sum_i w_i``, the L2 penalty ``alpha / 2 * ||W||^2`` divided by ``sum_i w_i`` too; early
        stopping's held-out rows keep their weights and their accuracy is weighted. At
        ``batch_size=1`` a sample's weight cancels but in the penalty (``alpha / w_i``), so
        with ``alpha=0`` weights change nothing there, as in scikit-learn. A batch whose
        weights sum to zero (a zero-weight sample at ``batch_size=1``) is skipped: no step,
        no loss (scikit-learn divides by zero there)."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @stochastic_only
    def partial_fit(self, X, y, classes=None, sample_weight=None) -> "FastMLP":
        """One epoch over ``(X, y)``. ``classes`` (all labels that will ever be seen) is
        required on the first call unless y is a multi-label indicator matrix. Successive
        calls on the same data walk the same trajectory as ``fit`` with the same settings.
        ``sample_weight`` as in ``fit``. Only for the stochastic solvers ("sgd", "adam"), as
        in scikit-learn."""
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def _check_targets(self, y, n_samples: int) -> np.ndarray:
        return check_y(y, type(self).__name__, n_samples)

    def _new_targets(self, y, classes, incremental: bool, dtype):
        """The target matrix for a new network, its number of outputs and the fitted
        attributes that describe the targets."""
        kind, labels = self._target_kind_and_classes(y, classes if incremental else None,
                                                     incremental)
        n_outputs = 1 if kind == _targets.BINARY else len(labels)
        fitted = dict(classes_=labels, _kind=kind, _out_activation=_targets.output(kind).name)
        return _targets.encode(y, labels, kind, dtype), n_outputs, fitted

    def _more_targets(self, y, classes, incremental: bool) -> np.ndarray:
        """The target matrix for continued training, once y is shown to fit the network."""
        self._check_same_targets(y)
        if incremental:
            self._check_same_classes(classes)
        elif self._kind != _targets.MULTILABEL:
            labels = np.unique(y)
            if not np.array_equal(labels, self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes as "
                                 f"in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {labels}")
        return _targets.encode(y, self.classes_, self._kind, self._dtype)

    def _target_weights(self, y, targets: dict, incremental: bool):
        """The rows' class weights, scikit-learn's ``compute_sample_weight`` (for
        partial_fit, a dict's weights of the labels in ``classes_``, as ``SGDClassifier``
        computes them); None without ``class_weight``."""
        class_weight = self.class_weight
        multilabel = targets["_kind"] == _targets.MULTILABEL
        check_class_weight(class_weight, incremental, multilabel)
        if class_weight is None:
            return None
        # scikit-learn only when asked for: importing it costs about a second.
        from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
        if not incremental or multilabel:
            return compute_sample_weight(class_weight, y)
        classes = targets["classes_"]
        weights = compute_class_weight(class_weight, classes=classes, y=y)
        return weights[np.searchsorted(classes, y)]

    def _stratify(self, y, rows: np.ndarray) -> np.ndarray:
        """``rows`` grouped by class, each class's rows in their given order."""
        if self._kind == _targets.MULTILABEL:
            return rows
        return rows[np.argsort(np.searchsorted(self.classes_, y[rows]), kind="stable")]

    def _check_stratifiable(self, y) -> None:
        """Refuse early stopping's stratified split when a class has a single sample (it
        cannot be in both parts; scikit-learn's train_test_split refuses it too)."""
        if y.ndim == 2:
            return
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() < 2:
            raise ValueError("The least populated class in y has only 1 member, which is too "
                             "few. The minimum number of groups for any class cannot be less "
                             "than 2. (early_stopping splits each class between training and "
                             "validation.)")

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

    def _score_rows(self, X, y, sample_weight=None) -> float:
        """Accuracy on already-validated rows (the early-stopping score), weighted by
        ``sample_weight`` unless None."""
        P = self._forward(X, self._output_code)
        correct = _targets.decode(P, self.classes_, self._kind) == y
        return float(np.average(correct.all(axis=1) if correct.ndim == 2 else correct,
                                weights=sample_weight))

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier",
                    target_tags=TargetTags(required=True),
                    transformer_tags=None,
                    regressor_tags=None,
                    classifier_tags=ClassifierTags(multi_label=True),
                    input_tags=InputTags(allow_nan=False, sparse=True))

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

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (for multi-label, the
        probability of each label)."""
        P = self._outputs(X)
        if self._kind != _targets.BINARY:
            return P
        both = np.empty((P.shape[0], 2), dtype=P.dtype)
        np.subtract(1, P[:, 0], out=both[:, 0])
        both[:, 1] = P[:, 0]
        return both

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
