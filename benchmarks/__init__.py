"""fastmlp's asv benchmark suite.

Run from the repository root with the package installed (``pip install -e ".[bench]"``)::

    asv check --python=same           # every benchmark imports and is well formed
    asv run --python=same --quick     # smoke run: one sample per benchmark (~7 min)
    asv run --python=same             # full run (~11 min on 2 cores)

asv does not store results of runs in an existing environment unless told which commit they
belong to: add ``--set-commit-hash=$(git rev-parse HEAD)`` and then ``asv show`` prints them.
To measure an installed copy other than the current interpreter's (e.g. a clean install of a
commit), use ``-E existing:/path/to/python`` instead of ``--python=same``.

Figures are noisy on a shared machine; the ``track_*`` ratios are measured with both contenders
interleaved in one process, so they hold up better than comparisons across benchmarks.

Modules:

- ``training``: ``time_*`` of one training epoch per shape, dtype and batch mode; per-call
  overhead; ``peakmem_*`` / memory tracking of ``fit``.
- ``throughput``: ``track_*`` figures measured in one process so machine noise cancels:
  samples/s, speedup over the NumPy reference backend and over scikit-learn, float32/float64.
- ``prediction``: ``predict_proba`` on 1M rows against scikit-learn's.
- ``cold_start``: ``timeraw_*`` import + first fit in a fresh interpreter, against scikit-learn.

``_shared`` holds the shapes, the synthetic data and the timing helpers they all use.
"""
