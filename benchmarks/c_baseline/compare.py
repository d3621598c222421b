"""fastmlp (batch size 1) against the straightforward C loop in sgd.c, in one session with
interleaved rounds, best of each. Not an asv benchmark (it needs a C compiler): run it from the
repository root as ``python benchmarks/c_baseline/compare.py``.

The C program times its sample loop alone, per epoch (best epoch). fastmlp is timed at the API:
``fit`` of EPOCHS epochs (the checks of X, target encoding, every epoch's shuffle and the
post-fit check included) and ``partial_fit`` (one epoch a call); throughput in samples/s.
"""
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from benchmarks._shared import (SHAPES, fastmlp_epochs, fastmlp_model,  # noqa: E402
                                make_data, quiet_warnings, warm_up)

EPOCHS = 20
ROUNDS = 5


def compile_c() -> pathlib.Path:
    binary = pathlib.Path(tempfile.mkdtemp()) / "sgd"
    subprocess.run(["gcc", "-O3", "-march=native", "-ffast-math", "-o", str(binary),
                    str(HERE / "sgd.c"), "-lm"], check=True)
    return binary


def c_samples_per_second(binary, shape) -> float:
    out = subprocess.run([str(binary), str(shape.n_features), str(shape.hidden[0]),
                          str(shape.n_samples), str(EPOCHS)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[2])


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    binary = compile_c()
    quiet_warnings()
    warm_up("float64")
    print(f"samples/s, best of {ROUNDS} interleaved rounds; fit = {EPOCHS} epochs")
    for name in ("3-5-1", "30-16-1", "100-64-1", "784-128-1"):
        shape = SHAPES[name]
        X, y = make_data(shape.n_samples, shape.n_features)
        model = fastmlp_model(shape, max_iter=EPOCHS, n_iter_no_change=np.inf)
        epochs = fastmlp_epochs(shape)
        c = fit = one = 0.0
        for _ in range(ROUNDS):
            c = max(c, c_samples_per_second(binary, shape))
            fit = max(fit, EPOCHS * shape.n_samples / seconds(lambda: model.fit(X, y)))
            one = max(one, shape.n_samples / min(seconds(epochs.run) for _ in range(EPOCHS)))
        print(f"{name}: C {c:.3g} | fastmlp fit {fit:.3g} ({fit / c:.2f}x C), "
              f"partial_fit {one:.3g} ({one / c:.2f}x C)")


if __name__ == "__main__":
    main()
