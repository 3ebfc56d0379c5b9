"""Equinox layers for tensorised networks: weights stay factored, never dense."""

from .tensor_train import TensorTrainLinear

__all__ = ["TensorTrainLinear"]
