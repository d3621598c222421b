"""Optimizer update rules: scikit-learn's SGD with (Nesterov) momentum and an L2 penalty."""

from ._jit import inline_llvm, standalone


@standalone
def sgd_step(w, g, velocity, i, lr, momentum, nesterov):
    """scikit-learn's SGD step for one parameter ``w`` with gradient ``g``."""
    if momentum == 0:
        return w - lr * g
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
    """The biases' SGD step; ``vb`` is None without momentum (see per_sample_kernel)."""
    if vb is None:
        for j in range(b.size):
            b[j] -= lr * delta[j]
        return
    for j in range(b.size):
        b[j] = sgd_step(b[j], delta[j], vb, j, lr, momentum, nesterov)


@standalone
def descend(params, velocity, grad, lr, momentum, nesterov):
    """One optimizer step, scikit-learn's SGD with (Nesterov) momentum."""
    for i in range(params.size):
        params[i] = sgd_step(params[i], grad[i], velocity, i, lr, momentum, nesterov)
