"""The train loop's ceiling: steps/s, clips/s and host time per step of the CLI's own loop with a
near-zero model, each source streamed from the host and resident on the device.

    python benchmarks/bench_loop.py [--rounds=3] [--steps=240] [--base=DIR] [--sources=...]
    python benchmarks/bench_loop.py --breakdown [--repeats=30] [--without_configure]

Rows (batch 256 each): `synthetic` and `moving_digits` clips of 10x64x64x1, `fashion_mnist`
images of 28x28x1, and `video_shards`: clips of 10x64x64x3 cut from videos of generated frames
written with PyAV into a temporary folder and prepared once into the project's decode-once
shards (data.video_cache=True). Each runs `python -m dcrn_jax.main` streamed from the host
(data.on_device=False: uint8 batches made by the feeding thread) and resident on the device
(True: the step receives row indices and gathers its batch), round robin over `rounds` rounds
in one data_dir (prepared once); with --base=DIR also the streamed run of another checkout
(e.g. `git archive be1b8e5 | tar -x -C DIR`: the loop before the feed work). Video shards
cannot be resident (each clip is cut from a whole video at random): its on_device row prints
the CLI's refusal instead.

The near-zero model reads every pixel once forwards and once for its gradient and does nearly
nothing else: a patchify stem whose one patch is the whole frame (model.stem_stride = frame
size, one feature: a dot product of each frame with one learned frame), then 4 features. Clips:
cnn_gru (4 embedding features, a GRU of 4); images: cnn (4 embedding features).

Figures, per (source, feeding), the median over every round's log windows after the first
(the first holds the data pipeline's warm-up):
  steps/s   the CLI's own figure in its `[train]` log lines (steps between two logs over the
            wall time between them); clips/s = steps/s x 256.
  host ms/step  the main thread's CPU time (time.thread_time) over the same window, divided by
            its steps: what the loop's own thread spends per step outside the step's
            computation (taking the next batch, dispatching the step, the loop's bookkeeping,
            and at a log fetching and writing the metrics). Waiting (for the feeding thread, or
            for the device at a log) costs no CPU time and is not counted, nor is time the OS
            gives the core to other processes. It is measured by running the CLI through a
            child that wraps metrics.Progress.mark (called at each log) to print the thread's
            CPU time; nothing else is changed.

--breakdown times the parts of the on_device train step in this process, as the CLI builds
it (synthetic 10x64x64x1, batch 256), for the near-zero model and for the previous session's
(stem_stride 8, an 8x8 patch per 64 frame positions): see `breakdown`.
"""

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH = 256
_CLIP_MODEL = ["--config.model.stem_stride=64", "--config.model.conv_features=(1,)",
               "--config.model.embed_dim=4", "--config.model.hidden_size=4"]
_IMAGE_MODEL = ["--config.model.name=cnn", "--config.model.stem_stride=28",
                "--config.model.conv_features=(1,)", "--config.model.convs_per_block=1",
                "--config.model.embed_dim=4", "--config.model.batch_norm=False",
                "--config.model.dropout=0.0"]
# (config, flags, steps of a streamed run; resident runs take 4x as many).
SOURCES = {
    "synthetic": ("video_gru", _CLIP_MODEL + [
        "--config.data.name=synthetic", "--config.data.synthetic_num_examples=2048"], 240),
    "moving_digits": ("video_gru", _CLIP_MODEL + [
        "--config.data.name=moving_digits", "--config.data.num_train_examples=2048",
        "--config.data.num_test_examples=256"], 240),
    "fashion_mnist": ("fashion_mnist_cnn", _IMAGE_MODEL, 480),
    "video_shards": ("video_gru", _CLIP_MODEL + [
        "--config.data.name=video_folder", "--config.data.video_cache=True",
        "--config.data.frame_stride=1", "--config.data.resize_short=64",
        "--config.data.num_test_clips=1", "--config.data.num_test_crops=1",
        "--config.data.shuffle_buffer=1000", "--config.data.prepare_workers=2"], 48),
}
_RATE = re.compile(r"^\[train\] step (\d+)/.*\| ([0-9.]+) steps/s")
_CPU = re.compile(r"^\[bench_loop\] host_cpu (\d+) ([0-9.]+)$")
# The CLI, with metrics.Progress.mark printing the main thread's CPU time first.
_CHILD = """
import runpy, sys, time
from dcrn_jax import metrics
_mark = metrics.Progress.mark
def mark(self, step):
  print(f"[bench_loop] host_cpu {step} {time.thread_time():.6f}", flush=True)
  return _mark(self, step)
metrics.Progress.mark = mark
sys.argv[0] = "dcrn_jax.main"
runpy.run_module("dcrn_jax.main", run_name="__main__", alter_sys=True)
"""
NAMES = {"before": "streamed, before (base)", "host": "streamed (uint8, thread)",
         "on_device": "on_device"}


def write_videos(root: pathlib.Path, per_class: int = 16, frames: int = 24):
  """root/{train,test}/{a,b}/*.mp4: 72x96 videos of a bright square moving right (a) or left
  (b) over noise, written with PyAV."""
  import av  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, count in (("train", per_class), ("test", 2)):
    for k, name in enumerate("ab"):
      (root / split / name).mkdir(parents=True, exist_ok=True)
      for j in range(count):
        with av.open(str(root / split / name / f"v{j}.mp4"), "w") as out:
          stream = out.add_stream("libx264", rate=25, options={"crf": "18"})
          stream.width, stream.height, stream.pix_fmt = 96, 72, "yuv420p"
          for f in range(frames):
            image = rng.integers(0, 60, (72, 96, 3), dtype=np.uint8)
            x = (3 * f + 5 * j) % 80 if k == 0 else 80 - (3 * f + 5 * j) % 80
            image[20:36, x:x + 16] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
              out.mux(packet)
          for packet in stream.encode():
            out.mux(packet)


def windows(stdout: str):
  """([steps/s], [host ms/step]) of the log windows after the first, from one run's output."""
  lines = stdout.splitlines()
  rates = [float(m.group(2)) for m in map(_RATE.match, lines) if m]
  marks = [(int(m.group(1)), float(m.group(2))) for m in map(_CPU.match, lines) if m]
  host = [1e3 * (t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(marks, marks[1:])
          if s1 > s0]
  return rates[1:], host[1:len(rates)]


def run(root, source, mode, steps, data_dir, video_dir):
  """One CLI run: its windows, or (None, the error line) when it is refused."""
  config, flags, _ = SOURCES[source]
  flags = [f"--config={root}/configs/{config}.py", f"--config.batch_size={BATCH}",
           f"--config.eval_batch_size={BATCH}", f"--config.num_train_steps={steps}",
           f"--config.log_every_steps={steps // 6}", "--config.eval_every_steps=0",
           "--config.checkpoint_every_steps=0", "--config.progress_bar=False",
           f"--config.data.data_dir={data_dir}", f"--config.data.video_dir={video_dir}", *flags]
  if mode != "before":
    flags.append(f"--config.data.on_device={mode == 'on_device'}")
  env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
  with tempfile.TemporaryDirectory() as work:
    r = subprocess.run([sys.executable, "-c", _CHILD, *flags, f"--workdir={work}"],
                       cwd=root, env=env, capture_output=True, text=True, check=False)
  if r.returncode:
    error = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    if error:
      return None, error[0]
    if mode == "before":  # A source the base checkout lacks.
      return None, "failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:200]
    raise SystemExit(f"{source}/{mode} failed:\n{r.stderr[-3000:]}")
  return windows(r.stdout), ""


def table(results, modes):
  print("\n| source | feeding | steps/s | clips/s | vs streamed | host ms/step |")
  print("|---|---|---:|---:|---:|---:|")
  for source, by_mode in results.items():
    streamed = by_mode.get("host", {}).get("rates")
    for mode in modes:
      got = by_mode.get(mode)
      if got is None:
        continue
      if got["refused"]:
        print(f"| {source} | {NAMES[mode]} | refused: {got['refused']} | | | |")
        continue
      sps, host = statistics.median(got["rates"]), statistics.median(got["host"])
      ratio = sps / statistics.median(streamed) if streamed else float("nan")
      print(f"| {source} | {NAMES[mode]} | {sps:.2f} | {sps * BATCH:,.0f} | {ratio:.2f}x | "
            f"{host:.3f} |")


def loop(args):
  modes = (["before"] if args.base else []) + ["host", "on_device"]
  sources = args.sources.split(",")
  data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_loop_data")
  video_dir = pathlib.Path(tempfile.mkdtemp(prefix="bench_loop_videos"))
  if "video_shards" in sources:
    write_videos(video_dir)
  results = {s: {} for s in sources}
  for _ in range(args.rounds):
    for source in sources:
      for mode in modes:
        got = results[source].setdefault(mode, {"rates": [], "host": [], "refused": ""})
        if got["refused"]:
          continue
        steps = SOURCES[source][2] * args.steps // 240 * (4 if mode == "on_device" else 1)
        root = args.base if mode == "before" else ROOT
        out, refused = run(root, source, mode, steps, data_dir, video_dir)
        if out is None:
          got["refused"] = refused
          print(f"{source} {mode}: {refused}", flush=True)
          continue
        got["rates"] += out[0]
        got["host"] += out[1]
        print(f"{source} {mode}: steps/s {[round(r, 2) for r in out[0]]} host ms/step "
              f"{[round(h, 3) for h in out[1]]}", flush=True)
  table(results, modes)


def breakdown(repeats: int, configure: bool = True):
  """Prints the median (and min) time of each part of the on_device train step: the CLI's step
  (train.make_train_step with the resident split), and its parts jitted alone.

  configure=False leaves out what dcrn_jax.main does first (`host.configure()`: freed memory
  kept in the process, our XLA:CPU options), as a program that imports the layers may."""
  from dcrn_jax import host  # pylint: disable=g-import-not-at-top
  if configure:
    host.configure()
  import time  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs import video_gru  # pylint: disable=g-import-not-at-top
  from dcrn_jax import data, feeding, input_scaling, optim, parallel, state as state_lib, \
      steps, train  # pylint: disable=g-import-not-at-top

  def timed(name, fn):
    jax.block_until_ready(fn())
    ts = []
    for _ in range(repeats):
      t = time.perf_counter()
      jax.block_until_ready(fn())
      ts.append(time.perf_counter() - t)
    print(f"  {name:48s} {1e3 * np.median(ts):8.2f} ms (min {1e3 * min(ts):.2f})", flush=True)

  for stride, shape in ((64, (10, 64, 64, 1)), (8, (10, 64, 64, 1)), (8, (10, 8, 8, 1))):
    c = video_gru.get_config()
    c.data.name, c.data.synthetic_num_examples, c.data.synthetic_shape = "synthetic", 2048, shape
    c.model.stem_stride, c.model.conv_features = stride, (1,)
    c.model.embed_dim, c.model.hidden_size = 4, 4
    c.batch_size, c.num_train_steps = BATCH, 1000
    mesh, info, plan, model = train._setup(c)  # pylint: disable=protected-access
    c, _ = train.resolve_config(c, info, plan)
    tx, schedule = optim.create_optimizer(c.optim, c.num_train_steps)
    state, sharding = state_lib.create_train_state(model, tx, plan.input_shape,
                                                   jax.random.key(0), mesh)
    feed = train.device_feed(c, info, mesh, train=True)
    step = train.make_train_step(c, plan, schedule, mesh, sharding, feed)
    batch = parallel.to_global(
        next(data.train_indices(c.data, local_batch_size=BATCH, seed=0, start_step=0)), mesh)
    pixels, index, rng = feed.arrays["inputs"], batch["index"], jax.random.key(1)
    n = sum(x.size for x in jax.tree.leaves(state.params))
    print(f"stem_stride={stride}, clips {shape}, batch {BATCH}: {n:,} parameters", flush=True)
    jit = lambda f: jax.jit(f, compiler_options=host.compiler_options())
    take = jit(feeding._take_rows)  # pylint: disable=protected-access
    scaled = jit(lambda a, i: input_scaling.model_input(feeding._take_rows(a, i)))  # pylint: disable=protected-access
    x = scaled(pixels, index)
    labels = jnp.zeros((BATCH,), jnp.int32)

    def loss(params, x):
      logits = model.apply({"params": params}, x, train=True)
      return jnp.mean(steps.cross_entropy(logits, labels))
    forward = jit(lambda p, x: model.apply({"params": p}, x, train=True))
    grad = jit(jax.grad(loss))
    timed("gather (uint8 rows)", lambda: take(pixels, index))
    timed("gather + scale to float32", lambda: scaled(pixels, index))
    timed("model forward (float32 input)", lambda: forward(state.params, x))
    timed("model gradient (float32 input)", lambda: grad(state.params, x))
    # The step's own front and gradient in one jit: XLA fuses the gather with the scaling.
    fused = jit(lambda p, a, i: jax.grad(loss)(p, input_scaling.model_input(
        feeding._take_rows(a, i))))  # pylint: disable=protected-access
    timed("gather + scale + gradient (one jit)", lambda: fused(state.params, pixels, index))
    box = [state]

    def one_step():
      box[0], metrics = step(box[0], batch, rng)
      return metrics
    timed("whole train step (waited for)", one_step)
    jax.block_until_ready(one_step())
    t0 = time.perf_counter()
    outs = [one_step() for _ in range(repeats)]
    t1 = time.perf_counter()
    jax.block_until_ready(outs)
    t2 = time.perf_counter()
    print(f"  {'dispatch only (main thread, per step)':48s} {1e3 * (t1 - t0) / repeats:8.3f} ms",
          flush=True)
    print(f"  {'steps back to back (per step)':48s} {1e3 * (t2 - t0) / repeats:8.2f} ms",
          flush=True)
    t = time.perf_counter()
    jax.device_get(outs)
    print(f"  {'device_get of those steps metrics (per step)':48s} "
          f"{1e3 * (time.perf_counter() - t) / repeats:8.3f} ms", flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=240,
                      help="steps of a streamed clip run (others in proportion)")
  parser.add_argument("--base", default="", help="another checkout: its streamed runs")
  parser.add_argument("--sources", default=",".join(SOURCES))
  parser.add_argument("--data_dir", default="", help="default: a new temporary folder")
  parser.add_argument("--breakdown", action="store_true")
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--without_configure", action="store_true",
                      help="--breakdown without host.configure() (what dcrn_jax.main calls)")
  args = parser.parse_args()
  if args.breakdown:
    breakdown(args.repeats, configure=not args.without_configure)
  else:
    loop(args)


if __name__ == "__main__":
  main()
