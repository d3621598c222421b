"""fastmlp on every core and beyond one machine: scikit-learn's sweeps through joblib's
thread, process and Dask backends, and dask-ml's wrappers over chunked Dask arrays.

One ``dask.distributed.LocalCluster`` of two worker processes serves the module; every
estimator is small, so that the module's time is the cluster's start and the workers' kernel
loads, not training.
"""

import contextlib
import os
import pickle
import shutil
import warnings

import numpy as np
import pytest

joblib = pytest.importorskip("joblib")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")

from joblib.externals.loky import get_reusable_executor  # noqa: E402
from numba.core.caching import UserProvidedCacheLocator  # noqa: E402
from sklearn.base import clone, is_classifier   # noqa: E402
from sklearn.model_selection import (GridSearchCV, RandomizedSearchCV,  # noqa: E402
                                     cross_val_score)

import fastmlp  # noqa: E402
from fastmlp.kernels import predict  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning",
                                        "ignore::fastmlp.exceptions.ConvergenceWarning")

N_FEATURES = 30


def classification(n: int = 90, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    y = (X[:, :3].sum(axis=1) + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    return X, y


def regression(n: int = 90, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    return X, X[:, :3].sum(axis=1) + 0.1 * rng.normal(size=n)


# Networks of N_FEATURES-16-1, each trained a few epochs per-sample (the drop-ins: batches of
# one, plain SGD, scikit-learn's other defaults).
ESTIMATORS = {
    "FastMLP": (fastmlp.FastMLP((16,), max_iter=4, random_state=0), classification),
    "FastMLPRegressor": (fastmlp.FastMLPRegressor((16,), max_iter=4, learning_rate_init=1e-3,
                                                  random_state=0), regression),
    "MLPClassifier": (fastmlp.MLPClassifier(hidden_layer_sizes=(16,), solver="sgd",
                                            batch_size=1, momentum=0.0, max_iter=4,
                                            random_state=0),
                      classification),
    "MLPRegressor": (fastmlp.MLPRegressor(hidden_layer_sizes=(16,), solver="sgd", batch_size=1,
                                          momentum=0.0, max_iter=4, learning_rate_init=1e-3,
                                          random_state=0),
                     regression),
}
GRID = {"learning_rate_init": [3e-3, 1e-2], "alpha": [0.0, 1e-3]}


@pytest.fixture(scope="module")
def workers_cache(tmp_path_factory):
    """The kernels' disk cache of this module's worker processes (the cluster's and loky's):
    their own, so that what they write is told apart from what other test processes write to
    this one's (pytest-xdist's workers share it)."""
    return tmp_path_factory.mktemp("workers-numba-cache")


@pytest.fixture(scope="module")
def client(workers_cache):
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None,
                                  env={"NUMBA_CACHE_DIR": str(workers_cache)}) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@contextlib.contextmanager
def loky_workers_on(cache):
    """joblib's loky workers started afresh on the kernel cache ``cache``. The variable is
    set in this process only while no kernel compiles here: Numba reads it again at each
    compile."""
    get_reusable_executor().shutdown(wait=True, kill_workers=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NUMBA_CACHE_DIR", str(cache))
        yield
        get_reusable_executor().shutdown(wait=True, kill_workers=True)


def _share_cache(workers_cache) -> str:
    """Copies this process's kernel cache into the workers'; returns the directory the
    workers' kernels are in."""
    here = predict.forward._cache.cache_path
    there = os.path.join(workers_cache, UserProvidedCacheLocator.get_suitable_cache_subpath(
        predict.__file__))
    shutil.copytree(here, there, dirs_exist_ok=True)
    return there


def _cache_files(path) -> dict:
    """Every file of a kernel cache directory with its modification time."""
    return {name: os.stat(os.path.join(path, name)).st_mtime_ns for name in os.listdir(path)}


def _scores(search) -> dict:
    return {key: value for key, value in search.cv_results_.items()
            if "test_score" in key or key == "params"}


def _assert_same_scores(found: dict, expected: dict, backend: str) -> None:
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        if key == "params":
            assert found[key] == value, backend
        else:
            np.testing.assert_array_equal(found[key], value, err_msg=f"{backend}: {key}")


@pytest.mark.parametrize("name", ESTIMATORS)
def test_a_sweep_scores_alike_on_threads_processes_and_a_dask_cluster(name, client,
                                                                       workers_cache):
    """GridSearchCV on two threads, two loky processes and the cluster's two workers gives
    one core's cv_results_ exactly; the parallel runs compile nothing (the workers write no
    cache file: they load the kernels the first run compiled)."""
    estimator, data = ESTIMATORS[name]
    X, y = data()
    expected = _scores(GridSearchCV(estimator, GRID, cv=3).fit(X, y))
    assert np.isfinite(expected["mean_test_score"]).all()
    there = _share_cache(workers_cache)
    cached = _cache_files(there)
    for backend in ("threading", "loky", "dask"):
        workers = loky_workers_on(workers_cache) if backend == "loky" else contextlib.nullcontext()
        with workers, joblib.parallel_config(backend=backend, n_jobs=2):
            search = GridSearchCV(estimator, GRID, cv=3, n_jobs=2).fit(X, y)
        _assert_same_scores(_scores(search), expected, backend)
    assert cached and _cache_files(there) == cached


def test_randomized_search_and_cross_val_score_on_a_dask_cluster(client):
    estimator, data = ESTIMATORS["FastMLP"]
    X, y = data()
    space = {"learning_rate_init": [1e-3, 3e-3, 1e-2, 3e-2], "activation": ["relu", "tanh"]}
    results = []
    for backend in ("sequential", "dask"):
        with joblib.parallel_config(backend=backend):
            search = RandomizedSearchCV(estimator, space, n_iter=3, cv=3, random_state=1,
                                        n_jobs=-1).fit(X, y)
            scores = cross_val_score(estimator, X, y, cv=3, n_jobs=-1)
        results.append((_scores(search), scores))
    _assert_same_scores(results[1][0], results[0][0], "dask")
    np.testing.assert_array_equal(results[1][1], results[0][1])


def _fit_and_predict(estimator, X, y):
    return estimator.fit(X, y).predict(X)


def _continue_and_predict(estimator, X, y):
    return estimator.partial_fit(X, y).predict(X)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fitted_and_unfitted_estimators_travel_to_workers(name, client):
    """A worker fits an unfitted estimator, predicts with a fitted one and continues training
    it, each exactly as this process does."""
    estimator, data = ESTIMATORS[name]
    X, y = data()
    unfitted = clone(estimator)
    fitted = clone(estimator).fit(X, y)
    there = client.submit(_fit_and_predict, unfitted, X, y).result()
    np.testing.assert_array_equal(there, _fit_and_predict(clone(estimator), X, y))
    np.testing.assert_array_equal(client.submit(type(fitted).predict, fitted, X).result(),
                                  fitted.predict(X))
    there = client.submit(_continue_and_predict, fitted, X, y).result()
    here = _continue_and_predict(pickle.loads(pickle.dumps(fitted)), X, y)
    np.testing.assert_array_equal(there, here)


def _model_arrays(estimator) -> list:
    return [*estimator.coefs_, *estimator.intercepts_]


def _dask_data(data, n: int = 100, chunk: int = 25):
    X, y = data(n)
    return X, y, da.from_array(X, chunks=(chunk, N_FEATURES)), da.from_array(y, chunks=chunk)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_incremental_over_a_dask_array_is_partial_fit_over_its_blocks(name, client):
    """dask-ml's Incremental trains the cluster's copy block by block, each partial_fit a
    task (the model travels between workers); the result is bitwise the model of partial_fit
    over the same blocks in the same order here."""
    estimator, data = ESTIMATORS[name]
    X, y, dX, dy = _dask_data(data)
    classes = {"classes": np.unique(y)} if is_classifier(estimator) else {}
    incremental = wrappers.Incremental(estimator, shuffle_blocks=False)
    incremental.fit(dX, dy, **classes)

    local = clone(estimator)
    for start in range(0, len(y), 25):
        local.partial_fit(X[start:start + 25], y[start:start + 25], **classes)
    trained = incremental.estimator_
    for found, expected in zip(_model_arrays(trained), _model_arrays(local), strict=True):
        np.testing.assert_array_equal(found, expected)
    assert trained.loss_curve_ == local.loss_curve_
    assert trained.t_ == local.t_
    # What the wrapper mirrors (dask-ml copies the fitted attributes it finds in vars()).
    assert incremental.n_features_in_ == N_FEATURES
    for name in ("coefs_", "intercepts_"):
        for found, expected in zip(getattr(incremental, name), getattr(local, name), strict=True):
            np.testing.assert_array_equal(found, expected)
    for name in ("n_layers_", "n_outputs_", "out_activation_", "n_iter_", "loss_curve_"):
        assert getattr(incremental, name) == getattr(local, name), name
    if classes:
        np.testing.assert_array_equal(incremental.classes_, classes["classes"])
    np.testing.assert_array_equal(incremental.predict(dX).compute(), local.predict(X))
    if not classes:
        return  # dask-ml's r2 of block-wise predictions fails for any regressor (SGDRegressor's)
    # The score method: block-wise predictions against the Dask array of targets.
    assert incremental.score(dX, dy) == pytest.approx(local.score(X, y), abs=1e-12)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_parallel_post_fit_predicts_block_by_block(name, client):
    estimator, data = ESTIMATORS[name]
    X, y, dX, _ = _dask_data(data, n=120, chunk=40)
    fitted = clone(estimator).fit(X, y)
    post = wrappers.ParallelPostFit(fitted)
    predicted = post.predict(dX)
    assert isinstance(predicted, da.Array) and predicted.numblocks == (3,)
    np.testing.assert_array_equal(predicted.compute(), fitted.predict(X))
    if is_classifier(fitted):
        proba = post.predict_proba(dX)
        assert proba.numblocks == (3, 1)
        np.testing.assert_array_equal(proba.compute(), fitted.predict_proba(X))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_the_estimator_type_is_named_both_ways(name):
    """dask-ml reads ``_estimator_type`` (its searches' own property), scikit-learn the tags."""
    estimator, _ = ESTIMATORS[name]
    kind = "regressor" if "Regressor" in name else "classifier"
    assert estimator._estimator_type == kind
    assert estimator.__sklearn_tags__().estimator_type == kind
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from dask_ml.model_selection import GridSearchCV as DaskGridSearchCV
        assert DaskGridSearchCV(estimator, GRID)._estimator_type == kind
