"""Data-parallel scaling on paper: gradient all-reduce bytes, one-device step time, efficiency.

For each config: the parameter count (hence the float32 gradient all-reduced every step), the
FLOPs of one train step (XLA's cost analysis), the step time measured here on one device, and
the estimated data-parallel efficiency at 8, 64 and 256 accelerators on typical interconnects.

    python benchmarks/scaling.py [--steps 10] [--configs video_gru,video_lstm,convlstm,cifar10_cnn]

The estimate (printed with the table) is a model, not a measurement:
  * weak scaling: every device keeps the config's per-device batch, so compute time per step
    stays the one-device time t_c;
  * one ring all-reduce of the gradient per step, not overlapped with compute (pessimistic):
    t_ar(N) = 2 (N - 1) / N * bytes / bus_bandwidth + 2 log2(N) * latency;
  * efficiency(N) = t_c / (t_c + t_ar(N)).
"""

import argparse
import functools
import importlib
import math
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dcrn_jax import optim, parallel, state as state_lib, steps  # pylint: disable=wrong-import-position
from dcrn_jax.models import create_model  # pylint: disable=wrong-import-position

# (name, devices, bus bandwidth in bytes/s, per-hop latency in s): typical published figures,
# rounded down: NVLink 4 within an 8-GPU node, 400 Gb/s InfiniBand per GPU across nodes, and
# 100 Gb/s Ethernet per host across nodes.
INTERCONNECTS = [
    ("8 GPUs, NVLink (~300 GB/s)", 8, 300e9, 5e-6),
    ("64 GPUs, InfiniBand 400 Gb/s (~40 GB/s)", 64, 40e9, 10e-6),
    ("256 GPUs, InfiniBand 400 Gb/s (~40 GB/s)", 256, 40e9, 10e-6),
    ("256 GPUs, Ethernet 100 Gb/s (~10 GB/s)", 256, 10e9, 30e-6),
]
# Assumed accelerator step time: FLOPs at this sustained rate plus a fixed per-step overhead.
ACCEL_FLOPS_PER_S = 50e12
ACCEL_OVERHEAD_S = 1e-3

# Example shape and class count of each dataset a config names (no dataset is read here).
DATA_SHAPES = {"moving_digits": lambda d: ((d.num_frames, d.image_size, d.image_size, 1), 8),
               "moving_fashion": lambda d: ((d.num_frames, d.image_size, d.image_size, 1), 10),
               "cifar10": lambda d: ((32, 32, 3), 10),
               "fashion_mnist": lambda d: ((28, 28, 1), 10)}


def measure(config, num_steps: int):
  """(parameter count, train-step FLOPs, seconds per step) on one device, synthetic data."""
  shape, num_classes = DATA_SHAPES[config.data.name](config.data)
  model = create_model(config.model, num_classes=num_classes, input_shape=shape)
  mesh = jax.sharding.Mesh(jax.devices()[:1], (parallel.DATA_AXIS,))
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps)
  state, _ = state_lib.create_train_state(model, tx, shape, jax.random.key(0), mesh)
  params = sum(x.size for x in jax.tree.leaves(state.params))
  batch = {"inputs": jax.random.uniform(jax.random.key(1), (config.batch_size,) + shape),
           "label": jnp.zeros((config.batch_size,), jnp.int32)}
  fn = jax.jit(functools.partial(steps.train_step, schedule=schedule), donate_argnums=(0,))
  rng = jax.random.key(2)
  compiled = fn.lower(state, batch, rng).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  state, m = fn(state, batch, rng)
  jax.block_until_ready(m)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, m = fn(state, batch, rng)
  jax.block_until_ready(m)
  return params, flops, (time.perf_counter() - start) / num_steps


def allreduce_seconds(num_bytes: float, n: int, bandwidth: float, latency: float) -> float:
  return 2 * (n - 1) / n * num_bytes / bandwidth + 2 * math.log2(n) * latency


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--configs", default="video_gru,video_lstm,convlstm,cifar10_cnn")
  args = parser.parse_args()
  print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}); "
        f"{os.cpu_count()} CPU cores visible; jax {jax.__version__}")
  rows = []
  for name in args.configs.split(","):
    config = importlib.import_module(f"configs.{name}").get_config()
    params, flops, step_s = measure(config, args.steps)
    rows.append((name, config.batch_size, params, flops, step_s))
    print(f"measured {name}: {params:,} params, {flops / 1e9:.2f} GFLOP/step, "
          f"{step_s * 1e3:.1f} ms/step (batch {config.batch_size})", flush=True)

  print("\n| config | batch/device | params | all-reduce bytes/step (f32) | GFLOP/step "
        "| step, measured here | step, assumed accelerator |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  for name, batch, params, flops, step_s in rows:
    accel = flops / ACCEL_FLOPS_PER_S + ACCEL_OVERHEAD_S
    print(f"| {name} | {batch} | {params:,} | {params * 4 / 1e6:.2f} MB | {flops / 1e9:.2f} "
          f"| {step_s * 1e3:.1f} ms | {accel * 1e3:.2f} ms |")

  print("\nEstimated data-parallel efficiency, t_c / (t_c + t_allreduce), with t_c the assumed "
        "accelerator step (in brackets: with t_c the step measured here):\n")
  print("| interconnect | " + " | ".join(r[0] for r in rows) + " |")
  print("|---|" + "---:|" * len(rows))
  for label, n, bandwidth, latency in INTERCONNECTS:
    cells = []
    for _, _, params, flops, step_s in rows:
      t_ar = allreduce_seconds(params * 4, n, bandwidth, latency)
      accel = flops / ACCEL_FLOPS_PER_S + ACCEL_OVERHEAD_S
      cells.append(f"{accel / (accel + t_ar):.1%} ({step_s / (step_s + t_ar):.1%})")
    print(f"| {label} | " + " | ".join(cells) + " |")
  print(f"\nAssumptions: accelerator step = FLOPs / {ACCEL_FLOPS_PER_S / 1e12:.0f} TFLOP/s + "
        f"{ACCEL_OVERHEAD_S * 1e3:.0f} ms; ring all-reduce, no overlap with compute; bus "
        "bandwidth and latency as in the row labels (typical published figures, rounded down).")


if __name__ == "__main__":
  main()
