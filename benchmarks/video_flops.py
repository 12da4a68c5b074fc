"""FLOPs of one configs/video_gru.py train step on 3-channel 10x64x64 clips (XLA's cost analysis
of the compiled step; nothing runs), for the on-paper H100 figure in RESULTS.md.

    JAX_PLATFORMS=cpu python benchmarks/video_flops.py
"""

import functools
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import video_gru  # pylint: disable=wrong-import-position
from dcrn_jax import optim, parallel, steps  # pylint: disable=wrong-import-position
from dcrn_jax import state as state_lib  # pylint: disable=wrong-import-position
from dcrn_jax.models import create_model  # pylint: disable=wrong-import-position


def main():
  config = video_gru.get_config()
  shape = (10, 64, 64, 3)  # The clips bench_input.py --video_modes reads.
  model = create_model(config.model, num_classes=4, input_shape=shape)
  mesh = jax.sharding.Mesh(jax.devices()[:1], (parallel.DATA_AXIS,))
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps)
  state, _ = state_lib.create_train_state(model, tx, shape, jax.random.key(0), mesh)
  batch = {"inputs": jnp.zeros((config.batch_size,) + shape),
           "label": jnp.zeros((config.batch_size,), jnp.int32)}
  fn = jax.jit(functools.partial(steps.train_step, schedule=schedule))
  cost = fn.lower(state, batch, jax.random.key(2)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = cost["flops"]
  print(f"video_gru train step, batch {config.batch_size} of {shape}: {flops / 1e9:.2f} "
        f"GFLOP/step, {flops / 1e9 / config.batch_size:.3f} GFLOP/clip")


if __name__ == "__main__":
  main()
