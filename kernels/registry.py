"""Every name the API accepts for a choice the kernels make, listed once.

Validation, the estimators, the CLI, persistence, the initialisation and the tests read these
tables; none of them lists the names again. Kernels never see a name: the front translates it
to its integer code (:mod:`fastmlp.kernels.codes`) once per fit. Plain Python, no Numba, so
``import fastmlp`` stays cheap.

To add an activation, an output/loss pair, an optimizer or an init scheme: its kernel math and
its NumPy reference twin take the new code, and one entry here makes it a name users can pass.
"""

import math
from dataclasses import dataclass
from typing import Callable

from . import codes


@dataclass(frozen=True)
class Activation:
    """A hidden-layer activation.

    ``bounded``: its outputs lie in [-1, 1] whatever its input (the overflow bound of a
    network's outputs restarts there). ``glorot_factor``: scikit-learn's uniform init bound is
    sqrt(factor / (fan_in + fan_out)), with 2 for logistic units and 6 for the others.
    """
    name: str
    code: int
    aliases: tuple[str, ...] = ()
    bounded: bool = False
    glorot_factor: float = 6.0


ACTIVATIONS = (
    Activation("identity", codes.IDENTITY, aliases=("linear",)),
    Activation("logistic", codes.LOGISTIC, aliases=("sigmoid",), bounded=True,
               glorot_factor=2.0),
    Activation("tanh", codes.TANH, bounded=True),
    Activation("relu", codes.RELU),
)


@dataclass(frozen=True)
class Output:
    """An output activation with the loss it is trained with (a constant pair in the kernels).

    ``name`` is scikit-learn's ``out_activation_``; ``loss`` its ``loss`` name."""
    name: str
    code: int
    loss: str


SIGMOID_LOG_LOSS = Output("logistic", codes.SIGMOID, "log_loss")
SOFTMAX_LOG_LOSS = Output("softmax", codes.SOFTMAX, "log_loss")
IDENTITY_SQUARED_ERROR = Output("identity", codes.LINEAR, "squared_error")
EXP_POISSON = Output("exp", codes.EXP, "poisson")
OUTPUTS = (SIGMOID_LOG_LOSS, SOFTMAX_LOG_LOSS, IDENTITY_SQUARED_ERROR, EXP_POISSON)
# A regressor's ``loss`` picks its output layer.
REGRESSION_OUTPUTS = (IDENTITY_SQUARED_ERROR, EXP_POISSON)


@dataclass(frozen=True)
class TargetKind:
    """What a target ``y`` holds (scikit-learn's ``type_of_target`` names), with the output
    layers that may learn it: the first by default, another by a regressor's ``loss``."""
    name: str
    outputs: tuple[Output, ...]

    @property
    def output(self) -> Output:
        return self.outputs[0]


BINARY = TargetKind("binary", (SIGMOID_LOG_LOSS,))
MULTICLASS = TargetKind("multiclass", (SOFTMAX_LOG_LOSS,))
MULTILABEL = TargetKind("multilabel-indicator", (SIGMOID_LOG_LOSS,))
CONTINUOUS = TargetKind("continuous", REGRESSION_OUTPUTS)
CONTINUOUS_MULTIOUTPUT = TargetKind("continuous-multioutput", REGRESSION_OUTPUTS)
CLASSIFICATION_KINDS = (BINARY, MULTICLASS, MULTILABEL)
REGRESSION_KINDS = (CONTINUOUS, CONTINUOUS_MULTIOUTPUT)
TARGET_KINDS = CLASSIFICATION_KINDS + REGRESSION_KINDS


@dataclass(frozen=True)
class Optimizer:
    """A solver and the state buffers it keeps between steps, each laid out like the flat
    parameter buffer (a model file stores one entry per buffer; the kernels take them as a
    tuple in this order).

    ``stochastic``: it steps on batches, one epoch at a time (partial_fit, batch_size and
    early stopping apply); else it minimises the full-batch loss in one call (scikit-learn's
    lbfgs). ``hyperparameters``: the estimator parameters the kernels take after the learning
    rate (their ``hyper`` tuple, see fastmlp.kernels.optimizers). ``schedules``: the
    learning-rate schedules apply (scikit-learn's adam ignores ``learning_rate``)."""
    name: str
    buffers: tuple[str, ...]
    stochastic: bool = True
    hyperparameters: tuple[str, ...] = ()
    schedules: bool = False


SGD = Optimizer("sgd", buffers=("velocity",), hyperparameters=("momentum",), schedules=True)
ADAM = Optimizer("adam", buffers=("m", "v"), hyperparameters=("beta_1", "beta_2", "epsilon"))
OPTIMIZERS = (
    SGD,
    ADAM,
    Optimizer("lbfgs", buffers=(), stochastic=False),
)


def optimizer_code(solver: str, momentum: float, nesterov: bool) -> int:
    """The kernels' optimizer code for a stochastic solver and scikit-learn's momentum
    settings (which only "sgd" reads; Nesterov without momentum is plain SGD)."""
    if solver == ADAM.name:
        return codes.ADAM
    if momentum == 0:
        return codes.SGD
    return codes.NESTEROV if nesterov else codes.MOMENTUM


# scikit-learn's learning-rate schedules for SGD: "constant" keeps learning_rate_init,
# "invscaling" sets it to learning_rate_init / (t_ + 1) ** power_t after each epoch,
# "adaptive" divides it by 5 whenever the stopping rule would stop.
LEARNING_RATE_SCHEDULES = ("constant", "invscaling", "adaptive")


@dataclass(frozen=True)
class InitScheme:
    """Starting weights of a layer: drawn ``uniform`` in [-scale, scale] or ``normal`` with
    standard deviation ``scale``, where ``scale(fan_in, fan_out, activation)`` is computed in
    float64; ``biases_too`` draws the biases the same way (else they start at zero)."""
    name: str
    distribution: str
    scale: Callable[[int, int, Activation], float]
    biases_too: bool = False


INIT_SCHEMES = (
    # scikit-learn's scheme: U(-r, r), r = sqrt(factor / (fan_in + fan_out)).
    InitScheme("glorot", "uniform",
               lambda fan_in, fan_out, act: math.sqrt(act.glorot_factor / (fan_in + fan_out)),
               biases_too=True),
    InitScheme("he", "normal", lambda fan_in, fan_out, act: math.sqrt(2.0 / fan_in)),
    InitScheme("xavier", "normal", lambda fan_in, fan_out, act: math.sqrt(1.0 / fan_in)),
    InitScheme("normal", "normal", lambda fan_in, fan_out, act: 0.01),
)


def _by_name(entries, aliases: bool = False) -> dict:
    table = {}
    for entry in entries:
        for name in (entry.name, *(entry.aliases if aliases else ())):
            table[name] = entry
    return table


ACTIVATION_BY_NAME = _by_name(ACTIVATIONS, aliases=True)
OUTPUT_BY_NAME = _by_name(OUTPUTS)
REGRESSION_OUTPUT_BY_LOSS = {output.loss: output for output in REGRESSION_OUTPUTS}
TARGET_KIND_BY_NAME = _by_name(TARGET_KINDS)
OPTIMIZER_BY_NAME = _by_name(OPTIMIZERS)
INIT_SCHEME_BY_NAME = _by_name(INIT_SCHEMES)
