"""scikit-learn's own MLP tests, run against fastmlp's drop-in classes.

The test module shipped inside the installed scikit-learn
(``sklearn/neural_network/tests/test_mlp.py``) is read at collection time, its one import of
``MLPClassifier, MLPRegressor`` pointed at :mod:`fastmlp`, and its tests collected here as
they are: nothing of it is copied into this repository, and a scikit-learn upgrade brings its
new tests along.
"""

import importlib.util
import os
import types

import pytest

SKLEARN_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
FASTMLP_IMPORT = "from fastmlp import MLPClassifier, MLPRegressor"


def _load_sklearn_tests() -> types.ModuleType:
    spec = importlib.util.find_spec("sklearn.neural_network.tests.test_mlp")
    with open(spec.origin, encoding="utf-8") as file:
        source = file.read()
    if source.count(SKLEARN_IMPORT) != 1:
        raise RuntimeError(f"{spec.origin} no longer imports the estimators as "
                           f"{SKLEARN_IMPORT!r}: update this module.")
    module = types.ModuleType("sklearn_test_mlp_on_fastmlp")
    module.__file__ = spec.origin
    exec(compile(source.replace(SKLEARN_IMPORT, FASTMLP_IMPORT), spec.origin, "exec"),
         module.__dict__)
    return module


_suite = _load_sklearn_tests()
assert _suite.MLPClassifier.__module__ == "fastmlp.sklearn_compat"

globals().update({name: test for name, test in vars(_suite).items()
                  if name.startswith("test_") and callable(test)})


@pytest.fixture
def global_random_seed():
    """scikit-learn's fixture (its conftest), with its default seed."""
    return int(os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", 42))
