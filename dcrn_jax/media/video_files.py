"""Finding, probing and decoding video files with PyAV (numpy only, no TensorFlow).

Which files make a split is `video_layouts`' business; here every file of a split is probed once
(its frame count and size, and that its first frame decodes); files that fail are skipped with
a warning and counted, never crash a run. `decode_clip` reads one clip of one file (the
video_folder source and predict use it alike).
"""

import concurrent.futures
import dataclasses
import functools
import os
import sys

import numpy as np

from dcrn_jax.media import clips
from dcrn_jax.errors import UserError

EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")  # Matched case-insensitively.
_PROBE_THREADS = 8  # Probing is mostly file opening and header parsing: threads overlap the waits.


def require_av():
  """The `av` module (PyAV), or UserError saying how to install it."""
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError("video and image files (data.name='video_folder', predict) are decoded with "
                    "PyAV, a dependency of dcrn_jax that is missing from this environment: "
                    "pip install av (or reinstall dcrn_jax: pip install -e .)") from e
  return av


@dataclasses.dataclass(frozen=True)
class VideoSplit:
  """The readable videos of one split, in the order given.

  Attributes:
    paths, labels, num_frames, heights, widths: one entry per readable video.
    class_names: a label indexes them.
    skipped: (path, reason) for every file that could not be used.
    empty_classes: classes without any readable video.
  """

  paths: tuple[str, ...]
  labels: tuple[int, ...]
  num_frames: tuple[int, ...]
  heights: tuple[int, ...]
  widths: tuple[int, ...]
  class_names: tuple[str, ...]
  skipped: tuple[tuple[str, str], ...]
  empty_classes: tuple[str, ...]


def probe(path: str) -> tuple[int, int, int]:
  """(frame count, height, width) of a video file; raises ValueError saying why it is unusable."""
  av = require_av()
  if os.path.getsize(path) == 0:
    raise ValueError("empty file")
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ValueError("no video stream")
      stream = container.streams.video[0]
      count = stream.frames
      first = next(container.decode(stream), None)
      if first is None:
        raise ValueError("no decodable frame")
      if count <= 0:  # Some containers (mkv, webm) do not store it: count the packets.
        container.seek(0)
        count = sum(1 for p in container.demux(stream) if p.size)
      return count, first.height, first.width
  except av.FFmpegError as e:
    raise ValueError(f"FFmpeg: {e.strerror or e}") from None


def probe_all(paths: tuple[str, ...], labels: tuple[int, ...], class_names: tuple[str, ...],
              *, where: str, warn_empty: bool) -> VideoSplit:
  """Probes every file (in threads); unusable ones are skipped with a warning line each.

  Args:
    paths, labels: the split's files and their labels.
    class_names: the dataset's classes.
    where: names the split in the count line ("skipped 1 of 13 video files in <where>").
    warn_empty: warn about classes without any readable video (the train split's problem).
  """
  stats = tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
  return _probe_all(tuple(paths), tuple(labels), tuple(class_names), stats, where, warn_empty)


@functools.lru_cache(maxsize=8)
def _probe_all(paths, labels, class_names, stats, where, warn_empty) -> VideoSplit:
  """Cached on the files' sizes and times, so get_info and the pipelines probe (and warn) once
  per process."""
  del stats  # Part of the cache key only.
  with concurrent.futures.ThreadPoolExecutor(_PROBE_THREADS) as pool:
    outcomes = list(pool.map(_try_probe, paths))
  kept, skipped = [], []
  for path, label, outcome in zip(paths, labels, outcomes):
    if isinstance(outcome, str):
      skipped.append((path, outcome))
    else:
      kept.append((path, label) + outcome)
  present = {label for _, label, *_ in kept}
  empty = tuple(n for i, n in enumerate(class_names) if i not in present) if warn_empty else ()
  columns = list(zip(*kept)) if kept else [()] * 5
  result = VideoSplit(*(tuple(c) for c in columns), class_names=class_names,
                      skipped=tuple(skipped), empty_classes=empty)
  for path, reason in result.skipped:
    print(f"warning: skipping video {path}: {reason}", file=sys.stderr, flush=True)
  for name in result.empty_classes:
    print(f"warning: class {name!r} has no readable video in {where}", file=sys.stderr,
          flush=True)
  if result.skipped:
    print(f"warning: skipped {len(result.skipped)} of {len(paths)} video files in {where}",
          file=sys.stderr, flush=True)
  return result


def _try_probe(path):
  try:
    return probe(path)
  except (ValueError, OSError) as e:
    return str(e) or type(e).__name__


def _frame_index_fn(stream):
  """pts -> frame index for a constant-rate stream, or None when the stream does not say its
  rate (then only decoding from the start can count frames)."""
  rate, time_base = stream.average_rate or stream.guessed_rate, stream.time_base
  if not rate or not time_base:
    return None
  start = stream.start_time or 0
  return lambda pts: None if pts is None else round((pts - start) * time_base * rate)


_PIXEL_FORMATS = {1: "gray", 3: "rgb24"}  # Channels -> the FFmpeg format frames are read in.


def pixel_format(channels: int) -> str:
  """FFmpeg's pixel format for frames of `channels` channels (1: grey, 3: RGB)."""
  if channels not in _PIXEL_FORMATS:
    raise UserError(f"video and image files give 1 (grey) or 3 (RGB) channels, not {channels}")
  return _PIXEL_FORMATS[channels]


def _decode_into(container, wanted: list[int], hw, channels: int, seek: bool,
                 frames: dict) -> bool:
  """Puts {index: uint8 (h, w, channels)} of the wanted frames (sorted) into `frames`, decoded
  from the keyframe at or before the first one when `seek`, else from the start (filled as
  decoded, so a file that breaks midway keeps what came before). False if a seek landed past the
  first wanted frame or a frame had no timestamp (the caller then decodes from the start)."""
  stream = container.streams.video[0]
  stream.thread_type = "AUTO"  # Frame and slice threads: decoding is most of a clip's cost.
  index_of = _frame_index_fn(stream) if seek and wanted[0] > 0 else None
  if index_of is not None:
    # Half a frame early, so rounding never lands the seek past the first wanted frame's
    # keyframe; `backward` goes to the keyframe at or before it.
    seconds = (wanted[0] - 0.5) / float(stream.average_rate or stream.guessed_rate)
    container.seek((stream.start_time or 0) + int(seconds / stream.time_base), stream=stream,
                   backward=True, any_frame=False)
  last, wanted_set, fmt = wanted[-1], set(wanted), pixel_format(channels)
  for count, frame in enumerate(container.decode(stream)):
    i = count if index_of is None else index_of(frame.pts)
    if i is None or (index_of is not None and not frames and i > wanted[0]):
      return False
    if i in wanted_set:
      frames[i] = frame.to_ndarray(format=fmt, width=hw[1], height=hw[0]).reshape(
          hw[0], hw[1], channels)
    if i >= last:
      break
  return True


def decode_frames(path: str, wanted, hw: tuple[int, int], channels: int = 3, *,
                  seek: bool = True) -> dict[int, np.ndarray]:
  """Frame index -> uint8 (h, w, channels) for the frames `wanted` a video has, resized to hw.

  With `seek`, decoding starts at the keyframe at or before the first frame needed (found from
  the frame rate and timestamps: frame i is shown at i / rate), so a clip costs the same near
  the end of a long file as at its start; without it (or when the file gives no timestamps, or
  the seek lands too late) frames are decoded from the start and counted. Either way decoding
  stops at the last frame needed, and FFmpeg scales frames as they come. A file that ends early
  or breaks gives the frames decoded before that.
  """
  av = require_av()
  wanted = sorted(set(int(i) for i in wanted))
  frames = {}
  try:
    with av.open(path) as container:
      done = _decode_into(container, wanted, hw, channels, seek, frames)
    if not done:
      frames.clear()
      with av.open(path) as container:
        _decode_into(container, wanted, hw, channels, False, frames)
  except (av.FFmpegError, OSError):
    pass  # Use what was decoded; a broken tail is common in the wild.
  return frames


def cut_clip(frames: dict[int, np.ndarray], indices: np.ndarray, top_left: tuple[int, int],
             size: int, flip: bool, channels: int = 3) -> tuple[np.ndarray, bool]:
  """The clip of frames `indices` from decode_frames' output: cropped, maybe flipped.

  Only the clip's own frames are used: a missing one repeats the clip's last decoded frame
  before it (or its first decoded one).

  Returns:
    uint8 (len(indices), size, size, channels), and False if none of its frames was decoded
    (the clip is then black).
  """
  top, left = top_left
  out = np.zeros((len(indices), size, size, channels), np.uint8)
  available = np.array(sorted(int(i) for i in set(int(i) for i in indices) & frames.keys()))
  if not len(available):
    return out, False
  for row, i in enumerate(indices):
    source = available[max(np.searchsorted(available, i, side="right") - 1, 0)]
    out[row] = frames[int(source)][top:top + size, left:left + size]
  if flip:
    out = out[:, :, ::-1]
  return out, True


def decode_clip(path: str, indices: np.ndarray, hw: tuple[int, int], top_left: tuple[int, int],
                size: int, flip: bool, channels: int = 3, *,
                seek: bool = True) -> tuple[np.ndarray, bool]:
  """Decodes the frames `indices` of a video (decode_frames), resized to hw, cropped, maybe
  flipped. If the file ends early or breaks, missing frames repeat the last one decoded.

  Returns:
    uint8 (len(indices), size, size, channels) (RGB for 3), and False if no frame at all could
    be decoded (the clip is then black).
  """
  frames = decode_frames(path, indices, hw, channels, seek=seek)
  return cut_clip(frames, indices, top_left, size, flip, channels)


def eval_clips(path: str, video_len: int, height: int, width: int, spec: clips.ClipSpec,
               channels: int = 3) -> tuple[np.ndarray, bool]:
  """Every eval view of a video (`clips.eval_view`), from one pass of decoding.

  View v equals decode_clip of eval view v (what the video_folder eval pipeline reads).

  Returns:
    uint8 (spec.views, num_frames, size, size, channels), and False if no frame of some view
    could be decoded.
  """
  views = [clips.eval_view(video_len, height, width, spec, v) for v in range(spec.views)]
  wanted = set().union(*(set(int(i) for i in indices) for indices, *_ in views))
  frames = decode_frames(path, wanted, views[0][1], channels)
  cut = [cut_clip(frames, indices, top_left, spec.size, flip, channels)
         for indices, _, top_left, flip in views]
  return np.stack([c for c, _ in cut]), all(ok for _, ok in cut)


def write_video(path: str, frames: np.ndarray, *, fps: int = 25, lossless: bool = True) -> None:
  """Writes uint8 frames (T, H, W, C), C = 1 (grey) or 3 (RGB), as a video file.

  lossless: FFV1 (use a .mkv or .avi path), which decodes to the very same pixels; else H.264
  (a .mp4 path), what cameras and phones write. H and W must be even for H.264.
  """
  av = require_av()
  frames = np.asarray(frames, np.uint8)
  channels = frames.shape[-1]
  fmt = pixel_format(channels)
  with av.open(path, "w") as container:
    if lossless:
      stream = container.add_stream("ffv1", rate=fps)
      stream.pix_fmt = "gray" if channels == 1 else "bgr0"
    else:
      stream = container.add_stream("libx264", rate=fps)
      stream.pix_fmt = "yuv420p"
    stream.height, stream.width = frames.shape[1:3]
    for frame in frames:
      image = frame[..., 0] if channels == 1 else frame
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=fmt)):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
