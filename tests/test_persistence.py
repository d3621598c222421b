"""Model files: FastMLP.save / fastmlp.load round trips, validation of bad files, atomic
writes, and pickling."""

import contextlib
import io
import json
import os
import pickle
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import FastMLP, persistence
from fastmlp._base import CACHES
from fastmlp._state import OptimizerState
from fastmlp.kernels.layout import is_aligned, make_layout

pytestmark = pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")


class Frame:
    """A DataFrame's two attributes FastMLP reads, so feature names need no pandas."""

    def __init__(self, values, columns):
        self.values, self.columns = values, list(columns)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def data(n=60, n_features=4, labels=("no", "yes"), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    score = X[:, 0] + 0.5 * X[:, 1]
    bins = np.quantile(score, np.linspace(0, 1, len(labels) + 1)[1:-1])
    return X, np.asarray(labels)[np.digitize(score, bins)]


def assert_same_state(original: FastMLP, loaded: FastMLP) -> None:
    """Every attribute the estimator has, with equal values (RNGs compared by state); what
    only saves work is not state."""
    state = {name: value for name, value in vars(original).items() if name not in CACHES}
    assert set(state) == set(vars(loaded)) - set(CACHES)
    for name, value in state.items():
        other = getattr(loaded, name)
        if isinstance(value, np.random.Generator):
            assert value.bit_generator.state.keys() == other.bit_generator.state.keys()
            assert str(value.bit_generator.state) == str(other.bit_generator.state), name
        elif isinstance(value, np.ndarray):
            assert value.dtype == other.dtype and np.array_equal(value, other), name
        elif isinstance(value, OptimizerState):
            assert (value.name, value.steps) == (other.name, other.steps), name
            assert value.buffers.keys() == other.buffers.keys(), name
            for key, buffer in value.buffers.items():
                assert buffer.dtype == other.buffers[key].dtype, name
                assert np.array_equal(buffer, other.buffers[key]), name
        elif name in ("coefs_", "intercepts_"):     # views of the flat buffer
            assert len(value) == len(other), name
            for array, loaded_array in zip(value, other):
                assert array.dtype == loaded_array.dtype, name
                assert np.array_equal(array, loaded_array), name
            assert all(np.shares_memory(array, loaded._params) for array in other), name
        elif name in ("init", "random_state") and not isinstance(value, (int, str, float)):
            continue  # checked by the tests that set them
        else:
            assert type(value) is type(other) and value == other, name


CASES = {
    "binary strings": dict(labels=("no", "yes"), params={}),
    "multiclass ints": dict(labels=(3, 7, 9), params={"hidden_layer_sizes": (5, 4)}),
    "float32": dict(labels=("a", "b"), params={}, dtype=np.float32),
    "momentum": dict(labels=(0, 1), params={"momentum": 0.9, "alpha": 0.01}),
    "early stopping": dict(labels=("x", "y", "z"), params={"early_stopping": True}),
    "bool labels": dict(labels=(False, True), params={"activation": "tanh"}),
    "full batch": dict(labels=(-1.0, 2.0), params={"batch_size": "full", "shuffle": False}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_round_trip_predicts_identically_and_continues_training(tmp_path, case):
    X, y = data(labels=case["labels"])
    X = X.astype(case.get("dtype", np.float64))
    params = {"hidden_layer_sizes": 6, "max_iter": 4, "random_state": 1, **case["params"]}
    model = FastMLP(**params).fit(X, y)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastmlp.load(path)

    assert_same_state(model, loaded)
    assert np.array_equal(model.predict_proba(X), loaded.predict_proba(X))
    assert np.array_equal(model.predict(X), loaded.predict(X))
    assert loaded.predict(X).dtype == model.predict(X).dtype
    for continued in (model, loaded):
        continued.set_params(early_stopping=False)  # partial_fit refuses early stopping
        continued.partial_fit(X, y)
        continued.partial_fit(X, y)
    assert_same_state(model, loaded)


def test_warm_start_fit_continues_identically(tmp_path):
    X, y = data()
    model = FastMLP(5, max_iter=3, random_state=2, warm_start=True, momentum=0.5).fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz")
    model.fit(X, y)
    loaded.fit(X, y)
    assert_same_state(model, loaded)


def test_feature_names_and_object_labels_round_trip(tmp_path):
    X, _ = data()
    y = np.array(["cat" if v > 0 else "dog" for v in X[:, 0]], dtype=object)
    model = FastMLP(4, max_iter=2, random_state=0).fit(Frame(X, ["a", "b", "c", "d"]), y)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz")
    assert loaded.classes_.dtype == object and loaded.feature_names_in_.dtype == object
    assert_same_state(model, loaded)
    frame = Frame(X, ["a", "b", "c", "d"])
    assert np.array_equal(model.predict(frame), loaded.predict(frame))


def test_multilabel_round_trip(tmp_path):
    X, _ = data()
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 2] > 0], axis=1).astype(int)
    model = FastMLP(5, max_iter=2, random_state=0).fit(X, Y)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz")
    assert_same_state(model, loaded)
    assert np.array_equal(model.predict_proba(X), loaded.predict_proba(X))


@pytest.mark.parametrize("make_state", [
    lambda: None, lambda: 7, lambda: np.random.default_rng(7),
    lambda: np.random.RandomState(7), lambda: np.random.SeedSequence(7),
    lambda: np.random.Generator(np.random.MT19937(7)),
], ids=["None", "int", "Generator", "RandomState", "SeedSequence", "MT19937"])
def test_every_random_state_kind_survives(tmp_path, make_state):
    X, y = data()
    model = FastMLP(4, max_iter=2, random_state=make_state()).fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz")
    assert type(loaded.random_state) is type(model.random_state)
    model.partial_fit(X, y)
    loaded.partial_fit(X, y)
    assert np.array_equal(model._params, loaded._params)
    # A fresh fit from the saved random_state draws what the original's would have.
    if isinstance(model.random_state, (int, np.random.SeedSequence)):
        refit = FastMLP(4, max_iter=2, random_state=make_state()).fit(X, y)
        assert np.array_equal(refit._params, loaded.set_params(warm_start=False).fit(X, y)._params)


def test_explicit_init_arrays_are_kept(tmp_path):
    X, y = data(n_features=3)
    coefs = [np.full((3, 4), 0.1), np.full((4, 1), -0.2)]
    intercepts = [np.zeros(4), np.ones(1)]
    model = FastMLP(4, max_iter=2, init=(coefs, intercepts), shuffle=False).fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.load(tmp_path / "m.npz")
    loaded_coefs, loaded_intercepts = loaded.init
    for expected, got in zip(coefs + intercepts, loaded_coefs + loaded_intercepts):
        assert np.array_equal(expected, got)
    assert np.array_equal(FastMLP(**loaded.get_params()).fit(X, y)._params, model._params)


def test_file_is_a_plain_npz_with_json_metadata(tmp_path):
    X, y = data()
    model = FastMLP(3, max_iter=1, random_state=0).fit(X, y)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert np.array_equal(archive["params"], model._params)
        assert archive["classes"].dtype.kind == "U"
    metadata = json.loads(zipfile.ZipFile(tmp_path / "m.npz").read("metadata.json"))
    assert metadata["fastmlp_version"] == fastmlp.__version__
    assert metadata["format_version"] == persistence.FORMAT_VERSION
    assert metadata["params"]["hidden_layer_sizes"] == 3


def test_save_needs_a_fitted_model(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        FastMLP().save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_unstorable_labels_are_refused_before_writing(tmp_path):
    model = FastMLP(3, max_iter=1).fit(*data())
    model.classes_ = np.array([1, "a"], dtype=object)  # mixed types: only pickle could store
    with pytest.raises(ValueError, match="without pickle"):
        model.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------ bad files

@pytest.fixture
def saved(tmp_path) -> Path:
    X, y = data(labels=("a", "b", "c"))
    path = tmp_path / "good.npz"
    FastMLP((5, 4), max_iter=2, random_state=0).fit(X, y).save(path)
    return path


def rewrite(path: Path, keep_checksum=False, **entries) -> None:
    """Replace entries of the model zip: bytes or str as they are, arrays as .npy (None
    removes the entry). The metadata's checksum is dropped unless ``keep_checksum``: the file
    is then one saved before fastmlp recorded checksums, or edited by someone who removed it,
    and every other check must still hold."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if not keep_checksum:
        with contextlib.suppress(json.JSONDecodeError):
            metadata = json.loads(entries.get("metadata", contents["metadata.json"]))
            metadata.pop(persistence.DIGEST, None)
            entries["metadata"] = json.dumps(metadata)
    for name, value in entries.items():
        key = "metadata.json" if name == "metadata" else f"{name}.npy"
        if value is None:
            del contents[key]
            continue
        if isinstance(value, np.ndarray):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, value, allow_pickle=True)
            value = buffer.getvalue()
        contents[key] = value.encode() if isinstance(value, str) else value
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in contents.items():
            archive.writestr(name, value)


def metadata_of(path: Path) -> dict:
    return json.loads(zipfile.ZipFile(path).read("metadata.json"))


def load_error(path) -> str:
    with pytest.raises(ValueError) as error:
        fastmlp.load(path)
    assert str(path) in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -22, -1])
def test_truncated_file(saved, keep):
    content = saved.read_bytes()
    keep = int(len(content) * keep) if isinstance(keep, float) else keep
    saved.write_bytes(content[:keep])
    assert "not a readable zip archive" in load_error(saved)


def test_corrupted_bytes_are_detected(saved):
    content = bytearray(saved.read_bytes())
    start = content.index(b"params.npy") + 200  # inside the (compressed) parameter data
    content[start:start + 8] = bytes(8)
    saved.write_bytes(bytes(content))
    assert "corrupt" in load_error(saved)


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not a readable zip archive" in load_error(text)
    other = tmp_path / "arrays.npz"
    np.savez(other, a=np.arange(3))
    assert "no metadata.json" in load_error(other)
    with pytest.raises(FileNotFoundError):
        fastmlp.load(tmp_path / "missing.npz")


class _Marker:
    """Unpickling this would create a file: the loader must never get that far."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickled_object_arrays_are_refused_without_unpickling(saved, tmp_path):
    marker = tmp_path / "executed"
    rewrite(saved, classes=np.array([_Marker(str(marker))] * 3, dtype=object))
    assert "dtype object" in load_error(saved)
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format="something-else"), "does not describe"),
    (lambda m: m.update(format_version=99), "newer than this fastmlp"),
    (lambda m: m.update(estimator="Other"),
     "holds a 'Other', not one of ['FastMLP', 'FastMLPRegressor']"),
    (lambda m: m.pop("fitted"), "lacks its 'fitted' section"),
    (lambda m: m["fitted"].update(dtype="float16"), "float32 or float64"),
    (lambda m: m["fitted"].update(kind="regression"), "target kind"),
    (lambda m: m["fitted"].update(n_iter_=-1), "non-negative integer"),
    (lambda m: m["fitted"].update(n_epochs=5), "loss_curve"),
    (lambda m: m["fitted"].update(n_iter_=5), "exceeds the epochs of the loss curve"),
    (lambda m: m["fitted"].update(n_features_in_=9), "n_features_in_"),
    (lambda m: m["fitted"].update(best_loss_="big"), "best_loss_"),
    (lambda m: m["params"].update(hidden_layer_sizes=[5]), "hidden_layer_sizes [5]"),
    (lambda m: m["params"].update(hidden_layer_sizes=[5, 5]), "does not match"),
    (lambda m: m["params"].update(activation="bogus"), "activation"),
    (lambda m: m["params"].update(init={"arrays": "init_params.npy"}),
     "init_params.npy are missing"),
    (lambda m: m["params"].update(surprise=1), "unknown parameter"),
    (lambda m: m["params"].update(random_state={"kind": "os.system"}), "random_state"),
    (lambda m: m["rng_state"].update(bit_generator="Evil"), "bit generator"),
    (lambda m: m["rng_state"].update(state="x"), "RNG state"),
])
def test_inconsistent_metadata(saved, change, message):
    metadata = metadata_of(saved)
    change(metadata)
    rewrite(saved, metadata=json.dumps(metadata))
    assert message in load_error(saved)


def test_metadata_that_is_not_json(saved):
    rewrite(saved, metadata="{not json")
    assert "not valid JSON" in load_error(saved)


@pytest.mark.parametrize("entries, message", [
    ({"params": None}, "params.npy are missing"),
    ({"params": np.zeros(3)}, "params has dtype float64 and shape (3,); this model needs "
                              "float64 of shape (64,)"),
    ({"velocity": np.zeros(64, dtype=np.float16)}, "velocity has dtype float16"),
    ({"params": np.zeros(64, dtype=">f4")}, "needs float64"),
    ({"loss_curve": np.array([0.5, np.nan])}, "NaN or infinite"),
    ({"layout": np.zeros((3, 5), dtype=np.int64)}, "layer width"),
    ({"layout": np.array([[0, 20, 4, 5, 0], [0, 45, 5, 4, 5], [49, 61, 4, 3, 9]])},
     "offsets are inconsistent"),
    ({"classes": np.array(["a", "b"])}, "numbers or text of shape (3,)"),
    ({"classes": np.array(["c", "b", "a"])}, "sorted and distinct"),
    ({"classes": np.array([[1, 2, 3]])}, "shape (1, 3)"),
    ({"feature_names": np.array(["x"])}, "feature_names has dtype <U1 and shape (1,)"),
    ({"feature_names": np.array([1, 2, 3, 4])}, "needs text of shape (4,)"),
    ({"params": b"garbage!!"}, "not a .npy array"),
])
def test_inconsistent_arrays(saved, entries, message):
    rewrite(saved, **entries)
    assert message in load_error(saved)


def test_params_with_nan_are_refused(saved):
    with np.load(saved) as archive:
        params = archive["params"].copy()
    params[3] = np.nan
    rewrite(saved, params=params)
    assert "params contains NaN" in load_error(saved)


def test_npy_header_promising_more_data_than_present(saved):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(64))
    rewrite(saved, params=buffer.getvalue()[:-40])
    assert "truncated or corrupt" in load_error(saved)


# ------------------------------------------------------------------------------ atomic writes

def test_a_failed_save_leaves_the_old_file_intact(saved, monkeypatch):
    before = saved.read_bytes()
    X, y = data(labels=("a", "b", "c"))
    other = FastMLP((5, 4), max_iter=3, random_state=9).fit(X, y)
    written = []

    def fail_after_the_first_array(file, array, allow_pickle):
        if written:
            file.write(b"half an array")
            raise OSError("disk full")
        written.append(array)
        real_write_array(file, array, allow_pickle=allow_pickle)

    real_write_array = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", fail_after_the_first_array)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]  # no temporary file left behind
    monkeypatch.undo()
    assert fastmlp.load(saved).n_iter_ == 2  # the old model, not the new one (3 epochs)


@pytest.mark.parametrize("error", [OSError("rename failed"), KeyboardInterrupt()])
def test_interrupted_rename_leaves_the_old_file_intact(saved, monkeypatch, error):
    before = saved.read_bytes()
    model = fastmlp.load(saved)

    def fail(*args):
        raise error

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(type(error)):
        model.save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


def test_save_replaces_an_existing_file_and_respects_the_umask(saved):
    model = fastmlp.load(saved)
    model.partial_fit(*data(labels=("a", "b", "c")))
    umask = os.umask(0o022)
    try:
        model.save(str(saved))
    finally:
        os.umask(umask)
    assert np.array_equal(fastmlp.load(saved)._params, model._params)
    assert saved.stat().st_mode & 0o777 == 0o644


def test_save_into_a_missing_directory_fails_cleanly(tmp_path):
    model = FastMLP(3, max_iter=1).fit(*data())
    with pytest.raises(FileNotFoundError):
        model.save(tmp_path / "missing" / "m.npz")


def test_errors_name_the_path_the_user_gave(tmp_path):
    model = FastMLP(3, max_iter=1).fit(*data())
    target = tmp_path / "a directory"
    target.mkdir()
    with pytest.raises(OSError) as error:
        model.save(target)
    assert error.value.filename == str(target)
    assert os.listdir(tmp_path) == [target.name]


# ------------------------------------------------------------------------------ pickle

def test_pickle_round_trip(tmp_path):
    X, y = data(labels=("a", "b", "c"))
    model = FastMLP(5, max_iter=3, random_state=0, momentum=0.9).fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    assert np.array_equal(model.predict_proba(X), copy.predict_proba(X))
    model.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert np.array_equal(model._params, copy._params)
    unfitted = pickle.loads(pickle.dumps(FastMLP(7, activation="tanh")))
    assert unfitted.get_params() == FastMLP(7, activation="tanh").get_params()


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_memory_mapped_load_predicts_and_trains_as_a_copy(tmp_path, solver):
    """joblib's ``mmap_mode`` (scikit-learn's parallel searches load large estimators so)
    gives read-only arrays: the unpickled model owns writable copies, so that it trains (Adam
    and momentum update their state) exactly as the model it was saved from, and predicts
    without a kernel compiled for read-only weights."""
    import joblib

    from fastmlp.kernels import predict

    X, y = data(labels=("a", "b", "c"))
    model = FastMLP(5, max_iter=3, random_state=0, solver=solver, momentum=0.9).fit(X, y)
    joblib.dump(model, tmp_path / "model.joblib")
    mapped = joblib.load(tmp_path / "model.joblib", mmap_mode="r")
    assert np.array_equal(mapped.predict_proba(X), model.predict_proba(X))
    assert all(signature[0].mutable and signature[1].mutable
               for signature in predict.forward.overloads)
    mapped.partial_fit(X, y)
    model.partial_fit(X, y)
    assert_same_state(model, mapped)
    assert all(np.shares_memory(view, mapped._params) for view in mapped.coefs_)


@pytest.mark.parametrize("param", ["activation", "hidden_layer_sizes", "backend"])
def test_a_parameter_missing_from_the_metadata_is_refused(saved, param):
    # Taking the default instead would silently change the loaded model's answers.
    metadata = metadata_of(saved)
    del metadata["params"][param]
    rewrite(saved, metadata=json.dumps(metadata))
    assert param in load_error(saved)


def test_trained_loaded_and_unpickled_parameters_start_on_a_cache_line(tmp_path):
    """The kernels stream weight rows in 64-byte vectors: the buffer is aligned when created
    and when loaded, and an unpickled model (NumPy's own alignment) is realigned before it
    trains, without changing its training."""
    X, y = data()
    model = FastMLP(hidden_layer_sizes=(8,), max_iter=2, tol=0, random_state=0).fit(X, y)
    assert is_aligned(model._params)
    model.save(tmp_path / "model.npz")
    assert is_aligned(fastmlp.load(tmp_path / "model.npz")._params)
    clone = pickle.loads(pickle.dumps(model))
    misaligned = np.empty(clone._params.size + 1)[1:]
    misaligned[:] = clone._params
    clone._params = misaligned
    clone.partial_fit(X, y)
    model.partial_fit(X, y)
    assert is_aligned(clone._params)
    assert_same_state(model, clone)


# ------------------------------------------------------------------------------ hostile files

def zip_bytes(entries: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def entries_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def traced_load(path):
    """(the model or the ValueError, peak traced bytes, seconds) of one load."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        outcome = fastmlp.load(path)
    except ValueError as error:
        outcome = error
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, peak, seconds


def zeros_npy_entry(archive: zipfile.ZipFile, name: str, dtype: str, n: int) -> None:
    """An entry of n zeros written in pieces, as a bomb's author would (deflate: ~1000:1)."""
    with archive.open(name, "w", force_zip64=True) as entry:
        np.lib.format.write_array_header_1_0(entry, {"descr": dtype, "fortran_order": False,
                                                     "shape": (n,)})
        piece = bytes(2**22)
        left = n * np.dtype(dtype).itemsize
        while left:
            entry.write(piece[:left])
            left -= min(left, len(piece))


def test_a_params_entry_inflating_far_beyond_the_model_is_refused_unread(saved):
    """The attack that motivated the checks: a valid model whose params.npy declares 2**24
    float64 zeros (128 MiB, deflated to ~130 KB) used to be read and copied in full before its
    shape was found wrong. Now the zip directory alone refuses it."""
    entries = entries_of(saved)
    with zipfile.ZipFile(saved, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            if name == "params.npy":
                zeros_npy_entry(archive, name, "<f8", 2**24)
            else:
                archive.writestr(name, content)
    assert saved.stat().st_size < 2**20
    error, peak, seconds = traced_load(saved)
    assert isinstance(error, ValueError) and "more than a file of" in str(error)
    assert peak < 2**20 and seconds < 1


def test_a_bomb_declared_consistently_everywhere_is_refused_unread(saved):
    """Metadata, layout table and headers all agree on a network of 4.2 million parameters,
    whose params and velocity are deflated zeros: nothing in the file contradicts itself, but
    a file of its size cannot hold that model."""
    metadata = metadata_of(saved)
    metadata["params"]["hidden_layer_sizes"] = [2**19]
    layout, n_params, _ = make_layout([4, 2**19, 3])
    entries = entries_of(saved)
    entries["metadata.json"] = json.dumps(metadata)
    layout_npy = io.BytesIO()
    np.lib.format.write_array(layout_npy, layout)
    entries["layout.npy"] = layout_npy.getvalue()
    with zipfile.ZipFile(saved, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            if name in ("params.npy", "velocity.npy"):
                zeros_npy_entry(archive, name, "<f8", n_params)
            else:
                archive.writestr(name, content)
    error, peak, seconds = traced_load(saved)
    assert isinstance(error, ValueError) and "zip bomb" in str(error)
    assert peak < 2**20 and seconds < 1


def test_sizes_the_zip_directory_misstates_are_refused_unread(saved):
    """A directory claiming a huge entry is refused from the directory; one understating an
    entry is refused (by the zip's CRC: zipfile reads ahead) without reading past it."""
    content = saved.read_bytes()
    record = content.index(b"PK\x01\x02", content.index(b"PK\x01\x02"))
    while content[record + 46:record + 56] != b"params.npy":
        record = content.index(b"PK\x01\x02", record + 4)
    for size, message in [(2**31, "more than a file of"), (200, "params.npy")]:
        edited = bytearray(content)
        struct.pack_into("<I", edited, record + 24, size)  # the uncompressed size
        saved.write_bytes(bytes(edited))
        error, peak, _ = traced_load(saved)
        assert isinstance(error, ValueError) and message in str(error)
        assert peak < 2**20


def test_an_oversized_metadata_entry_is_refused_unread(saved):
    entries = entries_of(saved)
    entries["metadata.json"] = entries["metadata.json"] + b" " * persistence.METADATA_MAX_BYTES
    saved.write_bytes(zip_bytes(entries))
    error, peak, _ = traced_load(saved)
    assert "metadata.json declares" in str(error) and peak < 2**20


def test_repeated_entries_are_refused(saved):
    entries = list(zipfile.ZipFile(saved).infolist())
    with zipfile.ZipFile(saved, "a") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr(entries[1].filename, zipfile.ZipFile(saved).read(entries[1]))
    assert "more than one entry named" in load_error(saved)


def test_a_huge_seed_pool_is_refused(saved, tmp_path):
    metadata = metadata_of(saved)
    metadata["params"]["random_state"] = {"kind": "SeedSequence",
                                          "state": {"entropy": 1, "pool_size": 10**9}}
    rewrite(saved, metadata=json.dumps(metadata))
    error, peak, _ = traced_load(saved)
    assert "pool_size" in str(error) and peak < 2**20
    model = FastMLP(3, max_iter=1, random_state=np.random.SeedSequence(1, pool_size=2048))
    with pytest.raises(ValueError, match="pool_size"):
        model.fit(*data()).save(tmp_path / "m.npz")


def test_loading_costs_a_small_multiple_of_the_model(tmp_path):
    """Peak traced memory of a load (numpy's allocations included) against the bytes of the
    model's parameter buffer: reading, the aligned copy and the velocity."""
    X, y = data(n=200, n_features=300, labels=tuple("abcdefghij"))
    model = FastMLP((256, 128), max_iter=1, random_state=0, backend="numpy").fit(
        Frame(X, [f"feature {i}" for i in range(300)]), y)
    model.save(tmp_path / "m.npz")
    loaded, peak, _ = traced_load(tmp_path / "m.npz")
    assert np.array_equal(loaded._params, model._params)
    assert peak < 4 * model._params.nbytes
    assert tmp_path.joinpath("m.npz").stat().st_size < 1.1 * model._params.nbytes + 2**16


# ------------------------------------------------------------------------------ checksum

def test_the_parameters_are_stored_raw_and_the_rest_compressed(saved):
    with zipfile.ZipFile(saved) as archive:
        kinds = {info.filename: info.compress_type for info in archive.infolist()}
    assert kinds["params.npy"] == zipfile.ZIP_STORED
    assert kinds["velocity.npy"] == zipfile.ZIP_DEFLATED


def test_a_weight_changed_with_a_valid_zip_is_refused_by_the_checksum(saved):
    with np.load(saved) as archive:
        params = archive["params"].copy()
    params[5] = np.nextafter(params[5], np.inf)
    rewrite(saved, keep_checksum=True, params=params)
    assert "SHA-256 checksum" in load_error(saved)


@pytest.mark.parametrize("change", [
    lambda m: m["params"].update(activation="tanh"),
    lambda m: m["fitted"].update(best_loss_=0.125),
    lambda m: m.update(sha256="0" * 64),
])
def test_an_edited_value_is_refused_by_the_checksum(saved, change):
    metadata = metadata_of(saved)
    change(metadata)
    rewrite(saved, keep_checksum=True, metadata=json.dumps(metadata))
    assert "SHA-256 checksum" in load_error(saved)


def test_the_checksum_covers_values_not_their_representation(saved):
    """The same arrays stored big-endian, Fortran-ordered and in another zip layout load as
    the same model: the checksum is of the model, not of the bytes."""
    original = fastmlp.load(saved)
    with np.load(saved) as archive:
        params, layout = archive["params"], archive["layout"]
    rewrite(saved, keep_checksum=True, params=params.astype(">f8"),
            layout=np.asfortranarray(layout))
    assert_same_state(original, fastmlp.load(saved))


def test_a_file_in_the_earlier_layout_still_loads(saved):
    """Files saved before fastmlp recorded checksums and stored params.npy uncompressed."""
    original = fastmlp.load(saved)
    entries = entries_of(saved)
    metadata = json.loads(entries["metadata.json"])
    del metadata[persistence.DIGEST]
    entries["metadata.json"] = json.dumps(metadata, indent=1)
    saved.write_bytes(zip_bytes(entries, compression=zipfile.ZIP_DEFLATED))
    assert_same_state(original, fastmlp.load(saved))


def test_save_refuses_metadata_beyond_the_cap(tmp_path, monkeypatch):
    model = FastMLP(3, max_iter=1).fit(*data())
    monkeypatch.setattr(persistence, "METADATA_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="Cannot save this model: its metadata.json would hold"):
        model.save(tmp_path / "m.npz")
