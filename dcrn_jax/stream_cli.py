"""python -m dcrn_jax.predict --workdir=DIR --stream VIDEO : class probabilities frame by frame.

Decodes VIDEO with PyAV one frame at a time, pushes each frame through `Predictor.stream()` and
writes that frame's top-k as it goes (printed, or rows of --output=FILE.jsonl / FILE.csv flushed
after every frame), then one line with the frames scored, frames/s and the per-frame latency
(median and 99th percentile: preprocessing + model step, decoding excluded). --plot=FILE.png
draws every class's probability over the frames (matplotlib). A video that breaks off stops
with one `error:` line saying how many frames were scored (their rows are kept).
"""

import csv
import json
import sys
import time

import numpy as np

from dcrn_jax.media import video_files
from dcrn_jax.errors import UserError


class _Rows:
  """Per-frame rows: printed to `out`, or appended and flushed to a .jsonl/.csv file."""

  def __init__(self, output, top_k: int, out):
    self._top_k, self._out, self._file, self._csv = top_k, out, None, None
    if output:
      try:
        self._file = open(output, "w", encoding="utf-8", newline="")
      except OSError as e:
        raise UserError(f"cannot write --output={output} ({e.strerror}); choose a writable "
                        "path") from e
      if output.lower().endswith(".csv"):
        self._csv = csv.writer(self._file)
        header = ["frame", "frames_seen", "latency_ms"]
        for i in range(1, top_k + 1):
          header += [f"class_{i}", f"probability_{i}"]
        self._csv.writerow(header)

  def write(self, result, latency_s: float):
    top = result.top_k(self._top_k)
    if self._file is None:
      shown = "  ".join(f"{name} {p:.3f}" for name, p in top)
      print(f"frame {result.frame} (seen {result.frames_seen})  {shown}", file=self._out,
            flush=True)
      return
    if self._csv:
      row = [result.frame, result.frames_seen, f"{latency_s * 1e3:.3f}"]
      for name, p in top:
        row += [name, f"{p:.6g}"]
      self._csv.writerow(row)
    else:
      self._file.write(json.dumps({
          "frame": result.frame, "frames_seen": result.frames_seen,
          "latency_ms": round(latency_s * 1e3, 3),
          "top_k": [{"class": n, "probability": p} for n, p in top]}) + "\n")
    self._file.flush()

  def close(self):
    if self._file:
      self._file.close()


class BrokenOff(Exception):
  """The video ended before the frames its header declares (a truncated file)."""


def _declared_frames(container, stream) -> int:
  """Frames the header promises: the stream's count, else duration x frame rate; 0 unknown."""
  if stream.frames:
    return int(stream.frames)
  if container.duration and stream.average_rate:
    return int(round(container.duration / 1e6 * float(stream.average_rate)))
  return 0


def decoded_frames(path: str, channels: int):
  """Yields uint8 (h, w, channels) frames of a video as PyAV decodes them. A file that cannot
  be opened is a UserError; a decoding error mid-way raises PyAV's error, and a video that ends
  more than one frame short of what its header declares (FFmpeg stops silently at the cut of
  a truncated file) raises BrokenOff."""
  av = video_files.require_av()
  try:
    container = av.open(path)
  except (av.FFmpegError, OSError) as e:
    raise UserError(f"{path}: not a readable video ({e}); 0 frames were scored") from None
  with container:
    if not container.streams.video:
      raise UserError(f"{path}: no video stream in it")
    fmt = video_files.pixel_format(channels)
    declared, count = _declared_frames(container, container.streams.video[0]), 0
    for frame in container.decode(video=0):
      count += 1
      yield frame.to_ndarray(format=fmt).reshape(frame.height, frame.width, channels)
    if count + 1 < declared:
      raise BrokenOff(f"it ends at frame {count} of the {declared} its header declares")


def _plot(path: str, probabilities: np.ndarray, class_names) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(10, 4))
  frames = np.arange(1, len(probabilities) + 1)
  for i, name in enumerate(class_names):
    ax.plot(frames, probabilities[:, i], label=name, linewidth=1)
  ax.set_xlabel("frame")
  ax.set_ylabel("probability")
  ax.set_ylim(0, 1)
  if len(class_names) <= 12:
    ax.legend(loc="upper right", fontsize="small")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def stream_command(workdir: str, video: str, *, step="latest", top_k: int = 5,
                   output: str | None = None, plot: str | None = None, window: str = "grow",
                   states: int = 2, out=None, err=None) -> dict:
  """What `python -m dcrn_jax.predict --stream VIDEO` does; returns {'frames', 'fps',
  'median_ms', 'p99_ms'}. UserError for bad arguments, a model that cannot stream, or a video
  that breaks off (after its scored frames' rows are written)."""
  out, err = out or sys.stdout, err or sys.stderr
  if top_k < 1:
    raise UserError(f"--top_k={top_k} must be 1 or more")
  if output and not output.lower().endswith((".jsonl", ".csv")):
    raise UserError(f"--output={output}: give a .jsonl or .csv file")
  if plot and not plot.lower().endswith(".png"):
    raise UserError(f"--plot={plot}: give a .png file")
  from dcrn_jax import predict  # pylint: disable=g-import-not-at-top  # jax and flax: slow
  predictor = predict.Predictor.from_workdir(workdir, step)
  if not hasattr(predictor, "stream"):
    raise UserError(f"{workdir} holds a forecasting run: --stream scores a classifier's "
                    "classes frame by frame (models.streaming steps forecasters from Python)")
  stream = predictor.stream(window=window, states=states)
  top_k = min(top_k, len(predictor.class_names))
  av = video_files.require_av()
  stream.push(np.zeros((8, 8, predictor.input_shape[-1]), np.uint8))  # Compiles the step,
  stream.reset()  # so that the first frame's latency is a step's, not a compile's.
  rows, latencies, history = _Rows(output, top_k, out), [], []
  start = time.perf_counter()
  try:
    try:
      for frame in decoded_frames(video, predictor.input_shape[-1]):
        t0 = time.perf_counter()
        result = stream.push(frame)
        latencies.append(time.perf_counter() - t0)
        history.append(result.probabilities)
        rows.write(result, latencies[-1])
    except (av.FFmpegError, BrokenOff) as e:
      why = e.strerror if isinstance(e, av.FFmpegError) and e.strerror else e
      raise UserError(f"{video}: the video breaks off ({why}); {len(latencies)} frame(s) were "
                      "scored") from None
  finally:
    rows.close()
  if not latencies:
    raise UserError(f"{video}: no frame could be decoded; 0 frames were scored")
  elapsed = time.perf_counter() - start
  ms = np.asarray(latencies) * 1e3
  summary = {"frames": len(ms), "fps": len(ms) / elapsed, "median_ms": float(np.median(ms)),
             "p99_ms": float(np.percentile(ms, 99))}
  if plot:
    _plot(plot, np.stack(history), predictor.class_names)
  print(f"scored {summary['frames']} frames at {summary['fps']:.1f} frames/s; per-frame "
        f"latency median {summary['median_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms "
        f"(window={window})" + (f"; wrote {output}" if output else ""), file=err, flush=True)
  return summary
