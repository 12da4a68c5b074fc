"""This checkout's recurrent layers against those of a git ref (default `main`), side by side in one
process: the train step a user writes around the layer (a plain `jax.jit`, nothing process-wide
set unless --configure), timed round robin so that the machine's load hits both alike.

    python benchmarks/ab_layers.py [--ref main] [--steps 9] [--layers convlstm,convgru]
                                   [--configure]

The ref's `dcrn_jax` package is extracted with `git archive` into a temporary folder under another
package name (`dcrn_ref`), so both import side by side. Layers (float32, + a dense head on the
mean of the last output, Adam): ConvLSTM / ConvGRU(32, kernel_size=(3, 3)) on 8 clips of
16x32x32x3, LSTM(256) on 32 sequences of 32x512. Prints per layer the median step of each and
the ratio (ref / this checkout: > 1 means this checkout is faster).
"""

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def extract_ref(ref, into):
  """`git archive ref dcrn_jax` into `into`/dcrn_ref, its imports renamed."""
  archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "dcrn_jax"], check=True,
                           capture_output=True).stdout
  subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
  os.rename(os.path.join(into, "dcrn_jax"), os.path.join(into, "dcrn_ref"))
  for folder, _, files in os.walk(os.path.join(into, "dcrn_ref")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        text = open(path).read().replace("dcrn_jax", "dcrn_ref")
        open(path, "w").write(text)
  sys.path.insert(0, into)


LAYERS = {  # name: (class name, args, input shape)
    "convlstm": ("ConvLSTM", (32,), dict(kernel_size=(3, 3)), (8, 16, 32, 32, 3)),
    "convgru": ("ConvGRU", (32,), dict(kernel_size=(3, 3)), (8, 16, 32, 32, 3)),
    "lstm": ("LSTM", (256,), {}, (32, 32, 512)),
}


def user_step(models, layer):
  """The step a user writes: layer + dense head, cross-entropy, Adam, one jax.jit."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  cls, args, kwargs, shape = LAYERS[layer]

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = getattr(models, cls)(*args, **kwargs)(x)[:, -1]
      return nn.Dense(10)(h.reshape(h.shape[0], -1))

  net, tx = Net(), optax.adam(1e-3)
  x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  y = jnp.arange(shape[0]) % 10
  params = net.init(jax.random.key(0), x)["params"]
  state = [params, tx.init(params)]

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(net.apply({"params": p}, x), y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def run():
    state[0], state[1], loss = step(state[0], state[1], x, y)
    loss.block_until_ready()
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--ref", default="main")
  parser.add_argument("--steps", type=int, default=9)
  parser.add_argument("--layers", default="convlstm")
  parser.add_argument("--configure", action="store_true",
                      help="call dcrn_jax.host.configure() first")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    extract_ref(args.ref, tmp)
    if args.configure:
      from dcrn_jax import host  # pylint: disable=import-outside-toplevel
      print("configure():", host.configure())
    ours = importlib.import_module("dcrn_jax.models")
    ref = importlib.import_module("dcrn_ref.models")
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    for layer in args.layers.split(","):
      runs = {"this checkout": user_step(ours, layer), args.ref: user_step(ref, layer)}
      for run in runs.values():
        run()
        run()
      times = {name: [] for name in runs}
      for _ in range(args.steps):
        for name, run in runs.items():
          start = time.perf_counter()
          run()
          times[name].append(time.perf_counter() - start)
      med = {name: statistics.median(t) for name, t in times.items()}
      print(f"{layer}: " + ", ".join(f"{n} {m * 1e3:.0f} ms" for n, m in med.items())
            + f"; {args.ref} / this checkout = {med[args.ref] / med['this checkout']:.2f} "
            f"(median of {args.steps} round-robin steps)", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
