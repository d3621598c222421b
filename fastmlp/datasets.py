"""Data for the ``fastmlp`` command and for examples: embedded data sets and users' CSV files.

Every loader returns ``(X, y, feature_names)``: a float64 feature matrix, the labels in their
original values and the column names. CSV problems raise ``ValueError`` naming the file, the
column and the line, so the command can show them as one line.
"""

import csv
import os
import warnings
from importlib import resources

import numpy as np

DATASETS = ("breast-cancer", "loan", "digits", "moons")
DESCRIPTIONS = {
    "breast-cancer": "Wisconsin breast-cancer diagnosis (scikit-learn): malignant or benign",
    "loan": "the seed notebooks' loan-approval table: approve or reject ten applicants",
    "digits": "8x8 images of handwritten digits (scikit-learn) as a binary task: even or odd",
    "moons": "two interleaving half-moons (scikit-learn's make_moons) with Gaussian noise",
}


def load_dataset(name: str, *, n_samples: int = 1000, noise: float = 0.2,
                 random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One of :data:`DATASETS` by name; ``n_samples``, ``noise`` and ``random_state`` apply
    to the generated "moons" set only."""
    if name == "breast-cancer":
        return load_breast_cancer()
    if name == "loan":
        return load_loan()
    if name == "digits":
        return load_digits_parity()
    if name == "moons":
        return make_moons(n_samples, noise=noise, random_state=random_state)
    raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}.")


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """569 tumours, 30 features, labels "malignant" / "benign"."""
    from sklearn.datasets import load_breast_cancer as load

    data = load()
    return data.data, data.target_names[data.target], [str(n) for n in data.feature_names]


def load_loan(unseen: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The seed notebooks' ten applicants (income in lakhs, credit score / 100, existing
    loans; labels "approve" / "reject"), or with ``unseen=True`` the three applicants held
    out of training, with their expected decisions."""
    name = "loan_approval_unseen.csv" if unseen else "loan_approval.csv"
    with resources.as_file(resources.files(__package__) / "data" / name) as path:
        return read_csv(path, target="decision")


def load_digits_parity() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """1797 handwritten digits as 64 pixel intensities; the label says whether the digit is
    "even" or "odd" (a harder binary task than one digit against the rest)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data, np.where(data.target % 2 == 0, "even", "odd"), list(data.feature_names)


def make_moons(n_samples: int = 1000, *, noise: float = 0.2,
               random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two interleaving half-moons in the plane, labels 0 and 1, any number of samples."""
    from sklearn.datasets import make_moons as make

    if n_samples < 2:
        raise ValueError(f"moons needs at least 2 samples, got {n_samples}.")
    X, y = make(n_samples, noise=noise, random_state=random_state)
    return X, y, ["x1", "x2"]


# ------------------------------------------------------------------------------ CSV files

def read_csv(path: str | os.PathLike, target: str | None = None
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, labels and feature names from a CSV file with a header row.

    ``target`` (default: the last column) holds the labels, in any values; labels that are
    all integers become ints, others stay strings. Every other column must be numeric.
    """
    header = read_header(path)
    target = header[-1] if target is None else target
    column_index(header, target, path)
    names = [name for name in header if name != target]
    if not names:
        raise ValueError(f"{path}: no feature columns besides the target {target!r}.")
    X, labels = read_columns(path, names, target)
    return X, labels, names


def read_header(path: str | os.PathLike) -> list[str]:
    return _header(path)[0]


def column_index(header: list[str], name: str, path) -> int:
    if name not in header:
        raise ValueError(f"{path} has no column {name!r}; its columns are: "
                         f"{', '.join(header)}.")
    return header.index(name)


def read_columns(path: str | os.PathLike, names: list[str], target: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """The columns ``names`` as a float64 matrix, and the ``target`` column's labels (None
    without a target). A non-numeric, empty or non-finite feature, an empty label or a row
    of the wrong length is an error naming its column and line."""
    header, skip = _header(path)
    try:
        return _read_columns_fast(path, header, skip, names, target)
    except ValueError:
        # NumPy's parser stops at the first problem without saying it in the user's terms;
        # the csv module reads the file again and names the column and the line.
        return _read_columns_carefully(path, names, target)


def _header(path) -> tuple[list[str], int]:
    """The header row and the number of lines up to it (blank lines may come first)."""
    with _open_text(path) as file:
        reader = csv.reader(file, skipinitialspace=True)
        header = next((row for row in _decoded(reader, path) if any(c.strip() for c in row)),
                      None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a header row and data rows.")
        header = [cell.strip() for cell in header]
        if any(not name for name in header):
            raise ValueError(f"{path}: column {header.index('') + 1} of the header row has "
                             "no name.")
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise ValueError(f"{path}: column name(s) {', '.join(map(repr, repeated))} "
                             "appear more than once in the header.")
        return header, reader.line_num


def _open_text(path):
    return open(path, newline="", encoding="utf-8-sig")


def _decoded(reader, path):
    """The reader's rows, with decoding and CSV errors as ValueErrors naming the file."""
    try:
        yield from reader
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a UTF-8 text (CSV) file.") from None
    except csv.Error as error:
        raise ValueError(f"{path} is not a valid CSV file: {error}") from None


def _read_columns_fast(path, header, skip, names, target):
    """NumPy's C parser: several times faster than the csv module on large files. Raises
    ValueError for anything the careful reader would report (or might read differently)."""
    def load(columns, dtype):
        with warnings.catch_warnings():
            # Blank lines are skipped, as the careful reader does; NumPy warns about it.
            warnings.filterwarnings("ignore", "Input line", UserWarning)
            return np.loadtxt(path, usecols=columns, dtype=dtype, delimiter=",",
                              skiprows=skip, comments=None, quotechar='"',
                              encoding="utf-8-sig", ndmin=2)

    X = load([header.index(name) for name in names], np.float64)
    if X.shape[0] == 0 or X.shape[1] != len(names) or not np.isfinite(X).all():
        raise ValueError("the careful reader explains this")
    if target is None:
        return X, None
    labels = np.char.strip(load([header.index(target)], str)[:, 0])
    if len(labels) != len(X) or (labels == "").any():
        raise ValueError("the careful reader explains this")
    return X, parse_labels(labels)


def _read_columns_carefully(path, names, target):
    header, rows, lines = _read_table(path)
    X = _numeric_columns(path, header, rows, lines, names)
    if target is None:
        return X, None
    column = header.index(target)
    labels = [row[column] for row in rows]
    missing = [line for line, label in zip(lines, labels) if not label]
    if missing:
        raise ValueError(f"{path}, line {missing[0]}: no label in column {target!r}.")
    return X, parse_labels(np.array(labels, dtype=str))


def _read_table(path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows (cells stripped; blank rows skipped) and each row's line number."""
    header, _ = _header(path)
    rows, lines = [], []
    with _open_text(path) as file:
        reader = csv.reader(file, skipinitialspace=True)
        data = _decoded(reader, path)
        next(row for row in data if any(cell.strip() for cell in row))  # the header
        for row in data:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, but the "
                                 f"header has {len(header)}.")
            rows.append([cell.strip() for cell in row])
            lines.append(reader.line_num)
    if not rows:
        raise ValueError(f"{path} has a header but no data rows.")
    return header, rows, lines


def _numeric_columns(path, header, rows, lines, names) -> np.ndarray:
    cells = np.array(rows, dtype=str)
    X = np.empty((len(rows), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        column = cells[:, header.index(name)]
        try:
            X[:, j] = column.astype(np.float64)
        except ValueError:
            # numpy does not say which cell failed; find the first one for the message.
            row = next(i for i, cell in enumerate(column) if not _is_number(cell))
            what = "is empty" if not column[row] else f"has {str(column[row])!r}"
            raise ValueError(f"{path}: column {name!r} must be numeric, but line {lines[row]} "
                             f"{what}.") from None
        bad = np.flatnonzero(~np.isfinite(X[:, j]))
        if len(bad):
            raise ValueError(f"{path}: column {name!r}, line {lines[bad[0]]}: "
                             f"{str(column[bad[0]])!r} is not a finite number.")
    return X


def _is_number(text: str) -> bool:
    try:
        np.array([text]).astype(np.float64)  # numpy's parser, the one that failed
    except ValueError:
        return False
    return True


def parse_labels(labels: np.ndarray) -> np.ndarray:
    """String labels as ints when every one is written as an integer ("0", "-3"), else as
    they are: either way a prediction prints exactly as the label was written."""
    try:
        as_ints = labels.astype(np.int64)
    except (ValueError, OverflowError):
        return labels
    return as_ints if (as_ints.astype(str) == labels).all() else labels
