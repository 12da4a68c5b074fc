"""Recurrent models one frame at a time: `step(variables, carry, frame) -> (carry, output)`.

A model whose time axis runs through a recurrence can carry its state from frame to frame, so
each new frame costs one step instead of a whole clip. The step here is the model itself, called
on a clip of one frame with the carry it returned for the previous frame (the `initial_carry` /
`return_carry` keywords of the classifiers and of `ConvLSTMAutoregressive`): the same module,
the same parameters and the same layers, whose single step is `reference.py`'s math. Hence, for
frames x_1..x_t and c_0 = `initial_carry(...)` (zeros, as the whole-clip model starts):

    c_t, y_t = step(variables, c_{t-1}, x_t)      y_t = model(x_1..x_t)[last]

that is, y_t is a classifier's logits (B, classes) for the clip of those t frames, or the
autoregressive forecaster's prediction (B, H, W, C) of frame t + 1.

Streamable: `cnn_gru`, `cnn_lstm` (FrameRNNClassifier), `convlstm` (ConvLSTMClassifier) and
`convlstm_autoregressive`. Not: `cnn` and `row_lstm` (no recurrence over frames), and
`convlstm_forecaster` (its forecast runs a second recurrence over future frames after the
last input, so no carry of past frames alone gives it). Batch norm in these models is evaluated
with its running averages, one frame at a time as in a clip, so it streams exactly.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcrn_jax.errors import UserError
from dcrn_jax.models.classifiers import ConvLSTMClassifier, FrameRNNClassifier
from dcrn_jax.models.forecasters import ConvLSTMAutoregressive

STREAMABLE = (FrameRNNClassifier, ConvLSTMClassifier, ConvLSTMAutoregressive)
_WHY_NOT = {
    "CNNClassifier": "it classifies single images and has no recurrence over frames",
    "RowLSTMClassifier": "its LSTM runs over the rows of one image, not over frames",
    "ConvLSTMForecaster": ("its forecast runs a second recurrence over future frames after the "
                           "last input; use convlstm_autoregressive to forecast frame by frame"),
}


def check_streamable(model: nn.Module) -> None:
  """UserError (one line) unless `model` has a recurrence over time that can carry a state."""
  if isinstance(model, STREAMABLE):
    return
  name = type(model).__name__
  why = _WHY_NOT.get(name, "it has no recurrence over frames")
  raise UserError(f"this model ({name}) cannot run one frame at a time: {why}. Streaming "
                  "serves cnn_gru, cnn_lstm, convlstm and convlstm_autoregressive")


def _one_frame_model(model: nn.Module) -> nn.Module:
  # The autoregressive forecaster runs Tin + output_frames - 1 steps; one frame in, one step.
  return model.clone(output_frames=1) if isinstance(model, ConvLSTMAutoregressive) else model


def make_step(model: nn.Module) -> Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]:
  """The per-frame step of `model` (checked streamable): a pure function

    step(variables, carry, frame (B, H, W, C)) -> (carry, output)

  output: float32 logits (B, classes) of a classifier, or the forecaster's prediction of the
  next frame (B, H, W, C). Not jitted: jit it, export it or batch it as the caller needs.
  """
  check_streamable(model)
  one = _one_frame_model(model)

  def step(variables, carry, frame):
    carry, out = one.apply(variables, frame[:, None], initial_carry=carry, return_carry=True)
    if isinstance(one, ConvLSTMAutoregressive):
      out = out[:, -1]
    return carry, out

  return step


def carry_shapes(model: nn.Module, variables, batch: int, frame_shape) -> Any:
  """The carry's structure as jax.ShapeDtypeStruct leaves, for `batch` streams of frames of
  `frame_shape` (H, W, C)."""
  check_streamable(model)
  one = _one_frame_model(model)
  frame = jax.ShapeDtypeStruct((batch, 1) + tuple(frame_shape), jnp.float32)
  out = jax.eval_shape(lambda v, x: one.apply(v, x, return_carry=True)[0], variables, frame)
  return out


def initial_carry(model: nn.Module, variables, batch: int, frame_shape) -> Any:
  """The carry before any frame: zeros, as the whole-clip model starts (`carry_shapes`)."""
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                      carry_shapes(model, variables, batch, frame_shape))
