"""Input and parameter checks at the API boundary: every problem is named before work starts.

Messages follow scikit-learn's wording where it has one, so tools and users that know those
messages recognise them; the checks themselves are NumPy-only (see ``_base`` for why).
"""

import math
import numbers
import os
import warnings

import numpy as np

from .exceptions import DataConversionWarning
from .kernels.codes import BLAS_CHUNK_ROWS
from .kernels.registry import (ACTIVATION_BY_NAME, INIT_SCHEME_BY_NAME, LEARNING_RATE_SCHEDULES,
                               OPTIMIZER_BY_NAME)

FLOAT_DTYPES = (np.float64, np.float32)
# Memory assumed where the system does not report it: refuses only what no machine could train.
UNKNOWN_MEMORY = 1 << 40
# Numba types a read-only array (a memory map of joblib's, which scikit-learn's parallel
# searches hand their workers) apart from a writable one, so training on one would compile
# every kernel of the fit a second time: training copies read-only inputs up to this size
# (larger ones, whose copy would cost memory, compile their kernels once more).
READ_ONLY_COPY_BYTES = 64 << 20


def _is_sparse(X) -> bool:
    return type(X).__module__.startswith("scipy.sparse")


def feature_names(X):
    """Column names of a DataFrame-like X when all are strings, else None (scikit-learn's rule)."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(columns, "__iter__"):
        return None
    names = np.asarray(list(columns), dtype=object)
    if len(names) and all(isinstance(name, str) for name in names):
        return names
    return None


def check_X(X, name: str, dtype=None, *, return_abs_max: bool = False,
            writable: bool = False):
    """X as a C-contiguous 2-D float array with finite values.

    float32 stays float32 and float64 stays float64 (no copy when already C-contiguous);
    anything else numeric becomes float64, or ``dtype`` when given (prediction uses the
    network's dtype). With ``return_abs_max``, returns ``(X, largest |value| in X)``: the
    finiteness check finds it anyway, and training bounds the network's outputs with it.
    With ``writable`` (training), as kernel_array makes it.
    """
    if X is None:
        raise ValueError(f"{name} requires X to be passed, but X is None.")
    if _is_sparse(X):
        return _check_sparse_X(X, name, dtype, return_abs_max)
    if np.ma.is_masked(X):
        raise ValueError(f"{name} does not support masked arrays: fill the masked entries "
                         "(X.filled(value)) or drop their rows.")
    if _is_frame(X):
        array = _frame_to_array(X, name)
    else:
        try:
            array = np.asarray(X)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} could not convert X to a numeric array: {error}") from None
    if np.iscomplexobj(array):
        raise ValueError("Complex data not supported\n" + _head(array))
    if array.dtype.kind == "O":
        array = _object_to_float(array, name)
    elif array.dtype.kind not in "biuf":
        # Refused like scikit-learn does: text that happens to parse as numbers, records and
        # dates would otherwise become features silently.
        raise ValueError(f"{name} needs numeric features; X has dtype {array.dtype}. Convert "
                         "it to numbers explicitly.")
    if array.ndim != 2:
        if array.ndim < 2:
            raise ValueError(f"Expected a 2D array, got {'scalar' if array.ndim == 0 else '1D'}"
                             f" array instead. Reshape your data either using "
                             "array.reshape(-1, 1) if your data has a single feature or "
                             "array.reshape(1, -1) if it contains a single sample.")
        raise ValueError(f"Found array with dim {array.ndim}. {name} expected <= 2.")
    if array.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={array.shape}) while a minimum "
                         "of 1 is required.")
    if array.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={array.shape}) while a minimum "
                         "of 1 is required.")
    if dtype is None:
        native = array.dtype.newbyteorder("=")
        dtype = native if native in FLOAT_DTYPES else np.float64
    flags = array.flags
    if array.dtype != dtype or not flags.c_contiguous:
        # A value beyond the target dtype's range becomes inf, which the finiteness check names.
        with np.errstate(over="ignore"):
            array = np.ascontiguousarray(array, dtype=dtype)
    elif writable and not flags.writeable:
        array = _writable(array)
    if return_abs_max:
        return array, _finite_abs_max(array, "X")
    _check_finite(array, "X")
    return array


def kernel_array(array, dtype) -> np.ndarray:
    """``array`` as the training kernels take it: C-contiguous, of ``dtype``, and writable
    (see _writable)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    return array if array.flags.writeable else _writable(array)


def _writable(array) -> np.ndarray:
    """A writable copy of the read-only ``array``, or ``array`` itself when larger than
    READ_ONLY_COPY_BYTES."""
    return array.copy() if array.nbytes <= READ_ONLY_COPY_BYTES else array


def _check_sparse_X(X, name: str, dtype, return_abs_max: bool):
    """check_X for a SciPy sparse X: a CSR matrix or array (CSC and the other formats are
    converted, as scikit-learn converts them) of float32 or float64 (others become float64, or
    ``dtype``) with finite stored values, its column indices sorted and unique within each
    row (the sparse kernel's order of summation). The caller's X is never modified."""
    if X.ndim != 2:
        raise ValueError(f"Found sparse array with dim {X.ndim}. {name} expected 2.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"Found array with shape {X.shape} while a minimum of 1 sample and 1 "
                         "feature is required.")
    kind = X.dtype.kind
    if kind == "c":
        raise ValueError("Complex data not supported")
    if kind not in "biuf":
        raise ValueError(f"{name} needs numeric features; X has dtype {X.dtype}.")
    if dtype is None:
        native = X.dtype.newbyteorder("=")
        dtype = native if native in FLOAT_DTYPES else np.float64
    if X.format != "csr":
        X = X.tocsr()
    if X.dtype != dtype:
        with np.errstate(over="ignore"):
            X = X.astype(dtype)
    if not X.has_canonical_format:
        # A copy first: sum_duplicates works in place.
        X = X.copy()
        X.sum_duplicates()
    if return_abs_max:
        return X, _finite_abs_max(X.data, "X") if X.nnz else 0.0
    _check_finite(X.data, "X")
    return X


def _is_frame(X) -> bool:
    """Whether X is a DataFrame-like table with per-column dtypes (pandas, without importing
    it: fastmlp's cold start must not pay for pandas)."""
    return hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "to_numpy")


def _frame_to_array(X, name: str) -> np.ndarray:
    """A DataFrame's values as a NumPy array, refusing by name the columns that are not
    numbers: a categorical's codes or a text column would otherwise become magnitudes the
    network reads as meaningful, or fail with a message that names no column."""
    extension = False
    for column, dtype in zip(X.columns, X.dtypes):
        if str(dtype) == "category":
            raise ValueError(f"{name} needs numeric features; column {column!r} is categorical. "
                             "Encode it first, e.g. with sklearn.preprocessing.OneHotEncoder.")
        kind = getattr(dtype, "kind", "O")
        if kind == "O":
            try:
                np.asarray(X[column], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{name} needs numeric features; column {column!r} (dtype "
                                 f"{dtype}) holds values that are not numbers. Convert or "
                                 "encode it first.") from None
        elif kind not in "biuf":
            raise ValueError(f"{name} needs numeric features; column {column!r} has dtype "
                             f"{dtype}. Convert it to numbers explicitly.")
        extension |= not isinstance(dtype, np.dtype)
    if not extension:
        return np.asarray(X)
    # Nullable extension dtypes (Int64, Float64, boolean) mark missing values with pandas.NA,
    # which NumPy cannot convert: they become NaN, which the finiteness check names.
    array = X.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(array).any(axis=0)
    if missing.any():
        columns = [str(column) for column in np.asarray(X.columns)[missing]]
        raise ValueError(f"Input X contains NaN (missing values) in column(s) {columns}: "
                         "impute or drop them first.")
    return array


# Arrays up to this size are checked element by element: cheaper than the sum's error-state
# context for the rows of a small call (predict_proba of one row).
SMALL_ARRAY = 1024


def _check_finite(array, what: str) -> None:
    if array.size <= SMALL_ARRAY:
        if not np.isfinite(array).all():
            _refuse_non_finite(array, what)
        return
    # The sum is finite for almost every finite array and needs no temporary the size of X;
    # only when it is not do we look element by element.
    with np.errstate(over="ignore", invalid="ignore"):    # finite values may sum to inf
        total = array.sum()
    if not np.isfinite(total):
        _refuse_non_finite(array, what)


def _finite_abs_max(array, what: str) -> float:
    """The largest absolute value of a non-empty float array whose values must be finite.
    NaN propagates through max and min, and an infinity is one of them, so the two passes
    that give the range also decide finiteness: training needs the range, and a separate
    sum would be a third pass. (Where only the check is wanted, the sum is one pass.)"""
    high, low = float(array.max()), float(array.min())
    if not (math.isfinite(high) and math.isfinite(low)):
        _refuse_non_finite(array, what)
    return max(high, -low)


def _refuse_non_finite(array, what: str) -> None:
    """Raise a ValueError naming NaN or infinity in ``array``, if it holds any."""
    if np.isnan(array).any():
        raise ValueError(f"Input {what} contains NaN.")
    if np.isinf(array).any():
        raise ValueError(f"Input {what} contains infinity or a value too large for "
                         f"{array.dtype!r}.")


def _object_to_float(array, name: str) -> np.ndarray:
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError) as error:
        # Same class as NumPy's error (TypeError for e.g. a dict, ValueError for a
        # non-numeric string), as scikit-learn's check_array lets it through.
        raise type(error)(f"{name} needs numeric features; X has non-numeric values: "
                          f"{error}") from None
    except OverflowError as error:
        raise ValueError(f"{name} needs features that fit in float64; X has an integer too "
                         f"large: {error}") from None


def _head(array) -> str:
    return np.array2string(np.asarray(array).ravel()[:5])


def check_y(y, name: str, n_samples: int) -> np.ndarray:
    """y as a 1-D label array, or a 2-D array for a multi-label indicator matrix."""
    y = _y_array(y, name, n_samples, "1-D (labels) or 2-D (multi-label indicator)")
    if y.ndim == 2 and y.shape[1] == 0:
        raise ValueError(f"y has shape {y.shape}: a multi-label indicator needs at least one "
                         "label column.")
    check_labels(y, "y")
    return y


def check_continuous_y(y, name: str, n_samples: int) -> np.ndarray:
    """y as a float64 array of finite values: 1-D for one output, 2-D for several."""
    y = _y_array(y, name, n_samples, "1-D (one output) or 2-D (one column per output)")
    if y.ndim == 2 and y.shape[1] == 0:
        raise ValueError(f"y has shape {y.shape}: a regressor needs at least one output "
                         "column.")
    if y.dtype.kind == "c":
        raise ValueError(f"Complex data not supported; y has dtype {y.dtype}.")
    if y.dtype.kind not in "biuf" or y.dtype.hasobject:
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} needs numeric targets; y has non-numeric values: "
                             f"{error}") from None
    y = np.asarray(y, dtype=np.float64)
    _check_finite(y, "y")
    return y


def _y_array(y, name: str, n_samples: int, shapes: str) -> np.ndarray:
    """y as an array of ``n_samples`` rows, a column vector made 1-D (with scikit-learn's
    warning); ``shapes`` says which shapes are accepted, for the message."""
    if y is None:
        raise ValueError(f"{name} requires y to be passed, but the target y is None.")
    if _is_sparse(y):
        raise TypeError(f"{name} does not support a sparse y: pass a dense array.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please "
                      "change the shape of y to (n_samples, ), for example using ravel().",
                      DataConversionWarning, stacklevel=5)
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be {shapes}; got shape {y.shape}.")
    if y.shape[0] != n_samples:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                         f"[{n_samples}, {y.shape[0]}]")
    return y


def check_labels(labels: np.ndarray, what: str) -> None:
    """Refuse values that cannot be class labels: NaN, infinity or None; complex or
    non-integral numbers; strings mixed with numbers (they cannot be sorted into classes_)."""
    kind = labels.dtype.kind
    if kind == "c":
        raise ValueError(f"Complex labels are not supported; {what} has dtype {labels.dtype}.")
    if kind == "f":
        _check_finite(labels, what)
        if np.any(labels != np.round(labels)):
            raise ValueError(f"Unknown label type: continuous. FastMLP is a classifier: {what} "
                             "must hold class labels (ints, strings, ...), not real-valued "
                             "targets.")
    if kind != "O":
        return
    kinds = set()
    for value in labels.ravel():
        if value is None or isinstance(value, numbers.Real) and not math.isfinite(value):
            raise ValueError(f"Input {what} contains NaN, infinity or None.")
        kinds.add("str" if isinstance(value, str) else
                  "number" if isinstance(value, numbers.Real) else type(value).__name__)
    if len(kinds) > 1:
        raise TypeError(f"{what} mixes labels of types {sorted(kinds)}, which cannot be sorted "
                        "into classes_; use labels of one type (e.g. all str).")


def check_sample_weight(sample_weight, n_samples: int, what: str = "sample_weight"):
    """None, or the weights as a float array of n_samples finite, non-negative numbers
    (``what`` names them in errors)."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_samples,):
        raise ValueError(f"{what} has shape {weights.shape}, expected ({n_samples},).")
    _check_finite(weights, what)
    if (weights < 0).any():
        raise ValueError(f"{what} must not be negative.")
    return weights


def check_class_weight(class_weight, incremental: bool, multilabel: bool) -> None:
    """Refuse a ``class_weight`` that is not None, "balanced", a dict (a list of dicts, one
    per label, for ``multilabel`` targets), and "balanced" in partial_fit (``incremental``):
    one chunk's class counts are not the data's. (scikit-learn's compute_sample_weight
    checks the labels and weights themselves.)"""
    if class_weight is None or isinstance(class_weight, dict) and not multilabel:
        return
    if multilabel and isinstance(class_weight, list) and \
            all(isinstance(weights, dict) for weights in class_weight):
        return
    if not _is_str(class_weight, "balanced"):
        expected = "a list of dicts {0: weight, 1: weight}, one per label, for multi-label " \
            "targets" if multilabel else "a dict {label: weight}"
        raise ValueError(f"class_weight must be None, 'balanced' or {expected}; got "
                         f"{class_weight!r}.")
    if incremental:
        raise ValueError("class_weight='balanced' is not supported for partial_fit: one "
                         "call's data cannot give the classes' frequencies. Compute the "
                         "weights on (a large sample of) the whole data with sklearn.utils."
                         "class_weight.compute_class_weight('balanced', classes=classes, y=y) "
                         "and pass them as class_weight={label: weight}.")


def check_training_weights(weights, dtype):
    """None, or the training weights (float64, finite, non-negative: check_sample_weight's,
    possibly times class weights) in the network's ``dtype``, refused when they are unusable
    there: a weight that overflows the dtype, or weights that sum to zero (no sample to train
    on) or overflow when summed."""
    if weights is None:
        return None
    if weights.size and weights.max() > np.finfo(dtype).max:
        raise ValueError(f"sample_weight holds {weights.max():.3g}, too large for the "
                         f"network's {np.dtype(dtype).name}; scale the weights down.")
    weights = weights.astype(dtype)
    with np.errstate(over="ignore"):
        total = weights.sum()
    if not total > 0:
        raise ValueError("The sample weights (sample_weight times any class_weight) are all "
                         "zero in the network's precision: there is no sample to train on.")
    if not np.isfinite(total):
        raise ValueError(f"The sample weights sum to more than {np.dtype(dtype).name} holds; "
                         "scale them down.")
    return weights


def check_params(est) -> None:
    """Raise a ValueError/TypeError naming the first invalid hyper-parameter."""
    name = type(est).__name__

    def fail(param, expected):
        raise ValueError(f"The {param!r} parameter of {name} must be {expected}. "
                         f"Got {getattr(est, param)!r} instead.")

    sizes = hidden_sizes(est.hidden_layer_sizes)
    if not (isinstance(sizes, list) and all(_is_int(s) and s > 0 for s in sizes)):
        fail("hidden_layer_sizes", "a positive int or a sequence of positive ints")
    if not (isinstance(est.activation, str) and est.activation in ACTIVATION_BY_NAME):
        fail("activation", f"a str among {sorted(ACTIVATION_BY_NAME)}")
    batch = est.batch_size
    if not (batch == "full" if isinstance(batch, str)
            else _is_int(batch) and batch >= 1):
        fail("batch_size", "an int >= 1 or 'full'")
    if not (isinstance(est.solver, str) and est.solver in OPTIMIZER_BY_NAME):
        fail("solver", f"a str among {sorted(OPTIMIZER_BY_NAME)}")
    _real(est, "learning_rate_init", fail, low=0, low_open=True)
    if not (isinstance(est.learning_rate, str) and est.learning_rate in LEARNING_RATE_SCHEDULES):
        fail("learning_rate", f"a str among {sorted(LEARNING_RATE_SCHEDULES)}")
    _real(est, "power_t", fail, low=0)
    for param in ("max_iter", "max_fun"):
        value = getattr(est, param)
        if not (_is_int(value) and value >= 1):
            fail(param, "an int >= 1")
    patience = est.n_iter_no_change
    if not (_is_int(patience) and patience >= 1 or _is_real(patience) and patience == np.inf):
        fail("n_iter_no_change", "an int >= 1 or numpy.inf (never stop early)")
    if not (isinstance(est.shuffle, (bool, np.bool_)) or _is_str(est.shuffle, "replacement")):
        fail("shuffle", "True, False or 'replacement'")
    _real(est, "momentum", fail, low=0, high=1, high_open=True)
    if not isinstance(est.nesterovs_momentum, (bool, np.bool_)):
        fail("nesterovs_momentum", "a bool")
    # Adam's (scikit-learn's ranges): a beta of 1 would never forget, and 1 - beta_1**t
    # would divide by zero.
    _real(est, "beta_1", fail, low=0, high=1, high_open=True)
    _real(est, "beta_2", fail, low=0, high=1, high_open=True)
    _real(est, "epsilon", fail, low=0, low_open=True)
    _real(est, "alpha", fail, low=0)
    _real(est, "tol", fail, low=0)
    for flag in ("early_stopping", "warm_start"):
        if not isinstance(getattr(est, flag), (bool, np.bool_)):
            fail(flag, "a bool")
    _real(est, "validation_fraction", fail, low=0, high=1, low_open=True, high_open=True)
    if not isinstance(est.verbose, (bool, np.bool_, numbers.Integral)):
        fail("verbose", "a bool or an int")
    if not (_is_str(est.backend, "numba") or _is_str(est.backend, "numpy")):
        fail("backend", "'numba' or 'numpy'")
    init = est.init
    init_choices = (f"a str among {sorted(INIT_SCHEME_BY_NAME)}, a number (constant weights) "
                    "or a (coefs, intercepts) pair")
    if isinstance(init, str):
        if init not in INIT_SCHEME_BY_NAME:
            fail("init", init_choices)
    elif _is_real(init):
        if not math.isfinite(init):
            fail("init", "a finite number when it is a constant")
    elif not (isinstance(init, (tuple, list)) and len(init) == 2):
        fail("init", init_choices)
    rs = est.random_state
    if not (rs is None or isinstance(rs, (numbers.Integral, np.random.Generator,
                                          np.random.RandomState, np.random.SeedSequence))
            and not isinstance(rs, bool)):
        fail("random_state", "None, an int, a numpy Generator, RandomState or SeedSequence")
    if isinstance(rs, numbers.Integral) and not 0 <= rs < 2**32:
        fail("random_state", "an int in [0, 2**32)")


def check_network_memory(sizes: list[int], itemsize: int, n_samples: int, batch_size) -> None:
    """Raise a ValueError naming ``hidden_layer_sizes`` when training the network of layer
    widths ``sizes`` (inputs first, outputs last) in floats of ``itemsize`` bytes on
    ``n_samples`` rows would need more memory than the machine has. Counted in Python ints,
    before anything is allocated, so no width is too large to be named."""
    weights = [fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    n_units = sum(sizes[1:])
    n_params = sum(weights) + n_units
    rows = min(n_samples if batch_size == "full" else batch_size, n_samples,
               BLAS_CHUNK_ROWS)
    # The float64 initial draw, then params, velocity, gradient, the checkpoint's two copies
    # and early stopping's best weights; and the mini-batch kernel's work space.
    needed = n_params * (8 + 6 * itemsize) + \
        itemsize * (rows * (sizes[0] + 2 * n_units) + n_units + sum(weights[1:]) + max(weights))
    available = physical_memory()
    if needed > available:
        raise ValueError(f"hidden_layer_sizes={tuple(sizes[1:-1])!r} makes a network of "
                         f"{n_params:,} parameters; training it needs about "
                         f"{human_bytes(needed)} of memory, more than this machine's "
                         f"{human_bytes(available)}.")


def physical_memory() -> int:
    """Bytes of RAM, or UNKNOWN_MEMORY where the system does not say (Windows)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return UNKNOWN_MEMORY


def human_bytes(n: int) -> str:
    """A byte count in binary units: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n} B" if unit == "B" else f"{n:.3g} {unit}" if n < 1000 else \
                f"{n:.0f} {unit}"
        n /= 1024


def hidden_sizes(value):
    """``hidden_layer_sizes`` as a list when it is one int (any integer type) or a collection;
    anything else is returned as it is, for check_params to reject. An iterator (e.g. a
    generator) is refused: the first read would exhaust it and later fits would silently
    build a network without hidden layers."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [value]
    return list(value) if hasattr(value, "__iter__") and iter(value) is not value else value


def _is_str(value, text: str) -> bool:
    """``value == text`` for any value, also one (like an array) whose ``==`` is not a bool."""
    return isinstance(value, str) and value == text


# The exact built-in types first: the numbers ABCs' isinstance checks were a quarter of a
# small partial_fit's time.
def _is_int(value) -> bool:
    """An integer of any type but bool."""
    return type(value) is int or isinstance(value, numbers.Integral) and \
        not isinstance(value, bool)


def _is_real(value) -> bool:
    """A real number of any type but bool."""
    return type(value) is float or type(value) is int or \
        isinstance(value, numbers.Real) and not isinstance(value, bool)


def _real(est, param, fail, low=None, high=None, low_open=False, high_open=False):
    value = getattr(est, param)
    ok = _is_real(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
        hi = "inf)" if high is None else f"{high}" + (")" if high_open else "]")
        fail(param, f"a finite real number in the range {lo}{hi}")

