"""Whole-sequence recurrent layers: (B, T, ...) in, every step's output (B, T, ...) out.

The time loop is `nn.scan` (through `nn.RNN`), so compile time does not grow with the number of
frames. Each layer optionally returns its final carry as well.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class GRU(nn.Module):
  """GRU over time: (B, T, D) -> (B, T, hidden_size)."""

  hidden_size: int
  return_carry: bool = False
  reverse: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    cell = nn.GRUCell(self.hidden_size, dtype=self.dtype, name="cell")
    return nn.RNN(cell, return_carry=self.return_carry, reverse=self.reverse,
                  keep_order=True, name="rnn")(x)


class LSTM(nn.Module):
  """LSTM over time: (B, T, D) -> (B, T, hidden_size); the carry is (c, h)."""

  hidden_size: int
  return_carry: bool = False
  reverse: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    cell = nn.OptimizedLSTMCell(self.hidden_size, dtype=self.dtype, name="cell")
    return nn.RNN(cell, return_carry=self.return_carry, reverse=self.reverse,
                  keep_order=True, name="rnn")(x)


class ConvLSTM(nn.Module):
  """Convolutional LSTM over time: (B, T, H, W, C) -> (B, T, H, W, features)."""

  features: int
  kernel_size: int = 3
  return_carry: bool = False
  reverse: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    cell = nn.ConvLSTMCell(self.features, (self.kernel_size, self.kernel_size),
                           dtype=self.dtype, name="cell")
    return nn.RNN(cell, return_carry=self.return_carry, reverse=self.reverse,
                  keep_order=True, name="rnn")(x)
