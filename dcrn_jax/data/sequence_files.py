"""Clip files -> the frames a forecaster reads (numpy, PyAV and Pillow; no TensorFlow).

What forecasting's predict (dcrn_jax/predict_forecast.py) reads. A clip is the first `count`
frames of one file, at the model's frame size (H, W) and channels C (1 grey, 3 RGB):

  .npy                    a saved array (T, H, W) or (T, H, W, C): uint8 pixels, or floats in
                          [0, 1] (the frames of a sequence dataset, as they are stored); its
                          frames must already be H x W x C; every frame is a frame of the clip
  video (.mp4, .mkv, ...) frames 0, s, 2s, ... (s = data.frame_stride), decoded as predict's
                          video files are (`video_files.decode_frames`): resized so the shorter
                          side is data.resize_short (at least the model's larger side), then
                          the centre H x W crop, as evaluation's centre crop
  .gif, .webp (animated)  every frame, read with Pillow, resized and cropped by the same rule

Frames are returned as they are (uint8 pixels, or float32 in [0, 1] from float arrays); the
caller turns them into model inputs (`preprocess`). A file that gives no frames of that shape
raises `files.Unreadable` saying why.
"""

import dataclasses
import os

import numpy as np

from dcrn_jax.data import files
from dcrn_jax.media import clips, video_files

ANIMATION_EXTENSIONS = (".gif", ".webp")
ARRAY_EXTENSIONS = (".npy",)
EXTENSIONS = files.VIDEO_EXTENSIONS + ANIMATION_EXTENSIONS + ARRAY_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class FrameSpec:
  """The frames one forecaster reads.

  Attributes:
    height, width, channels: one frame, as the model takes it.
    stride: a video's frames read (data.frame_stride).
    resize_short: a video's or animation's shorter side before the centre crop.
  """

  height: int
  width: int
  channels: int
  stride: int
  resize_short: int


def frame_spec(data_config, frame_shape) -> FrameSpec:
  """The FrameSpec of a forecaster of frames `frame_shape` (H, W, C) trained on data_config."""
  height, width, channels = (int(n) for n in frame_shape)
  video_files.pixel_format(channels)  # UserError for channels no file gives.
  side = max(height, width)
  short = data_config.resize_short if data_config.resize_short >= side else side
  return FrameSpec(height, width, channels, max(int(data_config.frame_stride), 1), short)


def list_clips(paths) -> list[str]:
  """The clip files named, and those under folders (recursively, sorted). UserError for a path
  that does not exist, or when there is no clip file."""
  from dcrn_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  found = []
  for path in paths:
    if os.path.isdir(path):
      found += sorted(os.path.join(root, n) for root, _, names in os.walk(path) for n in names
                      if n.lower().endswith(EXTENSIONS))
    elif os.path.exists(path):
      found.append(path)
    else:
      raise UserError(f"{path} does not exist; give clip files ({', '.join(EXTENSIONS)}) or "
                      "folders of them")
  if not found:
    raise UserError(f"no clip file in {', '.join(map(str, paths)) or 'no path'} (looked for "
                    f"{', '.join(EXTENSIONS)})")
  return list(dict.fromkeys(found))


def read_clip(path: str, spec: FrameSpec, count: int) -> np.ndarray:
  """The first `count` frames of the file (fewer when it has fewer): uint8 (n, H, W, C), or
  float32 in [0, 1] for a float array."""
  ext = os.path.splitext(path)[1].lower()
  if ext in ARRAY_EXTENSIONS:
    return _read_array(path, spec, count)
  if ext in ANIMATION_EXTENSIONS:
    return _read_animation(path, spec, count)
  return _read_video(path, spec, count)


def _read_array(path: str, spec: FrameSpec, count: int) -> np.ndarray:
  try:
    x = np.load(path, allow_pickle=False, mmap_mode="r")
  except (OSError, ValueError) as e:
    raise files.Unreadable(f"not a readable .npy array ({e})") from None
  want = (spec.height, spec.width, spec.channels)
  if x.ndim == 3 and spec.channels == 1:
    x = x[..., None]
  if x.ndim != 4 or x.shape[1:] != want:
    raise files.Unreadable(f"an array of shape {x.shape}; this model reads (T, {want[0]}, "
                           f"{want[1]}, {want[2]}) frames" + (f" or (T, {want[0]}, {want[1]})"
                                                              if spec.channels == 1 else ""))
  if x.dtype == np.uint8:
    return np.array(x[:count])
  if not np.issubdtype(x.dtype, np.floating):
    raise files.Unreadable(f"an array of {x.dtype}: give uint8 pixels or floats in [0, 1]")
  frames = np.array(x[:count], np.float32)
  if frames.size and not (np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1):
    raise files.Unreadable("float frames outside [0, 1]: give uint8 pixels or floats in "
                           "[0, 1]")
  return frames


def _centre_crop(frames: np.ndarray, spec: FrameSpec) -> np.ndarray:
  h, w = frames.shape[1:3]
  top, left = (h - spec.height) // 2, (w - spec.width) // 2
  return frames[:, top:top + spec.height, left:left + spec.width]


def _read_video(path: str, spec: FrameSpec, count: int) -> np.ndarray:
  try:
    length, height, width = video_files.probe(path)
  except (ValueError, OSError) as e:
    raise files.Unreadable(f"not a readable video ({e})") from None
  wanted = spec.stride * np.arange(min(count, -(-length // spec.stride)))
  hw = clips.resized_hw(height, width, spec.resize_short)
  decoded = video_files.decode_frames(path, wanted, hw, spec.channels)
  frames = []
  for i in wanted:  # Up to the first frame that did not decode (a broken tail).
    if int(i) not in decoded:
      break
    frames.append(decoded[int(i)])
  if not frames:
    raise files.Unreadable("no frame could be decoded")
  return _centre_crop(np.stack(frames), spec)


def _read_animation(path: str, spec: FrameSpec, count: int) -> np.ndarray:
  from PIL import Image, ImageSequence  # pylint: disable=g-import-not-at-top
  mode = "L" if spec.channels == 1 else "RGB"
  frames = []
  try:
    with Image.open(path) as image:
      for frame in ImageSequence.Iterator(image):
        if len(frames) == count:
          break
        frame = frame.convert(mode)
        rh, rw = clips.resized_hw(frame.height, frame.width, spec.resize_short)
        if (rh, rw) != (frame.height, frame.width):
          frame = frame.resize((rw, rh), Image.Resampling.BILINEAR)
        frames.append(np.asarray(frame, np.uint8).reshape(rh, rw, spec.channels))
  except (OSError, ValueError) as e:
    raise files.Unreadable(f"not a readable animation ({e})") from None
  if not frames:
    raise files.Unreadable("no frame in it")
  return _centre_crop(np.stack(frames), spec)
