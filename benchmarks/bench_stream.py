"""Per-frame cost of streaming: the carried step vs re-scoring a whole clip for every frame.

    python benchmarks/bench_stream.py [--rounds=200]

For the default model (configs/video_gru.py) and the ConvLSTM classifier (configs/convlstm.py),
at their dataset's input shape (moving_digits: clips of T = 10 frames of 64x64x1), with 1 and 16
streams: the jitted step (`models/streaming.py`: one frame per stream) and the jitted whole
model on a clip of T frames per stream (what a sliding window re-scores for each new frame).
Timed round robin (one call of each in turn, `rounds` times, after a warm-up), so the machine's
load falls on both alike; prints per-frame latency median and p99 and frames/s (streams x
frames per second), and the ratio of the medians.
"""

import time

from absl import app, flags
import jax
import numpy as np

from configs import convlstm, video_gru
from dcrn_jax.models import create_model, streaming

flags.DEFINE_integer("rounds", 200, "Timed calls of each function.")
FLAGS = flags.FLAGS
T, SHAPE, CLASSES = 10, (64, 64, 1), 8  # moving_digits


def _functions(config, streams):
  model = create_model(config.model, num_classes=CLASSES, input_shape=(T,) + SHAPE)
  clips = jax.random.uniform(jax.random.PRNGKey(0), (streams, T) + SHAPE)
  variables = model.init(jax.random.PRNGKey(1), clips[:1])
  step = jax.jit(streaming.make_step(model))
  carry = streaming.initial_carry(model, variables, streams, SHAPE)
  whole = jax.jit(lambda v, x: model.apply(v, x))
  frame = clips[:, -1]
  return (lambda: jax.block_until_ready(step(variables, carry, frame)),
          lambda: jax.block_until_ready(whole(variables, clips)))


def _row(name, streams, ms):
  return (f"{name:28s} streams={streams:2d}  median {np.median(ms):8.3f} ms  "
          f"p99 {np.percentile(ms, 99):8.3f} ms  {streams * 1e3 / np.median(ms):9.1f} frames/s")


def main(_):
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; T={T}, frames {SHAPE}, "
        f"{FLAGS.rounds} rounds round robin")
  for label, module in (("video_gru (cnn_gru)", video_gru), ("convlstm", convlstm)):
    for streams in (1, 16):
      step, whole = _functions(module.get_config(), streams)
      for f in (step, whole):
        for _ in range(3):
          f()
      times = {"step": [], "whole": []}
      for _ in range(FLAGS.rounds):
        for key, f in (("step", step), ("whole", whole)):
          t0 = time.perf_counter()
          f()
          times[key].append((time.perf_counter() - t0) * 1e3)
      print(_row(f"{label} step", streams, times["step"]))
      print(_row(f"{label} re-score clip", streams, times["whole"]))
      print(f"{'':28s} re-scoring / step: {np.median(times['whole']) / np.median(times['step']):.1f}x"
            f" (target for 16 streams: >= T/2 = {T // 2})")


if __name__ == "__main__":
  app.run(main)
