"""Starting weights. Drawn in float64 from a ``numpy.random.Generator`` and then cast, so a
``random_state`` gives the same network whatever the training dtype."""

import numpy as np

from .kernels.layout import unpack
from .kernels.registry import ACTIVATION_BY_NAME, INIT_SCHEME_BY_NAME


def initialize(params, layout, init, activation: str, rng) -> None:
    """Fill the flat buffer ``params`` in place.

    - a scheme's name (:data:`fastmlp.kernels.registry.INIT_SCHEMES`): ``"glorot"``,
      scikit-learn's, weights and biases ~ U(-r, r) with r = sqrt(6 / (fan_in + fan_out))
      (sqrt(2 / ...) for logistic units); ``"he"``: weights ~ N(0, 2 / fan_in); ``"xavier"``:
      N(0, 1 / fan_in); ``"normal"``: N(0, 0.01**2); biases 0 unless the scheme draws them.
    - a number: every weight that value, biases 0.
    - ``(coefs, intercepts)``: explicit arrays shaped like ``coefs_`` / ``intercepts_``.
    """
    coefs, intercepts = unpack(params, layout)
    if isinstance(init, (tuple, list)):
        _copy_explicit(coefs, intercepts, init)
        return
    scheme = INIT_SCHEME_BY_NAME[init] if isinstance(init, str) else None
    for W, b in zip(coefs, intercepts):
        if scheme is None:
            W[...] = init
            b[...] = 0
            continue
        scale = scheme.scale(*W.shape, ACTIVATION_BY_NAME[activation])
        if scheme.distribution == "uniform":
            W[...] = rng.uniform(-scale, scale, W.shape)
            b[...] = rng.uniform(-scale, scale, b.shape) if scheme.biases_too else 0
        else:
            W[...] = rng.normal(0.0, scale, W.shape)
            b[...] = rng.normal(0.0, scale, b.shape) if scheme.biases_too else 0


def _copy_explicit(coefs, intercepts, init) -> None:
    given_coefs, given_intercepts = (_as_list(part, what)
                                     for part, what in zip(init, ("coefs", "intercepts")))
    if len(given_coefs) != len(coefs) or len(given_intercepts) != len(intercepts):
        raise ValueError(f"init=(coefs, intercepts) must hold {len(coefs)} weight matrices and "
                         f"{len(intercepts)} bias vectors for this network; got "
                         f"{len(given_coefs)} and {len(given_intercepts)}.")
    for layer, (W, b, W0, b0) in enumerate(zip(coefs, intercepts, given_coefs,
                                               given_intercepts)):
        W0 = _as_float_array(W0, f"init layer {layer}: coefs")
        b0 = _as_float_array(b0, f"init layer {layer}: intercepts")
        if W0.shape != W.shape or b0.shape != b.shape:
            raise ValueError(f"init layer {layer}: expected coefs of shape {W.shape} and "
                             f"intercepts of shape {b.shape}; got {W0.shape} and {b0.shape}.")
        if not (np.isfinite(W0).all() and np.isfinite(b0).all()):
            raise ValueError(f"init layer {layer}: starting weights must be finite.")
        W[...] = W0
        b[...] = b0


def _as_list(part, what: str) -> list:
    if isinstance(part, (str, bytes)) or not hasattr(part, "__iter__"):
        raise ValueError(f"init=(coefs, intercepts): {what} must be a sequence of arrays, one "
                         f"per layer; got {part!r}.")
    return list(part)


def _as_float_array(value, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
        if array.dtype.kind == "c":
            raise TypeError("complex numbers cannot be starting weights")
        return array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} are not an array of real numbers: {error}") from None
