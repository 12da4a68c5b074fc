"""Flax models: recurrent layers, CNN encoders and the classifiers named in configs."""

from dcrn_jax.models.classifiers import (CNNClassifier, ConvLSTMClassifier, FrameRNNClassifier,
                                         RowLSTMClassifier, create_model)
from dcrn_jax.models.encoders import ConvBlocks, FrameEncoder, ImageEncoder
from dcrn_jax.models.recurrent import GRU, LSTM, Bidirectional, ConvGRU, ConvLSTM, Stack

__all__ = ["CNNClassifier", "ConvLSTMClassifier", "FrameRNNClassifier", "RowLSTMClassifier",
           "create_model", "ConvBlocks", "FrameEncoder", "ImageEncoder", "GRU", "LSTM", "ConvLSTM",
           "ConvGRU", "Bidirectional", "Stack"]
