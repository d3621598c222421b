"""A CSV file larger than memory, read as chunks: what ``fastmlp train --chunksize`` streams
through ``partial_fit``.

Every pass reads the file again, one chunk in memory at a time:

1. a first pass finds the classes (``partial_fit`` needs them all on its first call) and
   each feature's mean and standard deviation on the training rows, merged chunk by chunk;
2. each epoch is a pass of ``partial_fit`` calls, one per chunk in file order (an epoch
   over the chunk's training rows, shuffled within the chunk as ``shuffle`` says);
3. a last pass scores the held-out rows.

A stratified test split would need the whole label column first, so each row is held out
with probability ``test_size`` instead, drawn from the seed's generator chunk after chunk:
every pass holds out the same rows.
"""

from dataclasses import dataclass, field

import numpy as np

from . import datasets


@dataclass
class _Moments:
    """Row count, per-feature mean and sum of squared deviations, merged chunk by chunk
    (Chan, Golub and LeVeque's update: no catastrophic cancellation on large means)."""
    n: int = 0
    mean: np.ndarray | None = None
    squares: np.ndarray | None = None

    def add(self, X: np.ndarray) -> None:
        if X.shape[0] == 0:
            return
        mean = X.mean(axis=0)
        squares = np.square(X - mean).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.squares = X.shape[0], mean, squares
            return
        n = self.n + X.shape[0]
        delta = mean - self.mean
        self.mean = self.mean + delta * (X.shape[0] / n)
        self.squares = self.squares + squares + np.square(delta) * (self.n * X.shape[0] / n)
        self.n = n

    def scale(self) -> np.ndarray:
        """The standard deviations, 1 for constant features (left as they are)."""
        scale = np.sqrt(self.squares / self.n)
        scale[scale == 0] = 1
        return scale


@dataclass
class ChunkedCsv:
    """The file's chunks of ``chunksize`` lines, split into training and test rows, once
    :meth:`survey` has read what training needs to know first."""
    path: object
    chunksize: int
    target: str | None
    fmt: datasets.CsvFormat
    test_size: float
    seed: int
    dtype: type = np.float64
    names: list[str] = field(default_factory=list)
    classes: np.ndarray | None = None
    n_train: int = 0
    n_test: int = 0
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def survey(self) -> None:
        """The first pass: feature names, classes, training and test row counts, and the
        training rows' feature means and standard deviations."""
        labels, moments = set(), _Moments()
        for X, cells, test in self._chunks():
            labels.update(np.unique(cells).tolist())
            moments.add(X[~test])
            self.n_test += int(test.sum())
        if moments.n == 0:
            raise ValueError(f"{self.path}: no rows left for training (--test-size "
                             f"{self.test_size} held them all out).")
        self.classes = datasets.parse_labels(np.array(sorted(labels)))
        self.n_train, self.mean, self.scale = moments.n, moments.mean, moments.scale()

    def chunks(self, standardise: bool, test: bool = False):
        """Each chunk's training rows (``test``: its held-out rows) as (X, y), in file order;
        a chunk without such rows is skipped."""
        for X, cells, held_out in self._chunks():
            rows = held_out if test else ~held_out
            if not rows.any():
                continue
            X = X[rows]
            if standardise:
                X = (X - self.mean) / self.scale
            yield X.astype(self.dtype, copy=False), cells[rows].astype(self.classes.dtype)

    def _chunks(self):
        """Every chunk's features, label cells and held-out mask."""
        rng = np.random.default_rng(self.seed)
        for X, cells, names in datasets.read_csv_chunks(self.path, self.chunksize,
                                                       self.target, self.fmt):
            if (cells == "").any():
                raise ValueError(f"{self.path}: a row without a label in the target column.")
            self.names = names
            yield X, cells, rng.random(X.shape[0]) < self.test_size
