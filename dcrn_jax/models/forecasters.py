"""Forecasters: past frames (B, Tin, H, W, C) -> predicted frames, float32, channels-last.

  ConvLSTMForecaster      (`convlstm_forecaster`) Shi et al. 2015's encoder-forecaster: a stack
                          of ConvLSTM layers reads the Tin input frames; a second stack, started
                          from the encoder's final states, runs Tout steps; a 1x1 convolution of
                          all its layers' outputs gives the frames. Built on the fast
                          whole-sequence `ConvLSTM` layers (recurrent.py), so it trains at
                          their speed.
  ConvLSTMAutoregressive  (`convlstm_autoregressive`) OpenSTL's ConvLSTM: a stack of ConvLSTM
                          cells stepped with `nn.scan` over the sequence, predicting every next
                          frame; from frame Tin on, each step reads either the true frame or
                          its own previous prediction (scheduled sampling, `teacher_forcing`);
                          at evaluation always its own prediction.

Both take `targets` (B, Tout, H, W, C) and `teacher_forcing` (B, Tout - 1) as keywords (the
encoder-forecaster ignores them) and `train`. Predictions are aligned with the end of the
Tin + Tout sequence: a model returns its predictions of the sequence's last K frames, K = Tout
for the encoder-forecaster and Tin + Tout - 1 for the autoregressive model (every next frame, as
OpenSTL trains it). The train step takes the loss over all K; metrics read the last Tout.

`patch_size` p > 1 works on (H/p, W/p, p*p*C) maps (a 64x64x1 frame becomes 16x16x16, as
OpenSTL's `reshape_patch`): p*p fewer positions for every recurrent convolution.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dcrn_jax.models.conv import conv2d
from dcrn_jax.models.recurrent import ConvLSTM, Stack, _lstm_bias


def to_patches(x, p: int):
  """(B, T, H, W, C) -> (B, T, H/p, W/p, p*p*C): each p x p patch becomes one position."""
  if p == 1:
    return x
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h // p, p, w // p, p, c).transpose(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, h // p, w // p, p * p * c)


def from_patches(x, p: int):
  """The inverse of `to_patches`: (B, T, H/p, W/p, p*p*C) -> (B, T, H, W, C)."""
  if p == 1:
    return x
  b, t, hp, wp, ppc = x.shape
  c = ppc // (p * p)
  x = x.reshape(b, t, hp, wp, p, p, c).transpose(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, hp * p, wp * p, c)


def _check(inputs, patch_size: int, name: str):
  if inputs.ndim != 5:
    raise ValueError(f"{name} takes frames (B, T, H, W, C), got shape {inputs.shape}")
  if inputs.shape[2] % patch_size or inputs.shape[3] % patch_size:
    raise ValueError(f"{name}: frames of {inputs.shape[2]}x{inputs.shape[3]} do not split "
                     f"into {patch_size}x{patch_size} patches")


class ConvLSTMForecaster(nn.Module, kw_only=True):
  """Encoder-forecaster: (B, Tin, H, W, C) -> (B, Tout, H, W, C).

  Encoder layer i's final (c, h) starts forecaster layer i. The first forecaster layer reads
  no frames (a zero map of one channel: in Shi et al. the forecaster has no input); each layer
  above reads the one below. Parameters: encoder{i}, forecaster{i}, to_frames.
  """

  output_frames: int
  features: Sequence[int] = (64, 64)
  kernel_size: int = 3
  patch_size: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, targets=None, teacher_forcing=None, train: bool = False):
    del targets, teacher_forcing, train  # Nothing of the future is read; no dropout.
    _check(inputs, self.patch_size, "ConvLSTMForecaster")
    b, channels = inputs.shape[0], inputs.shape[-1]
    x = to_patches(inputs.astype(self.dtype), self.patch_size)
    encoder = [ConvLSTM(f, self.kernel_size, return_carry=True, dtype=self.dtype,
                        name=f"encoder{i}") for i, f in enumerate(self.features)]
    carries, _ = Stack(layers=encoder, return_carry=True)(x)
    y = jnp.zeros((b, self.output_frames) + x.shape[2:4] + (1,), self.dtype)
    outputs = []
    for i, (f, carry) in enumerate(zip(self.features, carries)):
      y = ConvLSTM(f, self.kernel_size, dtype=self.dtype, name=f"forecaster{i}")(y, carry)
      outputs.append(y)
    # Shi et al. read every forecaster layer's state: a 1x1 convolution of their concatenation.
    y = nn.Dense(self.patch_size ** 2 * channels, dtype=self.dtype, name="to_frames")(
        jnp.concatenate(outputs, -1))
    return from_patches(y, self.patch_size).astype(jnp.float32)


class ConvLSTMCell(nn.Module):
  """One ConvLSTM step, the math of `reference.lstm_reference` with convolutions and the
  parameters of the `ConvLSTM` layer (input_kernel, recurrent_kernel, bias; forget bias 1):
  x (B, H, W, C), carry (c, h) each (B, H, W, F) -> (c', h'). One convolution over [x, h], with
  `conv.conv2d`'s fast weight gradient on CPU."""

  features: int
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, carry):
    k, f = (self.kernel_size, self.kernel_size), self.features
    init = nn.initializers.lecun_normal()
    w_x = self.param("input_kernel", init, k + (x.shape[-1], 4 * f))
    w_h = self.param("recurrent_kernel", init, k + (f, 4 * f))
    bias = self.param("bias", _lstm_bias(1.0), (4 * f,))
    c, h = carry
    w = jnp.concatenate([w_x, w_h], axis=2).astype(self.dtype)
    gates = conv2d(jnp.concatenate([x, h], -1).astype(self.dtype), w) + bias
    i, g_f, g, o = jnp.split(gates.astype(jnp.float32), 4, axis=-1)
    c = nn.sigmoid(g_f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = (nn.sigmoid(o) * jnp.tanh(c)).astype(self.dtype)
    return c, h


class _Step(nn.Module):
  """One time step of the autoregressive model: choose the input frame, run the cells, predict
  the next frame. carry = (per-layer (c, h), previous prediction); xs = (true frame (B, h, w,
  P), use_true (B,))."""

  features: Sequence[int]
  kernel_size: int
  frame_channels: int
  dtype: Any

  @nn.compact
  def __call__(self, carry, xs):
    states, previous = carry
    frame, use_true = xs
    use_true = use_true[:, None, None, None].astype(frame.dtype)
    x = use_true * frame + (1 - use_true) * previous
    new_states = []
    for i, (f, state) in enumerate(zip(self.features, states)):
      state = ConvLSTMCell(f, self.kernel_size, self.dtype, name=f"cell{i}")(x, state)
      new_states.append(state)
      x = state[1]
    prediction = nn.Dense(self.frame_channels, dtype=self.dtype, name="to_frames")(x)
    return (tuple(new_states), prediction), prediction


class ConvLSTMAutoregressive(nn.Module, kw_only=True):
  """OpenSTL's ConvLSTM: (B, Tin, H, W, C) -> (B, Tin + Tout - 1, H, W, C), the prediction of
  every frame after the first.

  Step t (0 <= t < Tin + Tout - 1) reads frame t when t < Tin; after that it reads the true
  frame t where `teacher_forcing[:, t - Tin]` is 1 (training, with `targets`) and its own
  prediction of frame t otherwise (always, at evaluation). Parameters: steps/cell{i},
  steps/to_frames, shared by every step.
  """

  output_frames: int
  features: Sequence[int] = (64, 64)
  kernel_size: int = 3
  patch_size: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, targets=None, teacher_forcing=None, train: bool = False,
               initial_carry=None, return_carry: bool = False):
    """`initial_carry` ((per-layer (c, h)), previous prediction), in patches, starts the steps
    instead of zeros; with `return_carry` the result is (final carry, predictions)."""
    del train
    _check(inputs, self.patch_size, "ConvLSTMAutoregressive")
    b, t_in = inputs.shape[0], inputs.shape[1]
    steps = t_in + self.output_frames - 1
    frames = inputs if targets is None else jnp.concatenate([inputs, targets], 1)
    frames = to_patches(frames.astype(self.dtype), self.patch_size)
    # The frames the steps may read: 0 .. steps-1 (zeros where nothing true is known).
    pad = steps - frames.shape[1]
    if pad > 0:
      frames = jnp.pad(frames, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))
    frames = frames[:, :steps]
    forcing = (jnp.zeros((b, self.output_frames - 1), jnp.float32) if teacher_forcing is None
               or targets is None else teacher_forcing.astype(jnp.float32))
    use_true = jnp.concatenate([jnp.ones((b, t_in), jnp.float32), forcing], 1)
    hw = frames.shape[2:4]
    states = tuple((jnp.zeros((b,) + hw + (f,), jnp.float32),
                    jnp.zeros((b,) + hw + (f,), self.dtype)) for f in self.features)
    previous = jnp.zeros(frames.shape[:1] + frames.shape[2:], self.dtype)
    if initial_carry is not None:
      states, previous = initial_carry
    scan = nn.scan(_Step, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1, out_axes=1)
    carry, predictions = scan(tuple(self.features), self.kernel_size, frames.shape[-1],
                              self.dtype, name="steps")((states, previous), (frames, use_true))
    predictions = from_patches(predictions, self.patch_size).astype(jnp.float32)
    return (carry, predictions) if return_carry else predictions
