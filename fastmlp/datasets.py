"""Data for the ``fastmlp`` command and for examples: embedded data sets and users' CSV files.

Every loader returns ``(X, y, feature_names)``: a float64 feature matrix, the labels in their
original values and the column names. CSV problems raise ``ValueError`` naming the file, the
column and the line, so the command can show them as one line.
"""

import csv
import io
import itertools
import math
import warnings
from dataclasses import dataclass
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


# The breast-cancer features, as scikit-learn names them: ten measurements of the cell
# nuclei, each as the mean, the standard error and the worst (largest) value over the image.
_NUCLEUS = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
            "concave points", "symmetry", "fractal dimension")
BREAST_CANCER_FEATURES = [f"mean {m}" for m in _NUCLEUS] + [f"{m} error" for m in _NUCLEUS] + \
    [f"worst {m}" for m in _NUCLEUS]


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """569 tumours, 30 features, labels "malignant" / "benign": scikit-learn's copy of the
    data set, read from its file without importing scikit-learn (about a second, most of a
    warm ``fastmlp train``); through scikit-learn's loader where that file is not found."""
    path = _sklearn_data_file("breast_cancer.csv")
    if path is None:
        from sklearn.datasets import load_breast_cancer as load
        data = load()
        return data.data, data.target_names[data.target], [str(n) for n in data.feature_names]
    with open(path) as file:
        n_samples, n_features, *labels = next(csv.reader(file))
        table = np.loadtxt(file, delimiter=",", ndmin=2)
    if table.shape != (int(n_samples), int(n_features) + 1):
        raise ValueError(f"{path}: expected {n_samples} rows of {n_features} features and a "
                         f"label, found a table of shape {table.shape}.")
    return table[:, :-1], np.asarray(labels)[table[:, -1].astype(np.intp)], \
        list(BREAST_CANCER_FEATURES)


def _sklearn_data_file(name: str):
    """The path of a data file shipped inside the installed scikit-learn, or None."""
    from importlib.util import find_spec     # finds the package without running it
    from pathlib import Path
    spec = find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


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


def stratified_split(X, y, test_size: float, seed: int | None):
    """``(X_train, X_test, y_train, y_test)``: the rows split at random, each class in
    proportion, drawn from NumPy's ``default_rng(seed)``. The test part has
    ``ceil(test_size * n)`` rows, as scikit-learn's ``train_test_split`` counts them (whose
    import costs about a second), shared among the classes by the largest remainders of
    their shares. Raises ValueError when a part, or a class's training rows, would be
    empty."""
    n = len(y)
    n_test = math.ceil(test_size * n)
    if not 0 < n_test < n:
        raise ValueError(f"a test share of {test_size} leaves {n_test} of the {n} rows for "
                         "testing.")
    labels, index = np.unique(y, return_inverse=True)
    counts = np.bincount(index)
    share = counts * n_test / n
    take = np.floor(share).astype(np.intp)
    take[np.argsort(take - share, kind="stable")[:n_test - take.sum()]] += 1
    if (take >= counts).any():
        raise ValueError(f"class {labels[np.argmax(take >= counts)].tolist()!r} would have no "
                         "training rows.")
    rng = np.random.default_rng(seed)
    test = np.zeros(n, dtype=bool)
    for label, k in enumerate(take):
        test[rng.permutation(np.flatnonzero(index == label))[:k]] = True
    train_rows, test_rows = rng.permutation(np.flatnonzero(~test)), \
        rng.permutation(np.flatnonzero(test))
    return X[train_rows], X[test_rows], y[train_rows], y[test_rows]


# ------------------------------------------------------------------------------ CSV files

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
MISSING = {"", "nan", "na", "n/a", "null", "none", "?"}
# Enough lines to tell the delimiter and the header apart, few enough to read at once.
SNIFF_LINES = 50


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is laid out: its field delimiter, and whether its first row names the
    columns (without one the columns are named col1, col2, ...)."""
    delimiter: str = ","
    header: bool = True


class TextSource:
    """CSV text already in memory (standard input), read like a file and named in messages
    by ``name``."""

    def __init__(self, text: str, name: str = "<stdin>"):
        self.text = text.removeprefix("\ufeff")
        self.name = name

    def __str__(self) -> str:
        return self.name


def sniff_format(path, delimiter: str | None = None, header: bool | None = None
                 ) -> CsvFormat:
    """The file's :class:`CsvFormat` from its first lines; ``delimiter`` and ``header`` when
    given are taken as they are. The delimiter is the one of :data:`DELIMITERS` that splits
    every line into the same number (> 1) of fields, the most fields, then the most numbers.
    The first row is a header unless every column whose other cells are numbers has a number
    there too (a file of text columns only is taken to have a header)."""
    lines = _first_lines(path)
    if delimiter is None:
        delimiter = max(DELIMITERS, key=lambda d: _delimiter_score(lines, d))
    if header is None:
        header = _looks_like_header(list(csv.reader(lines, delimiter=delimiter,
                                                    skipinitialspace=True)))
    return CsvFormat(delimiter, header)


def _first_lines(path) -> list[str]:
    lines = []
    with _open_text(path) as file:
        try:
            for line in file:
                if line.strip():
                    lines.append(line)
                if len(lines) == SNIFF_LINES:
                    break
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a UTF-8 text (CSV) file.") from None
    return lines


def _delimiter_score(lines: list[str], delimiter: str) -> tuple:
    try:
        rows = list(csv.reader(lines, delimiter=delimiter, skipinitialspace=True))
    except csv.Error:
        return (False, 0, 0, 0)
    widths = {len(row) for row in rows}
    width = max(widths, default=0)
    numbers = sum(_is_number(cell) for row in rows for cell in row)
    # Ties go to the comma, then the order of DELIMITERS.
    return (len(widths) == 1 and width > 1, width, numbers, -list(DELIMITERS).index(delimiter))


def _looks_like_header(rows: list[list[str]]) -> bool:
    if len(rows) < 2:
        return True
    first, rest = rows[0], [row for row in rows[1:] if len(row) == len(rows[0])]
    numeric = [j for j in range(len(first))
               if rest and all(_is_number(row[j]) or _is_missing(row[j]) for row in rest)
               and any(_is_number(row[j]) for row in rest)]
    return not numeric or not all(_is_number(first[j]) for j in numeric)


def read_csv(path, target: str | None = None, fmt: CsvFormat | None = None
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, labels and feature names from a CSV file (``path`` or a
    :class:`TextSource`), laid out as ``fmt`` says (default: :func:`sniff_format`'s guess).

    ``target`` (default: the last column) holds the labels, in any values; labels that are
    all integers become ints, others stay strings. Every other column must be numeric.
    """
    fmt = sniff_format(path) if fmt is None else fmt
    header = read_header(path, fmt)
    target = header[-1] if target is None else target
    column_index(header, target, path)
    names = [name for name in header if name != target]
    if not names:
        raise ValueError(f"{path}: no feature columns besides the target {target!r}.")
    X, labels = read_columns(path, names, target, fmt)
    return X, labels, names


def read_csv_chunks(path, chunksize: int, target: str | None = None,
                    fmt: CsvFormat | None = None):
    """:func:`read_csv` a file too large for memory: yields ``(X, label cells, names)`` for
    each block of ``chunksize`` lines after the header, in file order, with read_csv's checks
    (a message names the chunk's first line). The labels stay strings: whether they are
    integers is a question about every chunk (:func:`parse_labels` on their union)."""
    fmt = sniff_format(path) if fmt is None else fmt
    header, skip = _header(path, fmt)
    target = header[-1] if target is None else target
    column_index(header, target, path)
    names = [name for name in header if name != target]
    if not names:
        raise ValueError(f"{path}: no feature columns besides the target {target!r}.")
    named = CsvFormat(fmt.delimiter, header=True)
    header_line = io.StringIO()
    csv.writer(header_line, delimiter=fmt.delimiter).writerow(header)
    with _open_text(path) as file:
        for _ in range(skip):
            file.readline()
        line = skip + 1
        while lines := list(itertools.islice(file, chunksize)):
            chunk = TextSource(header_line.getvalue() + "".join(lines),
                               f"{path} (lines {line}-{line + len(lines) - 1}, "
                               "as its chunk numbers them from 2)")
            if any(text.strip() for text in lines):
                X, _ = read_columns(chunk, names, None, named)
                yield X, read_cells(chunk, target, named), names
            line += len(lines)


def read_header(path, fmt: CsvFormat = CsvFormat()) -> list[str]:
    return _header(path, fmt)[0]


def column_index(header: list[str], name: str, path) -> int:
    if name not in header:
        raise ValueError(f"{path} has no column {name!r}; its columns are: "
                         f"{', '.join(header)}.")
    return header.index(name)


def read_columns(path, names: list[str], target: str | None = None,
                 fmt: CsvFormat = CsvFormat()) -> tuple[np.ndarray, np.ndarray | None]:
    """The columns ``names`` as a float64 matrix, and the ``target`` column's labels (None
    without a target). A non-numeric, missing or non-finite feature, an empty label or a row
    of the wrong length is an error naming its column and line, and the fix."""
    header, skip = _header(path, fmt)
    try:
        return _read_columns_fast(path, header, skip, names, target, fmt)
    except ValueError:
        # NumPy's parser stops at the first problem without saying it in the user's terms;
        # the csv module reads the file again and names the column and the line.
        return _read_columns_carefully(path, names, target, fmt)


def read_cells(path, name: str, fmt: CsvFormat = CsvFormat()) -> np.ndarray:
    """The column ``name`` as its stripped cells (strings), one per data row, whatever they
    hold."""
    header, skip = _header(path, fmt)
    try:
        return np.char.strip(_load_fast(path, [header.index(name)], str, skip, fmt)[:, 0])
    except ValueError:      # a ragged row: the careful reader names it
        header, rows, _ = _read_table(path, fmt)
        return np.array([row[header.index(name)] for row in rows], dtype=str)


def _header(path, fmt: CsvFormat) -> tuple[list[str], int]:
    """The column names and the number of lines before the first data row (blank lines may
    come first)."""
    with _open_text(path) as file:
        reader = csv.reader(file, delimiter=fmt.delimiter, skipinitialspace=True)
        first = next((row for row in _decoded(reader, path) if any(c.strip() for c in row)),
                     None)
        if first is None:
            raise ValueError(f"{path} is empty: expected a header row and data rows.")
        if not fmt.header:
            return [f"col{j}" for j in range(1, len(first) + 1)], reader.line_num - 1
        header = [cell.strip() for cell in first]
        if any(not name for name in header):
            raise ValueError(f"{path}: column {header.index('') + 1} of the header row has "
                             "no name.")
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise ValueError(f"{path}: column name(s) {', '.join(map(repr, repeated))} "
                             "appear more than once in the header.")
        return header, reader.line_num


def _open_text(path):
    if isinstance(path, TextSource):
        return io.StringIO(path.text, newline="")
    return open(path, newline="", encoding="utf-8-sig")


def _decoded(reader, path):
    """The reader's rows, with decoding and CSV errors as ValueErrors naming the file."""
    try:
        yield from reader
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a UTF-8 text (CSV) file.") from None
    except csv.Error as error:
        raise ValueError(f"{path} is not a valid CSV file: {error}") from None


def _load_fast(path, columns: list[int], dtype, skip: int, fmt: CsvFormat) -> np.ndarray:
    """NumPy's C parser: several times faster than the csv module on large files."""
    with warnings.catch_warnings(), _open_text(path) as file:
        # Blank lines are skipped, as the careful reader does, and a file without data rows
        # is the careful reader's to explain; NumPy warns about both.
        warnings.filterwarnings("ignore", "Input line", UserWarning)
        warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
        return np.loadtxt(file, usecols=columns, dtype=dtype, delimiter=fmt.delimiter,
                          skiprows=skip, comments=None, quotechar='"', ndmin=2)


def _read_columns_fast(path, header, skip, names, target, fmt):
    """Raises ValueError for anything the careful reader would report (or might read
    differently)."""
    X = _load_fast(path, [header.index(name) for name in names], np.float64, skip, fmt)
    if X.shape[0] == 0 or X.shape[1] != len(names) or not np.isfinite(X).all():
        raise ValueError("the careful reader explains this")
    if target is None:
        return X, None
    labels = np.char.strip(_load_fast(path, [header.index(target)], str, skip, fmt)[:, 0])
    if len(labels) != len(X) or (labels == "").any():
        raise ValueError("the careful reader explains this")
    return X, parse_labels(labels)


def _read_columns_carefully(path, names, target, fmt=CsvFormat()):
    header, rows, lines = _read_table(path, fmt)
    X = _numeric_columns(path, header, rows, lines, names)
    if target is None:
        return X, None
    column = header.index(target)
    labels = [row[column] for row in rows]
    missing = [line for line, label in zip(lines, labels) if not label]
    if missing:
        raise ValueError(f"{path}, line {missing[0]}: no label in column {target!r}.")
    return X, parse_labels(np.array(labels, dtype=str))


def _read_table(path, fmt: CsvFormat) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows (cells stripped; blank rows skipped) and each row's line number."""
    header, skip = _header(path, fmt)
    rows, lines = [], []
    with _open_text(path) as file:
        for _ in range(skip):
            file.readline()
        reader = csv.reader(file, delimiter=fmt.delimiter, skipinitialspace=True)
        data = _decoded(reader, path)
        for row in data:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {skip + reader.line_num}: {len(row)} fields, "
                                 f"but the header has {len(header)}.")
            rows.append([cell.strip() for cell in row])
            lines.append(skip + reader.line_num)
    if not rows:
        raise ValueError(f"{path} has a header but no data rows.")
    return header, rows, lines


def _numeric_columns(path, header, rows, lines, names) -> np.ndarray:
    cells = np.array(rows, dtype=str)
    X = np.empty((len(rows), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        column = cells[:, header.index(name)]
        missing = np.flatnonzero([_is_missing(cell) for cell in column])
        if len(missing):
            first = column[missing[0]]
            raise ValueError(f"{path}: column {name!r} has {len(missing)} missing value(s), "
                             f"the first on line {lines[missing[0]]} "
                             f"({'empty' if not first else repr(str(first))}): fill them in "
                             "(e.g. with the column's mean) or drop those rows.")
        try:
            X[:, j] = column.astype(np.float64)
        except ValueError:
            # numpy does not say which cell failed; find them for the message.
            text = [i for i, cell in enumerate(column) if not _is_number(cell)]
            raise ValueError(f"{path}: column {name!r} must be numeric, but line "
                             f"{lines[text[0]]} has {str(column[text[0]])!r} (text in "
                             f"{len(text)} of {len(column)} rows): encode it as numbers (e.g. "
                             "one 0/1 column per category) or leave the column out.") from None
        bad = np.flatnonzero(~np.isfinite(X[:, j]))
        if len(bad):
            raise ValueError(f"{path}: column {name!r}, line {lines[bad[0]]}: "
                             f"{str(column[bad[0]])!r} is not a finite number.")
    return X


def _is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING


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
