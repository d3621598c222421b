"""fit refuses, before allocating anything, a network whose training would not fit in memory,
naming hidden_layer_sizes and the memory it would need; ordinary networks are never refused."""

import tracemalloc

import numpy as np
import pytest

from fastmlp import FastMLP, _validation
from fastmlp.kernels import dispatch
from fastmlp.kernels.layout import make_layout

pytestmark = pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")


def data(n=40, n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    return X, (X[:, 0] > 0).astype(int)


@pytest.mark.parametrize("sizes, needs", [((10**13,), "PiB"), ((10**19,), "EiB"),
                                          ((2**20, 2**20), "TiB")])
def test_a_network_beyond_memory_is_refused_before_allocating(sizes, needs):
    X, y = data()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as error:
            FastMLP(sizes, backend="numpy").fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(error.value)
    assert f"hidden_layer_sizes={sizes!r}" in message and needs in message
    assert "more than this machine's" in message
    assert peak < 8 * 2**20     # the first fit's imports; the network would take petabytes


def test_a_refused_refit_leaves_the_fitted_model_as_it_was():
    X, y = data()
    model = FastMLP(3, max_iter=2, random_state=0, backend="numpy").fit(X, y)
    before = model.predict_proba(X)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        model.set_params(hidden_layer_sizes=(10**13,)).fit(X, y)
    assert np.array_equal(model.predict_proba(X), before)


def test_the_estimate_counts_parameters_and_kernel_work(monkeypatch):
    """Refused exactly when the estimate exceeds the memory: 6 float64 copies of the buffer
    plus the float64 initial draw, and the mini-batch work space (dispatch.blas_work's) for
    the batch's rows."""
    sizes = [4, 3, 1]
    n_params, n_units = 4 * 3 + 3 + 3 * 1 + 1, 3 + 1
    rows = 10      # a batch of 10, less than the 40 samples and the kernel's chunk
    needed = n_params * (8 + 6 * 8) + 8 * (rows * (4 + 2 * n_units) + n_units + 3 + 12)
    layout = make_layout(sizes)[0]
    assert dispatch.blas_work(layout, 4, rows, np.float64).nbytes == needed - n_params * 56
    monkeypatch.setattr(_validation, "physical_memory", lambda: needed)
    _validation.check_network_memory(sizes, 8, 40, 10)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(3,\) makes a network of 19 "):
        _validation.check_network_memory(sizes, 8, 40, 11)
    monkeypatch.setattr(_validation, "physical_memory", lambda: needed - 1)
    with pytest.raises(ValueError, match=f"needs about {_validation.human_bytes(needed)} "):
        _validation.check_network_memory(sizes, 8, 40, 10)


def test_ordinary_networks_are_not_refused():
    """Wide, deep and MNIST-sized networks with full batches on many rows fit in a few hundred
    MiB, which any machine that runs these tests has."""
    for sizes, n_samples in [([784, 1024, 1024, 10], 60_000), ([100, *[256] * 20, 3], 10**6),
                             ([10_000, 512, 1], 5_000)]:
        for itemsize in (4, 8):
            _validation.check_network_memory(sizes, itemsize, n_samples, "full")
    X, y = data(n=300, n_features=50)
    FastMLP((2000, 2000), max_iter=1, batch_size="full", backend="numpy").fit(X, y)


def test_memory_is_assumed_large_where_the_system_does_not_say(monkeypatch):
    monkeypatch.delattr(_validation.os, "sysconf")
    assert _validation.physical_memory() == _validation.UNKNOWN_MEMORY


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                     (1045172, "1021 KiB"), (2**30, "1 GiB"),
                                     (10**22, "8674 EiB")])
def test_sizes_read_in_binary_units(n, text):
    assert _validation.human_bytes(n) == text
