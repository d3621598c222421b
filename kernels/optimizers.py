"""Optimizer update rules, one per optimizer code (:mod:`codes`: SGD, MOMENTUM, NESTEROV):
scikit-learn's SGD, plain or with (Nesterov) momentum, on a gradient that includes the L2
penalty.

An optimizer's state is a set of buffers laid out like the parameters (momentum's velocity);
plain SGD has none, and its kernels get None in their place, so that Numba compiles no state
code at all (it prunes branches on ``is None`` arguments). Every path updates parameters
through these helpers but the per-sample kernel's first layer, whose SIMD step
(simd.step_and_accumulate) implements the codes in ``per_sample.OPTIMIZERS``.
"""

from ._jit import inline_ir, inline_llvm, standalone
from .codes import MOMENTUM, NESTEROV, SGD


def optimizer_code(momentum: float, nesterov: bool) -> int:
    """The optimizer code of scikit-learn's SGD settings (Nesterov without momentum is SGD)."""
    if momentum == 0:
        return SGD
    return NESTEROV if nesterov else MOMENTUM


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
def l2_gradient(g, alpha, w):
    """The gradient of weight ``w`` whose loss gradient is ``g``: g + alpha * w, or g itself
    when ``alpha`` is None (no L2 penalty: see per_sample_kernel)."""
    if alpha is None:
        return g
    return g + alpha * w


@inline_llvm
def step_biases(b, vb, delta, lr, momentum, nesterov):
    """The biases' step; ``vb`` is None for SGD (no velocity)."""
    if vb is None:
        for j in range(b.size):
            b[j] = sgd_update(b[j], delta[j], lr)
        return
    for j in range(b.size):
        b[j] = momentum_update(b[j], delta[j], vb, j, lr, momentum, nesterov)


@standalone
def descend(params, velocity, grad, lr, momentum, nesterov):
    """One optimizer step, scikit-learn's SGD with (Nesterov) momentum."""
    if momentum == 0:
        for i in range(params.size):
            params[i] = sgd_update(params[i], grad[i], lr)
        return
    for i in range(params.size):
        params[i] = momentum_update(params[i], grad[i], velocity, i, lr, momentum, nesterov)
