"""A cached kernel never outlives an edit to any kernel module (numba issue 1833).

Numba stamps a cached kernel with its own file's content only, so ``predict.forward``, which
inlines ``layers.activate``, would be loaded stale after an edit to layers.py. Each test runs
a copy of the kernels package in fresh interpreters: the first compiles and caches
``forward``, the second must load it from the cache, and after an edit to layers.py the third
must compile it again and compute the edited function.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastmlp.kernels

KERNELS = Path(fastmlp.kernels.__file__).parent

# A network with a hidden ReLU layer, its logits (code 2) for the rows of X, and how many
# times this process's forward was loaded from the cache and compiled.
RUN_FORWARD = """
import numpy as np
from kernels import predict
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


def run_forward(root: Path, env: dict) -> tuple[tuple[int, int], list]:
    result = subprocess.run([sys.executable, "-c", RUN_FORWARD], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    counts, outputs = result.stdout.splitlines()[-2:]
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

    counts, first = run_forward(root, env)
    assert counts == (0, 1)
    counts, again = run_forward(root, env)
    assert counts == (1, 0), "an unchanged package must load forward from the cache"
    assert again == first

    layers = root / "kernels" / "layers.py"
    source = layers.read_text()
    assert source.count(RELU_LINE) == 1
    layers.write_text(source.replace(RELU_LINE, EDITED_RELU_LINE))
    counts, edited = run_forward(root, env)
    assert counts == (0, 1), "an edit to layers.py must recompile forward"
    assert edited != first
