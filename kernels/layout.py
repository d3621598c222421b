"""The flat parameter buffer's offsets table, built once per network shape."""

import numpy as np

from .codes import B_OFF, CACHE_LINE_BYTES, FAN_IN, FAN_OUT, LAYOUT_COLUMNS, UNIT_OFF, W_OFF


def make_layout(sizes):
    """Offsets table for a network with layer widths ``sizes`` (inputs first, outputs last).

    Returns ``(layout, n_params, n_units)``: the int64 table (one row per layer, columns named
    in :mod:`fastmlp.kernels.codes`), the length of the parameter buffer and the number of
    non-input units (the length of one activation or delta vector).
    """
    sizes = [int(s) for s in sizes]
    layout = np.zeros((len(sizes) - 1, LAYOUT_COLUMNS), dtype=np.int64)
    offset = 0
    units = 0
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layout[layer, W_OFF] = offset
        layout[layer, B_OFF] = offset + fan_in * fan_out
        layout[layer, FAN_IN] = fan_in
        layout[layer, FAN_OUT] = fan_out
        layout[layer, UNIT_OFF] = units
        offset += fan_in * fan_out + fan_out
        units += fan_out
    return layout, offset, units


def unpack(params, layout):
    """Views ``(coefs, intercepts)`` of the buffer, shaped like ``coefs_`` / ``intercepts_``."""
    coefs = []
    intercepts = []
    for w_off, b_off, fan_in, fan_out, _ in layout:
        coefs.append(params[w_off:b_off].reshape(fan_in, fan_out))
        intercepts.append(params[b_off:b_off + fan_out])
    return coefs, intercepts


def is_aligned(array) -> bool:
    return array.ctypes.data % CACHE_LINE_BYTES == 0


def aligned_copy(array):
    """A 1-D copy of ``array`` whose data starts on a cache-line boundary."""
    itemsize = array.dtype.itemsize
    raw = np.empty(array.size + CACHE_LINE_BYTES // itemsize, dtype=array.dtype)
    start = (-raw.ctypes.data % CACHE_LINE_BYTES) // itemsize
    copy = raw[start:start + array.size]
    copy[:] = array.ravel()
    return copy
