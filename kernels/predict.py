"""Prediction: the network's outputs for blocks of rows, each layer in register tiles."""

from ._jit import standalone
from .codes import FAN_OUT, UNIT_OFF
from .layers import activate, chunk_block, dense_rows, layer_views
from .losses import output_activate


@standalone
def forward(params, layout, X, hidden_activation, output_activation, scratch, out):
    """Write the network's outputs for the rows of ``X`` into ``out``: probabilities for
    ``SIGMOID`` / ``SOFTMAX``, ``exp`` of the logits for ``EXP``, logits for any other output
    code. Releases the GIL, so callers
    spread row blocks over threads.

    Rows go through the network in blocks of as many rows as ``scratch`` holds activation
    vectors, layer by layer, and each layer in register tiles (layers.dense_rows): a tile's
    sums stay in registers, and each vector of weights loaded serves a tile's rows. Each sum
    adds its terms in the order of the inputs, each product and sum rounded once (fused
    multiply-add)."""
    last = layout.shape[0] - 1
    n_units = layout[last, UNIT_OFF] + layout[last, FAN_OUT]
    block = max(1, scratch.size // n_units)
    for start in range(0, X.shape[0], block):
        stop = min(start + block, X.shape[0])
        rows = stop - start
        for layer in range(last + 1):
            W, b = layer_views(params, layout, layer)
            u_off = layout[layer, UNIT_OFF]
            fan_out = layout[layer, FAN_OUT]
            Z = chunk_block(scratch, 0, rows, layout, layer)
            if layer == 0:
                A = X[start:stop]
            else:
                A = chunk_block(scratch, 0, rows, layout, layer - 1)
            dense_rows(W, b, A, Z)
            if layer < last:
                activate(scratch[rows * u_off:rows * (u_off + fan_out)], hidden_activation)
            else:
                for r in range(rows):
                    output_activate(Z[r], output_activation)
                    for j in range(fan_out):
                        out[start + r, j] = Z[r, j]
