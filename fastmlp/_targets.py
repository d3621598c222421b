"""Class labels to the network's target matrix and back (what scikit-learn's MLPClassifier
does with a LabelBinarizer)."""

import numpy as np

from ._validation import kernel_array
from .kernels import registry

BINARY = registry.BINARY.name
MULTICLASS = registry.MULTICLASS.name
MULTILABEL = registry.MULTILABEL.name


def target_kind(y) -> str:
    if y.ndim == 2:
        values = np.unique(y)
        if y.dtype.kind in "OUS" or not np.isin(values, (0, 1)).all():
            raise ValueError("A 2-D y must be a multi-label indicator matrix of 0/1 values; "
                             "multiclass-multioutput targets are not supported.")
        return MULTILABEL
    return BINARY if len(np.unique(y)) <= 2 else MULTICLASS


def output(kind: str) -> registry.Output:
    """The output layer and loss that learn targets of this kind."""
    return registry.TARGET_KIND_BY_NAME[kind].output


def classes_of(y, kind: str) -> np.ndarray:
    return np.arange(y.shape[1]) if kind == MULTILABEL else np.unique(y)


def encode(y, classes, kind: str, dtype) -> np.ndarray:
    """The (n_samples, n_outputs) target matrix: one column for binary, one-hot for
    multiclass, the indicator matrix itself for multi-label."""
    if kind == MULTILABEL:
        return kernel_array(y, dtype)
    index = _codes_as_index(y, classes)
    if index is None:
        index = np.searchsorted(classes, y)
        unknown = (index >= len(classes)) | (classes[np.minimum(index, len(classes) - 1)] != y)
        if unknown.any():
            raise ValueError(f"y contains labels not in classes_ {classes.tolist()}: "
                             f"{np.unique(np.asarray(y)[unknown]).tolist()}")
    if kind == BINARY:
        return (index == 1).astype(dtype)[:, None]
    Y = np.zeros((len(y), len(classes)), dtype=dtype)
    Y[np.arange(len(y)), index] = 1
    return Y


def _codes_as_index(y, classes) -> np.ndarray | None:
    """y itself when it already holds each label's position in classes (integer labels, classes
    0, 1, ..., k - 1: the common case), else None. Its range, two reductions over y, then
    proves what the binary search and its check of every label (several passes, with
    temporaries) would, at a few times less cost on every partial_fit call."""
    if y.dtype.kind not in "iu" or classes.dtype.kind not in "iu":
        return None
    # classes is sorted and distinct, so these two ends make it exactly 0, 1, ..., k - 1.
    if classes[0] != 0 or classes[-1] != len(classes) - 1:
        return None
    if y.min() < 0 or y.max() >= len(classes):
        return None     # labels outside classes: the general path names them
    return y


def decode(P, classes, kind: str) -> np.ndarray:
    """Labels from output probabilities (threshold 0.5 for sigmoids, argmax for a softmax)."""
    if kind == MULTILABEL:
        return (P > 0.5).astype(int)
    if kind == BINARY:
        return classes[(P[:, 0] > 0.5).astype(int)]
    return classes[P.argmax(axis=1)]
