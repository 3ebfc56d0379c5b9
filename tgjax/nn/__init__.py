"""Equinox layers for tensorised networks: weights and embedding tables stay factored."""

from .cp import CPLinear
from .embedding import TTEmbedding
from .tensor_train import TensorTrainLinear
from .tucker import TuckerLinear

__all__ = ["TensorTrainLinear", "CPLinear", "TuckerLinear", "TTEmbedding"]
