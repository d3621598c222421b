"""Many epochs in one compiled call: the front's epoch loop (shuffle, epoch, divergence test,
stopping rule, learning-rate schedule) for fits that need no Python between epochs.

A small problem's epoch takes microseconds and the Python around it tens of microseconds;
threads training at once (a sweep's) also wait on each other's Python. The front
(``BaseMLP._train``) calls this for as many epochs as run in a few hundredths of a second, so
that an interrupt (Ctrl-C) still takes effect at once, and books the epochs it returns.
Every step is the front's, in the same order and arithmetic, so the trajectory is bitwise the
one of one call per epoch; anything the front handles with more care (a loss or weights that
may have diverged, a shuffle that ran out of draws) ends the call with ``REDO``, and the front
redoes the call's epochs one at a time from its checkpoint.

The epoch kernel is called through its address (call_epoch), not linked in: Numba would
optimise and generate the linked kernel's code again inside this one (its compile took 0.61 s
for the default network, against 0.26 s so, measured cold).
"""

import functools
import math

import numpy as np
from numba import config, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from ._jit import specialised, standalone
from .codes import ADAPTIVE, FAN_IN, INVSCALING, SMALLEST_ADAPTIVE_RATE
from .shuffle import _fisher_yates

# How a call ended: every epoch asked for ran; the stopping rule ended training after the
# returned count of epochs; the last epoch needs the front's checks (see the module).
RAN = 0
STOPPED = 1
REDO = 2


# The argument types (a tuple of Numba types) of every epoch kernel call that the front has
# taken the address of (dispatch.epoch_address): a many-epochs kernel compiled for other types
# would call that code with arguments it does not take, so call_epoch refuses to compile.
ADDRESSED = set()


def _call_epoch_in_python(epoch, args):
    return epoch(*args)


def _call_epoch(typingctx, epoch, args):
    """``epoch(*args)`` for ``epoch`` the address (an integer) of an epoch kernel's compiled
    code for exactly the types of the tuple ``args``, in Numba's calling convention; its
    exceptions (bounds checks) propagate. Returns the epoch's summed loss (float64)."""
    if tuple(args.types) not in ADDRESSED:
        raise TypingError(f"no epoch kernel's address was taken for arguments {args}")

    def codegen(context, builder, signature, arguments):
        address, packed = arguments
        argument_types = list(args.types)
        values = [builder.extract_value(packed, i) for i in range(len(argument_types))]
        function = context.call_conv.get_function_type(types.float64, argument_types)
        status, loss = context.call_conv.call_function(
            builder, builder.inttoptr(address, function.as_pointer()), types.float64,
            argument_types, values)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return loss
    return types.float64(epoch, args), codegen


# With Numba's JIT disabled the kernels are Python functions, and ``epoch`` the function.
call_epoch = _call_epoch_in_python if config.DISABLE_JIT else intrinsic(_call_epoch)


@functools.cache
def epochs_kernel(per_sample: bool):
    """The many-epochs kernel over the per-sample epoch kernels (per_sample.per_sample_kernel,
    with ``per_sample``: their ``state`` and ``alpha`` are then None for plain SGD and no
    penalty, and ``sample_weight`` the unit weights dispatch.sgd_epoch passes with a penalty)
    or over minibatch.minibatch_epoch (``sample_weight`` None). One kernel serves every epoch
    kernel of its kind: it takes the epoch kernel's address (dispatch.epoch_address)."""

    @standalone
    @specialised(per_sample)
    def train_epochs(epoch, params, state, grad, layout, X, Y, sample_weight, rows, order,
                     draws, n_draws, batch_size, optimizer, settings, steps, alpha, hidden,
                     output, scratch, work, losses, schedule, stopping, bound):
        """Up to ``losses.size`` epochs over ``rows``, each shuffled (unless ``n_draws`` is 0)
        in ``order`` by Fisher-Yates from its own ``n_draws`` of the 32-bit ``draws`` (see
        kernels.shuffle), trained by the epoch kernel at address ``epoch`` (see call_epoch)
        with the hyperparameters ``(learning rate, *settings)``; each epoch's mean loss goes
        to ``losses``.

        ``schedule`` is ``(learning rate, schedule code, learning_rate_init, power_t, t_)``
        (the schedule code CONSTANT_RATE for optimizers without schedules), ``stopping``
        ``(tol, n_iter_no_change, best_loss_, no-improvement count)``, ``bound`` that of
        cannot_overflow. Returns ``(epochs run, RAN | STOPPED | REDO, steps, learning
        rate, t_, best_loss_, count)``; with REDO the weights are those of a failed epoch."""
        lr, code, lr_init, power_t, t = schedule
        tol, patience, best, count = stopping
        n = rows.size
        steps_per_epoch = -(-n // batch_size)
        for e in range(losses.size):
            for i in range(n):      # (a slice assignment may copy, which needs Numba's runtime)
                order[i] = rows[i]
            if n_draws:
                if _fisher_yates(order, draws[e * n_draws:(e + 1) * n_draws], n) > 1:
                    return e, REDO, steps, lr, t, best, count
            hyper = (lr,) + settings
            if per_sample:
                total = call_epoch(epoch, (params, state, layout, X, Y, sample_weight, order,
                                           hyper, steps, alpha, hidden, output, scratch))
            else:
                total = call_epoch(epoch, (params, state, grad, layout, X, Y, sample_weight,
                                           order, batch_size, optimizer, hyper, steps, alpha,
                                           hidden, output, scratch, work))
            loss = total / n
            steps += steps_per_epoch
            if not math.isfinite(loss) or not cannot_overflow(params, layout, bound):
                return e, REDO, steps, lr, t, best, count
            losses[e] = loss
            t += n
            improved = loss <= best - tol
            best = min(best, loss)
            count = 0 if improved else count + 1
            if code == INVSCALING:
                lr = lr_init / (t + 1) ** power_t
            if count > patience:
                if code != ADAPTIVE or lr <= SMALLEST_ADAPTIVE_RATE:
                    return e + 1, STOPPED, steps, lr, t, best, count
                lr /= 5.0
                count = 0
        return losses.size, RAN, steps, lr, t, best, count

    return train_epochs


@standalone
def cannot_overflow(params, layout, bound):
    """Whether the network's outputs surely stay below ``limit`` on rows whose features are
    at most ``x_abs_max`` in size, where ``bound = (x_abs_max, limit, squashing)``: with w
    the largest |weight or bias|, a layer's pre-activations are at most

        fan_in * w * (its largest |input|) + w,

    its inputs at most ``x_abs_max`` for the first layer, the previous layer's bound after,
    and 1 after a squashing activation (logistic, tanh). False also when a weight is NaN."""
    x_abs_max, limit, squashing = bound
    w = 0.0
    for value in params:
        magnitude = abs(value)
        if magnitude > w:
            w = magnitude
        elif np.isnan(magnitude):
            return False
    b = x_abs_max
    for layer in range(layout.shape[0]):
        if layer and squashing:
            b = 1.0
        b = layout[layer, FAN_IN] * w * b + w
        if not b <= limit:      # also when b is inf
            return False
    return True
