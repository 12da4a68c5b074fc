"""Where the time of the ConvLSTM layer's train step goes on CPU: each op of one recurrent step,
timed alone at the step's shapes, against the same op in PyTorch (oneDNN), round robin.

    python benchmarks/profile_convlstm.py [--steps 15] [--configure]

Shapes: `bench_recurrent.py`'s convlstm_layer (batch 8, 16 frames of 32x32x3, 32 features, 3x3).
Per frame the layer runs, forward: one convolution of [x_t, h] (35 channels) to the 4 gates
(128), then the gate arithmetic; backward: one convolution of the gate gradients (128) with the
transposed kernel back to [x_t, h] (35; only h's 32 are needed), the weight gradient (9 matmuls
of the shifted inputs against the gate gradients, `conv.weight_grad_taps`), and the gate
arithmetic's gradient. Each is timed here as its own jitted function (XLA) or eager call
(PyTorch), the median of --steps calls, and multiplied by 16 frames; the sum is set beside the
whole train step (from bench_recurrent's workload) timed in the same round robin. Our ops compile
with `host.compiler_options()` (as `dcrn_jax.main` compiles) and with XLA's defaults.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_recurrent: PyTorch's best here
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from dcrn_jax import host  # pylint: disable=wrong-import-position
from dcrn_jax.models import conv, rnn_maps  # pylint: disable=wrong-import-position

B, T, H, W, C, F, K = 8, 16, 32, 32, 3, 32, 3


def jax_ops(options):
  """name -> a call that runs the op once and waits, compiled with `options`."""
  rng = np.random.default_rng(0)
  arr = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  m = rnn_maps.Conv2DMap((K, K))
  xh, w = arr(B, H, W, C + F), arr(K, K, C + F, 4 * F)
  gates, c = arr(B, H, W, 4 * F), arr(B, H, W, F)
  w_t = m.transpose_weight(w[:, :, C:])  # The layer's input gradient: h's channels only.

  def cell(g, c):
    i, f, gg, o = jnp.split(g, 4, -1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c

  def cell_grad(g, c, dh):
    return jax.vjp(lambda g, c: cell(g, c)[0], g, c)[1](dh)

  dh = arr(B, H, W, F)
  ops = {"forward conv [x, h] -> gates": (m, (xh, w)),
         "gate arithmetic": (cell, (gates, c)),
         "input-gradient conv gates -> h": (m.input_grad, (gates, w_t)),
         "weight gradient (9 matmuls)": (m.weight_grad_matmuls, (xh, gates)),
         "gate arithmetic's gradient": (cell_grad, (gates, c, dh))}
  out = {}
  for name, (fn, inputs) in ops.items():  # Inputs as arguments: constants would be folded.
    compiled = jax.jit(fn, compiler_options=options).lower(*inputs).compile()
    out[name] = lambda compiled=compiled, inputs=inputs: jax.block_until_ready(compiled(*inputs))
  return out


def torch_ops():
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  xh, w = torch.randn(B, C + F, H, W), torch.randn(4 * F, C + F, K, K)
  gates, c, dh = torch.randn(B, 4 * F, H, W), torch.randn(B, F, H, W), torch.randn(B, F, H, W)
  tf = torch.nn.functional
  grad_in = torch.ops.aten.convolution_backward
  # stride, padding, dilation, transposed, output padding, groups
  conv_args = ((1, 1), (1, 1), (1, 1), False, (0, 0), 1)
  h, w_h = xh[:, C:], w[:, C:]

  def cell(g, c):
    i, f, gg, o = g.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
    return torch.sigmoid(o) * torch.tanh(c), c

  def cell_grad():
    g, cc = gates.detach().requires_grad_(), c.detach().requires_grad_()
    h, _ = cell(g, cc)
    return torch.autograd.grad(h, (g, cc), dh)

  return {"forward conv [x, h] -> gates": lambda: tf.conv2d(xh, w, padding=1),
          "gate arithmetic": lambda: cell(gates, c),
          "input-gradient conv gates -> h": lambda: grad_in(
              gates, h, w_h, None, *conv_args, (True, False, False)),
          "weight gradient (9 matmuls)": lambda: grad_in(
              gates, xh, w, None, *conv_args, (False, True, False)),
          "gate arithmetic's gradient": cell_grad}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=15)
  parser.add_argument("--configure", action="store_true",
                      help="call dcrn_jax.host.configure() first")
  args = parser.parse_args()
  if args.configure:
    print("configure():", host.configure())
  import bench_recurrent as br  # pylint: disable=import-outside-toplevel
  impls = {"XLA, dcrn_jax.main's options": jax_ops(host.compiler_options() or None),
           "XLA, default options": jax_ops(None), "PyTorch eager": torch_ops()}
  whole = {"XLA, dcrn_jax.main's options": br.flax_runner("convlstm_layer", True,
                                                         main_options=True)[0],
           "XLA, default options": br.flax_runner("convlstm_layer", True)[0],
           "PyTorch eager": br.torch_runner("convlstm_layer", compiled=False)[0]}
  times = {}
  calls = [(impl, name, fn) for impl, ops in impls.items() for name, fn in ops.items()]
  calls += [(impl, "whole train step", fn) for impl, fn in whole.items()]
  for _, _, fn in calls:
    fn()
  print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
  for _ in range(args.steps):  # Round robin: every op of every implementation once per round.
    for impl, name, fn in calls:
      start = time.perf_counter()
      fn()
      times.setdefault((impl, name), []).append(time.perf_counter() - start)
  names = list(impls[next(iter(impls))]) + ["sum of the ops x 16 frames", "whole train step"]
  print(f"\nms per train step (ops: median of {args.steps} x {T} frames; batch {B}, {H}x{W}, "
        f"[x, h] {C + F} channels, gates {4 * F}):\n")
  print("| op | " + " | ".join(impls) + " |\n|---|" + "---:|" * len(impls))
  for name in names:
    cells = []
    for impl in impls:
      if name == "sum of the ops x 16 frames":
        ms = sum(statistics.median(times[(impl, n)]) for n in impls[impl]) * T * 1e3
      elif name == "whole train step":
        ms = statistics.median(times[(impl, name)]) * 1e3
      else:
        ms = statistics.median(times[(impl, name)]) * T * 1e3
      cells.append(f"{ms:.0f}")
    print(f"| {name} | " + " | ".join(cells) + " |")
  print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
