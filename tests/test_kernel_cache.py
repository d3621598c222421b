"""A cached kernel never outlives an edit to any kernel module (numba issue 1833).

Numba stamps a cached kernel with its own file's content only, so ``predict.forward``, which
inlines ``layers.activate``, would be loaded stale after an edit to layers.py. Each test runs
a copy of the kernels package in fresh interpreters: the first compiles and caches
``forward``, the second must load it from the cache, and after an edit to layers.py the third
must compile it again and compute the edited function. And kernels that one factory makes for
different constants have names of their own, and fits that differ only in a kernel's
arguments, or in whether their inputs are read-only, compile nothing new.
"""

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastmlp.kernels

KERNELS = Path(fastmlp.kernels.__file__).parent

# A network with a hidden ReLU layer, its logits (code 2) for the rows of X, and how many
# times this process's forward was loaded from the cache and compiled; first, whether
# has_kernel finds forward's float64 and float32 kernels before the call.
RUN_FORWARD = """
import numpy as np
from kernels import predict
from kernels._jit import has_kernel
print(has_kernel(predict.forward, "float64"), has_kernel(predict.forward, "float32"))
from kernels.codes import LOGITS, RELU
from kernels.layout import make_layout
layout, n_params, n_units = make_layout([3, 4, 2])
params = np.linspace(-1, 1, n_params)
X = np.linspace(-2, 2, 12).reshape(4, 3)
out = np.empty((4, 2))
predict.forward(params, layout, X, RELU, LOGITS, np.empty(8 * n_units), out)
stats = predict.forward.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
print(repr(out.tolist()))
"""

RELU_LINE = "z[j] = (T(0) if z[j] < T(0) else z[j]) + T(0)"
EDITED_RELU_LINE = "z[j] = (T(0) if z[j] < T(0) else z[j]) + T(1)"


def run_forward(root: Path, env: dict, cached: bool) -> tuple[tuple[int, int], list]:
    """RUN_FORWARD's counts and outputs, checking that has_kernel found forward's float64
    kernel if and only if it is ``cached``, and no float32 kernel."""
    result = subprocess.run([sys.executable, "-c", RUN_FORWARD], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found, counts, outputs = result.stdout.splitlines()[-3:]
    assert found == f"{cached} False"
    hits, misses = map(int, counts.split())
    return (hits, misses), eval(outputs)


@pytest.mark.parametrize("locator", ["NUMBA_CACHE_DIR", "__pycache__"])
def test_an_edit_to_an_inlined_helper_recompiles_the_kernel(locator, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(KERNELS, root / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(root)
    if locator == "NUMBA_CACHE_DIR":
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")

    counts, first = run_forward(root, env, cached=False)
    assert counts == (0, 1)
    counts, again = run_forward(root, env, cached=True)
    assert counts == (1, 0), "an unchanged package must load forward from the cache"
    assert again == first

    layers = root / "kernels" / "layers.py"
    source = layers.read_text()
    assert source.count(RELU_LINE) == 1
    layers.write_text(source.replace(RELU_LINE, EDITED_RELU_LINE))
    counts, edited = run_forward(root, env, cached=False)
    assert counts == (0, 1), "an edit to layers.py must recompile forward"
    assert edited != first


# forward for the dtype named by argv[1] and for float64, reporting this process's cache hits
# and misses and the outputs.
RUN_FORWARD_TWICE = RUN_FORWARD.replace(
    "params = np.linspace(-1, 1, n_params)\nX = np.linspace(-2, 2, 12).reshape(4, 3)\n"
    "out = np.empty((4, 2))\n"
    "predict.forward(params, layout, X, RELU, LOGITS, np.empty(8 * n_units), out)\n",
    "import sys\nouts = []\nfor dtype in (sys.argv[1], 'float64'):\n"
    "    params = np.linspace(-1, 1, n_params).astype(dtype)\n"
    "    X = np.linspace(-2, 2, 12).reshape(4, 3).astype(dtype)\n"
    "    out = np.empty((4, 2), dtype)\n"
    "    predict.forward(params, layout, X, RELU, LOGITS, np.empty(8 * n_units, dtype), out)\n"
    "    outs.append(out)\n").replace("repr(out.tolist())", "repr([o.tolist() for o in outs])")


def test_processes_compiling_the_same_kernel_at_once_share_one_cache(tmp_path):
    """A cluster's workers start cold together: each needs forward (float32 and float64,
    two signatures of one function, in either order) from the same empty cache at the same
    time. Each signature is compiled once, by one of them, and loaded by the others; every
    process computes the right outputs, and a later one loads both signatures."""
    root = tmp_path / "copy"
    shutil.copytree(KERNELS, root / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert "float64" in RUN_FORWARD_TWICE and RUN_FORWARD_TWICE != RUN_FORWARD

    def start(dtype):
        return subprocess.Popen([sys.executable, "-c", RUN_FORWARD_TWICE, dtype], cwd=root,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    dtypes = ("float32", "float64", "float32", "float64")
    runs = [start(dtype) for dtype in dtypes]
    results, compiles = {}, 0
    for dtype, run in zip(dtypes, runs):
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        counts, outputs = stdout.splitlines()[-2:]
        hits, misses = map(int, counts.split())
        assert hits + misses == len({dtype, "float64"})
        compiles += misses
        results.setdefault(dtype, set()).add(outputs)
    assert compiles == 2, "each signature compiled by one process only"
    assert all(len(outputs) == 1 for outputs in results.values())

    later = subprocess.run([sys.executable, "-c", RUN_FORWARD_TWICE, "float32"], cwd=root,
                           env=env, capture_output=True, text=True, timeout=300)
    assert later.returncode == 0, later.stderr
    counts, outputs = later.stdout.splitlines()[-2:]
    assert tuple(map(int, counts.split())) == (2, 0), "both signatures must load from the cache"
    assert {outputs} == results["float32"]


def test_a_failed_compile_leaves_the_cache_unlocked():
    """A compile that raises (here, arguments the kernel cannot type) must release its
    kernel's lock, or every other process wanting that kernel would wait forever."""
    import fcntl

    from numba.core.errors import TypingError

    from fastmlp.kernels import predict

    with pytest.raises(TypingError):
        predict.forward("not", "arrays", None, 1, 2, None, None)
    cache = predict.forward._cache
    assert cache._compiling is None
    for lock_path in Path(cache.cache_path).glob("predict.forward-*.lock"):
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)    # raises if still held


def test_kernels_that_close_over_different_constants_have_their_own_names():
    """Numba names a compiled function by its qualified name and a per-process counter, so
    the closures a kernel factory makes for different constants, compiled by different
    processes into one cache, could share a name; a process that loaded two of them and
    called one from another kernel linked the call to the first it had loaded (measured: 1 of
    fastmlp compile's 60 configurations then trained another's network when the many-epochs
    kernel called its epoch kernel). Every closure is named after its constants
    (kernels._jit.specialised), so no two can share a name. (The many-epochs kernel now
    calls its epoch kernel through its address, not by name.)"""
    from fastmlp.kernels.epochs import epochs_kernel
    from fastmlp.kernels.per_sample import OPTIMIZERS, per_sample_kernel
    from fastmlp.kernels.sparse import sparse_per_sample_kernel
    names = [epochs_kernel(per_sample).py_func.__qualname__ for per_sample in (False, True)]
    for sigmoid, shallow in itertools.product((False, True), (False, True)):
        names.append(sparse_per_sample_kernel(sigmoid, shallow).py_func.__qualname__)
        for optimizer in OPTIMIZERS:
            names.append(per_sample_kernel(sigmoid, shallow, optimizer).py_func.__qualname__)
    assert len(set(names)) == len(names) == 2 * 2 * (1 + len(OPTIMIZERS)) + 2


def test_fits_that_differ_in_an_argument_of_the_kernels_compile_nothing_new(monkeypatch):
    """The hidden activation, every output but the sigmoid, and sample weights under an L2
    penalty are arguments of the per-sample kernels (docs/kernels.md), not constants: fits
    that differ only in them run the kernels an earlier fit compiled. Every fit here calls
    the per-sample kernel itself: a many-epochs kernel that an earlier test made due in this
    process would be loaded with it from the cache, and leave no overload of it behind."""
    import warnings

    import numpy as np

    from fastmlp import FastMLP, FastMLPRegressor
    from fastmlp.kernels import dispatch
    from fastmlp.kernels.codes import SGD

    X = np.random.default_rng(0).standard_normal((12, 3))
    binary, multiclass = np.arange(12) % 2, np.arange(12) % 3

    def overloads(sigmoid):
        return len(dispatch.per_sample_kernel(sigmoid, True, SGD).overloads)

    monkeypatch.setattr(dispatch, "sgd_epochs_due", lambda *args: False)

    def fit(estimator, y, weights=None, **params):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator(hidden_layer_sizes=(4,), max_iter=2, random_state=0, **params).fit(
                X, y, sample_weight=weights)

    fit(FastMLP, binary)
    fit(FastMLP, multiclass, alpha=1e-3)
    compiled = overloads(True), overloads(False)
    for activation in ("tanh", "logistic", "identity"):
        fit(FastMLP, binary, activation=activation)
        fit(FastMLP, multiclass, activation=activation, alpha=1e-3)
    fit(FastMLPRegressor, X.sum(axis=1), alpha=1e-3)
    fit(FastMLP, multiclass, alpha=1e-3, weights=np.linspace(0.5, 2, 12))
    assert (overloads(True), overloads(False)) == compiled


def test_read_only_inputs_train_on_the_kernels_of_writable_ones(tmp_path):
    """scikit-learn's parallel searches hand their workers read-only memory maps, and Numba
    types a read-only array apart from a writable one: training copies read-only inputs
    (_validation.kernel_array), so that fits on them of every kind leave no training kernel
    of this process compiled for a read-only argument."""
    import gc
    import warnings

    import numpy as np
    from numba.core import types
    from numba.core.registry import CPUDispatcher

    from fastmlp import FastMLP, FastMLPRegressor, MLPClassifier, MLPRegressor

    def read_only(array):
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.npy"
        np.save(path, array)
        return np.load(path, mmap_mode="r")

    rng = np.random.default_rng(0)
    X = read_only(rng.standard_normal((12, 3)))
    binary = read_only(np.arange(12) % 2)
    multilabel = read_only((rng.random((12, 2)) < 0.5).astype(float))
    continuous, weights = read_only(rng.random(12)), read_only(np.linspace(0.5, 2, 12))
    small = dict(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch_size in (1, 4):
            FastMLP(**small, batch_size=batch_size, alpha=1e-3).fit(X, binary, weights)
            FastMLP(**small, batch_size=batch_size).partial_fit(X, binary, classes=[0, 1])
            FastMLP(**small, batch_size=batch_size).fit(X, multilabel)
            FastMLPRegressor(**small, batch_size=batch_size).fit(X, continuous, weights)
        FastMLPRegressor(**small, solver="lbfgs").fit(X, continuous)
        MLPClassifier(**small, solver="sgd", batch_size=1).fit(X, binary, weights)
        MLPClassifier(**small, solver="lbfgs").fit(X, binary, weights)
        MLPRegressor(**small).fit(X, continuous, weights).predict(X)
    assert not X.flags.writeable
    # The training kernels the front calls with its inputs (their helpers also serve
    # prediction, whose X is read-only).
    kernels = [obj for obj in gc.get_objects() if type(obj) is CPUDispatcher and
               obj.py_func.__module__.startswith("fastmlp.kernels") and
               ("epoch" in obj.py_func.__name__ or "batch_gradient" in obj.py_func.__name__)]
    read_only_signatures = [(kernel.py_func.__qualname__, signature)
                            for kernel in kernels for signature in kernel.overloads
                            if any(isinstance(t, types.Array) and not t.mutable
                                   for t in signature)]
    assert kernels and not read_only_signatures


def test_read_only_inputs_are_copied_up_to_a_size(monkeypatch):
    """Beyond READ_ONLY_COPY_BYTES the copy would cost more memory than a second compile
    costs time: the kernels then take the read-only array itself."""
    import numpy as np

    from fastmlp import _validation

    array = np.ones((4, 3))
    array.setflags(write=False)
    copy = _validation.kernel_array(array, np.float64)
    assert copy is not array and copy.flags.writeable and np.array_equal(copy, array)
    monkeypatch.setattr(_validation, "READ_ONLY_COPY_BYTES", array.nbytes - 1)
    assert _validation.kernel_array(array, np.float64) is array
    checked, _ = _validation.check_X(array, "fit", return_abs_max=True, writable=True)
    assert checked is array
