"""Integer codes shared by the compiled kernels, the NumPy reference and the Python front.

Kernels never see strings: the front translates names to these codes once per fit. Columns of
the ``layout`` table are named here too, so both backends read the table the same way.
"""

# Hidden-layer activations.
IDENTITY = 0
LOGISTIC = 1
TANH = 2
RELU = 3

# Output layers: one sigmoid per output column (binary / multi-label) or a softmax; LOGITS
# leaves the last layer's pre-activations as they are (``decision_function``). For regression,
# LINEAR is the identity output trained with squared error, EXP the exponential output trained
# with the Poisson deviance.
SIGMOID = 0
SOFTMAX = 1
LOGITS = 2
LINEAR = 3
EXP = 4

# Optimizers (kernels.optimizers): scikit-learn's SGD, plain, with momentum, with Nesterov's
# momentum; and its Adam.
SGD = 0
MOMENTUM = 1
NESTEROV = 2
ADAM = 3

# scikit-learn's learning-rate schedules for SGD, in the order of
# registry.LEARNING_RATE_SCHEDULES; the adaptive one stops training once the rate is
# SMALLEST_ADAPTIVE_RATE or less (scikit-learn's).
CONSTANT_RATE = 0
INVSCALING = 1
ADAPTIVE = 2
SMALLEST_ADAPTIVE_RATE = 1e-6

# Columns of the int64 ``layout`` table, one row per layer. Weights of a layer are the
# (fan_in, fan_out) row-major block params[W_OFF:B_OFF]; its biases params[B_OFF:B_OFF+fan_out].
# UNIT_OFF is where the layer's units start in the activation and delta scratch vectors.
W_OFF = 0
B_OFF = 1
FAN_IN = 2
FAN_OUT = 3
UNIT_OFF = 4
LAYOUT_COLUMNS = 5

# Weight rows are streamed in whole SIMD registers; a buffer starting on a cache-line boundary
# keeps each 64-byte load within one line.
CACHE_LINE_BYTES = 64

# The BLAS path of mini-batch training multiplies matrices of up to this many rows at a time:
# enough for BLAS to run at speed, and a full batch of a large X needs no copy of it.
BLAS_CHUNK_ROWS = 256

# Prediction computes each layer in tiles of this many rows (kernels.predict);
# the front hands it blocks of whole tiles.
FORWARD_TILE_ROWS = 6
