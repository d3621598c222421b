"""Model files: a fitted estimator as arrays plus JSON metadata in one zip, never pickle.

The file is an ``.npz``-style zip archive (``numpy.load`` opens it too): one ``.npy`` entry per
array and a ``metadata.json`` entry::

    metadata.json          format name and version, fastmlp version, the estimator's class
                           name, get_params(), fitted scalars (n_iter_, t_, best_loss_, the
                           optimizer's name, step count and current learning rate, ...), the
                           RNG state
    params.npy             the flat parameter buffer (float32 or float64)
    velocity.npy, ...      the optimizer's state buffers, one entry each, laid out like
                           params.npy (SGD's: velocity, its momentum velocity; Adam's: m and
                           v, its moments)
    layout.npy             the int64 offsets table of the buffer
    classes.npy            a classifier's labels as numbers or a unicode array (never objects)
    loss_curve.npy         float64, one entry per epoch trained
    validation_scores.npy  float64, present only with early stopping
    feature_names.npy      unicode, present only when fitted with feature names
    init_params.npy        float64, present only for init=(coefs, intercepts): those arrays,
                           laid out like params.npy

``metadata.json`` also records ``sha256``, a checksum of the whole model (the metadata without
it, and every array's dtype, shape and values): a bit flipped anywhere, or a value edited by
hand, is refused instead of loading as a different model. Files written before the checksum
existed load without it.

Reading never trusts a size the file declares. ``params.npy`` is stored uncompressed, so the
model's size is bounded by the file's: the entries a file of F bytes declares may hold at most
``MAX_INFLATION * F + INFLATION_ALLOWANCE`` bytes, checked from the zip directory before
anything is read (a zip bomb is refused there). ``metadata.json`` may hold at most
``METADATA_MAX_BYTES``. From the metadata and the layout table the loader decides each
entry's dtype and shape, and checks every ``.npy`` header and the entry's declared size
against them before reading a byte of its data; object arrays (pickle) are refused from their
header, so loading a file never executes code from it. Every field is then checked against
the others before an estimator is built, and ``save`` runs the same checks before it writes,
so every file ``save`` writes loads again.
"""

import collections
import contextlib
import hashlib
import inspect
import json
import math
import os
import secrets
import struct
import time
import tokenize
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from ._version import __version__
from ._validation import check_params, hidden_sizes, human_bytes
from ._base import ESTIMATORS, BaseMLP
from ._state import OptimizerState, TrainingState
from .kernels.codes import FAN_IN, FAN_OUT, LAYOUT_COLUMNS
from .kernels.layout import aligned_copy, make_layout, unpack
from .kernels.registry import (CLASSIFICATION_KINDS, OPTIMIZER_BY_NAME, OPTIMIZERS,
                               TARGET_KIND_BY_NAME)

FORMAT = "fastmlp-model"
FORMAT_VERSION = 1
METADATA = "metadata.json"
CLASSIFICATION_NAMES = tuple(kind.name for kind in CLASSIFICATION_KINDS)
FLOAT_DTYPES = ("float32", "float64")
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}
# Parameters files written before them lack: their defaults are how those models trained.
PARAMS_ADDED_LATER = ("solver", "learning_rate", "power_t", "max_fun", "class_weight", "beta_1",
                      "beta_2", "epsilon")
# Every optimizer's state buffers (laid out like params) are entries too.
OPTIMIZER_BUFFERS = tuple(buffer for optimizer in OPTIMIZERS for buffer in optimizer.buffers)
ENTRIES = ("params", *OPTIMIZER_BUFFERS, "layout", "classes", "loss_curve",
           "validation_scores", "feature_names", "init_params")
# Entries of the parameter buffer's size that are often mostly zeros (no momentum, sparse
# starting arrays) are compressed; the rest, params.npy first, are stored as they are, so a
# model can declare no more than its file holds (see MAX_INFLATION).
COMPRESSED = (*OPTIMIZER_BUFFERS, "init_params")
DIGEST = "sha256"
# A real metadata.json is 2-25 KiB (two Mersenne Twister states at most); parsing hostile
# JSON takes up to ~25 times its size in Python objects.
METADATA_MAX_BYTES = 1 << 18
# The entries a file of F bytes declares may hold MAX_INFLATION * F + INFLATION_ALLOWANCE bytes:
# a file save writes declares at most 5 F (params stored, Adam's two moments and float64
# init_params no larger); files from before params was stored declare 1-2 F, or up to 28 F for a
# model whose weights are all equal (within the allowance when small); deflate could claim
# 1032 F.
MAX_INFLATION = 8
INFLATION_ALLOWANCE = 1 << 20
# numpy's SeedSequence pools 4 words by default; a file could ask for gigabytes.
MAX_SEED_POOL_SIZE = 1024
# Entries are read in pieces of this size into their array, never as one bytes object.
READ_CHUNK_BYTES = 1 << 16


class _Invalid(ValueError):
    """A problem with a model's contents; the caller names the file."""


class _Expected(NamedTuple):
    """What an entry must hold: the dtype named ``dtype`` (in either byte order), or when it is
    None any non-object dtype of one of ``kinds`` (``what`` in messages); shape ``shape``, or
    with ``at_most`` a 1-D length up to ``shape[0]``."""
    dtype: str | None
    shape: tuple
    kinds: str = ""
    what: str = ""
    required: bool = True
    at_most: bool = False
    reason: str = ""


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
        text = _metadata_text(metadata, arrays)
    except _Invalid as problem:
        raise ValueError(f"Cannot save this model: {problem}") from None
    _write_atomically(os.fspath(path), lambda file: _write_zip(file, text, arrays))


def load(path: str | os.PathLike) -> BaseMLP:
    """Read a model written by :func:`save` (or ``FastMLP.save``).

    Raises ``ValueError`` naming the problem for a truncated, corrupt, edited or foreign file,
    or one written by a newer format version. Never unpickles or executes anything from the
    file, and reads no more than its size allows (see the module's docstring).
    """
    path = os.fspath(path)
    try:
        metadata, arrays = _read_zip(path)
        _check_digest(metadata, arrays)
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
    classes_are_objects = False
    if hasattr(est, "classes_"):
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
    if "class_weight" in params:
        params["class_weight"] = _encode_class_weight(params["class_weight"])
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastmlp_version": __version__,
        "estimator": type(est).__name__,
        "params": params,
        "fitted": {
            "kind": state.target_kind,
            "out_activation": state.out_activation,
            "dtype": state.params.dtype.name,
            "n_features_in_": int(est.n_features_in_),
            "n_iter_": int(est.n_iter_),
            "n_epochs": len(est.loss_curve_),
            "t_": int(est.t_),
            "no_improvement_count": int(state.no_improvement_count),
            "optimizer": state.optimizer.name,
            "optimizer_steps": int(state.optimizer.steps),
            "optimizer_learning_rate": float(state.optimizer.learning_rate),
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


def _encode_class_weight(class_weight):
    """JSON keys are strings only, and labels need not be: a dict is stored as its list of
    ``[label, weight]`` pairs, a list of dicts (multi-label) as a list of those."""
    if isinstance(class_weight, dict):
        return {"pairs": [[label, weight] for label, weight in class_weight.items()]}
    if isinstance(class_weight, list):
        return {"per_label": [_encode_class_weight(weights)["pairs"]
                              for weights in class_weight]}
    return class_weight


def _decode_class_weight(value):
    if value is None or value == "balanced":
        return value
    if isinstance(value, dict) and list(value) == ["pairs"]:
        return _decode_class_weights(value["pairs"])
    if isinstance(value, dict) and list(value) == ["per_label"] and \
            isinstance(value["per_label"], list):
        return [_decode_class_weights(pairs) for pairs in value["per_label"]]
    raise _Invalid(f"class_weight {value!r} is not None, 'balanced' or stored weights.")


def _decode_class_weights(pairs) -> dict:
    """A class_weight dict from its stored ``[label, weight]`` pairs."""
    scalars = (str, int, float)
    if not (isinstance(pairs, list) and all(
            isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], scalars)
            and isinstance(pair[1], (int, float)) and not isinstance(pair[1], bool)
            for pair in pairs)):
        raise _Invalid(f"class_weight's stored weights {pairs!r} are not [label, weight] "
                       "pairs.")
    return {label: weight for label, weight in pairs}


def _encode_random_state(random_state, rng: np.random.Generator):
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return None if random_state is None else int(random_state)
    if isinstance(random_state, np.random.Generator):
        # The estimator draws from this very Generator; on load it becomes the restored one.
        return {"kind": "Generator"}
    if isinstance(random_state, np.random.RandomState):
        state = random_state.get_state(legacy=False)
        return {"kind": "RandomState", "state": _encode_arrays(state)}
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


def _metadata_text(metadata: dict, arrays: dict) -> str:
    """metadata.json's text, with the checksum of the model it describes."""
    # The checksum covers the metadata as load will parse it back.
    parsed = json.loads(json.dumps(metadata, allow_nan=False, default=_json_scalar))
    text = json.dumps({**metadata, DIGEST: _digest(parsed, arrays)}, indent=1, allow_nan=False,
                      default=_json_scalar)
    if len(text.encode()) > METADATA_MAX_BYTES:
        raise _Invalid(f"its {METADATA} would hold {human_bytes(len(text.encode()))}, more "
                       f"than the {human_bytes(METADATA_MAX_BYTES)} a model file allows.")
    return text


def _write_zip(file, metadata_text: str, arrays: dict) -> None:
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA, metadata_text)
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", time.localtime()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED if name in COMPRESSED else \
                zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.ascontiguousarray(array),
                                          allow_pickle=False)


def _digest(metadata: dict, arrays: dict) -> str:
    """SHA-256 of a model's content: its metadata without the checksum (as canonical JSON) and
    each array's name, dtype, shape and values (little-endian, C order), whatever byte order
    or memory order the file stores them in."""
    hasher = hashlib.sha256()
    content = {key: value for key, value in metadata.items() if key != DIGEST}
    hasher.update(json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False,
                             default=_json_scalar).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name],
                                     dtype=arrays[name].dtype.newbyteorder("<"))
        hasher.update(f"\n{name} {array.dtype.str} {array.shape}\n".encode())
        hasher.update(array.reshape(-1).view(np.uint8))
    return hasher.hexdigest()


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
    """The metadata and the arrays of the model file at ``path``, each entry checked against
    what the metadata says it must hold before its data is read."""
    with open(path, "rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        try:
            with zipfile.ZipFile(file) as archive:
                return _read_entries(archive, file_size)
        except _Invalid:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
                OSError, ValueError, OverflowError, struct.error) as error:
            # RuntimeError: an encrypted entry; NotImplementedError: an unknown compression;
            # OSError, ValueError: offsets in the zip directory that point outside the file.
            raise _Invalid(f"it is not a readable zip archive (truncated or corrupt?): "
                           f"{error}") from None


def _read_entries(archive: zipfile.ZipFile, file_size: int) -> tuple[dict, dict]:
    counts = collections.Counter(archive.namelist())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        # Readers differ in which copy they take: the file has no single meaning.
        raise _Invalid(f"it holds more than one entry named {', '.join(repeated)}.")
    if METADATA not in counts:
        raise _Invalid(f"it has no {METADATA} entry (not written by fastmlp).")
    infos = {name: archive.getinfo(f"{name}.npy") for name in ENTRIES
             if f"{name}.npy" in counts}
    _check_declared_sizes(archive.getinfo(METADATA), infos.values(), file_size)
    with archive.open(METADATA) as entry:
        # A bounded read: read() would ask the file for all the compressed size it declares.
        metadata = _parse_metadata(entry.read(archive.getinfo(METADATA).file_size))
    inputs_and_hidden = _declared_layers(metadata)
    if "layout" not in infos:
        raise _Invalid("entry layout.npy is missing.")
    layout = _read_npy(archive, infos["layout"],
                       _layout_expected(metadata, len(inputs_and_hidden)))
    sizes = _check_layout(layout)
    _check_layers_match(metadata, inputs_and_hidden, sizes)
    expected = _expected_entries(metadata, sizes)
    _check_present(expected, infos)
    arrays = {name: _read_npy(archive, infos[name], expected[name])
              for name in expected if name in infos and name != "layout"}
    arrays["layout"] = layout
    return metadata, arrays


def _check_declared_sizes(metadata: zipfile.ZipInfo, entries, file_size: int) -> None:
    """Refuse, from the zip directory alone, a file that declares more data than its size
    allows (a zip bomb) or a metadata entry beyond its cap."""
    if metadata.file_size > METADATA_MAX_BYTES:
        raise _Invalid(f"its {METADATA} declares {human_bytes(metadata.file_size)}, more than "
                       f"the {human_bytes(METADATA_MAX_BYTES)} a model file allows.")
    declared = metadata.file_size + sum(info.file_size for info in entries)
    allowed = MAX_INFLATION * file_size + INFLATION_ALLOWANCE
    if declared > allowed:
        raise _Invalid(f"its entries declare {human_bytes(declared)} of data, more than a file "
                       f"of {human_bytes(file_size)} can hold ({human_bytes(allowed)} at "
                       "most; a zip bomb?).")


def _parse_metadata(raw: bytes) -> dict:
    try:
        metadata = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        # ValueError: also integers of more digits than Python parses; RecursionError: nesting.
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


def _refuse_constant(name: str):
    """NaN and Infinity are not JSON (save writes infinities as strings)."""
    raise ValueError(f"{name} is not a JSON value")


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, expected: _Expected) \
        -> np.ndarray:
    """One ``.npy`` entry. Its header and declared size are checked against ``expected``
    before any data is read, and the data is read in pieces into the array it fills."""
    name = info.filename
    with archive.open(info) as entry:
        try:
            version = np.lib.format.read_magic(entry)
            read_header = HEADER_READERS.get(version)
            if read_header is not None:
                shape, fortran_order, dtype = read_header(entry)
        except (ValueError, SyntaxError, RecursionError, tokenize.TokenError) as error:
            # numpy parses the header's dict as Python literals, with tokenize.
            raise _Invalid(f"{name} is not a .npy array: {error}") from None
        if read_header is None:
            raise _Invalid(f"{name} uses .npy version {version}, which fastmlp does not write.")
        _check_entry(name[:-len(".npy")], dtype, shape, expected)
        data_bytes = math.prod(shape) * dtype.itemsize
        if info.file_size != entry.tell() + data_bytes:
            raise _Invalid(f"{name} is {info.file_size} bytes long, but its header describes "
                           f"{entry.tell() + data_bytes} (truncated or corrupt).")
        array = np.empty(shape[::-1] if fortran_order else shape, dtype=dtype)
        _read_into(entry, array.reshape(-1).view(np.uint8), name)
    if fortran_order:
        array = array.T
    # A writable, native-endian, C-ordered array: training updates params in place.
    return np.ascontiguousarray(array, dtype=dtype.newbyteorder("="))


def _read_into(entry, buffer: np.ndarray, name: str) -> None:
    done = 0
    while done < buffer.size:
        piece = entry.read(min(buffer.size - done, READ_CHUNK_BYTES))
        if not piece:
            raise _Invalid(f"{name} ends after {done} of its {buffer.size} bytes of data "
                           "(truncated or corrupt).")
        buffer[done:done + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
        done += len(piece)


def _check_digest(metadata: dict, arrays: dict) -> None:
    """Refuse a model whose content differs from the checksum recorded when it was saved
    (files saved before fastmlp recorded one have none)."""
    if DIGEST in metadata and metadata[DIGEST] != _digest(metadata, arrays):
        raise _Invalid(f"its contents do not match the SHA-256 checksum in {METADATA} "
                       "(corrupted, or edited after it was saved).")


def _optimizer_name(fitted: dict) -> str:
    """The optimizer a file's state belongs to: files from before optimizers were named hold
    SGD's."""
    return fitted.get("optimizer", "sgd")


def _n_epochs(fitted: dict):
    """The length of the loss curve: files from before n_iter_ counted each fit call
    separately hold n_iter_ entries."""
    return fitted.get("n_epochs", fitted.get("n_iter_"))


def _declared_layers(metadata: dict) -> list[int]:
    """``[n_features_in_, *hidden_layer_sizes]`` from the metadata, after checking the fitted
    fields that decide the entries' shapes and dtypes."""
    fitted = metadata["fitted"]
    kind = fitted.get("kind")
    kinds = ESTIMATORS[metadata["estimator"]]._target_kinds
    if kind not in kinds:
        raise _Invalid(f"target kind {kind!r} is not one of {kinds}.")
    # Files from before regressors hold the kind's only output layer.
    outputs = [output.name for output in TARGET_KIND_BY_NAME[kind].outputs]
    if fitted.get("out_activation", outputs[0]) not in outputs:
        raise _Invalid(f"out_activation {fitted['out_activation']!r} is not one of {outputs} "
                       f"(the output layers of {kind} targets).")
    dtype = fitted.get("dtype")
    if dtype not in FLOAT_DTYPES:
        raise _Invalid(f"dtype {dtype!r} is not float32 or float64.")
    optimizer = _optimizer_name(fitted)
    if optimizer not in OPTIMIZER_BY_NAME:
        raise _Invalid(f"optimizer {optimizer!r} is not one of {tuple(OPTIMIZER_BY_NAME)}.")
    for name in ("n_features_in_", "n_iter_", "t_", "no_improvement_count",
                 "optimizer_steps", "n_epochs"):
        value = fitted.get(name, 0) if name == "optimizer_steps" else _n_epochs(fitted) \
            if name == "n_epochs" else fitted.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _Invalid(f"metadata field {name!r} must be a non-negative integer, got "
                           f"{value!r}.")
    if fitted["n_iter_"] > _n_epochs(fitted):
        raise _Invalid(f"n_iter_ {fitted['n_iter_']} exceeds the epochs of the loss curve "
                       f"({_n_epochs(fitted)}).")
    rate = fitted.get("optimizer_learning_rate", 1.0)
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool)
            and math.isfinite(rate) and rate > 0):
        raise _Invalid(f"metadata field 'optimizer_learning_rate' must be a positive number, "
                       f"got {rate!r}.")
    for name in ("best_loss_", "best_validation_score_"):
        if name not in fitted:
            raise _Invalid(f"metadata field {name!r} is missing.")
        _decode_float(fitted[name], name)
    hidden = metadata["params"].get("hidden_layer_sizes")
    sizes = hidden_sizes(hidden) if isinstance(hidden, (int, list)) else None
    if not (isinstance(sizes, list) and all(
            isinstance(size, int) and not isinstance(size, bool) and size >= 1
            for size in sizes)):
        raise _Invalid(f"hidden_layer_sizes {hidden!r} is not a positive int or a list of them.")
    return [fitted["n_features_in_"], *sizes]


def _layout_expected(metadata: dict, n_layers: int) -> _Expected:
    return _Expected("int64", (n_layers, LAYOUT_COLUMNS),
                     reason=f" (a row for each of hidden_layer_sizes "
                            f"{metadata['params']['hidden_layer_sizes']!r} and the output layer)")


def _expected_entries(metadata: dict, sizes: list[int]) -> dict[str, _Expected]:
    """The dtype and shape of every entry of a model with layer widths ``sizes``."""
    fitted = metadata["fitted"]
    n_params = int(make_layout(sizes)[1])
    optimizer_buffers = OPTIMIZER_BY_NAME[_optimizer_name(fitted)].buffers
    explicit_init = isinstance(metadata["params"].get("init"), dict)
    return {
        "params": _Expected(fitted["dtype"], (n_params,)),
        **{buffer: _Expected(fitted["dtype"], (n_params,), required=buffer in optimizer_buffers)
           for buffer in OPTIMIZER_BUFFERS},
        "layout": _layout_expected(metadata, len(sizes) - 1),
        **({"classes": _Expected(None, (2 if fitted["kind"] == "binary" else sizes[-1],),
                                 kinds="biufUS", what="numbers or text")}
           if fitted["kind"] in CLASSIFICATION_NAMES else {}),
        "loss_curve": _Expected("float64", (_n_epochs(fitted),)),
        "validation_scores": _Expected("float64", (_n_epochs(fitted),), required=False,
                                       at_most=True),
        "feature_names": _Expected(None, (sizes[0],), kinds="U", what="text", required=False),
        "init_params": _Expected("float64", (n_params,), required=explicit_init),
    }


def _check_entry(name: str, dtype: np.dtype, shape: tuple, expected: _Expected) -> None:
    """Refuse an entry whose dtype or shape is not what the model needs."""
    if expected.dtype is not None:
        dtype_fits = not dtype.hasobject and dtype.newbyteorder("=") == np.dtype(expected.dtype)
        wanted = expected.dtype
    else:
        dtype_fits = dtype.kind in expected.kinds and not dtype.hasobject and \
            dtype.fields is None and dtype.subdtype is None
        wanted = expected.what
    if expected.at_most:
        shape_fits = len(shape) == 1 and 0 <= shape[0] <= expected.shape[0]
        wanted += f" of length up to {expected.shape[0]}"
    else:
        shape_fits = tuple(shape) == expected.shape
        wanted += f" of shape {expected.shape}"
    if not (dtype_fits and shape_fits):
        raise _Invalid(f"{name} has dtype {dtype} and shape {tuple(shape)}; this model needs "
                       f"{wanted}{expected.reason}.")


def _check_present(expected: dict[str, _Expected], present) -> None:
    missing = [f"{name}.npy" for name, entry in expected.items()
               if entry.required and name not in present]
    if missing:
        raise _Invalid(f"entries {', '.join(missing)} are missing.")


def _check_layers_match(metadata: dict, inputs_and_hidden: list[int], sizes: list[int]) -> None:
    if sizes[0] != inputs_and_hidden[0]:
        raise _Invalid(f"the network has {sizes[0]} inputs but n_features_in_ is "
                       f"{inputs_and_hidden[0]}.")
    if sizes[1:-1] != inputs_and_hidden[1:]:
        raise _Invalid(f"hidden_layer_sizes {metadata['params']['hidden_layer_sizes']!r} does "
                       f"not match the stored layers {sizes[1:-1]}.")


def _check_model(metadata: dict, arrays: dict) -> None:
    """Every field consistent with the others, or ``_Invalid`` naming the first that is not."""
    inputs_and_hidden = _declared_layers(metadata)
    if "layout" not in arrays:
        raise _Invalid("entry layout.npy is missing.")
    layout = arrays["layout"]
    _check_entry("layout", layout.dtype, layout.shape,
                 _layout_expected(metadata, len(inputs_and_hidden)))
    sizes = _check_layout(layout)
    _check_layers_match(metadata, inputs_and_hidden, sizes)
    expected = _expected_entries(metadata, sizes)
    _check_present(expected, arrays)
    for name, array in arrays.items():
        _check_entry(name, array.dtype, array.shape, expected[name])
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise _Invalid(f"{name} contains NaN or infinite values.")
    _check_outputs(arrays.get("classes"), metadata["fitted"]["kind"], sizes[-1])
    _check_random_state(metadata["params"].get("random_state"))


def _check_layout(layout: np.ndarray) -> list[int]:
    """The layer widths the offsets table describes, if it is the table make_layout builds."""
    if (layout[:, [FAN_IN, FAN_OUT]] < 1).any():
        raise _Invalid("layout has a layer width below 1.")
    sizes = [int(layout[0, FAN_IN]), *(int(width) for width in layout[:, FAN_OUT])]
    if not np.array_equal(layout, _layout_of(sizes)):
        raise _Invalid("the layout table's offsets are inconsistent with its layer widths.")
    return sizes


def _layout_of(sizes: list[int]) -> np.ndarray | None:
    """make_layout's table for these widths, or None when its offsets overflow int64."""
    try:
        return make_layout(sizes)[0]
    except OverflowError:
        return None


def _check_outputs(classes: np.ndarray | None, kind: str, n_outputs: int) -> None:
    """The output layer's width fits the targets: one output per continuous target, and for a
    classifier its ``classes``."""
    if kind not in CLASSIFICATION_NAMES:
        if (n_outputs == 1) != (kind == "continuous"):
            raise _Invalid(f"a network with {n_outputs} output(s) does not fit {kind} targets.")
        return
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
    # A parameter left out would silently take its default and change the model's answers;
    # except one added after the file was written, whose default is how its model trained.
    defaults = inspect.signature(estimator).parameters
    for name in PARAMS_ADDED_LATER:
        if name in defaults:    # not every estimator has every parameter (class_weight)
            params.setdefault(name, defaults[name].default)
    missing = set(estimator._get_param_names()) - set(params)
    if missing:
        raise _Invalid(f"parameter(s) {sorted(missing)} missing from the metadata.")
    layout = arrays["layout"]
    rng = _restore_generator(metadata["rng_state"])
    if isinstance(params["hidden_layer_sizes"], list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    params["random_state"] = _decode_random_state(params.get("random_state"), rng)
    if "class_weight" in params:
        params["class_weight"] = _decode_class_weight(params["class_weight"])
    if isinstance(params.get("init"), dict):
        params["init"] = unpack(arrays["init_params"], layout)
    est = estimator(**params)
    try:
        check_params(est)
    except (TypeError, ValueError) as error:
        raise _Invalid(str(error)) from None
    fitted = metadata["fitted"]
    if "classes" in arrays:
        est.classes_ = arrays["classes"].astype(object) if fitted.get("classes_are_objects") \
            else arrays["classes"]
    est.n_features_in_ = fitted["n_features_in_"]
    if "feature_names" in arrays:
        est.feature_names_in_ = arrays["feature_names"].astype(object)
    optimizer = _optimizer_name(fitted)
    buffers = {name: arrays[name] for name in OPTIMIZER_BY_NAME[optimizer].buffers}
    # Files written before the learning rate was state trained at learning_rate_init.
    rate = float(fitted.get("optimizer_learning_rate", est.learning_rate_init))
    est.set_training_state(TrainingState(
        aligned_copy(arrays["params"]), layout,
        OptimizerState(optimizer, buffers, fitted.get("optimizer_steps", 0), rate), rng,
        fitted["kind"], fitted["no_improvement_count"], fitted.get("out_activation")))
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
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError) as error:
        raise _Invalid(f"the RNG state is invalid: {error}") from None
    return np.random.Generator(bit_generator)


def _check_random_state(value) -> None:
    """Refuse a SeedSequence whose entropy pool would take more memory than a seed needs."""
    state = value.get("state") if isinstance(value, dict) and value.get("kind") == \
        "SeedSequence" else None
    pool_size = state.get("pool_size") if isinstance(state, dict) else None
    if isinstance(pool_size, int) and pool_size > MAX_SEED_POOL_SIZE:
        raise _Invalid(f"random_state is a SeedSequence with pool_size {pool_size}; at most "
                       f"{MAX_SEED_POOL_SIZE} is allowed.")


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
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError) as error:
        raise _Invalid(f"random_state is invalid: {error}") from None
    raise _Invalid(f"random_state {value!r} is not an int, None or a known generator.")
