"""Whole-sequence recurrent layers: a sequence (B, T, ...) in, every step's output (B, T, ...) out.

`LSTM`, `GRU` (dense, (B, T, D) -> (B, T, hidden_size)) and `ConvLSTM`, `ConvGRU` (2-D
convolutional, (B, T, H, W, C) -> (B, T, H, W, features), 'SAME' padding, channels-last), plus
`Bidirectional` and `Stack` wrappers.

How they are fast: one `lax.scan` over time (compile time does not depend on T) with the gates
fused; training uses a hand-written backward pass (`rnn_scan`) that recomputes nothing, whose loop
contains only forward-form matmuls/convolutions (autodiff's transposed convolutions inside a loop
are what makes `nn.RNN(nn.ConvLSTMCell)` slow to train on XLA:CPU), and whose weight gradients are
matmuls (`rnn_maps`). Dense layers project all T inputs in one matmul before the loop and take
their input and weight gradients in one matmul each after it; convolutional ones do the same on
accelerators, and on CPU, where that measured slower (cache), one convolution per step over
[x_t, h]. On a 2-core CPU, training is 10-20x faster than through `nn.RNN` (benchmarks/).

Options common to all four layers:
  return_carry  return (final carry, outputs) instead of outputs (the order of Flax's nn.RNN).
  reverse       run from the last step to the first; outputs stay aligned with their inputs.
  unroll        steps per loop iteration (lax.scan's unroll); speed only, never compile-time T.
  remat_chunk   0: keep every step's activations for the backward pass. k > 0: keep only the
                carry every k steps and recompute the k steps in between (input projection
                included) during the backward pass: activation memory ~T/k + k steps instead of
                T, for one more forward pass.
  dtype         compute dtype of matmuls/convolutions and outputs (e.g. bfloat16); gate
                arithmetic, the LSTM cell state and weight gradients stay float32.
  forget_bias   (LSTMs) initial bias of the forget gate; 1.0 keeps memory early in training.

Parameters: `input_kernel` (D or kh x kw x C, G*F), `recurrent_kernel` (F or kh x kw x F, G*F),
`bias` (G*F) with gates fused on the last axis (LSTM i, f, g, o; GRU r, z, n), and for GRUs a
`recurrent_bias` (F) of the n gate, which sits inside r * (W_hn h + b_hn).
Carries: LSTM (c, h) with c float32; GRU h. Both (N, F) or (N, H, W, F).
"""

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dcrn_jax.models.rnn_maps import Conv2DMap, DenseMap
from dcrn_jax.models.rnn_scan import gru_sequence, lstm_sequence

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


def _lstm(layer, m, x, features, initial_carry):
  """Parameters and the whole-sequence run shared by LSTM and ConvLSTM."""
  w_in = layer.param("input_kernel", layer.kernel_init,
                     layer.kernel_shape(x.shape[-1], 4 * features), layer.param_dtype)
  w_rec = layer.param("recurrent_kernel", layer.recurrent_kernel_init,
                      layer.kernel_shape(features, 4 * features), layer.param_dtype)
  bias = layer.param("bias", _lstm_bias(layer.forget_bias), (4 * features,), layer.param_dtype)
  state = x.shape[:1] + x.shape[2:-1] + (features,)
  if initial_carry is None:
    initial_carry = (jnp.zeros(state, jnp.float32), jnp.zeros(state, layer.dtype))
  # The loop carries keep these dtypes whatever the caller passed.
  initial_carry = (initial_carry[0].astype(jnp.float32), initial_carry[1].astype(layer.dtype))

  def run(xs, carry):
    return lstm_sequence(m, layer.unroll, layer.dtype, xs, w_in, bias, w_rec, *carry)

  ys, carry = _over_time(run, x, initial_carry, reverse=layer.reverse,
                         remat_chunk=layer.remat_chunk)
  return (carry, ys) if layer.return_carry else ys


def _gru(layer, m, x, features, initial_carry):
  """Parameters and the whole-sequence run shared by GRU and ConvGRU."""
  w_in = layer.param("input_kernel", layer.kernel_init,
                     layer.kernel_shape(x.shape[-1], 3 * features), layer.param_dtype)
  w_rec = layer.param("recurrent_kernel", layer.recurrent_kernel_init,
                      layer.kernel_shape(features, 3 * features), layer.param_dtype)
  bias = layer.param("bias", nn.initializers.zeros_init(), (3 * features,), layer.param_dtype)
  b_rec = layer.param("recurrent_bias", nn.initializers.zeros_init(), (features,),
                      layer.param_dtype)
  if initial_carry is None:
    initial_carry = jnp.zeros(x.shape[:1] + x.shape[2:-1] + (features,), layer.dtype)
  initial_carry = initial_carry.astype(layer.dtype)

  def run(xs, h):
    return gru_sequence(m, layer.unroll, layer.dtype, xs, w_in, bias, w_rec, b_rec, h)

  ys, carry = _over_time(run, x, initial_carry, reverse=layer.reverse,
                         remat_chunk=layer.remat_chunk)
  return (carry, ys) if layer.return_carry else ys


class LSTM(nn.Module):
  """LSTM over time: (B, T, D) -> (B, T, hidden_size); carry (c, h), each (B, hidden_size)."""

  hidden_size: int
  return_carry: bool = False
  reverse: bool = False
  unroll: int = 1
  remat_chunk: int = 0
  forget_bias: float = 1.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  recurrent_kernel_init: Initializer = _per_gate(nn.initializers.orthogonal(), 4)

  def kernel_shape(self, fan_in, fan_out):
    return (fan_in, fan_out)

  @nn.compact
  def __call__(self, x, initial_carry=None):
    _check_rank(x, 3, "LSTM", "(B, T, D)")
    return _lstm(self, DenseMap(), x, self.hidden_size, initial_carry)


class GRU(nn.Module):
  """GRU over time: (B, T, D) -> (B, T, hidden_size); carry h (B, hidden_size)."""

  hidden_size: int
  return_carry: bool = False
  reverse: bool = False
  unroll: int = 1
  remat_chunk: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  recurrent_kernel_init: Initializer = _per_gate(nn.initializers.orthogonal(), 3)

  def kernel_shape(self, fan_in, fan_out):
    return (fan_in, fan_out)

  @nn.compact
  def __call__(self, x, initial_carry=None):
    _check_rank(x, 3, "GRU", "(B, T, D)")
    return _gru(self, DenseMap(), x, self.hidden_size, initial_carry)


class ConvLSTM(nn.Module):
  """Convolutional LSTM over time: (B, T, H, W, C) -> (B, T, H, W, features); carry (c, h),
  each (B, H, W, features). Both convolutions are stride 1, 'SAME', of `kernel_size`."""

  features: int
  kernel_size: Union[int, Sequence[int]] = 3
  return_carry: bool = False
  reverse: bool = False
  unroll: int = 1
  remat_chunk: int = 0
  forget_bias: float = 1.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  recurrent_kernel_init: Initializer = nn.initializers.lecun_normal()

  def kernel_shape(self, fan_in, fan_out):
    return _kernel_pair(self.kernel_size) + (fan_in, fan_out)

  @nn.compact
  def __call__(self, x, initial_carry=None):
    _check_rank(x, 5, "ConvLSTM", "(B, T, H, W, C)")
    return _lstm(self, Conv2DMap(_kernel_pair(self.kernel_size)), x, self.features,
                 initial_carry)


class ConvGRU(nn.Module):
  """Convolutional GRU over time: (B, T, H, W, C) -> (B, T, H, W, features); carry h
  (B, H, W, features). Both convolutions are stride 1, 'SAME', of `kernel_size`."""

  features: int
  kernel_size: Union[int, Sequence[int]] = 3
  return_carry: bool = False
  reverse: bool = False
  unroll: int = 1
  remat_chunk: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  recurrent_kernel_init: Initializer = nn.initializers.lecun_normal()

  def kernel_shape(self, fan_in, fan_out):
    return _kernel_pair(self.kernel_size) + (fan_in, fan_out)

  @nn.compact
  def __call__(self, x, initial_carry=None):
    _check_rank(x, 5, "ConvGRU", "(B, T, H, W, C)")
    return _gru(self, Conv2DMap(_kernel_pair(self.kernel_size)), x, self.features,
                initial_carry)


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
  (B, T, ...) -> (B, T, ...) of the last layer. Carries are tuples, one per layer."""

  layers: Sequence[nn.Module]
  return_carry: bool = False

  @nn.compact
  def __call__(self, x, initial_carry: Optional[Sequence[Any]] = None):
    carries = []
    for i, layer in enumerate(self.layers):
      layer = layer.clone(parent=self, name=f"layer{i}", return_carry=True)
      carry, x = layer(x, None if initial_carry is None else initial_carry[i])
      carries.append(carry)
    return (tuple(carries), x) if self.return_carry else x
