"""fastmlp (batch size 1) against the straightforward C loop in sgd.c, in one session with
interleaved rounds, best of each. Not an asv benchmark (it needs a C compiler): run it from the
repository root as ``python benchmarks/c_baseline/compare.py``.

fastmlp is timed at the API (partial_fit: one epoch with the per-call checks, the shuffle and
the target encoding) and at the kernel (the sgd_epoch call alone, as the C program times only
its sample loop)."""
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
BINARY = pathlib.Path(tempfile.mkdtemp()) / "sgd"
subprocess.run(["gcc", "-O3", "-march=native", "-ffast-math", "-o", str(BINARY),
                str(HERE / "sgd.c"), "-lm"], check=True)

import fastmlp
from fastmlp.kernels import dispatch
from benchmarks._shared import SHAPES, fastmlp_epochs, quiet_warnings, warm_up
print(fastmlp.__file__)
quiet_warnings(); warm_up("float64"); warm_up("float32")
inner = dispatch.sgd_epoch
spent = [0.0]
def timed(*a):
    t = time.perf_counter(); r = inner(*a); spent[0] += time.perf_counter() - t; return r
dispatch.sgd_epoch = timed
def best_epoch(e, k=10):
    api = ker = 9e9
    for _ in range(k):
        spent[0] = 0; t = time.perf_counter(); e.run(); api = min(api, time.perf_counter() - t); ker = min(ker, spent[0])
    return len(e.y) / api, len(e.y) / ker
for name, d, h in [("30-16-1", 30, 16), ("100-64-1", 100, 64), ("784-128-1", 784, 128)]:
    shape = SHAPES[name]
    e64 = fastmlp_epochs(shape, "float64"); e32 = fastmlp_epochs(shape, "float32")
    c, f64, f32 = 0.0, (0, 0), (0, 0)
    for _ in range(5):
        out = subprocess.run([str(BINARY), str(d), str(h), str(shape.n_samples), "20"], capture_output=True, text=True).stdout
        c = max(c, float(out.split()[2]))
        f64 = max(best_epoch(e64), f64, key=lambda r: r[1]); f32 = max(best_epoch(e32), f32, key=lambda r: r[1])
    print(f"{name}: C {c:.3g}/s | fastmlp f64 partial_fit {f64[0]:.3g}/s ({f64[0]/c:.2f}x C), kernel {f64[1]:.3g}/s ({f64[1]/c:.2f}x C) | "
          f"f32 partial_fit {f32[0]:.3g}/s ({f32[0]/c:.2f}x C), kernel {f32[1]:.3g}/s ({f32[1]/c:.2f}x C) | f32/f64 kernel {f32[1]/f64[1]:.2f}")
