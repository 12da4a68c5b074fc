"""Decoding videos into the JPEG frames the shards store (numpy, PyAV, Pillow; no TensorFlow):
`decode_all` runs `decode_job` on many files at a time, with a progress line.

A video's stored frames are exactly the frames the PyAV path would sample from: `probe`'s frame
count of them (a file whose tail breaks repeats its last decoded frame, as `decode_clip` does),
each scaled by FFmpeg to `clips.resized_hw` of the source size, then JPEG-encoded. Reading a
clip from the shards therefore gives the PyAV path's clip up to JPEG's error.

Each video becomes one work file, written whole and renamed, so a killed preparation keeps
every finished video: <work_dir>/<key>.npz (frames) or <key>.skip.json (why it was skipped),
key = hash of the file's path, size and modification time.
"""

import concurrent.futures
import hashlib
import io
import json
import os
import sys
import time

import numpy as np

from dcrn_jax.media import clips, video_files


def work_key(path: str, size: int, mtime_ns: int) -> str:
  return hashlib.sha256(f"{path}|{size}|{mtime_ns}".encode()).hexdigest()[:24]


def _encode(rgb: np.ndarray, quality: int) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def decode_video(path: str, short: int, quality: int, threads: int = 0):
  """(info dict, [JPEG bytes] * num_frames); raises ValueError if the file is unusable.

  info: num_frames, height, width (the source's), fps, decoded (frames that decoded; the rest
  repeat the last of them).
  """
  av = video_files.require_av()
  num_frames, height, width = video_files.probe(path)
  hw = clips.resized_hw(height, width, short)
  jpegs, fps = [], 0.0
  try:
    with av.open(path) as container:
      stream = container.streams.video[0]
      stream.thread_type, stream.thread_count = "AUTO", threads
      fps = float(stream.average_rate or stream.guessed_rate or 0)
      for frame in container.decode(stream):
        jpegs.append(_encode(frame.to_ndarray(format="rgb24", width=hw[1], height=hw[0]),
                             quality))
        if len(jpegs) == num_frames:
          break
  except (av.FFmpegError, OSError):
    pass  # A broken tail: what decoded is kept, as the PyAV path keeps it.
  if not jpegs:
    raise ValueError("no decodable frame")
  decoded = len(jpegs)
  jpegs += [jpegs[-1]] * (num_frames - decoded)
  return dict(num_frames=num_frames, height=height, width=width, fps=fps, decoded=decoded), jpegs


def work_files(work_dir: str, key: str) -> tuple[str, str]:
  return os.path.join(work_dir, key + ".npz"), os.path.join(work_dir, key + ".skip.json")


def decode_job(job) -> tuple[str, dict | str]:
  """One video: (path, key, work_dir, short, quality, threads) -> (path, info or reason).

  Writes the work file first (atomically); a job whose work file exists is done already.
  """
  path, key, work_dir, short, quality, threads = job
  frames_file, skip_file = work_files(work_dir, key)
  try:
    info, jpegs = decode_video(path, short, quality, threads)
  except (ValueError, OSError) as e:
    reason = str(e) or type(e).__name__
    _write_atomic(skip_file, lambda f: f.write(json.dumps({"reason": reason}).encode()))
    return path, reason
  ends = np.cumsum([len(j) for j in jpegs], dtype=np.int64)
  _write_atomic(frames_file, lambda f: np.savez(
      f, jpeg=np.frombuffer(b"".join(jpegs), np.uint8), ends=ends,
      info=np.array(json.dumps(info))))
  return path, info


def read_work(work_dir: str, key: str) -> tuple[dict, list[bytes]] | str | None:
  """(info, JPEG frames) of a decoded video, its skip reason, or None if not decoded yet."""
  frames_file, skip_file = work_files(work_dir, key)
  if os.path.exists(skip_file):
    with open(skip_file, encoding="utf-8") as f:
      return json.load(f)["reason"]
  if not os.path.exists(frames_file):
    return None
  with np.load(frames_file) as z:
    data, ends = z["jpeg"].tobytes(), z["ends"]
    info = json.loads(str(z["info"]))
  starts = np.concatenate([[0], ends[:-1]])
  return info, [data[s:e] for s, e in zip(starts, ends)]


def _write_atomic(path: str, write) -> None:
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "wb") as f:
    write(f)
  os.replace(tmp, path)


def _short_side(data_config) -> int:
  return data_config.resize_short or data_config.image_size


def decode_all(data_config, jobs, work_dir) -> dict:
  """path -> info dict or skip reason for jobs [(path, work key)], decoding what is not done
  yet (data.prepare_workers files at a time, one per core by default), with a progress line."""
  outcomes, todo = {}, []
  for path, key in jobs:
    done = read_work(work_dir, key) if _has_work(work_dir, key) else None
    if done is None:
      todo.append((path, key))
    else:
      outcomes[path] = done if isinstance(done, str) else done[0]
  workers = data_config.prepare_workers or os.cpu_count() or 1
  if outcomes:
    print(f"resuming: {len(outcomes)} of {len(jobs)} videos were decoded before", flush=True)
  print(f"decoding {len(todo)} videos in {min(workers, max(len(todo), 1))} thread(s): frames "
        f"scaled to a shorter side of {_short_side(data_config)} px, JPEG quality "
        f"{data_config.jpeg_quality}", flush=True)
  threads = max(1, (os.cpu_count() or 1) // workers)
  args = [(p, k, work_dir, _short_side(data_config), data_config.jpeg_quality, threads)
          for p, k in todo]
  progress = _Progress(len(todo))
  # Threads: PyAV's decoding and scaling and Pillow's JPEG encoding release the GIL, so they
  # run in parallel without the start-up cost (and the TensorFlow-forking hazard) of processes.
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for path, outcome in pool.map(decode_job, args):
      outcomes[path] = outcome
      progress.tick(outcome)
  progress.done()
  for path, outcome in sorted(outcomes.items()):
    if isinstance(outcome, str):
      print(f"warning: skipping video {path}: {outcome}", file=sys.stderr, flush=True)
  skipped = sum(isinstance(o, str) for o in outcomes.values())
  if skipped:
    print(f"warning: skipped {skipped} of {len(jobs)} video files (listed in the dataset's "
          "metadata.json)", file=sys.stderr, flush=True)
  return outcomes


def _has_work(work_dir, key) -> bool:
  return any(os.path.exists(f) for f in work_files(work_dir, key))


class _Progress:
  """A line every few seconds (or live on a terminal): videos done, rate, minutes of video, ETA."""

  def __init__(self, total: int, every_s: float = 5.0):
    self.total, self.count, self.minutes = total, 0, 0.0
    self.start = self.last = time.perf_counter()
    self.every_s, self.live = every_s, sys.stdout.isatty()

  def tick(self, outcome) -> None:
    self.count += 1
    if isinstance(outcome, dict) and outcome["fps"] > 0:
      self.minutes += outcome["num_frames"] / outcome["fps"] / 60
    now = time.perf_counter()
    if now - self.last >= (0.5 if self.live else self.every_s) or self.count == self.total:
      self.last = now
      rate = self.count / max(now - self.start, 1e-9)
      eta = (self.total - self.count) / max(rate, 1e-9)
      line = (f"decoded {self.count}/{self.total} videos ({100 * self.count / self.total:.0f} "
              f"%, {self.minutes:.1f} min of video) | {rate:.2f} videos/s | ETA "
              f"{int(eta // 60)}:{int(eta % 60):02d}")
      print("\r" + line if self.live else line, end="" if self.live else "\n", flush=True)

  def done(self) -> None:
    if self.live and self.total:
      print(flush=True)
