"""Optimizer update rules, one per optimizer code (:mod:`codes`: SGD, MOMENTUM, NESTEROV, ADAM):
scikit-learn's SGD, plain or with (Nesterov) momentum, and its Adam, on a gradient that
includes the L2 penalty.

An optimizer's ``state`` is a tuple of buffers laid out like the parameters, in the order its
registry entry names them: ``(velocity,)`` for the SGD codes, ``(m, v)`` (first and second
moments) for Adam. Plain SGD needs none, and the per-sample kernel gets None in its place, so
that Numba compiles no state code at all (it prunes branches on ``is None`` arguments). The
helpers compiled on their own tell the rules apart by their state's type (None, one buffer or
two: ``len`` of a tuple argument is a compile-time constant to Numba), so a kernel compiles
only its optimizer's rule.

Hyperparameters come as a tuple of floats ``hyper``: ``(learning_rate, momentum)`` for the SGD
codes, ``(learning_rate_init, beta_1, beta_2, epsilon)`` for Adam, whose step also depends on
``steps``, the steps the optimizer has taken (scikit-learn's ``t``, which carries across epochs
and partial_fit calls). The update rules take the scalars of one step in the parameters' dtype
(``step``: ``(lr, momentum)``, or Adam's adam_step).

Every path updates parameters through these helpers but the per-sample kernel's first layer,
whose SIMD step (simd.step_and_accumulate) implements the codes in ``per_sample.OPTIMIZERS``.
"""

import numpy as np

from ._jit import inline_ir, inline_llvm, standalone
from .codes import NESTEROV
from .simd import adam_block, lanes_in

# Adam's state buffers: its moments m and v.
ADAM_BUFFERS = 2


@inline_ir
def sgd_update(w, g, lr):
    """SGD's step of one parameter ``w`` with gradient ``g``. Inlined at IR level, so it is
    compiled with its caller's fastmath flags, as the caller's own arithmetic would be."""
    return w - lr * g


# Zero momentum is SGD here too: LLVM inlines and vectorizes its callers' loops as it did when
# this was their only update rule, so that they round as they did.
@standalone
def momentum_update(w, g, velocity, i, lr, momentum, nesterov):
    """The step of SGD with momentum (Nesterov's with ``nesterov``) of one parameter ``w`` with
    gradient ``g``; its velocity is ``velocity[i]``, updated here."""
    if momentum == 0:
        return sgd_update(w, g, lr)
    v = momentum * velocity[i] - lr * g
    velocity[i] = v
    if nesterov:
        return w + (momentum * v - lr * g)
    return w + v


@inline_llvm
def adam_step(like, hyper, t):
    """The scalars of Adam's ``t``-th step (counted from 1) in ``like``'s dtype: (lr_t,
    beta_1, 1 - beta_1, beta_2, 1 - beta_2, epsilon), computed in float64 as scikit-learn
    computes them (lr_t = learning_rate_init * sqrt(1 - beta_2**t) / (1 - beta_1**t), the
    powers by the C library's pow, as Python's) and each rounded to the dtype once. Also
    whether the bias corrections have settled: both 1 - beta**t round to 1, as they will for
    every later t, so that lr_t is learning_rate_init from then on."""
    T = like.dtype.type
    learning_rate_init, beta_1, beta_2, epsilon = hyper
    # A float exponent: Numba computes float ** int by repeated multiplication.
    exponent = np.float64(t)
    correction_1 = 1.0 - beta_1 ** exponent
    correction_2 = 1.0 - beta_2 ** exponent
    lr_t = learning_rate_init * np.sqrt(correction_2) / correction_1
    settled = correction_1 == 1.0 and correction_2 == 1.0
    return (T(lr_t), T(beta_1), T(1.0 - beta_1), T(beta_2), T(1.0 - beta_2), T(epsilon)), settled


@standalone
def adam_update(w, g, m, v, i, step):
    """Adam's step of one parameter ``w`` with gradient ``g``; its moments are ``m[i]`` and
    ``v[i]``, updated here. scikit-learn's formula term by term: w + -lr_t * m / (sqrt(v) +
    epsilon)."""
    lr_t, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, epsilon = step
    mi = beta_1 * m[i] + one_minus_beta_1 * g
    vi = beta_2 * v[i] + one_minus_beta_2 * (g * g)
    m[i] = mi
    v[i] = vi
    return w + -lr_t * mi / (np.sqrt(vi) + epsilon)


@inline_llvm
def update(w, g, state, i, step, nesterov):
    """One parameter's step by the rule of ``state`` (None: plain SGD; a tuple of views of the
    state buffers, indexed by ``i``, an index or a tuple of them)."""
    if state is None:
        return sgd_update(w, g, step[0])
    if len(state) == ADAM_BUFFERS:
        return adam_update(w, g, state[0], state[1], i, step)
    return momentum_update(w, g, state[0], i, step[0], step[1], nesterov)


@inline_llvm
def adam_steps(params, grad, m, v, step):
    """Adam's step (adam_update's) of every element of the 1-D ``params`` with gradient
    ``grad`` and moments ``m`` and ``v``, in SIMD blocks (simd.adam_block): LLVM leaves the
    scalar loop over four arrays scalar."""
    lanes = lanes_in(params)
    whole = params.size - params.size % lanes
    for i in range(0, whole, lanes):
        adam_block(params, grad, m, v, i, lanes, step, 1, False)
    if whole < params.size:
        adam_block(params, grad, m, v, whole, params.size - whole, step, 1, True)


@inline_llvm
def l2_gradient(g, alpha, w):
    """The gradient of weight ``w`` whose loss gradient is ``g``: g + alpha * w, or g itself
    when ``alpha`` is None (no L2 penalty: see per_sample_kernel)."""
    if alpha is None:
        return g
    return g + alpha * w


@inline_llvm
def step_biases(b, sb, delta, step, nesterov):
    """The biases' step; ``sb`` is None for SGD (no state), else the biases' state views."""
    if sb is None:
        for j in range(b.size):
            b[j] = sgd_update(b[j], delta[j], step[0])
        return
    if len(sb) == ADAM_BUFFERS:
        adam_steps(b, delta, sb[0], sb[1], step)
        return
    for j in range(b.size):
        b[j] = update(b[j], delta[j], sb, j, step, nesterov)


@standalone
def descend(params, state, grad, optimizer, hyper, steps):
    """One optimizer step of code ``optimizer`` with gradient ``grad``: scikit-learn's SGD
    with (Nesterov) momentum, or its Adam. ``state`` is the optimizer's buffers (None for plain
    SGD), ``steps`` the steps it has taken before this one."""
    T = params.dtype.type
    if state is None:
        for i in range(params.size):
            params[i] = sgd_update(params[i], grad[i], T(hyper[0]))
        return
    if len(state) == ADAM_BUFFERS:
        step, _ = adam_step(params, hyper, steps + 1)
        adam_steps(params, grad, state[0], state[1], step)
        return
    lr, momentum = T(hyper[0]), T(hyper[1])
    if momentum == 0:
        for i in range(params.size):
            params[i] = sgd_update(params[i], grad[i], lr)
        return
    nesterov = optimizer == NESTEROV
    for i in range(params.size):
        params[i] = momentum_update(params[i], grad[i], state[0], i, lr, momentum, nesterov)
