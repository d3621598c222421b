"""Model files: a fitted fastmlp estimator as arrays plus JSON metadata in one zip, never pickle.

The file is an ``.npz``-style zip archive (``numpy.load`` opens it too): one ``.npy`` entry per
array and a ``metadata.json`` entry::

    metadata.json          format name and version, fastmlp version, get_params(), fitted
                           scalars (n_iter_, t_, best_loss_, ...), the RNG state
    params.npy             the flat parameter buffer (float32 or float64)
    velocity.npy           the momentum buffer, same layout (continued training)
    layout.npy             the int64 offsets table of the buffer
    classes.npy            labels as numbers or a unicode array (never objects)
    loss_curve.npy         float64, one entry per epoch trained
    validation_scores.npy  float64, present only with early stopping
    feature_names.npy      unicode, present only when fitted with feature names
    init_params.npy        float64, present only for init=(coefs, intercepts): those arrays,
                           laid out like params.npy

Reading uses ``allow_pickle=False`` semantics throughout (object arrays are refused from their
header), so loading a file never executes code from it. Every field is checked against the
others before an estimator is built, and ``save`` runs the same checks before it writes, so
every file ``save`` writes loads again.
"""

import contextlib
import json
import math
import os
import secrets
import zipfile
import zlib

import numpy as np

from ._state import OptimizerState, TrainingState
from ._version import __version__
from ._validation import check_params, hidden_sizes
from ._base import ESTIMATORS, BaseMLP
from .kernels.codes import FAN_IN, FAN_OUT
from .kernels.layout import aligned_copy, make_layout, unpack
from .kernels.registry import OPTIMIZER_BY_NAME, OPTIMIZERS, TARGET_KIND_BY_NAME

FORMAT = "fastmlp-model"
FORMAT_VERSION = 1
METADATA = "metadata.json"
KINDS = tuple(TARGET_KIND_BY_NAME)
FLOAT_DTYPES = ("float32", "float64")
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
# dtype kinds each entry may hold: numbers, or text for labels and names; never objects.
ENTRY_KINDS = {"params": "f", "layout": "i", "classes": "biufUS", "loss_curve": "f",
               "validation_scores": "f", "feature_names": "U", "init_params": "f",
               # every optimizer's state buffers, laid out like params
               **{buffer: "f" for optimizer in OPTIMIZERS for buffer in optimizer.buffers}}
REQUIRED = ("params", "layout", "classes", "loss_curve")


class _Invalid(ValueError):
    """A problem with a model's contents; the caller names the file."""


# ------------------------------------------------------------------------------ public API

def save(estimator: BaseMLP, path: str | os.PathLike) -> None:
    """Write the fitted ``estimator`` to ``path`` atomically.

    The file is written to a temporary file in the same directory, flushed to disk and then
    renamed over ``path``: a failure at any point leaves an existing file at ``path`` intact.
    """
    if not isinstance(estimator, BaseMLP):
        raise TypeError(f"save expects a fastmlp estimator, got {type(estimator).__name__}.")
    metadata, arrays = _describe(estimator)
    try:
        _check_model(metadata, arrays)
    except _Invalid as problem:
        raise ValueError(f"Cannot save this model: {problem}") from None
    _write_atomically(os.fspath(path), lambda file: _write_zip(file, metadata, arrays))


def load(path: str | os.PathLike) -> BaseMLP:
    """Read a model written by :func:`save` (or ``FastMLP.save``).

    Raises ``ValueError`` naming the problem for a truncated, corrupt or foreign file, or one
    written by a newer format version. Never unpickles or executes anything from the file.
    """
    path = os.fspath(path)
    try:
        metadata, arrays = _read_zip(path)
        _check_model(metadata, arrays)
        return _build(metadata, arrays)
    except _Invalid as problem:
        raise ValueError(f"{path} is not a valid fastmlp model file: {problem}") from None


# ------------------------------------------------------------------------------ estimator -> file

def _describe(est: BaseMLP) -> tuple[dict, dict]:
    """The metadata dict and the arrays that together are the file's contents."""
    state = est.get_training_state()
    arrays = {"params": state.params, "layout": state.layout, **state.optimizer.buffers,
              "loss_curve": np.asarray(est.loss_curve_, dtype=np.float64)}
    arrays["classes"], classes_are_objects = _storable_labels(est.classes_)
    if est.validation_scores_ is not None:
        arrays["validation_scores"] = np.asarray(est.validation_scores_, dtype=np.float64)
    names = getattr(est, "feature_names_in_", None)
    if names is not None:
        arrays["feature_names"] = np.asarray(names, dtype=str)
    params = est.get_params()
    if isinstance(params["init"], (tuple, list)):
        # Explicit starting arrays are not needed to predict, but keeping them keeps
        # get_params() whole, so a loaded model refits exactly like the original.
        init = np.zeros_like(state.params, dtype=np.float64)
        coefs, intercepts = unpack(init, state.layout)
        given_coefs, given_intercepts = params["init"]
        for mine, given in zip(coefs + intercepts, [*given_coefs, *given_intercepts]):
            mine[...] = given
        arrays["init_params"] = init
        params["init"] = {"arrays": "init_params.npy"}
    # An int stays an int; a sequence is stored as a list and read back as a tuple.
    sizes = params["hidden_layer_sizes"]
    params["hidden_layer_sizes"] = int(sizes) if isinstance(sizes, (int, np.integer)) else \
        [int(size) for size in sizes]
    params["random_state"] = _encode_random_state(params["random_state"], state.rng)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastmlp_version": __version__,
        "estimator": type(est).__name__,
        "params": params,
        "fitted": {
            "kind": state.target_kind,
            "dtype": state.params.dtype.name,
            "n_features_in_": int(est.n_features_in_),
            "n_iter_": int(est.n_iter_),
            "t_": int(est.t_),
            "no_improvement_count": int(state.no_improvement_count),
            "optimizer": state.optimizer.name,
            "optimizer_steps": int(state.optimizer.steps),
            "best_loss_": _encode_float(est.best_loss_),
            "best_validation_score_": _encode_float(est.best_validation_score_),
            "classes_are_objects": classes_are_objects,
        },
        "rng_state": _encode_arrays(state.rng.bit_generator.state),
    }
    return metadata, arrays


def _storable_labels(classes: np.ndarray) -> tuple[np.ndarray, bool]:
    """``classes_`` as an array without objects, and whether it was an object array (labels
    from a DataFrame column) so loading gives back the same dtype."""
    if classes.dtype.kind != "O":
        return classes, False
    values = classes.tolist()
    if all(isinstance(value, str) for value in values):
        return np.array(values, dtype=str), True
    if all(isinstance(value, (int, np.integer)) and not isinstance(value, bool)
           for value in values):
        return np.array(values, dtype=np.int64), True
    kinds = sorted({type(value).__name__ for value in values})
    raise ValueError(f"Cannot save class labels of type {', '.join(kinds)} without pickle; "
                     "use str or int labels.")


def _encode_float(value) -> float | str | None:
    """JSON has no infinity: +-inf become strings (best_loss_ is inf before the first epoch)."""
    if value is None or math.isfinite(value):
        return None if value is None else float(value)
    return "inf" if value > 0 else "-inf"


def _decode_float(value, name: str) -> float | None:
    if value is None:
        return None
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise _Invalid(f"metadata field {name!r} must be a number, got {value!r}.")


def _encode_random_state(random_state, rng: np.random.Generator):
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return None if random_state is None else int(random_state)
    if isinstance(random_state, np.random.Generator):
        # The estimator draws from this very Generator; on load it becomes the restored one.
        return {"kind": "Generator"}
    if isinstance(random_state, np.random.RandomState):
        return {"kind": "RandomState", "state": _encode_arrays(random_state.get_state(legacy=False))}
    if isinstance(random_state, np.random.SeedSequence):
        return {"kind": "SeedSequence", "state": _encode_arrays(random_state.state)}
    raise ValueError(f"Cannot save random_state={random_state!r}.")


def _encode_arrays(value):
    """A bit generator state as JSON: its integer arrays become tagged lists."""
    if isinstance(value, dict):
        return {key: _encode_arrays(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_arrays(item) for item in value]
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": value.dtype.name}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_arrays(value):
    if isinstance(value, dict):
        if set(value) == {"ndarray", "dtype"}:
            if value["dtype"] not in ("uint32", "uint64", "int64"):
                raise _Invalid(f"the RNG state holds an array of dtype {value['dtype']!r}.")
            return np.array(value["ndarray"], dtype=value["dtype"])
        return {key: _decode_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_arrays(item) for item in value]
    return value


def _write_zip(file, metadata: dict, arrays: dict) -> None:
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA, json.dumps(metadata, indent=1, allow_nan=False,
                                              default=_json_scalar))
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.ascontiguousarray(array),
                                          allow_pickle=False)


def _json_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_atomically(path: str, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync, then rename it over
    ``path``; on any failure the temporary file is removed and ``path`` is untouched."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory,
                             f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with mode 0o666 lets the umask decide the permissions, as for any new file
        # (mkstemp would make the model readable by its owner only).
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(descriptor, "wb") as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as error:
        if error.filename != temporary:
            raise
        # The user named path, not our temporary file: say what failed in their terms.
        raise type(error)(error.errno, error.strerror, path) from None
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX; other systems cannot open a directory)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ------------------------------------------------------------------------------ file -> estimator

def _read_zip(path: str) -> tuple[dict, dict]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if METADATA not in names:
                raise _Invalid(f"it has no {METADATA} entry (not written by fastmlp).")
            metadata = _parse_metadata(archive.read(METADATA))
            arrays = {name: _read_npy(archive, f"{name}.npy", ENTRY_KINDS[name])
                      for name in ENTRY_KINDS if f"{name}.npy" in names}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError) as error:
        # RuntimeError: an encrypted entry; NotImplementedError: an unknown compression.
        raise _Invalid(f"it is not a readable zip archive (truncated or corrupt?): {error}") \
            from None
    missing = [name for name in REQUIRED if name not in arrays]
    if missing:
        raise _Invalid(f"entries {', '.join(f'{m}.npy' for m in missing)} are missing.")
    return metadata, arrays


def _parse_metadata(raw: bytes) -> dict:
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Invalid(f"{METADATA} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise _Invalid(f"{METADATA} does not describe a {FORMAT!r} file.")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Invalid(f"format_version {version!r} is not a positive integer.")
    if version > FORMAT_VERSION:
        raise _Invalid(f"it uses format version {version}, newer than this fastmlp "
                       f"({__version__}) reads (up to {FORMAT_VERSION}); upgrade fastmlp "
                       f"(the file was written by fastmlp {metadata.get('fastmlp_version')}).")
    if metadata.get("estimator") not in ESTIMATORS:
        raise _Invalid(f"it holds a {metadata.get('estimator')!r}, not one of "
                       f"{sorted(ESTIMATORS)}.")
    for section in ("params", "fitted", "rng_state"):
        if not isinstance(metadata.get(section), dict):
            raise _Invalid(f"{METADATA} lacks its {section!r} section.")
    return metadata


def _read_npy(archive: zipfile.ZipFile, name: str, kinds: str) -> np.ndarray:
    """One ``.npy`` entry, its header checked before any data is read: only numeric or text
    dtypes of the expected kinds, so no object array (pickle) is ever unpacked."""
    with archive.open(name) as entry:
        try:
            version = np.lib.format.read_magic(entry)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(entry)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(entry)
            else:
                raise _Invalid(f"{name} uses .npy version {version}, which fastmlp does not "
                               "write.")
        except ValueError as error:
            raise _Invalid(f"{name} is not a .npy array: {error}") from None
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in kinds:
            raise _Invalid(f"{name} has dtype {dtype}, expected one of kind {kinds!r}.")
        size = math.prod(shape) * dtype.itemsize
        data = entry.read(size + 1)
    if len(data) != size:
        raise _Invalid(f"{name} holds {len(data)} bytes of data, its header promises {size} "
                       "(truncated or corrupt).")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    # A writable, native-endian, C-ordered copy: training updates params in place.
    return np.ascontiguousarray(array.astype(dtype.newbyteorder("=")))


def _check_model(metadata: dict, arrays: dict) -> None:
    """Every field consistent with the others, or ``_Invalid`` naming the first that is not."""
    fitted = metadata["fitted"]
    kind = fitted.get("kind")
    if kind not in KINDS:
        raise _Invalid(f"target kind {kind!r} is not one of {KINDS}.")
    dtype = fitted.get("dtype")
    if dtype not in FLOAT_DTYPES:
        raise _Invalid(f"dtype {dtype!r} is not float32 or float64.")
    optimizer = fitted.get("optimizer", "sgd")     # files before optimizer names were sgd's
    if optimizer not in OPTIMIZER_BY_NAME:
        raise _Invalid(f"optimizer {optimizer!r} is not one of {tuple(OPTIMIZER_BY_NAME)}.")
    for name in ("n_features_in_", "n_iter_", "t_", "no_improvement_count",
                 "optimizer_steps"):
        value = fitted.get(name, 0) if name == "optimizer_steps" else fitted.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _Invalid(f"metadata field {name!r} must be a non-negative integer, got "
                           f"{value!r}.")
    for name in ("best_loss_", "best_validation_score_"):
        _decode_float(fitted.get(name), name)
    sizes = _check_layout(arrays["layout"])
    n_params = int(make_layout(sizes)[1])
    _check_vector(arrays, "params", n_params, dtype)
    for buffer in OPTIMIZER_BY_NAME[optimizer].buffers:
        if buffer not in arrays:
            raise _Invalid(f"entry {buffer}.npy (the {optimizer} optimizer's state) is missing.")
        _check_vector(arrays, buffer, n_params, dtype)
    if "init_params" in arrays:
        _check_vector(arrays, "init_params", n_params, "float64")
    _check_vector(arrays, "loss_curve", fitted["n_iter_"], "float64")
    if "validation_scores" in arrays:
        _check_vector(arrays, "validation_scores", len(arrays["validation_scores"]), "float64")
    if sizes[0] != fitted["n_features_in_"]:
        raise _Invalid(f"the network has {sizes[0]} inputs but n_features_in_ is "
                       f"{fitted['n_features_in_']}.")
    hidden = metadata["params"].get("hidden_layer_sizes")
    if not isinstance(hidden, (int, list)) or hidden_sizes(hidden) != sizes[1:-1]:
        raise _Invalid(f"hidden_layer_sizes {hidden!r} does not match the stored layers "
                       f"{sizes[1:-1]}.")
    _check_classes(arrays["classes"], kind, sizes[-1])
    names = arrays.get("feature_names")
    if names is not None and names.shape != (sizes[0],):
        raise _Invalid(f"feature_names has shape {names.shape}, expected ({sizes[0]},).")


def _check_layout(layout: np.ndarray) -> list[int]:
    """The layer widths the offsets table describes, if it is the table make_layout builds."""
    if layout.dtype != np.int64 or layout.ndim != 2 or layout.shape[0] < 1:
        raise _Invalid(f"layout must be a 2-D int64 table with a row per layer; got "
                       f"{layout.dtype} of shape {layout.shape}.")
    expected_columns = make_layout([1, 1])[0].shape[1]
    if layout.shape[1] != expected_columns or (layout[:, [FAN_IN, FAN_OUT]] < 1).any():
        raise _Invalid(f"layout has shape {layout.shape} or a layer width below 1.")
    sizes = [int(layout[0, FAN_IN]), *(int(width) for width in layout[:, FAN_OUT])]
    if not np.array_equal(layout, make_layout(sizes)[0]):
        raise _Invalid("the layout table's offsets are inconsistent with its layer widths.")
    return sizes


def _check_vector(arrays: dict, name: str, length: int, dtype: str) -> None:
    array = arrays[name]
    if array.dtype.name != dtype or array.shape != (length,):
        raise _Invalid(f"{name} is {array.dtype} of shape {array.shape}, expected {dtype} of "
                       f"shape ({length},).")
    if not np.isfinite(array).all():
        raise _Invalid(f"{name} contains NaN or infinite values.")


def _check_classes(classes: np.ndarray, kind: str, n_outputs: int) -> None:
    if classes.ndim != 1:
        raise _Invalid(f"classes has shape {classes.shape}, expected 1-D.")
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise _Invalid("classes contains NaN or infinite labels.")
    # Prediction maps outputs to labels by position and encodes y with searchsorted: the
    # labels must be sorted and distinct, and their number must match the output layer.
    if not np.array_equal(np.unique(classes), classes):
        raise _Invalid("classes must be sorted and distinct.")
    if kind == "binary":
        fits = n_outputs == 1 and len(classes) == 2
    elif kind == "multiclass":
        fits = n_outputs >= 3 and len(classes) == n_outputs
    else:
        fits = len(classes) == n_outputs
    if not fits:
        raise _Invalid(f"{len(classes)} classes do not fit a {kind} network with {n_outputs} "
                       "output(s).")


def _build(metadata: dict, arrays: dict) -> BaseMLP:
    estimator = ESTIMATORS[metadata["estimator"]]
    params = dict(metadata["params"])
    unknown = set(params) - set(estimator._get_param_names())
    if unknown:
        raise _Invalid(f"unknown parameter(s) {sorted(unknown)} (written by a newer fastmlp?).")
    # A parameter left out would silently take its default and change the model's answers.
    missing = set(estimator._get_param_names()) - set(params)
    if missing:
        raise _Invalid(f"parameter(s) {sorted(missing)} missing from the metadata.")
    layout = arrays["layout"]
    rng = _restore_generator(metadata["rng_state"])
    if isinstance(params["hidden_layer_sizes"], list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    params["random_state"] = _decode_random_state(params.get("random_state"), rng)
    if isinstance(params.get("init"), dict):
        if "init_params" not in arrays:
            raise _Invalid("init names explicit arrays but init_params.npy is missing.")
        params["init"] = unpack(arrays["init_params"], layout)
    est = estimator(**params)
    try:
        check_params(est)
    except (TypeError, ValueError) as error:
        raise _Invalid(str(error)) from None
    fitted = metadata["fitted"]
    est.classes_ = arrays["classes"].astype(object) if fitted.get("classes_are_objects") \
        else arrays["classes"]
    est.n_features_in_ = fitted["n_features_in_"]
    if "feature_names" in arrays:
        est.feature_names_in_ = arrays["feature_names"].astype(object)
    optimizer = fitted.get("optimizer", "sgd")
    buffers = {name: arrays[name] for name in OPTIMIZER_BY_NAME[optimizer].buffers}
    est.set_training_state(TrainingState(
        aligned_copy(arrays["params"]), layout,
        OptimizerState(optimizer, buffers, fitted.get("optimizer_steps", 0)), rng,
        fitted["kind"], fitted["no_improvement_count"]))
    est.loss_curve_ = arrays["loss_curve"].tolist()
    est.n_iter_ = fitted["n_iter_"]
    est.t_ = fitted["t_"]
    est.best_loss_ = _decode_float(fitted["best_loss_"], "best_loss_")
    est.validation_scores_ = arrays["validation_scores"].tolist() \
        if "validation_scores" in arrays else None
    est.best_validation_score_ = _decode_float(fitted["best_validation_score_"],
                                               "best_validation_score_")
    return est


def _restore_generator(state: dict) -> np.random.Generator:
    name = state.get("bit_generator")
    if name not in BIT_GENERATORS:
        raise _Invalid(f"unknown bit generator {name!r} in the RNG state.")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = _decode_arrays(state)
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise _Invalid(f"the RNG state is invalid: {error}") from None
    return np.random.Generator(bit_generator)


def _decode_random_state(value, rng: np.random.Generator):
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    kind = value.get("kind") if isinstance(value, dict) else None
    try:
        if kind == "Generator":
            return rng
        if kind == "RandomState":
            random_state = np.random.RandomState()
            random_state.set_state(_decode_arrays(value["state"]))
            return random_state
        if kind == "SeedSequence":
            return np.random.SeedSequence(**value["state"])
    except (TypeError, ValueError, KeyError) as error:
        raise _Invalid(f"random_state is invalid: {error}") from None
    raise _Invalid(f"random_state {value!r} is not an int, None or a known generator.")
