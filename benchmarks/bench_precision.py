"""The default run (configs/video_gru.py) in float32 and in bfloat16 (model.dtype): train-step
speed side by side in one process, then the accuracy of a full run of each.

    python benchmarks/bench_precision.py [--speed_steps 20] [--train_steps 1500] [--no_train]

Speed: the jitted train step of each dtype (the one the loop runs) on the same real batch of
32 moving_digits clips, timed round robin (one step of each in turn, so a change of machine load
hits both alike); the figure is the median. Accuracy: train_and_evaluate of the config as it is
(only model.dtype differs) into a temporary workdir; its final test accuracy and wall time.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=wrong-import-position

from configs import video_gru  # pylint: disable=wrong-import-position
from dcrn_jax import data, host, optim, parallel, tasks, train  # pylint: disable=wrong-import-position
from dcrn_jax import state as state_lib  # pylint: disable=wrong-import-position
from dcrn_jax.models import create_model  # pylint: disable=wrong-import-position

DTYPES = ("float32", "bfloat16")


def _step_and_state(config, info, mesh):
  model = create_model(config.model, num_classes=info.num_classes, input_shape=info.input_shape)
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps)
  state, sharding = state_lib.create_train_state(model, tx, info.input_shape,
                                                 jax.random.key(config.seed), mesh)
  plan = tasks.for_config(config).plan(info)
  return train.make_train_step(config, plan, schedule, mesh, sharding), state


def speed(steps: int) -> dict:
  """dtype -> median seconds per train step (after one compiling step)."""
  mesh = parallel.create_mesh()
  runs = {}
  for dtype in DTYPES:
    config = video_gru.get_config()
    config.model.dtype = dtype
    info = data.get_info(config.data)
    runs[dtype] = list(_step_and_state(config, info, mesh))
  config = video_gru.get_config()
  batch = next(data.train_batches(config.data, local_batch_size=config.batch_size, seed=0,
                                  start_step=0))
  batch = parallel.to_global(batch, mesh)
  rng = jax.random.key(1)
  times = {d: [] for d in DTYPES}
  for i in range(steps + 1):
    for dtype in DTYPES:
      fn, state = runs[dtype]
      t = time.perf_counter()
      state, metrics = fn(state, batch, rng)
      jax.block_until_ready((state, metrics))
      if i:  # The first step compiles.
        times[dtype].append(time.perf_counter() - t)
      runs[dtype][1] = state
  return {d: statistics.median(v) for d, v in times.items()}


def accuracy(train_steps: int) -> dict:
  """dtype -> (test accuracy, wall seconds) of a full run."""
  out = {}
  for dtype in DTYPES:
    config = video_gru.get_config()
    config.model.dtype = dtype
    config.progress_bar = False
    if train_steps != config.num_train_steps:
      config.num_train_steps = train_steps
      config.eval_every_steps = 0
    with tempfile.TemporaryDirectory(prefix=f"bench_{dtype}_") as workdir:
      t = time.perf_counter()
      result = train.train_and_evaluate(config, workdir)
      out[dtype] = (result["accuracy"], time.perf_counter() - t)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--speed_steps", type=int, default=20)
  parser.add_argument("--train_steps", type=int, default=1500)
  parser.add_argument("--no_train", action="store_true", help="speed only")
  args = parser.parse_args()
  host.tune_malloc()
  print(f"devices: {jax.devices()}; cpu count {os.cpu_count()}", flush=True)
  times = speed(args.speed_steps)
  print(f"\ntrain step of configs/video_gru.py (32 clips of 10x64x64x1), median of "
        f"{args.speed_steps}, round robin:")
  for dtype in DTYPES:
    print(f"  {dtype:9s} {times[dtype] * 1e3:8.1f} ms")
  print(f"  bfloat16 / float32 step time: {times['bfloat16'] / times['float32']:.2f}x", flush=True)
  if args.no_train:
    return
  results = accuracy(args.train_steps)
  print(f"\nfull runs of {args.train_steps} steps (one after the other):")
  for dtype, (acc, wall) in results.items():
    print(f"  {dtype:9s} test accuracy {acc:.4f}  wall {wall:.0f} s")


if __name__ == "__main__":
  main()
