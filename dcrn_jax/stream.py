"""Class probabilities of a live stream, one frame at a time: what `Predictor.stream()` returns.

    s = Predictor.from_workdir("runs/video_gru").stream(window="staggered", states=2)
    for frame in frames:                 # decoded frames, uint8 (h, w, C) of any size
      out = s.push(frame)                # out.probabilities (classes,), out.frames_seen
    s.reset()                            # a new stream

Each frame goes through evaluation's preprocessing (`FramePreprocessor`: resized, aspect kept,
so its shorter side is the run's resize_short, centre-cropped to the model's S x S; uint8 pixels
then scaled and normalised inside the jitted step by `input_scaling.model_input`, the function
of the train and eval steps), then one step of the model with its carried state
(`models/streaming.py`: after frames 1..t the logits equal the model's on the clip of those t
frames).

A model trained on clips of T frames sees a longer stream through a `window` policy:

  grow       one state from the first frame; frame n's answer comes from all n frames.
  reset      a new state every T frames: frame n (1-based) is answered from frames
             T*floor((n-1)/T)+1 .. n, a clip of 1..T frames.
  staggered  K = `states` states, state k (0 <= k < K) started at frame 1 + k*T//K and then anew
             every T frames, all K stepped as one batch (K times one state's work per frame,
             still constant). Frame n is answered by the state that has seen the most frames
             (at most T); once every state runs that is T - ceil(T/K) + 1 .. T frames, at least
             T/2 for K >= 2. Before frame T//2 + 1 no state has seen T/2 frames: the oldest answers
             and `frames_seen` says how few it has seen.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dcrn_jax import feeding, input_scaling
from dcrn_jax.media import clips, video_files
from dcrn_jax.errors import UserError
from dcrn_jax.models import streaming

WINDOWS = ("grow", "reset", "staggered")


@dataclasses.dataclass(frozen=True)
class FramePreprocessor:
  """A decoded frame of any size -> uint8 (S, S, C) pixels, cut as evaluation cuts frames
  (`FrameStream` scales them on the device).

  Attributes:
    size: S, the model's frame side.
    resize_short: the shorter side frames are resized to before the centre crop.
    channels: C, 1 (grey) or 3 (RGB).
    data_config: the run's `data` config (normalisation).
  """

  size: int
  resize_short: int
  channels: int
  data_config: object

  def __call__(self, frame) -> np.ndarray:
    """frame: uint8 (h, w), (h, w, 1) or (h, w, 3); a grey frame for an RGB model (or the
    reverse) is converted by FFmpeg as decoding would."""
    av = video_files.require_av()
    pixels = np.asarray(frame)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
      pixels = pixels[..., 0]
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (
        pixels.ndim == 3 and pixels.shape[-1] != 3) or min(pixels.shape[:2]) < 1:
      raise UserError(f"a frame of shape {pixels.shape} and dtype {pixels.dtype}: push decoded "
                      "frames, uint8 (h, w) grey or (h, w, 3) RGB")
    fmt = "gray" if pixels.ndim == 2 else "rgb24"
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=fmt)
    rh, rw = clips.resized_hw(picture.height, picture.width, self.resize_short)
    out = picture.to_ndarray(format=video_files.pixel_format(self.channels), width=rw, height=rh)
    top, left = clips.eval_crop(rh, rw, self.size, 0, 1)
    out = out.reshape(rh, rw, self.channels)[top:top + self.size, left:left + self.size]
    return out


@dataclasses.dataclass(frozen=True)
class StreamOutput:
  """The model's answer after one frame.

  Attributes:
    frame: frames pushed so far (this one included).
    probabilities: float64 (classes,), softmax of the answering state's logits.
    frames_seen: frames the answering state has read (the clip its answer comes from).
    class_names: names by class index.
  """

  frame: int
  probabilities: np.ndarray
  frames_seen: int
  class_names: tuple = dataclasses.field(repr=False)

  def top_k(self, k: int = 5) -> list[tuple[str, float]]:
    """The k most probable (class name, probability), most probable first; ties by index."""
    order = np.argsort(-self.probabilities, kind="stable")[:k]
    return [(self.class_names[i], float(self.probabilities[i])) for i in order]


def schedule(window: str, clip_frames: int, states: int) -> tuple[int, tuple[int, ...]]:
  """(period, starts): state k restarts every `period` frames from 0-based frame starts[k]
  (period 0: never restarts). UserError for an unknown window or a bad number of states."""
  if window not in WINDOWS:
    raise UserError(f"window={window!r}: choose one of {', '.join(WINDOWS)}")
  if window == "grow":
    return 0, (0,)
  if window == "reset":
    return clip_frames, (0,)
  if not 2 <= states <= clip_frames:
    raise UserError(f"states={states}: the staggered window needs 2 to T={clip_frames} states")
  return clip_frames, tuple(k * clip_frames // states for k in range(states))


class FrameStream:
  """A stream of frames through one model (see the module doc for `window`)."""

  def __init__(self, model, variables, *, preprocessor: FramePreprocessor, class_names,
               clip_frames: int, window: str = "grow", states: int = 2):
    self.window = window
    self.period, self.starts = schedule(window, clip_frames, states)
    self.class_names = tuple(class_names)
    self._preprocess = preprocessor
    self._variables = variables
    step = streaming.make_step(model)
    frame_shape = (preprocessor.size, preprocessor.size, preprocessor.channels)
    self._zeros = streaming.initial_carry(model, variables, len(self.starts), frame_shape)
    mean, std = feeding.scaling(preprocessor.data_config)

    def scaled_step(v, carry, pixels, fresh):
      frame = input_scaling.model_input(pixels, mean, std)
      return step(v, _restart(carry, fresh), frame)
    self._step = jax.jit(scaled_step)
    self.reset()

  def reset(self) -> None:
    """Forgets every frame: the next push starts a new stream."""
    self._carry = self._zeros
    self.frames = 0

  def _seen(self, n: int) -> np.ndarray:
    """Frames each state has read after the stream's first n frames."""
    starts = np.asarray(self.starts)
    run = n - starts
    if self.period:
      run = np.where(run > 0, (run - 1) % self.period + 1, run)
    return np.maximum(run, 0)

  def push(self, frame) -> StreamOutput:
    """Scores one more frame (uint8 (h, w[, C]) of any size) -> the answer after it."""
    x = self._preprocess(frame)
    seen = self._seen(self.frames + 1)
    fresh = seen <= 1  # Not started yet, or starting now: zero state before this frame.
    batch = jnp.broadcast_to(jnp.asarray(x)[None], (len(self.starts),) + x.shape)
    self._carry, logits = self._step(self._variables, self._carry, batch, jnp.asarray(fresh))
    self.frames += 1
    k = int(np.argmax(seen))  # The state that has read the most frames answers.
    z = np.asarray(logits[k], np.float64)
    p = np.exp(z - z.max())
    return StreamOutput(self.frames, p / p.sum(), int(seen[k]), self.class_names)


def _restart(carry, fresh):
  """carry with the rows of states marked `fresh` (K,) set to zeros."""
  def zero(leaf):
    mask = fresh.reshape((-1,) + (1,) * (leaf.ndim - 1))
    return jnp.where(mask, jnp.zeros_like(leaf), leaf)
  return jax.tree.map(zero, carry)
