"""Finding, probing and decoding video files with PyAV (numpy only, no TensorFlow).

A split folder holds one subfolder per class: <split_dir>/<class_name>/*.{mp4,avi,mkv,webm}.
Scanning probes every file once (its frame count and size, and that its first frame decodes);
files that fail are skipped with a warning and counted, never crash a run.
"""

import concurrent.futures
import dataclasses
import functools
import os
import sys

import numpy as np

from dcrn_jax.data import clips
from dcrn_jax.errors import UserError

EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")
_PROBE_THREADS = 8  # Probing is mostly file opening and header parsing: threads overlap the waits.


def require_av():
  """The `av` module (PyAV), or UserError saying how to install it."""
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError("video and image files (data.name='video_folder', predict) are decoded with "
                    "PyAV, which is not installed: pip install 'dcrn_jax[video]' (or pip "
                    "install av).") from e
  return av


@dataclasses.dataclass(frozen=True)
class VideoSplit:
  """The readable videos of one split folder, sorted by class then file name.

  Attributes:
    paths, labels, num_frames, heights, widths: one entry per readable video.
    class_names: the sorted class folder names; a label indexes them.
    skipped: (path, reason) for every file that could not be used.
    empty_classes: class folders without any readable video.
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


def _listing(split_dir: str) -> tuple[tuple[str, tuple[tuple[str, int, float], ...]], ...]:
  """(class name, ((path, size, mtime), ...)) per class folder, sorted: what a scan depends on."""
  classes = []
  for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
    if not entry.is_dir():
      continue
    files = []
    for f in sorted(os.scandir(entry.path), key=lambda e: e.name):
      if f.is_file() and f.name.lower().endswith(EXTENSIONS):
        stat = f.stat()
        files.append((f.path, stat.st_size, stat.st_mtime))
    classes.append((entry.name, tuple(files)))
  return tuple(classes)


def scan(split_dir: str, class_names: tuple[str, ...] | None = None) -> VideoSplit:
  """Probes every video under split_dir; class_names (e.g. the train split's) fix the labels.

  Raises UserError if the folder is missing, has no class folders, or has class folders that
  class_names lacks. Prints one warning line per skipped file and per empty class.
  """
  if not os.path.isdir(split_dir):
    parent = os.path.dirname(split_dir.rstrip("/")) or "."
    found = sorted(os.listdir(parent)) if os.path.isdir(parent) else []
    raise UserError(
        f"The video folder {split_dir} does not exist (found in {parent}: {found or 'nothing'}). "
        "Expected <data.video_dir>/<split>/<class_name>/*.mp4 with split = data.train_split "
        "or data.eval_split.")
  return _scan(split_dir, _listing(split_dir), class_names)


def _warn(result: VideoSplit, split_dir: str) -> None:
  for path, reason in result.skipped:
    print(f"warning: skipping video {path}: {reason}", file=sys.stderr, flush=True)
  for name in result.empty_classes:
    print(f"warning: class folder {os.path.join(split_dir, name)} has no readable video",
          file=sys.stderr, flush=True)
  if result.skipped:
    total = len(result.paths) + len(result.skipped)
    print(f"warning: skipped {len(result.skipped)} of {total} video files in {split_dir}",
          file=sys.stderr, flush=True)


@functools.lru_cache(maxsize=8)
def _scan(split_dir, listing, class_names) -> VideoSplit:
  """Cached on the listing (paths, sizes, mtimes), so get_info and the pipelines probe (and
  warn) once per process."""
  if not listing:
    raise UserError(f"{split_dir} has no class folders; put videos in "
                    f"{split_dir}/<class_name>/*.mp4 (or .avi, .mkv, .webm).")
  names = tuple(name for name, _ in listing)
  if class_names is None:
    class_names = names
  unknown = sorted(set(names) - set(class_names))
  if unknown:
    raise UserError(f"{split_dir} has class folders {unknown} that the train split lacks; "
                    "every eval class needs train videos (the model has one output per class).")
  jobs = [(path, class_names.index(name)) for name, files in listing for path, _, _ in files]
  with concurrent.futures.ThreadPoolExecutor(_PROBE_THREADS) as pool:
    outcomes = list(pool.map(lambda job: _try_probe(job[0]), jobs))
  kept, skipped = [], []
  for (path, label), outcome in zip(jobs, outcomes):
    if isinstance(outcome, str):
      skipped.append((path, outcome))
    else:
      kept.append((path, label) + outcome)
  present = {label for _, label, *_ in kept}
  empty = tuple(name for name in names if class_names.index(name) not in present)
  columns = list(zip(*kept)) if kept else [()] * 5
  result = VideoSplit(*(tuple(c) for c in columns), class_names=tuple(class_names),
                      skipped=tuple(skipped), empty_classes=empty)
  _warn(result, split_dir)
  return result


def _try_probe(path):
  try:
    return probe(path)
  except (ValueError, OSError) as e:
    return str(e) or type(e).__name__


_PIXEL_FORMATS = {1: "gray", 3: "rgb24"}  # Channels -> the FFmpeg format frames are read in.


def pixel_format(channels: int) -> str:
  """FFmpeg's pixel format for frames of `channels` channels (1: grey, 3: RGB)."""
  if channels not in _PIXEL_FORMATS:
    raise UserError(f"video and image files give 1 (grey) or 3 (RGB) channels, not {channels}")
  return _PIXEL_FORMATS[channels]


def decode_frames(path: str, wanted, hw: tuple[int, int],
                  channels: int = 3) -> dict[int, np.ndarray]:
  """Frame index -> uint8 (h, w, channels) for the frames `wanted` a video has, resized to hw.

  Frames are decoded in order up to the last one wanted and scaled by FFmpeg as they come. A
  file that ends early or breaks gives the frames decoded before that.
  """
  av = require_av()
  wanted = set(int(i) for i in wanted)
  last, fmt = max(wanted), pixel_format(channels)
  frames = {}
  try:
    with av.open(path) as container:
      for i, frame in enumerate(container.decode(video=0)):
        if i in wanted:
          frames[i] = frame.to_ndarray(format=fmt, width=hw[1], height=hw[0]).reshape(
              hw[0], hw[1], channels)
        if i >= last:
          break
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
                size: int, flip: bool, channels: int = 3) -> tuple[np.ndarray, bool]:
  """Decodes the frames `indices` of a video, resized to hw, cropped, maybe flipped.

  If the file ends early or breaks, missing frames repeat the last one decoded.

  Returns:
    uint8 (len(indices), size, size, channels) (RGB for 3), and False if no frame at all could
    be decoded (the clip is then black).
  """
  frames = decode_frames(path, indices, hw, channels)
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
