"""Where a clip comes from in a video: frame indices and crop windows (numpy only, no TensorFlow).

Both video sources (a folder of files decoded with PyAV, and TFDS video datasets) sample clips
with these functions, so the rules live in one place:

- train: one clip of `num_frames` frames, `stride` apart, from a random start; a random
  `size` x `size` window of the frames resized so their shorter side is `resize_short`; an
  optional horizontal flip. All of it drawn from the example's own seed.
- eval: `num_test_clips` clips with evenly spaced starts (first at the start of the video, last
  at its end; one clip is centred) times `num_test_crops` windows (1: centre; 3: both ends and
  the centre of the longer side): every one of these views is scored, and the scores of a
  video's views are averaged.

Videos shorter than a clip repeat their last frame (the indices are clamped).
"""

import dataclasses

import numpy as np

from dcrn_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """How clips are cut; see the module docstring."""

  num_frames: int
  stride: int
  size: int
  resize_short: int
  num_test_clips: int = 1
  num_test_crops: int = 1
  flip: bool = False

  @property
  def span(self) -> int:
    """Frames of video one clip covers, first to last."""
    return (self.num_frames - 1) * self.stride + 1

  @property
  def views(self) -> int:
    """Views scored per eval video."""
    return self.num_test_clips * self.num_test_crops


def spec_from_config(data_config) -> ClipSpec:
  """The clip spec of a `data` config; UserError for values no video can honour."""
  d = data_config
  size = d.image_size
  short = d.resize_short or size
  checks = [
      (d.num_frames >= 1, f"data.num_frames is {d.num_frames}; use 1 or more."),
      (d.frame_stride >= 1, f"data.frame_stride is {d.frame_stride}; use 1 or more."),
      (size >= 1, f"data.image_size is {size}; use 1 or more."),
      (short >= size, f"data.resize_short is {d.resize_short}: frames resized to a shorter side "
                      f"of {short} px cannot give {size} px crops. Set it to 0 (= image_size) or "
                      f"at least data.image_size={size}."),
      (d.num_test_clips >= 1, f"data.num_test_clips is {d.num_test_clips}; use 1 or more."),
      (d.num_test_crops in (1, 3), f"data.num_test_crops is {d.num_test_crops}; use 1 (centre) "
                                   "or 3 (both ends and centre of the longer side)."),
  ]
  for ok, message in checks:
    if not ok:
      raise UserError(message)
  return ClipSpec(num_frames=d.num_frames, stride=d.frame_stride, size=size, resize_short=short,
                  num_test_clips=d.num_test_clips, num_test_crops=d.num_test_crops,
                  flip=d.augment_flip)


def example_rngs(seed_pair) -> tuple[np.random.Generator, np.random.Generator]:
  """Independent generators for time (start) and space (crop, flip) from one example seed.

  Two streams, so the crop of a clip does not change when, say, the stride does.
  """
  key = [int(s) % (1 << 64) for s in np.asarray(seed_pair).ravel()]
  return np.random.default_rng(key + [0]), np.random.default_rng(key + [1])


def _indices(start: int, video_len: int, spec: ClipSpec) -> np.ndarray:
  return np.minimum(start + spec.stride * np.arange(spec.num_frames), max(video_len, 1) - 1)


def train_frame_indices(video_len: int, spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
  """int64 (num_frames,): a clip from a uniformly random start in [0, video_len - span]."""
  start = rng.integers(0, max(video_len - spec.span, 0) + 1)
  return _indices(int(start), video_len, spec)


def eval_frame_indices(video_len: int, spec: ClipSpec, clip: int) -> np.ndarray:
  """int64 (num_frames,): clip number `clip` of num_test_clips evenly spaced clips."""
  last_start = max(video_len - spec.span, 0)
  if spec.num_test_clips == 1:
    start = last_start // 2
  else:
    start = round(clip * last_start / (spec.num_test_clips - 1))
  return _indices(start, video_len, spec)


def resized_hw(height: int, width: int, short: int) -> tuple[int, int]:
  """(h, w) of a frame scaled, aspect kept, so its shorter side is `short`."""
  if height <= width:
    return short, max(short, round(width * short / height))
  return max(short, round(height * short / width)), short


def train_crop(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
  """(top, left) of a uniformly random size x size window of a height x width frame."""
  return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def eval_crop(height: int, width: int, size: int, crop: int, num_crops: int) -> tuple[int, int]:
  """(top, left) of window `crop` of num_crops: centre, or start/centre/end of the longer side."""
  top, left = (height - size) // 2, (width - size) // 2
  if num_crops == 3:
    edge = [0, None, -1][crop]
    if edge is not None:
      if height > width:
        top = 0 if edge == 0 else height - size
      else:
        left = 0 if edge == 0 else width - size
  return top, left


def train_view(video_len: int, height: int, width: int, spec: ClipSpec, seed_pair):
  """Everything random about one training clip.

  Args:
    video_len, height, width: frames in the video and their size before resizing.
    spec: the clip spec.
    seed_pair: the example's seed (two ints).

  Returns:
    indices int64 (num_frames,), (resized_h, resized_w), (top, left), flip bool.
  """
  time_rng, space_rng = example_rngs(seed_pair)
  indices = train_frame_indices(video_len, spec, time_rng)
  hw = resized_hw(height, width, spec.resize_short)
  top_left = train_crop(*hw, spec.size, space_rng)
  flip = bool(spec.flip and space_rng.random() < 0.5)
  return indices, hw, top_left, flip


def eval_view(video_len: int, height: int, width: int, spec: ClipSpec, view: int):
  """Like `train_view` for eval view number `view` (clip = view // crops, crop = view % crops)."""
  clip, crop = divmod(view, spec.num_test_crops)
  hw = resized_hw(height, width, spec.resize_short)
  return (eval_frame_indices(video_len, spec, clip), hw,
          eval_crop(*hw, spec.size, crop, spec.num_test_crops), False)
