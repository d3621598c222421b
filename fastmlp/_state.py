"""What a fitted network is beyond its public attributes: the training state that continued
training, checkpoints, persistence and the CLI read and write as one object each."""

from dataclasses import dataclass

import numpy as np

from .kernels.registry import OPTIMIZER_BY_NAME


@dataclass(eq=False)
class OptimizerState:
    """An optimizer's memory between steps: its buffers (each laid out like the flat parameter
    buffer, named in :data:`fastmlp.kernels.registry.OPTIMIZERS`), the steps it has taken and
    its current learning rate (which a learning-rate schedule changes between epochs).
    Code that saves, restores or transforms it needs no knowledge of which optimizer it is."""
    name: str
    buffers: dict[str, np.ndarray]
    steps: int = 0
    learning_rate: float = 0.0

    @classmethod
    def fresh(cls, name: str, like: np.ndarray, learning_rate: float) -> "OptimizerState":
        """A new optimizer's state (zero buffers) for the parameter buffer ``like``."""
        return cls(name, {buffer: np.zeros_like(like)
                          for buffer in OPTIMIZER_BY_NAME[name].buffers}, 0, learning_rate)

    def copy(self) -> "OptimizerState":
        buffers = {key: value.copy() for key, value in self.buffers.items()}
        return OptimizerState(self.name, buffers, self.steps, self.learning_rate)

    def assign(self, other: "OptimizerState") -> None:
        """Take ``other``'s values in place (views of the buffers stay valid)."""
        for key, value in self.buffers.items():
            value[...] = other.buffers[key]
        self.steps = other.steps
        self.learning_rate = other.learning_rate


@dataclass(eq=False)
class TrainingState:
    """The state of a fitted network that is not a public attribute.

    ``params`` is the flat parameter buffer (``coefs_`` and ``intercepts_`` are views of it)
    laid out by ``layout`` (:func:`fastmlp.kernels.layout.make_layout`); ``optimizer`` the
    optimizer's buffers and step count; ``rng`` draws every later epoch's order;
    ``no_improvement_count`` is the stopping rule's count of epochs without improvement;
    ``target_kind`` a :data:`fastmlp.kernels.registry.TARGET_KINDS` name; ``out_activation``
    the name of the output layer among that kind's (None: its first)."""
    params: np.ndarray
    layout: np.ndarray
    optimizer: OptimizerState
    rng: np.random.Generator
    target_kind: str
    no_improvement_count: int = 0
    out_activation: str | None = None
