"""Equinox layers for tensorised networks: weights stay factored, never dense."""

from .cp import CPLinear
from .tensor_train import TensorTrainLinear
from .tucker import TuckerLinear

__all__ = ["TensorTrainLinear", "CPLinear", "TuckerLinear"]
