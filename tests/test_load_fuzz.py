"""Fuzzing fastmlp.load: saved models of every kind, mutated byte by byte, entry by entry and
value by value (bit flips, truncations, splices, duplicated, missing and extra entries, edited
.npy headers, JSON values and zip directory fields, zip bombs). Every load must return a model
that predicts exactly like the original or raise ValueError naming the file, within 1 s and
100 MB. Derandomised and bounded: the same cases run every time, in well under a minute."""

import copy
import io
import json
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp import FastMLP, persistence
from test_persistence import Frame, traced_load

pytestmark = pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")

SECONDS_PER_LOAD = 1.0
BYTES_PER_LOAD = 100 * 2**20
FUZZ = settings(derandomize=True, max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _fit_models():
    """(model, X to predict) of every kind a file can hold. The NumPy backend keeps the test
    free of kernel compiles; files do not depend on the backend that trained them."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    score = X[:, 0] + 0.5 * X[:, 1]
    three = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    numpy = dict(backend="numpy", max_iter=3)
    coefs = [rng.normal(size=(4, 3)), rng.normal(size=(3, 1))]
    intercepts = [np.zeros(3), np.zeros(1)]
    frame = Frame(X.astype(np.float32), ["a", "b", "c", "d"])
    return {
        "binary, float64, momentum, str labels":
            (FastMLP(6, momentum=0.9, random_state=0, **numpy)
             .fit(X, np.where(score > 0, "yes", "no")), X),
        "multiclass, float32, early stopping, feature names, RandomState":
            (FastMLP((5, 4), early_stopping=True, random_state=np.random.RandomState(1),
                     **numpy).fit(frame, np.array([3, 7, 9])[three]), frame),
        "multi-label, Nesterov momentum, SeedSequence":
            (FastMLP(4, momentum=0.5, random_state=np.random.SeedSequence(3), **numpy)
             .fit(X, np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0], axis=1).astype(int)),
             X),
        "binary, float32, explicit init arrays, object labels, full batch":
            (FastMLP(3, init=(coefs, intercepts), batch_size="full", shuffle=False, **numpy)
             .fit(X.astype(np.float32), np.array(["cat", "dog"], dtype=object)[three % 2]),
             X.astype(np.float32)),
        "multiclass, float64, tanh, Generator, no momentum":
            (FastMLP((3,), activation="tanh", random_state=np.random.default_rng(5), **numpy)
             .fit(X, three), X),
    }


class Original(tuple):
    """(file bytes, X, predict_proba(X) of the saved model), shown by name in reports."""

    def __new__(cls, name, content, X, probabilities):
        original = super().__new__(cls, (content, X, probabilities))
        original.name = name
        return original

    def __repr__(self):
        return f"<{self.name}>"


class Originals(dict):
    def __repr__(self):
        return "originals"


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Originals:
    directory = tmp_path_factory.mktemp("originals")
    saved = Originals()
    for name, (model, X) in _fit_models().items():
        path = directory / "model.npz"
        model.save(path)
        saved[name] = Original(name, path.read_bytes(), X, model.predict_proba(X))
    return saved


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mutated") / "model.npz"


# ------------------------------------------------------------------------------ zip helpers

def entries_of(content: bytes) -> list[tuple[str, bytes, int]]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return [(info.filename, archive.read(info), info.compress_type)
                for info in archive.infolist()]


def zip_of(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Duplicate name" is the point
            for name, data, compression in entries:
                archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def npy_parts(data: bytes) -> tuple[dict, bytes]:
    """A .npy entry as its header dict and its data bytes."""
    stream = io.BytesIO(data)
    np.lib.format.read_magic(stream)
    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    return {"shape": shape, "fortran_order": fortran_order,
            "descr": np.lib.format.dtype_to_descr(dtype)}, data[stream.tell():]


def npy_with_header(header: dict, body: bytes) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + body


# ------------------------------------------------------------------------------ the property

def bounded_load(content: bytes, path: Path) -> FastMLP | None:
    """Load ``content`` from ``path``: the model, or None when load raised a ValueError
    naming the file; any other exception fails the test, as does a load beyond the bounds."""
    path.write_bytes(content)
    outcome, peak, seconds = traced_load(path)
    assert seconds < SECONDS_PER_LOAD
    assert peak < BYTES_PER_LOAD
    if isinstance(outcome, ValueError):
        assert str(path) in str(outcome)
        return None
    assert isinstance(outcome, FastMLP)
    return outcome


def assert_loads_identically_or_refuses(content: bytes, path: Path, original) -> None:
    _, X, expected = original
    model = bounded_load(content, path)
    if model is not None:
        assert np.array_equal(model.predict_proba(X), expected)


def original_of(data, originals):
    name = data.draw(st.sampled_from(sorted(originals)), label="model")
    return originals[name]


# ------------------------------------------------------------------------------ byte mutations

@FUZZ
@given(data=st.data())
def test_bit_flips(originals, target, data):
    original = original_of(data, originals)
    content = bytearray(original[0])
    positions = data.draw(st.lists(st.integers(0, len(content) * 8 - 1), min_size=1,
                                   max_size=4), label="bits")
    for bit in positions:
        content[bit // 8] ^= 1 << bit % 8
    assert_loads_identically_or_refuses(bytes(content), target, original)


@FUZZ
@given(data=st.data())
def test_truncations(originals, target, data):
    original = original_of(data, originals)
    keep = data.draw(st.integers(0, len(original[0]) - 1), label="keep")
    assert_loads_identically_or_refuses(original[0][:keep], target, original)


@FUZZ
@given(data=st.data())
def test_splices(originals, target, data):
    """A range of bytes removed, replaced or inserted (and bytes prepended: a zip may follow
    other data, as self-extracting archives do)."""
    original = original_of(data, originals)
    content = original[0]
    start = data.draw(st.integers(0, len(content)), label="start")
    stop = data.draw(st.integers(start, min(len(content), start + 4096)), label="stop")
    inserted = data.draw(st.binary(max_size=64), label="inserted")
    assert_loads_identically_or_refuses(content[:start] + inserted + content[stop:], target,
                                        original)


# ------------------------------------------------------------------------------ entry mutations

@FUZZ
@given(data=st.data())
def test_duplicated_missing_and_extra_entries(originals, target, data):
    original = original_of(data, originals)
    entries = entries_of(original[0])
    action = data.draw(st.sampled_from(["duplicate", "drop", "extra", "swap"]), label="action")
    index = data.draw(st.integers(0, len(entries) - 1), label="entry")
    if action == "duplicate":
        name, _, compression = entries[index]
        other = data.draw(st.sampled_from([content for _, content, _ in entries]))
        entries.insert(data.draw(st.integers(0, len(entries))), (name, other, compression))
    elif action == "drop":
        del entries[index]
    elif action == "extra":
        name = data.draw(st.sampled_from(["extra.npy", "../outside.npy", "params.npy/",
                                          "PARAMS.NPY", "metadata.json.bak"]))
        entries.append((name, entries[index][1], zipfile.ZIP_DEFLATED))
    else:
        other = data.draw(st.integers(0, len(entries) - 1))
        (a, data_a, c_a), (b, data_b, c_b) = entries[index], entries[other]
        entries[index], entries[other] = (a, data_b, c_a), (b, data_a, c_b)
    assert_loads_identically_or_refuses(zip_of(entries), target, original)


DESCRS = ["<f8", ">f8", "<f4", ">f4", "<f2", "<i8", ">i8", "<i4", "|u1", "|b1", "<U3", "<U1",
          "|S5", "|O", "<c16", [("a", "<f8")], "(2,)<f8", "<M8[s]", "|V8"]
SHAPES = st.one_of(
    st.tuples(st.integers(-2, 2**63)),
    st.tuples(st.integers(0, 70), st.integers(0, 6)),
    st.sampled_from([(), (2**27,), (2**62, 2), (0,), (1, 1, 1)]))


@FUZZ
@given(data=st.data())
def test_edited_npy_headers(originals, target, data):
    original = original_of(data, originals)
    entries = entries_of(original[0])
    index = data.draw(st.sampled_from([i for i, (name, _, _) in enumerate(entries)
                                       if name.endswith(".npy")]), label="entry")
    name, content, compression = entries[index]
    header, body = npy_parts(content)
    field = data.draw(st.sampled_from(["shape", "descr", "fortran_order", "garbage"]))
    if field == "shape":
        header["shape"] = data.draw(SHAPES, label="shape")
    elif field == "descr":
        header["descr"] = data.draw(st.sampled_from(DESCRS), label="descr")
    elif field == "fortran_order":
        header["fortran_order"] = not header["fortran_order"]
    if field == "garbage":
        new = content[:10] + data.draw(st.binary(min_size=1, max_size=200)) + body
    else:
        try:
            new = npy_with_header(header, body)
        except ValueError:      # numpy will not write a header for this shape or descr
            return
    entries[index] = (name, new, compression)
    assert_loads_identically_or_refuses(zip_of(entries), target, original)


# ------------------------------------------------------------------------------ JSON mutations

VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 2, 2**31, 2**63, 2**64, 10**30, -(10**30),
                     0.5, -0.0, 1e308, "inf", "-inf", "nan", "", "relu", "numba",
                     "float32", "binary", "PCG64", "MT19937", [], {}, [1, 2], [10**9],
                     {"kind": "SeedSequence", "state": {"entropy": 1, "pool_size": 10**9}},
                     {"ndarray": [1, 2], "dtype": "uint64"}, {"arrays": "init_params.npy"}]),
    st.integers(), st.floats(allow_nan=False), st.text(max_size=8))


def json_paths(value, prefix=()):
    """Every path (a tuple of keys and indices) to a value inside ``value``."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:8]):
            yield from json_paths(item, (*prefix, index))


def edit_metadata(data, metadata: dict) -> dict:
    paths = [path for path in json_paths(metadata) if path]
    path = data.draw(st.sampled_from(paths), label="path")
    parent = metadata
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
    if action == "delete":
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(st.sampled_from(["extra", "kind", "pool_size", "state"]))] = \
            copy.deepcopy(data.draw(VALUES))
    else:
        # A copy: the strategy hands out the same list or dict each time it draws one.
        parent[path[-1]] = copy.deepcopy(data.draw(VALUES, label="value"))
    return metadata


def with_metadata(content: bytes, metadata) -> bytes:
    entries = [(name, json.dumps(metadata).encode() if name == "metadata.json" else data,
                compression) for name, data, compression in entries_of(content)]
    return zip_of(entries)


@FUZZ
@given(data=st.data())
def test_edited_json_values(originals, target, data):
    """With its checksum, an edited file loads as the original (an edit that changes
    nothing) or is refused."""
    original = original_of(data, originals)
    metadata = json.loads(dict((n, d) for n, d, _ in entries_of(original[0]))["metadata.json"])
    content = with_metadata(original[0], edit_metadata(data, metadata))
    assert_loads_identically_or_refuses(content, target, original)


@FUZZ
@given(data=st.data())
def test_edited_json_values_without_checksum(originals, target, data):
    """Without a checksum (files saved before fastmlp recorded one, or one removed by hand)
    an edit may make another valid model; the checks must still hold every invalid one."""
    original = original_of(data, originals)
    metadata = json.loads(dict((n, d) for n, d, _ in entries_of(original[0]))["metadata.json"])
    del metadata[persistence.DIGEST]
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        metadata = edit_metadata(data, metadata)
    bounded_load(with_metadata(original[0], metadata), target)


@FUZZ
@given(data=st.data())
def test_malformed_json(originals, target, data):
    original = original_of(data, originals)
    text = dict((n, d) for n, d, _ in entries_of(original[0]))["metadata.json"]
    garbage = data.draw(st.sampled_from([b"", b"[" * 100_000, b'{"a": ' * 50_000,
                                         b"1" * 5000, b"\xff\xfe", b"null", b"[]",
                                         text[:len(text) // 2], text + b"}", text * 2]))
    entries = [(name, garbage if name == "metadata.json" else content, compression)
               for name, content, compression in entries_of(original[0])]
    assert_loads_identically_or_refuses(zip_of(entries), target, original)


# ------------------------------------------------------------------------------ zip directory

# Fields of a central directory record: (offset, struct format).
DIRECTORY_FIELDS = {"compression": (10, "<H"), "crc": (16, "<I"), "compressed size": (20, "<I"),
                    "size": (24, "<I"), "name length": (28, "<H"), "extra length": (30, "<H"),
                    "local header offset": (42, "<I")}


@FUZZ
@given(data=st.data())
def test_edited_zip_directory_fields(originals, target, data):
    original = original_of(data, originals)
    content = bytearray(original[0])
    records = [i for i in range(len(content)) if content.startswith(b"PK\x01\x02", i)]
    record = data.draw(st.sampled_from(records), label="record")
    offset, layout = DIRECTORY_FIELDS[data.draw(st.sampled_from(sorted(DIRECTORY_FIELDS)))]
    maximum = 2 ** (8 * struct.calcsize(layout)) - 1
    value = data.draw(st.one_of(st.integers(0, maximum), st.sampled_from([0, 1, maximum])))
    struct.pack_into(layout, content, record + offset, value)
    assert_loads_identically_or_refuses(bytes(content), target, original)


# ------------------------------------------------------------------------------ zip bombs

@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_zip_bombs(originals, target, data):
    """An entry replaced by one that inflates to many times its compressed size: zeros behind
    its own header, or behind a header that declares them all."""
    original = original_of(data, originals)
    entries = entries_of(original[0])
    index = data.draw(st.integers(0, len(entries) - 1), label="entry")
    name, content, _ = entries[index]
    zeros = bytes(data.draw(st.sampled_from([2**20, 10 * 2**20, 40 * 2**20]), label="zeros"))
    if name.endswith(".npy") and data.draw(st.booleans(), label="declared"):
        header, _ = npy_parts(content)
        header["shape"] = (len(zeros) // np.dtype(header["descr"]).itemsize,)
        bomb = npy_with_header(header, zeros)
    else:
        bomb = content + zeros
    entries[index] = (name, bomb, zipfile.ZIP_DEFLATED)
    assert_loads_identically_or_refuses(zip_of(entries), target, original)


def test_every_model_kind_loads_unmutated(originals, target):
    """The property's other side: each unmutated original loads and predicts identically."""
    for original in originals.values():
        target.write_bytes(original[0])
        model = fastmlp.load(target)
        assert np.array_equal(model.predict_proba(original[1]), original[2])
