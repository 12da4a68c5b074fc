"""Train-step speed of the forecasters: ours against PyTorch (eager and torch.compile) running the
same encoder-forecaster, and our two forms against each other, side by side in one process.

    python benchmarks/bench_forecast.py [--steps 5] [--batch 4] [--write]

Shapes: OpenSTL's ConvLSTM-S setting scaled to fit 2 CPU cores: sequences of 10 + 10 frames of
64x64x1 read as 16x16x16 maps (patch 4, as OpenSTL), 5x5 kernels, but 2 ConvLSTM layers of 64
features instead of 4 of 128 and batch 4 instead of 16 (about 1/35 of the FLOPs of a
ConvLSTM-S step by the layer sizes; --batch 2 halves that again). One train step = forward, MSE loss, backward and an Adam update, float32.

  encoder-forecaster  `convlstm_forecaster` (ours, jitted with the toolkit's XLA options) against
                      a PyTorch module of the same layers, sizes and FLOPs (encoder ConvLSTMs,
                      forecaster ConvLSTMs started from their states and reading a zero map,
                      1x1 convolution of all forecaster outputs), eager and torch.compile.
  autoregressive      ours: `convlstm_autoregressive` (nn.scan of cells, scheduled sampling at
                      probability 0.5) against `convlstm_forecaster`; by the layer sizes the two
                      do about equal arithmetic (0.98x), so compare their step times. The XLA
                      FLOP count printed beside them counts a loop's body once, not once per
                      iteration: it undercounts both and its time-per-FLOP ratio misleads.
Steps are timed round robin (one step of each implementation in turn); figures are medians.
--write puts the tables into benchmarks/RESULTS.md (its own section).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # See bench_recurrent.py: shared cores.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_inductor_"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import optax  # pylint: disable=wrong-import-position

from dcrn_jax import host  # pylint: disable=wrong-import-position
from dcrn_jax.tasks.forecast_evaluation import forecast_loss  # pylint: disable=wrong-import-position
from dcrn_jax.models import forecasters  # pylint: disable=wrong-import-position

MALLOC_TUNED = host.tune_malloc()
T_IN, T_OUT, SIZE, PATCH = 10, 10, 64, 4
FEATURES, KERNEL = (64, 64), 5


def _sequences(batch: int):
  return jax.random.uniform(jax.random.key(0), (batch, T_IN + T_OUT, SIZE, SIZE, 1))


def jax_runner(name: str, batch: int):
  """(run, compile s, XLA FLOPs of the step) for our model `name`."""
  cls = {"convlstm_forecaster": forecasters.ConvLSTMForecaster,
         "convlstm_autoregressive": forecasters.ConvLSTMAutoregressive}[name]
  model = cls(output_frames=T_OUT, features=FEATURES, kernel_size=KERNEL, patch_size=PATCH)
  seq = _sequences(batch)
  params = model.init(jax.random.key(1), seq[:, :T_IN])["params"]
  tx = optax.adam(1e-3)

  def step(params, opt_state, seq, rng):
    inputs, targets = seq[:, :T_IN], seq[:, T_IN:]
    forcing = jax.random.bernoulli(rng, 0.5, (batch, T_OUT - 1))

    def loss_fn(p):
      pred = model.apply({"params": p}, inputs, targets=targets, teacher_forcing=forcing)
      return jnp.mean(forecast_loss(pred, seq))
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  state = (params, tx.init(params))
  rng = jax.random.key(2)
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1), compiler_options=host.compiler_options()
                     ).lower(*state, seq, rng).compile()
  seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  box = [state]

  def run():
    p, o, loss = compiled(*box[0], seq, rng)
    box[0] = (p, o)
    return float(loss)
  return run, seconds, float(cost.get("flops", float("nan")))


def torch_runner(compiled: bool, batch: int):
  """(run, compile s or None, None): the encoder-forecaster in PyTorch, channels-first."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn as tnn  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)

  class ConvLSTM(tnn.Module):
    """Input convolution of all frames hoisted out of the loop, as in bench_recurrent.py."""

    def __init__(self, cin, f):
      super().__init__()
      self.ih = tnn.Conv2d(cin, 4 * f, KERNEL, padding=KERNEL // 2)
      self.hh = tnn.Conv2d(f, 4 * f, KERNEL, padding=KERNEL // 2, bias=False)

    def forward(self, x, state=None):  # x (B, T, C, H, W)
      b, t = x.shape[:2]
      xg = self.ih(x.flatten(0, 1)).unflatten(0, (b, t))
      if state is None:
        h = torch.zeros((b, self.hh.in_channels) + x.shape[3:])
        state = (torch.zeros_like(h), h)
      c, h = state
      hs = []
      for xg_t in xg.unbind(1):
        gi, gf, gg, go = (xg_t + self.hh(h)).chunk(4, 1)
        c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
        h = torch.sigmoid(go) * torch.tanh(c)
        hs.append(h)
      return torch.stack(hs, 1), (c, h)

  class EncoderForecaster(tnn.Module):
    def __init__(self):
      super().__init__()
      cin = PATCH * PATCH
      self.encoder = tnn.ModuleList(ConvLSTM(a, b) for a, b in
                                    zip((cin,) + FEATURES[:-1], FEATURES))
      self.forecaster = tnn.ModuleList(ConvLSTM(a, b) for a, b in
                                       zip((1,) + FEATURES[:-1], FEATURES))
      self.to_frames = tnn.Conv2d(sum(FEATURES), cin, 1)

    def forward(self, x):  # (B, T_IN, C', H', W') patches
      states = []
      for layer in self.encoder:
        x, state = layer(x, None)
        states.append(state)
      y = torch.zeros((x.shape[0], T_OUT, 1) + x.shape[3:])
      outs = []
      for layer, state in zip(self.forecaster, states):
        y, _ = layer(y, state)
        outs.append(y)
      y = torch.cat(outs, 2)
      b = y.shape[0]
      return self.to_frames(y.flatten(0, 1)).unflatten(0, (b, T_OUT))

  def patches(x):  # (B, T, H, W, 1) -> (B, T, p*p, H/p, W/p)
    return torch.from_numpy(jax.device_get(forecasters.to_patches(x, PATCH)).copy()).permute(
        0, 1, 4, 2, 3).contiguous()

  seq = _sequences(batch)
  x, y = patches(seq[:, :T_IN]), patches(seq[:, T_IN:])
  model = EncoderForecaster()
  opt = torch.optim.Adam(model.parameters(), 1e-3)
  forward = torch.compile(model) if compiled else model

  def run():
    opt.zero_grad(set_to_none=True)
    loss = tnn.functional.mse_loss(forward(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())

  start = time.perf_counter()
  run()
  return run, (time.perf_counter() - start if compiled else None), None


def round_robin(runners: dict, steps: int) -> dict:
  """{name: median seconds per step}, one step of each runner in turn after one warm-up each."""
  for run, _, _ in runners.values():
    run()
  times = {name: [] for name in runners}
  for _ in range(steps):
    for name, (run, _, _) in runners.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--batch", type=int, default=4, help="sequences per step (OpenSTL: 16)")
  parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
  args = parser.parse_args()
  import torch  # pylint: disable=import-outside-toplevel
  load = os.getloadavg()[0]
  batch = args.batch
  shapes = (f"batch {batch}, {T_IN} + {T_OUT} frames of {SIZE}x{SIZE}x1 as "
            f"{SIZE // PATCH}x{SIZE // PATCH}x{PATCH * PATCH} patches, ConvLSTM layers "
            f"{FEATURES}, {KERNEL}x{KERNEL}, float32")
  out = [f"Shapes: {shapes}. jax {jax.__version__}, torch {torch.__version__} "
         f"({torch.get_num_threads()} threads), {os.cpu_count()} cores, shared with other jobs.",
         ""]
  print(out[0], flush=True)

  runners = {"ours (convlstm_forecaster)": jax_runner("convlstm_forecaster", batch),
             "PyTorch eager": torch_runner(False, batch),
             "torch.compile": torch_runner(True, batch)}
  times = round_robin(runners, args.steps)
  ours = times["ours (convlstm_forecaster)"]
  out += ["| encoder-forecaster | step (ms) | compile (s) | ours is x faster |",
          "|---|---:|---:|---:|"]
  for name, t in times.items():
    comp = runners[name][1]
    out.append(f"| {name} | {t * 1000:.0f} | {'-' if comp is None else f'{comp:.1f}'} "
               f"| {t / ours:.2f} |")
  out.append("")
  print("\n".join(out[2:]), flush=True)

  forms = {name: jax_runner(name, batch) for name in ("convlstm_forecaster", "convlstm_autoregressive")}
  times = round_robin(forms, args.steps)
  out += ["| our forms | step (ms) | XLA GFLOP per step | GFLOP/s | compile (s) |",
          "|---|---:|---:|---:|---:|"]
  for name, t in times.items():
    flops = forms[name][2]
    out.append(f"| {name} | {t * 1000:.0f} | {flops / 1e9:.1f} | {flops / 1e9 / t:.1f} "
               f"| {forms[name][1]:.1f} |")
  ef, ar = (times[n] / forms[n][2] for n in forms)
  out += ["", f"Time per FLOP, autoregressive / encoder-forecaster: {ar / ef:.2f}.", ""]
  out.append(f"Load average (1 min) at start / end: {load:.1f} / {os.getloadavg()[0]:.1f} "
             "(other processes share the cores; ratios are fairer than absolute figures).")
  print("\n".join(out[-8:]), flush=True)
  if args.write:
    command = ("python benchmarks/bench_forecast.py " + " ".join(sys.argv[1:])).strip()
    write_results("\n".join([f"## Forecasting: train step (`{command}`)", ""] + out))


def write_results(text, path=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "RESULTS.md")):
  """Replaces this script's section of RESULTS.md (between its markers), keeping the rest."""
  start, end = "<!-- bench_forecast: start -->", "<!-- bench_forecast: end -->"
  old = open(path).read()
  block = f"{start}\n{text}\n{end}"
  if start in old and end in old:
    new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
  else:
    new = old.rstrip("\n") + "\n\n" + block + "\n"
  with open(path, "w") as f:
    f.write(new)


if __name__ == "__main__":
  main()
