"""Output activations and losses: the output layer's activation, its loss and the output
delta ``p - y``, per output code.

An output code names an output activation and its loss as a pair (SIGMOID: a sigmoid per
column with binary cross-entropy; SOFTMAX: softmax with categorical cross-entropy; LINEAR: the
identity with scikit-learn's squared error; EXP: the exponential with the Poisson deviance):
each pair is a branch of output_activate (prediction) and of loss_and_delta (training) with a
loss helper of its own here, and a branch of the reference's ``_output`` and
``_sample_losses``. Every pair is canonical (its loss's link is its activation's inverse), so
each has the output delta ``p - y``.
"""

import numpy as np

from ._jit import inline_ir, inline_llvm, standalone
from .codes import EXP, LINEAR, SIGMOID, SOFTMAX

# The output codes training implements (loss_and_delta); prediction also takes LOGITS.
TRAINED_OUTPUTS = (SIGMOID, SOFTMAX, LINEAR, EXP)


@inline_ir
def _max(z):
    m = z[0]
    for j in range(1, z.size):
        m = max(m, z[j])
    return m


@standalone
def output_activate(z, code):
    """Output activation, in place: logits to probabilities, or to predicted values for EXP
    (``LOGITS`` and LINEAR leave them)."""
    T = z.dtype.type
    if code == EXP:
        for j in range(z.size):
            z[j] = np.exp(z[j])
    elif code == SIGMOID:
        for j in range(z.size):
            z[j] = T(1) / (T(1) + np.exp(-z[j]))
    elif code == SOFTMAX:
        m = _max(z)
        if m == np.inf:
            # The limit: the +inf logits share the probability (the max-shift would give
            # inf - inf = NaN). A NaN logit has no limit: the row stays NaN below.
            n_top = 0
            n_nan = 0
            for j in range(z.size):
                n_top += z[j] == m
                n_nan += z[j] != z[j]
            if n_nan == 0:
                for j in range(z.size):
                    z[j] = T(1) / T(n_top) if z[j] == m else T(0)
                return
        _softmax_from(z, m)


@inline_ir
def _softmax_from(z, m):
    """z = exp(z - m) / sum(exp(z - m)), in place, for ``m`` the largest of z."""
    s = z.dtype.type(0)
    for j in range(z.size):
        z[j] = np.exp(z[j] - m)
        s += z[j]
    for j in range(z.size):
        z[j] /= s


# A sigmoid output's loss has a log1p(e) term, and the libm call is the slowest part of a
# small network's sample. log(a) + log(b) = log(a * b), so the
# kernels carry a sum of logarithms as ``(logs, product)`` -- worth logs + log(product) -- and
# multiply each 1 + e into the product (float64, whatever the network's dtype), taking its log
# only when it passes PRODUCT_LIMIT: a few hundred samples or more per log call. A factor is
# at most 2, so the product cannot overflow, and each multiplication adds one rounding (~1e-16),
# no more than each addition to the loss total already does. Where 1 + e would round away
# most of a small e, log1p(e) comes from its series instead (LOG1P_SERIES_BELOW).
PRODUCT_LIMIT = 2.0 ** 500


# Below 2**-10 the series to e**6 is log1p(e) to within e**7 / 7 < 2**-60 relative, and above
# it 1 + e keeps all but 10 of e's 53 bits.
LOG1P_SERIES_BELOW = 2.0 ** -10


@inline_ir
def _add_log1p(logs, product, e):
    """``(logs, product)`` with log1p(e) added to the sum they stand for, for 0 <= e <= 1."""
    e = np.float64(e)
    if e < LOG1P_SERIES_BELOW:
        series = e * (1.0 - e * (0.5 - e * (1 / 3 - e * (0.25 - e * (0.2 - e * (1 / 6))))))
        return logs + series, product
    product *= 1.0 + e
    if product > PRODUCT_LIMIT:
        return logs + np.log(product), 1.0
    return logs, product


@inline_ir
def loss_and_delta(z, y, code, delta, logs, product):
    """The loss of one sample from its logits ``z``; turns ``z`` into the outputs ``p`` and
    writes the output delta ``p - y``. Returns ``(loss, logs, product)``: the sample's loss is
    ``loss`` plus what it added to the sum of logarithms ``(logs, product)`` (see
    PRODUCT_LIMIT). Inlined at IR level, so a kernel whose ``code`` is a constant compiles
    only its own output's helper; the helpers themselves are inlined by LLVM, which trains
    faster."""
    if code == SOFTMAX:
        loss = _softmax_loss(z, y)
    elif code == LINEAR:
        loss = _squared_error(z, y)
    elif code == EXP:
        loss = _poisson_loss(z, y)
    else:   # SIGMOID (the callers check TRAINED_OUTPUTS)
        loss, logs, product = _sigmoid_loss(z, y, logs, product)
    for j in range(z.size):
        delta[j] = z[j] - y[j]
    return loss, logs, product


@inline_llvm
def _softmax_loss(z, y):
    """Softmax cross-entropy of the logits ``z``, which become the probabilities."""
    T = z.dtype.type
    m = _max(z)
    s = T(0)
    for j in range(z.size):
        s += np.exp(z[j] - m)
    log_sum_exp = m + np.log(s)
    loss = T(0)
    for j in range(z.size):
        loss += y[j] * (log_sum_exp - z[j])
    # output_activate without its limit for +inf logits: here those make the loss NaN, and
    # the front rolls the epoch back. Calling it (compiled on its own, then inlined) lengthens
    # the epoch kernel's first compile.
    _softmax_from(z, m)
    return loss


@inline_llvm
def _sigmoid_loss(z, y, logs, product):
    """Sigmoid cross-entropy of each logit in ``z``, which become the probabilities; the
    logarithms go in ``(logs, product)``."""
    T = z.dtype.type
    loss = T(0)
    for j in range(z.size):
        # One exp serves the loss and the sigmoid: e = exp(-|z|).
        e = np.exp(-abs(z[j]))
        # A select, where max() would be compiled as a function of its own.
        loss += (z[j] if z[j] > T(0) else T(0)) - y[j] * z[j]
        logs, product = _add_log1p(logs, product, e)
        z[j] = T(1) / (T(1) + e) if z[j] >= T(0) else e / (T(1) + e)
    return loss, logs, product


@inline_llvm
def _squared_error(z, y):
    """scikit-learn's squared error of one sample: half the mean over its outputs of
    ``(z - y)**2`` (its batch loss averages over samples and outputs alike). The output delta
    stays ``z - y``, not divided by the number of outputs, as scikit-learn's."""
    T = z.dtype.type
    loss = T(0)
    for j in range(z.size):
        d = z[j] - y[j]
        loss += d * d
    return loss / T(2 * z.size)


@inline_llvm
def _poisson_loss(z, y):
    """scikit-learn's Poisson loss (half the deviance) of the log-predictions ``z``, which
    become the predictions ``exp(z)``: the sum over outputs of ``y log(y / p) - y + p``, taken
    as ``y log y - y z - y + exp(z)`` so that it never takes log(0) (``y log y`` is 0 at
    y = 0)."""
    T = z.dtype.type
    loss = T(0)
    for j in range(z.size):
        p = np.exp(z[j])
        y_log_y = y[j] * np.log(y[j]) if y[j] > T(0) else T(0)
        loss += y_log_y - y[j] * z[j] - y[j] + p
        z[j] = p
    return loss
