"""Whole-sequence recurrent layers: a sequence (B, T, ...) in, every step's output (B, T, ...) out.

`LSTM`, `GRU` (dense, (B, T, D) -> (B, T, hidden_size)) and `ConvLSTM`, `ConvGRU` (2-D
convolutional, (B, T, H, W, C) -> (B, T, H, W, features), 'SAME' padding, channels-last), plus
`Bidirectional` and `Stack` wrappers.

The math is in `reference.py` (a plain LSTM/GRU step in a `lax.scan`, the specification the tests
hold these layers to). How they run it fast: one `lax.scan` over time (compile time does not
depend on T) with the gates fused; training uses a hand-written backward pass (`rnn_scan`) that
recomputes nothing, whose loop contains only forward-form matmuls/convolutions (autodiff's
transposed convolutions inside a loop are what makes `nn.RNN(nn.ConvLSTMCell)` slow to train on
XLA:CPU), and whose weight gradients are matmuls on CPU (`rnn_maps`). Dense layers project all T
inputs in one matmul before the loop and take their input and weight gradients in one matmul
each after it; convolutional ones do the same on accelerators and, on CPU, one convolution per
step over [x_t, h] (`conv.cpu_forms()` decides). Measured speed: docs/guides/speed.md.

Options common to all four layers (keyword-only, held by `RecurrentLayer`):
  return_carry  return (final carry, outputs) instead of outputs (the order of Flax's nn.RNN).
  reverse       run from the last step to the first; outputs stay aligned with their inputs.
  unroll        steps per loop iteration (lax.scan's unroll); speed only, never compile-time T.
  remat_chunk   0: keep every step's activations for the backward pass. k > 0: keep only the
                carry every k steps and recompute the k steps in between (input projection
                included) during the backward pass: activation memory ~T/k + k steps instead of
                T, for one more forward pass.
  dtype         compute dtype of matmuls/convolutions and outputs (e.g. bfloat16); gate
                arithmetic, the LSTM cell state and weight gradients stay float32.
  param_dtype, kernel_init, recurrent_kernel_init (None: per-gate orthogonal for the dense
                layers, lecun_normal for the convolutional ones).
  forget_bias   (LSTMs) initial bias of the forget gate; 1.0 keeps memory early in training.

Parameters: `input_kernel` (D or kh x kw x C, G*F), `recurrent_kernel` (F or kh x kw x F, G*F),
`bias` (G*F) with gates fused on the last axis (LSTM i, f, g, o; GRU r, z, n), and for GRUs a
`recurrent_bias` (F) of the n gate, which sits inside r * (W_hn h + b_hn).
Carries: LSTM (c, h) with c float32; GRU h. Both (N, F) or (N, H, W, F).
"""

import dataclasses
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dcrn_jax.models.rnn_maps import Conv2DMap, DenseMap
from dcrn_jax.models.rnn_scan import (GRUWeights, LSTMCarry, LSTMWeights, Loop, gru_sequence,
                                      lstm_sequence)

Initializer = Callable[..., Any]


def _per_gate(init: Initializer, gates: int) -> Initializer:
  """Initializes each gate's block of a fused kernel on its own (an orthogonal (F, 4F) matrix is
  not four orthogonal (F, F) ones)."""

  def init_fused(key, shape, dtype=jnp.float32):
    block = shape[:-1] + (shape[-1] // gates,)
    return jnp.concatenate([init(k, block, dtype) for k in jax.random.split(key, gates)], -1)

  return init_fused


def _lstm_bias(forget_bias: float) -> Initializer:
  def init(key, shape, dtype=jnp.float32):
    f = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[f:2 * f].set(forget_bias)
  return init


def _kernel_pair(kernel_size) -> Tuple[int, int]:
  return (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)


def _check_rank(x, rank: int, layer: str, shape: str):
  if x.ndim != rank:
    raise ValueError(f"{layer} takes sequences {shape}, got an array of shape {x.shape}")


def _over_time(run, x, carry, *, reverse: bool, remat_chunk: int):
  """Applies `run(xs, carry) -> (ys, carry)` (time-major) to x (B, T, ...) -> ys (B, T, ...)."""
  xs = jnp.swapaxes(x, 0, 1)
  if reverse:
    xs = jnp.flip(xs, 0)
  steps = xs.shape[0]
  if remat_chunk > 0 and steps > remat_chunk:
    q, r = divmod(steps, remat_chunk)
    pieces = []
    if r:  # A short first piece, so that the rest splits into whole chunks.
      ys, carry = run(xs[:r], carry)
      pieces.append(ys)
    chunks = xs[r:].reshape((q, remat_chunk) + xs.shape[1:])
    # Checkpointing the chunk keeps only its input carry for the backward pass.
    body = jax.checkpoint(lambda c, xc: run(xc, c)[::-1])
    carry, ys = lax.scan(body, carry, chunks)
    pieces.append(ys.reshape((q * remat_chunk,) + ys.shape[2:]))
    ys = jnp.concatenate(pieces, 0) if r else pieces[0]
  else:
    ys, carry = run(xs, carry)
  if reverse:
    ys = jnp.flip(ys, 0)
  return jnp.swapaxes(ys, 0, 1), carry


class RecurrentLayer(nn.Module):
  """What LSTM, GRU, ConvLSTM and ConvGRU share: their options and the run over time.

  Each layer creates its own parameters in its `__call__` and hands them, with the initial carry,
  to `_run`, which applies `rnn_scan`'s whole-sequence function over time.
  """

  _: dataclasses.KW_ONLY
  return_carry: bool = False
  reverse: bool = False
  unroll: int = 1
  remat_chunk: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  recurrent_kernel_init: Optional[Initializer] = None  # None: the layer's default

  def _recurrent_init(self, default: Initializer) -> Initializer:
    return default if self.recurrent_kernel_init is None else self.recurrent_kernel_init

  def _lstm_carry(self, x, features: int, initial_carry) -> LSTMCarry:
    if initial_carry is None:
      state = x.shape[:1] + x.shape[2:-1] + (features,)
      initial_carry = (jnp.zeros(state, jnp.float32), jnp.zeros(state, self.dtype))
    c, h = initial_carry  # The loop carries keep these dtypes whatever the caller passed.
    return LSTMCarry(c.astype(jnp.float32), h.astype(self.dtype))

  def _gru_carry(self, x, features: int, initial_carry):
    if initial_carry is None:
      initial_carry = jnp.zeros(x.shape[:1] + x.shape[2:-1] + (features,), self.dtype)
    return initial_carry.astype(self.dtype)

  def _run(self, sequence, m, x, weights, carry):
    """`sequence` (lstm_sequence or gru_sequence) over x (B, T, ...) -> outputs (B, T, ...),
    after the final carry if return_carry (an LSTM's as a plain tuple (c, h))."""
    loop = Loop(m, self.unroll, self.dtype)
    ys, carry = _over_time(lambda xs, c: sequence(loop, xs, weights, c), x, carry,
                           reverse=self.reverse, remat_chunk=self.remat_chunk)
    if isinstance(carry, LSTMCarry):
      carry = tuple(carry)
    return (carry, ys) if self.return_carry else ys


class LSTM(RecurrentLayer):
  """LSTM over time: (B, T, D) -> (B, T, hidden_size); carry (c, h), each (B, hidden_size).
  The math: `reference.lstm_reference` with dense maps."""

  hidden_size: int
  _: dataclasses.KW_ONLY
  forget_bias: float = 1.0

  @nn.compact
  def __call__(self, x, initial_carry=None):
    _check_rank(x, 3, "LSTM", "(B, T, D)")
    d, f = x.shape[-1], self.hidden_size
    rec_init = self._recurrent_init(_per_gate(nn.initializers.orthogonal(), 4))
    weights = LSTMWeights(
        input_kernel=self.param("input_kernel", self.kernel_init, (d, 4 * f), self.param_dtype),
        recurrent_kernel=self.param("recurrent_kernel", rec_init, (f, 4 * f), self.param_dtype),
        bias=self.param("bias", _lstm_bias(self.forget_bias), (4 * f,), self.param_dtype))
    return self._run(lstm_sequence, DenseMap(), x, weights, self._lstm_carry(x, f, initial_carry))


class GRU(RecurrentLayer):
  """GRU over time: (B, T, D) -> (B, T, hidden_size); carry h (B, hidden_size).
  The math: `reference.gru_reference` with dense maps."""

  hidden_size: int
  _: dataclasses.KW_ONLY

  @nn.compact
  def __call__(self, x, initial_carry=None):
    _check_rank(x, 3, "GRU", "(B, T, D)")
    d, f = x.shape[-1], self.hidden_size
    rec_init = self._recurrent_init(_per_gate(nn.initializers.orthogonal(), 3))
    zeros = nn.initializers.zeros_init()
    weights = GRUWeights(
        input_kernel=self.param("input_kernel", self.kernel_init, (d, 3 * f), self.param_dtype),
        recurrent_kernel=self.param("recurrent_kernel", rec_init, (f, 3 * f), self.param_dtype),
        bias=self.param("bias", zeros, (3 * f,), self.param_dtype),
        recurrent_bias=self.param("recurrent_bias", zeros, (f,), self.param_dtype))
    return self._run(gru_sequence, DenseMap(), x, weights, self._gru_carry(x, f, initial_carry))


class ConvLSTM(RecurrentLayer):
  """Convolutional LSTM over time: (B, T, H, W, C) -> (B, T, H, W, features); carry (c, h),
  each (B, H, W, features). Both convolutions are stride 1, 'SAME', of `kernel_size`.
  The math: `reference.lstm_reference` with convolutions."""

  features: int
  kernel_size: Union[int, Sequence[int]] = 3
  _: dataclasses.KW_ONLY
  forget_bias: float = 1.0

  @nn.compact
  def __call__(self, x, initial_carry=None):
    _check_rank(x, 5, "ConvLSTM", "(B, T, H, W, C)")
    k, c, f = _kernel_pair(self.kernel_size), x.shape[-1], self.features
    rec_init = self._recurrent_init(nn.initializers.lecun_normal())
    weights = LSTMWeights(
        input_kernel=self.param("input_kernel", self.kernel_init, k + (c, 4 * f),
                                self.param_dtype),
        recurrent_kernel=self.param("recurrent_kernel", rec_init, k + (f, 4 * f),
                                    self.param_dtype),
        bias=self.param("bias", _lstm_bias(self.forget_bias), (4 * f,), self.param_dtype))
    return self._run(lstm_sequence, Conv2DMap(k), x, weights,
                     self._lstm_carry(x, f, initial_carry))


class ConvGRU(RecurrentLayer):
  """Convolutional GRU over time: (B, T, H, W, C) -> (B, T, H, W, features); carry h
  (B, H, W, features). Both convolutions are stride 1, 'SAME', of `kernel_size`.
  The math: `reference.gru_reference` with convolutions."""

  features: int
  kernel_size: Union[int, Sequence[int]] = 3
  _: dataclasses.KW_ONLY

  @nn.compact
  def __call__(self, x, initial_carry=None):
    _check_rank(x, 5, "ConvGRU", "(B, T, H, W, C)")
    k, c, f = _kernel_pair(self.kernel_size), x.shape[-1], self.features
    rec_init = self._recurrent_init(nn.initializers.lecun_normal())
    zeros = nn.initializers.zeros_init()
    weights = GRUWeights(
        input_kernel=self.param("input_kernel", self.kernel_init, k + (c, 3 * f),
                                self.param_dtype),
        recurrent_kernel=self.param("recurrent_kernel", rec_init, k + (f, 3 * f),
                                    self.param_dtype),
        bias=self.param("bias", zeros, (3 * f,), self.param_dtype),
        recurrent_bias=self.param("recurrent_bias", zeros, (f,), self.param_dtype))
    return self._run(gru_sequence, Conv2DMap(k), x, weights,
                     self._gru_carry(x, f, initial_carry))


class Bidirectional(nn.Module):
  """`layer` forward in time and a copy with its own parameters backward, outputs concatenated
  on the feature axis: (B, T, ..., C) -> (B, T, ..., 2 * F). The carry (return_carry=True) and
  `initial_carry` are pairs (forward, backward)."""

  layer: nn.Module
  return_carry: bool = False

  @nn.compact
  def __call__(self, x, initial_carry=None):
    carries = (None, None) if initial_carry is None else initial_carry
    fwd = self.layer.clone(parent=self, name="forward", reverse=False, return_carry=True)
    bwd = self.layer.clone(parent=self, name="backward", reverse=True, return_carry=True)
    c_fwd, y_fwd = fwd(x, carries[0])
    c_bwd, y_bwd = bwd(x, carries[1])
    y = jnp.concatenate([y_fwd, y_bwd], -1)
    return ((c_fwd, c_bwd), y) if self.return_carry else y


class Stack(nn.Module):
  """Recurrent layers one after another, each reading the previous one's outputs:
  (B, T, ...) -> (B, T, ...) of the last layer. Carries are tuples, one per layer.

  Layers given unbound (`Stack([LSTM(64), LSTM(64)])`) become Stack's own children, `layer0`,
  `layer1`, ... Layers created inside another module's compact method are bound to that module:
  they are used as given, keep their names and parameters there (how the classifiers keep their
  parameter paths), and must be built with return_carry=True. `between[i]`, if given, is applied
  to layer i's outputs before layer i + 1 reads them (e.g. dropout).
  """

  layers: Sequence[nn.Module]
  return_carry: bool = False
  between: Sequence[Callable[[jax.Array], jax.Array]] = ()

  @nn.compact
  def __call__(self, x, initial_carry: Optional[Sequence[Any]] = None):
    carries = []
    for i, layer in enumerate(self.layers):
      if i > 0 and self.between:
        x = self.between[i - 1](x)
      if layer.parent is self:  # Given unbound (Flax made it ours): our child layer{i}.
        layer = layer.clone(parent=self, name=f"layer{i}", return_carry=True)
      elif not layer.return_carry:
        raise ValueError(f"Stack: layer {layer.name} belongs to another module and must be "
                         "built with return_carry=True")
      carry, x = layer(x, None if initial_carry is None else initial_carry[i])
      carries.append(carry)
    return (tuple(carries), x) if self.return_carry else x
