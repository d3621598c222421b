"""The compiled backend's entry points: picks and specialises the kernel an epoch needs, and
keeps BLAS's threads in check. The same functions as :mod:`fastmlp.kernels.reference`."""

import functools
import threading

import numpy as np
from numba import config, typeof
from numba._dispatcher import compute_fingerprint

from ._jit import has_kernel
from .codes import BLAS_CHUNK_ROWS, FAN_IN, FAN_OUT, SGD, SIGMOID, UNIT_OFF
from .csr import DenseKernels, in_dense_groups, trains_sparse
from .epochs import ADDRESSED, epochs_kernel
from .layers import NARROW
from .losses import TRAINED_OUTPUTS
from .minibatch import batch_gradient as streamed_batch_gradient
from .minibatch import blas_batch_gradient, minibatch_epoch
from .optimizers import descend
from .per_sample import OPTIMIZERS as PER_SAMPLE_OPTIMIZERS, per_sample_kernel
from .predict import forward as _forward
from .sparse import sparse_per_sample_kernel

__all__ = ["batch_gradient", "blas_work", "descend", "forward", "prediction_compiled",
           "sgd_epoch", "sgd_epochs", "sgd_epochs_due", "sparse_sgd_epoch", "use_blas"]


def sgd_epoch(params, state, grad, layout, X, Y, sample_weight, order, batch_size, optimizer,
              hyper, steps, alpha, hidden_activation, output_activation, scratch):
    """One epoch of (mini-batch) gradient descent over ``X[order]``, in batches of
    ``batch_size`` consecutive entries of ``order``, by the optimizer of code ``optimizer``
    (see :mod:`fastmlp.kernels.optimizers`: ``state`` is the tuple of its buffers, ``hyper``
    its hyperparameters, ``steps`` the steps it took before this epoch; the epoch takes one
    per batch of non-zero total weight). Returns the mean loss over the epoch's samples, each
    batch's loss taken before its step (scikit-learn's ``loss_curve_``). ``sample_weight``
    (None, or a weight per row of X) weighs each batch's mean as scikit-learn does (see
    :mod:`fastmlp.kernels.minibatch`).

    Plain Python, called once per epoch: choosing the kernel here rather than inside one
    compiled entry point means a fit compiles only the kernel its batch mode runs (the first
    per-sample fit compiles in about half the time). Batch size 1 goes through the per-sample
    kernel if it implements the optimizer (PER_SAMPLE_OPTIMIZERS), else through the generic
    path of mini-batches (batch_gradient and descend), one sample a batch."""
    _check_trained_output(output_activation)
    if batch_size == 1 and optimizer in PER_SAMPLE_OPTIMIZERS:
        epoch = _per_sample_kernel_for(layout, optimizer, output_activation)
        samples = order
        if sample_weight is not None:
            # A sample of zero weight is a batch of zero weight: absent.
            samples = order[sample_weight[order] != 0]
        total = 0.0
        if samples.size:
            state, sample_weight, alpha = _per_sample_arguments(state, sample_weight, alpha,
                                                                optimizer, X)
            total = epoch(params, state, layout, X, Y, sample_weight, samples, hyper, steps,
                          alpha, hidden_activation, output_activation, scratch)
    else:
        batch = min(batch_size, order.size)
        work = None
        if use_blas(layout, batch):
            work, scratch = blas_work(layout, X.shape[1], batch, params.dtype), None
        total = minibatch_epoch(params, state, grad, layout, X, Y, sample_weight, order,
                                 batch_size, optimizer, hyper, steps, alpha, hidden_activation,
                                 output_activation, scratch, work)
    return total / order.size


def sgd_epochs(params, state, grad, layout, X, Y, rows, order, draws, n_draws, batch_size,
               optimizer, settings, steps, alpha, hidden_activation, output_activation, scratch,
               losses, schedule, stopping, bound):
    """Up to ``losses.size`` unweighted epochs of sgd_epoch over the rows ``rows`` of a dense
    X in one call, with the front's shuffle, divergence test, stopping rule and schedule:
    see kernels.epochs.epochs_kernel for the arguments and what it returns. The same kernels
    as sgd_epoch's run each epoch."""
    _check_trained_output(output_activation)
    epochs, epoch = _epochs_kernel_for(layout, batch_size, optimizer, output_activation)
    hyper = (schedule[0],) + settings
    if batch_size == 1 and optimizer in PER_SAMPLE_OPTIMIZERS:
        state, sample_weight, alpha = _per_sample_arguments(state, None, alpha, optimizer, X)
        address = epoch_address(epoch, (params, state, layout, X, Y, sample_weight, order,
                                         hyper, steps, alpha, hidden_activation,
                                         output_activation, scratch))
        return epochs(address, params, state, grad, layout, X, Y, sample_weight, rows, order,
                      draws, n_draws, 1, optimizer, settings, steps, alpha, hidden_activation,
                      output_activation, scratch, None, losses, schedule, stopping, bound)
    batch = min(batch_size, rows.size)
    work = None
    if use_blas(layout, batch):
        work, scratch = blas_work(layout, X.shape[1], batch, params.dtype), None
    address = epoch_address(epoch, (params, state, grad, layout, X, Y, None, order, batch,
                                     optimizer, hyper, steps, alpha, hidden_activation,
                                     output_activation, scratch, work))
    return epochs(address, params, state, grad, layout, X, Y, None, rows, order, draws,
                  n_draws, batch, optimizer, settings, steps, alpha, hidden_activation,
                  output_activation, scratch, work, losses, schedule, stopping, bound)


# Addresses of epoch kernels' code by kernel and by the fingerprints of the arguments' types
# (Numba's own, which leave out an array's alignment and byte order: added here).
_ADDRESSES = {}


def epoch_address(epoch, args):
    """The address of ``epoch``'s compiled code for the types of ``args`` (the arguments
    the many-epochs kernel passes it: kernels.epochs.call_epoch), compiled or loaded now if
    need be; ``epoch`` itself with the JIT disabled."""
    if config.DISABLE_JIT:
        return epoch
    key = (epoch, *map(compute_fingerprint, args),
           *(arg.flags.aligned and arg.dtype.isnative for arg in args
             if isinstance(arg, np.ndarray)))
    address = _ADDRESSES.get(key)
    if address is None:
        signature = tuple(map(typeof, args))
        epoch.compile(signature)
        compiled = epoch.overloads[signature]
        ADDRESSED.add(signature)
        address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
        _ADDRESSES[key] = address
    return address


def _per_sample_arguments(state, sample_weight, alpha, optimizer, X):
    """The per-sample kernel's ``(state, sample_weight, alpha)``: None for plain SGD's state
    and for no penalty, so that the kernel compiles no code for them (see per_sample_kernel).
    A sample's weight matters there only through its L2 penalty, so the weights are None
    without a penalty, and with one the rows' weights, 1 for unweighted rows (alpha / 1 is
    alpha): one compiled kernel then serves weighted and unweighted fits with a penalty."""
    if alpha == 0:
        return (state if optimizer != SGD else None), None, None
    if sample_weight is None:
        sample_weight = np.ones(X.shape[0], X.dtype)
    return (state if optimizer != SGD else None), sample_weight, alpha


def _epochs_kernel_for(layout, batch_size, optimizer, output_activation):
    """The many-epochs kernel sgd_epochs runs, and the epoch kernel sgd_epoch would run,
    which it calls."""
    if batch_size == 1 and optimizer in PER_SAMPLE_OPTIMIZERS:
        return epochs_kernel(True), _per_sample_kernel_for(layout, optimizer, output_activation)
    return epochs_kernel(False), minibatch_epoch


def _per_sample_kernel_for(layout, optimizer, output_activation):
    return per_sample_kernel(output_activation == SIGMOID, _shallow(layout), optimizer)


# The configurations (epoch kernel, dtype) this process has asked sgd_epochs_due about.
_ASKED = set()


def sgd_epochs_due(layout, batch_size, optimizer, output_activation, dtype) -> bool:
    """Whether a fit of this configuration should run sgd_epochs: from the second fit of it in
    a process, or once the many-epochs kernel is compiled here. Its first call compiles it
    (0.26 s for the default network, measured cold), while one fit's Python between epochs
    costs some 40 us an epoch: a process that fits a configuration once (a script, a first
    run) is faster without it, and one that fits it again (sweeps, cross-validation, repeated
    fits) gains from the second fit on."""
    epochs, epoch = _epochs_kernel_for(layout, batch_size, optimizer, output_activation)
    key = (epoch, np.dtype(dtype).char)
    due = key in _ASKED or _compiled_here(epochs)
    _ASKED.add(key)
    return due


def _compiled_here(kernel) -> bool:
    return bool(kernel.overloads)


def _shallow(layout) -> bool:
    """Whether the per-sample kernels' shallow variant trains this network (see
    per_sample_kernel): a Python bool, so that the kernels' cache keys do not depend on
    whether NumPy's was passed."""
    return bool(layout.shape[0] == 2 and layout[1, FAN_OUT] < NARROW)


def _check_trained_output(output_activation: int) -> None:
    if output_activation not in TRAINED_OUTPUTS:
        raise ValueError(f"no loss for output code {output_activation}: training takes "
                         f"{TRAINED_OUTPUTS}")


def sparse_sgd_epoch(params, state, grad, layout, data, indices, indptr, Y, sample_weight,
                     order, batch_size, optimizer, hyper, steps, alpha, hidden_activation,
                     output_activation, scratch):
    """sgd_epoch on the rows of a CSR matrix ``(data, indices, indptr)`` (data of the
    network's dtype, column indices sorted and unique within each row). Plain per-sample SGD
    (kernels.csr.trains_sparse) runs the sparse kernel, which touches only the weight rows
    of each sample's non-zero features; any other setting runs sgd_epoch on groups of whole
    batches densified (kernels.csr.in_dense_groups).

    ``sample_weight`` (None or one weight per row) matters to the sparse kernel only through
    its zeros (samples left out): at batch size 1 scikit-learn's weight scales only the L2
    term, and that kernel trains without one; the densified path weighs the rows as the dense
    entry points do."""
    _check_trained_output(output_activation)
    if not trains_sparse(batch_size, alpha, optimizer):
        return in_dense_groups(_DENSE, params, state, grad, layout, data, indices, indptr, Y,
                               sample_weight, order, batch_size, optimizer, hyper, steps, alpha,
                               hidden_activation, output_activation, scratch)
    n = order.size
    if sample_weight is not None:
        order = order[sample_weight[order] != 0]    # as sgd_epoch leaves them out
        if not order.size:
            return 0.0
    epoch = sparse_per_sample_kernel(output_activation == SIGMOID, _shallow(layout))
    lr = params.dtype.type(hyper[0])
    return epoch(params, layout, data, indices, indptr, Y, order, lr, hidden_activation,
                 output_activation, scratch) / n


def batch_gradient(params, layout, X, Y, sample_weight, rows, alpha, hidden_activation,
                   output_activation, scratch, grad):
    """Mean loss of the batch ``X[rows]`` and its gradient in ``grad``, weighted by
    ``sample_weight`` unless None (see :func:`fastmlp.kernels.minibatch.batch_gradient`):
    over chunks of rows when the batch is large enough for it (``use_blas``), else streamed
    one sample at a time in ``scratch``."""
    if not use_blas(layout, rows.size):
        return streamed_batch_gradient(params, layout, X, Y, sample_weight, rows, alpha,
                                       hidden_activation, output_activation, scratch, grad)
    work = blas_work(layout, X.shape[1], rows.size, params.dtype)
    return blas_batch_gradient(params, layout, X, Y, sample_weight, rows, alpha,
                               hidden_activation, output_activation, work, grad)


def forward(params, layout, X, hidden_activation, output_activation, scratch, out):
    """kernels.predict.forward (see there), X read-only."""
    _forward(params, layout, _read_only(X), hidden_activation, output_activation, scratch, out)


def prediction_compiled(dtype) -> bool:
    """Whether prediction's kernel for parameters of ``dtype`` is compiled, in this process
    or in the disk cache (a first prediction would load it rather than compile it)."""
    return has_kernel(_forward, dtype)


def _read_only(array):
    """``array`` as a read-only view: Numba compiles a kernel again for a read-only array (a
    memory map of joblib's), so prediction's X always goes in read-only and one compile serves
    both. (About 0.2 us: setflags, and no test of the flag first; training's entry points do
    without, as a microsecond is 4% of a partial_fit of ten rows: docs/kernels.md.)"""
    view = array.view()
    view.setflags(write=False)
    return view


@functools.cache
def _blas_threads():
    # SciPy's BLAS loaded first, so that the controller finds it too.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


class _OneBlasThread:
    """A context keeping BLAS to one thread while any work in it runs (the NumPy backend's
    products of chunks of rows; the compiled kernels use no BLAS). The limit is process-wide,
    so work running at once in several threads shares it: the first one in sets it and the
    last one out restores BLAS's own setting (with one limit each, work that finished first
    would restore the limit a later one had found)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._limiter = None

    def __enter__(self):
        with self._lock:
            if self._inside == 0:
                self._limiter = _blas_threads().limit(limits=1, user_api="blas")
            self._inside += 1

    def __exit__(self, *exc_info):
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._limiter.restore_original_limits()


ONE_BLAS_THREAD = _OneBlasThread()


# Mini-batches of at least BLAS_MIN_BATCH samples go through the chunked products
# (blas_batch_gradient; of BLAS_MIN_BATCH_LARGE on networks of LARGE_NETWORK_WEIGHTS weights
# or more); smaller ones stream samples one at a time, which is faster there or, from batches
# of 8 on small networks, compiles in less time on a first fit.
BLAS_MIN_BATCH = 32
BLAS_MIN_BATCH_LARGE = 8
LARGE_NETWORK_WEIGHTS = 4096


def _large_network(layout) -> bool:
    return (layout[:, FAN_IN] * layout[:, FAN_OUT]).sum() >= LARGE_NETWORK_WEIGHTS


def use_blas(layout, batch_size: int) -> bool:
    """Whether batches of ``batch_size`` samples should go through blas_batch_gradient."""
    return batch_size >= (BLAS_MIN_BATCH_LARGE if _large_network(layout) else BLAS_MIN_BATCH)


def blas_work(layout, n_features: int, batch_size: int, dtype) -> np.ndarray:
    """Work space for blas_batch_gradient on batches of up to ``batch_size`` samples."""
    weights = layout[:, FAN_IN] * layout[:, FAN_OUT]
    chunk = min(batch_size, BLAS_CHUNK_ROWS)
    n_units = int(layout[-1, UNIT_OFF] + layout[-1, FAN_OUT])
    return np.empty(chunk * (n_features + 2 * n_units) + n_units + int(weights[1:].sum())
                    + int(weights.max()), dtype)


# What sparse_sgd_epoch runs on densified rows.
_DENSE = DenseKernels(sgd_epoch, batch_gradient, descend)
