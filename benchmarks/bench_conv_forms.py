"""Forward and input-gradient convolution forms of the ConvLSTM's per-step map on XLA:CPU: XLA's
convolution against the same 3x3 'SAME' convolution written as matmuls (issue 17's lever), timed
round robin in one process; each checked equal to XLA's first.

    python benchmarks/bench_conv_forms.py [--steps 15]

Shapes: 8 frames of 32x32; (C, G) = (35, 128) is the forward map of [x_t, h] (3 + 32 channels)
to the 4 x 32 gates, (128, 35) its input gradient, (64, 128), (128, 64) a second layer's. Forms:
  conv     lax.conv_general_dilated (what the layers use)
  patches  im2col: the 9 shifted views concatenated, one (N*H*W, 9C) @ (9C, G) matmul
  taps     9 matmuls (N*H*W, C) @ (C, G) over shifted views, summed
  rows     3 matmuls over row shifts, each on the 3 column taps concatenated (N*H*W, 3C)
Prints the median time of each and its speed relative to `conv`.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
def _pad(x):
  return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def conv(x, w):
  """x (N, H, W, C), w (3, 3, C, G) -> (N, H, W, G)."""
  return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def patches(x, w):
  n, h, wd, c = x.shape
  xp = _pad(x)
  p = jnp.concatenate([xp[:, i:i + h, j:j + wd] for i in range(3) for j in range(3)], -1)
  return jnp.dot(p.reshape(-1, 9 * c), w.reshape(9 * c, -1)).reshape(n, h, wd, -1)


def taps(x, w):
  n, h, wd, c = x.shape
  xp, y = _pad(x), 0
  for i in range(3):
    for j in range(3):
      y = y + jnp.dot(xp[:, i:i + h, j:j + wd].reshape(-1, c), w[i, j]).reshape(n, h, wd, -1)
  return y


def rows(x, w):
  n, h, wd, c = x.shape
  xp, y = _pad(x), 0
  for i in range(3):
    p = jnp.concatenate([xp[:, i:i + h, j:j + wd] for j in range(3)], -1)
    y = y + jnp.dot(p.reshape(-1, 3 * c), w[i].reshape(3 * c, -1)).reshape(n, h, wd, -1)
  return y


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=15)
  args = parser.parse_args()
  r = np.random.default_rng(0)
  for c, g in [(35, 128), (128, 35), (64, 128), (128, 64)]:
    x = jnp.asarray(r.standard_normal((8, 32, 32, c)), jnp.float32)
    w = jnp.asarray(r.standard_normal((3, 3, c, g)), jnp.float32)
    fs = {k: jax.jit(f) for k, f in dict(conv=conv, patches=patches, taps=taps, rows=rows).items()}
    ref = fs["conv"](x, w)
    for f in fs.values():
      np.testing.assert_allclose(f(x, w), ref, rtol=1e-3, atol=1e-3)
    t = {k: [] for k in fs}
    for _ in range(args.steps):
      for k, f in fs.items():
        s = time.perf_counter()
        f(x, w).block_until_ready()
        t[k].append(time.perf_counter() - s)
    m = {k: statistics.median(v) for k, v in t.items()}
    print(f"C={c} G={g}: " + ", ".join(f"{k} {v * 1e3:.2f} ms ({m['conv'] / v:.2f}x)"
                                       for k, v in m.items()), flush=True)


if __name__ == "__main__":
  main()
