"""Data makers and comparison helpers shared by the test modules.

Kernel-level tests build networks straight on the flat parameter buffer; estimator-level tests
use label arrays. Everything is seeded, so a failure reproduces exactly.
"""

import os
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest

from fastmlp.kernels import dispatch, reference
from fastmlp.kernels import registry
from fastmlp.kernels.codes import EXP, LINEAR, SIGMOID, SOFTMAX
from fastmlp.kernels.layout import make_layout

# The loan-approval CSVs ship inside the package, so the tests read the copies users get.
DATA_DIR = files("fastmlp") / "data"

BACKENDS = {"numba": dispatch, "numpy": reference}
HIDDEN_CODES = {activation.name: activation.code for activation in registry.ACTIVATIONS}

# Output layers the kernels train: (output code, number of output columns).
OUTPUTS = {"binary": (SIGMOID, 1), "multilabel": (SIGMOID, 3), "softmax": (SOFTMAX, 3),
           "squared_error": (LINEAR, 2), "poisson": (EXP, 2)}

# Relative error allowed between two computations of the same float trajectory.
RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def assert_relative_close(actual, expected, rtol: float, what: str = "") -> None:
    """|actual - expected| <= rtol * max|expected|, element by element.

    The error is measured relative to the array's scale rather than to each element, because a
    weight passing through zero has no meaningful relative error of its own.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def assert_passes_with_jit_disabled(test_file: str, selection: str) -> None:
    """The tests of ``test_file`` that ``selection`` (a ``-k`` expression) picks pass with
    NUMBA_DISABLE_JIT=1, which runs the compiled kernels as plain Python (coverage,
    debugging). pytest fails when the selection picks no test."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", test_file, "-q", "-p", "no:cacheprovider", "-k",
         selection], env=os.environ | {"NUMBA_DISABLE_JIT": "1"}, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def make_network(sizes, dtype, seed: int, scale: float = 0.5):
    """A network on the flat buffer with weights ~ U(-r, r), r = scale * sqrt(6 / (fan_in +
    fan_out)), biases in the same range: small enough that training stays well-conditioned."""
    layout, n_params, n_units = make_layout(sizes)
    rng = np.random.default_rng(seed)
    params = np.empty(n_params, dtype=np.float64)
    for w_off, b_off, fan_in, fan_out, _ in layout:
        bound = scale * np.sqrt(6.0 / (fan_in + fan_out))
        params[w_off:b_off + fan_out] = rng.uniform(-bound, bound, b_off + fan_out - w_off)
    return params.astype(dtype), layout, n_units


def make_inputs(n: int, n_features: int, dtype, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, n_features)).astype(dtype)


def make_targets(output: str, n: int, dtype, seed: int, n_outputs: int | None = None):
    """The (n, n_outputs) target matrix the kernels train on for an ``OUTPUTS`` kind: 0/1
    columns for sigmoid outputs, one-hot rows for a softmax, standard normal values for
    squared error, Poisson counts (zeros among them) for the Poisson loss. ``n_outputs``
    overrides the kind's usual width."""
    rng = np.random.default_rng(seed)
    code, usual_width = OUTPUTS[output]
    n_outputs = n_outputs or usual_width
    if code == SOFTMAX:
        return np.eye(n_outputs, dtype=dtype)[rng.integers(0, n_outputs, n)]
    if code == LINEAR:
        return rng.normal(size=(n, n_outputs)).astype(dtype)
    if code == EXP:
        return rng.poisson(1.5, size=(n, n_outputs)).astype(dtype)
    return (rng.random((n, n_outputs)) < 0.5).astype(dtype)


def make_labels(kind: str, n: int, seed: int, label_type: str = "int"):
    """Estimator-level data: X (n, 4) and y of the given kind ("binary", "multiclass" with three
    classes, "multilabel" with three columns), labels learnable from X."""
    X = make_inputs(n, 4, np.float64, seed)
    if kind == "multilabel":
        return X, np.column_stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 2] > 0]).astype(int)
    n_classes = 2 if kind == "binary" else 3
    index = np.digitize(X[:, 0] + 0.5 * X[:, 1], np.linspace(-0.5, 0.5, n_classes - 1))
    names = np.array(["cat", "dog", "eel"] if label_type == "str" else [3, 7, 11])
    return X, names[:n_classes][index]


@pytest.fixture(scope="session")
def loan_data():
    """The seed notebooks' loan-approval table and its three unseen applicants, as
    (X, decisions) pairs."""
    return read_loan_csv("loan_approval.csv"), read_loan_csv("loan_approval_unseen.csv")


def read_loan_csv(name: str):
    rows = np.genfromtxt(DATA_DIR / name, delimiter=",", names=True, dtype=None,
                         encoding="utf-8")
    X = np.column_stack([rows[field] for field in rows.dtype.names[:-1]]).astype(np.float64)
    return X, rows["decision"].astype(str)


def weights(model) -> list:
    """A fitted estimator's coefs_ followed by its intercepts_."""
    return model.coefs_ + model.intercepts_


def assert_same_weights(actual: list, expected: list) -> None:
    """Bitwise-equal weight lists (same training, not merely close)."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got, want)


def one_epoch_per_call(monkeypatch) -> None:
    """Train one epoch per kernel call, with the front's Python between epochs: the loop that
    verbose, early stopping and partial_fit take (and every fit, before the compiled loop of
    kernels.epochs). Tests that watch that loop's steps pin it with this."""
    import fastmlp._base
    monkeypatch.setattr(fastmlp._base.BaseMLP, "_epochs_runner", lambda *args, **kwargs: None)


def many_epochs_per_call(monkeypatch) -> None:
    """Fits take kernels.epochs' compiled loop wherever it applies, from a configuration's
    first fit in the process (it is due from the second: dispatch.sgd_epochs_due)."""
    from fastmlp.kernels import dispatch
    monkeypatch.setattr(dispatch, "sgd_epochs_due", lambda *args: True)
