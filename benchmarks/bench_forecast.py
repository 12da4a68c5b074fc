"""Train-step speed of every forecaster: ours against PyTorch eager on the same shapes, and the
project's own train step of each config, side by side in one process (round robin).

    python benchmarks/bench_forecast.py [--rounds 3] [--models convlstm_forecaster,predrnn,...]
        [--batch 16] [--size 32] [--patch 4] [--features 32] [--layers 2] [--kernel 3]
        [--torch-compile] [--equal-steps 500] [--write]

Default shapes: configs/forecast_moving_digits.py's (batch 16, 10 + 10 frames of 32x32x1 read
as 8x8x16 maps of 4x4 patches, 2 layers of 32 features, 3x3 kernels). One train step =
forward, MSE loss over the predicted frames, backward and an Adam update, float32.

  ours vs PyTorch     each model's step, jitted with the toolkit's XLA options, against PyTorch
                      eager running the same model (default threads):
                        convlstm_forecaster  an encoder-forecaster module of the same layers
                                             (below), and with --torch-compile torch.compile of it;
                        predrnn, predrnn_pp  tests/torch_predrnn.py's stack with its fused cells
                                             (one convolution per input, as ours and OpenSTL's;
                                             tests/test_predrnn.py checks them against the
                                             papers' equations);
                        predrnn_v2           ours only (its step is predrnn's plus the
                                             decoupling term); convlstm_autoregressive too.
                      Scheduled sampling at probability 0.5 for the models that read it.
  config steps        the project's train step (train.make_train_step: uint8 batch scaled on the
                      device, the config's optimizer, schedules and loss terms) of each model's
                      CPU config (configs/forecast_moving_digits.py, and
                      configs/forecast_moving_digits_predrnn.py:NAME), and from it the number of
                      steps each model gets in the wall time of --equal-steps steps of
                      convlstm_forecaster (the input pipeline is not in it: one batch, reused).
Steps are timed round robin (one step of each implementation in turn, after one warm-up each);
figures are medians. --write puts the tables into benchmarks/RESULTS.md (its own section).
"""

import argparse
import importlib
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # See bench_recurrent.py: shared cores.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_inductor_"))
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # torch_predrnn.py, the PyTorch PredRNN family.

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import optax  # pylint: disable=wrong-import-position

from dcrn_jax import host  # pylint: disable=wrong-import-position
from dcrn_jax.models import forecasters, predrnn  # pylint: disable=wrong-import-position
from dcrn_jax.tasks.forecast_evaluation import forecast_loss  # pylint: disable=wrong-import-position

MALLOC_TUNED = host.tune_malloc()
MODELS = ("convlstm_forecaster", "predrnn", "predrnn_pp", "predrnn_v2")
CONFIGS = {"convlstm_forecaster": "forecast_moving_digits",
           "predrnn": "forecast_moving_digits_predrnn:predrnn",
           "predrnn_pp": "forecast_moving_digits_predrnn:predrnn_pp",
           "predrnn_v2": "forecast_moving_digits_predrnn:predrnn_v2"}


class Shapes:
  """The benchmark's shapes from the command line."""

  def __init__(self, a):
    self.batch, self.size, self.patch, self.kernel = a.batch, a.size, a.patch, a.kernel
    self.t_in = self.t_out = 10
    self.features = (a.features,) * a.layers

  def sequences(self):
    return jax.random.uniform(jax.random.key(0),
                              (self.batch, self.t_in + self.t_out, self.size, self.size, 1))

  def describe(self):
    m = self.size // self.patch
    return (f"batch {self.batch}, {self.t_in} + {self.t_out} frames of {self.size}x{self.size}x1"
            f" as {m}x{m}x{self.patch ** 2} patches, layers {self.features}, "
            f"{self.kernel}x{self.kernel}, float32")


def _model(name, s: Shapes):
  kw = dict(output_frames=s.t_out, features=s.features, kernel_size=s.kernel,
            patch_size=s.patch)
  if name == "convlstm_forecaster":
    return forecasters.ConvLSTMForecaster(**kw)
  if name == "convlstm_autoregressive":
    return forecasters.ConvLSTMAutoregressive(**kw)
  cell = "causal_lstm" if name == "predrnn_pp" else "st_lstm"
  return predrnn.PredRNN(cell=cell, decouple_beta=0.1 if name == "predrnn_v2" else 0.0, **kw)


def jax_runner(name: str, s: Shapes):
  """(run, compile s, params) for our model `name`: a jitted Adam step on fixed sequences."""
  model = _model(name, s)
  seq = s.sequences()
  params = model.init(jax.random.key(1), seq[:, :s.t_in])["params"]
  tx = optax.adam(1e-3)
  flags = s.t_in + s.t_out - 2 if name == "predrnn_v2" else s.t_out - 1
  forcing = jax.random.bernoulli(jax.random.key(2), 0.5, (s.batch, flags))

  def step(params, opt_state, seq):
    def loss_fn(p):
      pred, sown = model.apply({"params": p}, seq[:, :s.t_in], targets=seq[:, s.t_in:],
                               teacher_forcing=forcing, train=True, mutable=["losses"])
      extra = sum(jnp.sum(x) for x in jax.tree.leaves(sown))
      return jnp.mean(forecast_loss(pred, seq)) + extra
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1), compiler_options=host.compiler_options()
                     ).lower(params, tx.init(params), seq).compile()
  seconds = time.perf_counter() - start
  box = [(jax.tree.map(jnp.copy, params), tx.init(params))]

  def run():
    p, o, loss = compiled(*box[0], seq)
    box[0] = (p, o)
    return float(loss)
  return run, seconds, (params, forcing, seq)


def _torch_tensor(x):
  import torch  # pylint: disable=import-outside-toplevel
  return torch.from_numpy(np.array(x, copy=True, order="C"))


def _patches(x, s: Shapes):
  """(B, T, H, W, 1) jax -> torch (B, T, p*p, H/p, W/p)."""
  return _torch_tensor(np.asarray(forecasters.to_patches(x, s.patch)).transpose(0, 1, 4, 2, 3))


def torch_predrnn_runner(name: str, s: Shapes, init):
  """(run, None, None): tests/torch_predrnn.py's stack (fused cells) from our initial weights,
  eager, with the same teacher-forcing flags."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch_predrnn as ref  # pylint: disable=import-outside-toplevel
  params, forcing, seq = init
  causal = name == "predrnn_pp"
  cells = [ref.fused_weights(params[f"cell{i}"]) for i in range(len(s.features))]
  head = [_torch_tensor(np.asarray(params["to_frames_kernel"]).T[:, :, None, None]),
          _torch_tensor(params["to_frames_bias"])]
  head = [h.clone().requires_grad_() for h in head]
  highway = ref.fused_weights(params["ghu"]) if causal else None
  weights = [w for c in cells for w in c.values()] + head + (
      list(highway.values()) if causal else [])
  frames = _patches(seq, s)
  use_true = _torch_tensor(np.concatenate([np.ones((s.batch, s.t_in)), np.asarray(forcing)],
                                          1).astype(np.float32))
  opt = torch.optim.Adam(weights, 1e-3)
  cell = ref.causal_lstm_fused if causal else ref.st_lstm_fused

  def run():
    opt.zero_grad(set_to_none=True)
    pred = ref.predrnn(cells, head, frames[:, :-1], use_true, cell, highway, ref.ghu_fused)
    loss = torch.nn.functional.mse_loss(pred, frames[:, 1:])
    loss.backward()
    opt.step()
    return float(loss.detach())
  return run, None, None


def torch_forecaster_runner(s: Shapes, compiled: bool):
  """(run, compile s or None, None): the encoder-forecaster in PyTorch, channels-first."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn as tnn  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  k = s.kernel

  class ConvLSTM(tnn.Module):
    """Input convolution of all frames hoisted out of the loop, as in bench_recurrent.py."""

    def __init__(self, cin, f):
      super().__init__()
      self.ih = tnn.Conv2d(cin, 4 * f, k, padding=k // 2)
      self.hh = tnn.Conv2d(f, 4 * f, k, padding=k // 2, bias=False)

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
      cin, feats = s.patch ** 2, s.features
      self.encoder = tnn.ModuleList(ConvLSTM(a, b) for a, b in zip((cin,) + feats[:-1], feats))
      self.forecaster = tnn.ModuleList(ConvLSTM(a, b) for a, b in zip((1,) + feats[:-1], feats))
      self.to_frames = tnn.Conv2d(sum(feats), cin, 1)

    def forward(self, x):  # (B, T_IN, C', H', W') patches
      states = []
      for layer in self.encoder:
        x, state = layer(x, None)
        states.append(state)
      y = torch.zeros((x.shape[0], s.t_out, 1) + x.shape[3:])
      outs = []
      for layer, state in zip(self.forecaster, states):
        y, _ = layer(y, state)
        outs.append(y)
      y = torch.cat(outs, 2)
      b = y.shape[0]
      return self.to_frames(y.flatten(0, 1)).unflatten(0, (b, s.t_out))

  seq = s.sequences()
  x, y = _patches(seq[:, :s.t_in], s), _patches(seq[:, s.t_in:], s)
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


def config_runner(name: str, equal_steps: int):
  """(run, compile s, None): the project's jitted train step of `name`'s CPU config (with
  num_train_steps=equal_steps, which only sets where the schedules stand), on one real batch."""
  # pylint: disable=import-outside-toplevel,protected-access
  from dcrn_jax import data, optim, parallel, state as state_lib, train
  module, _, arg = CONFIGS[name].partition(":")
  config = importlib.import_module(f"configs.{module}").get_config(*([arg] if arg else []))
  config.num_train_steps = equal_steps
  task = train.validate_config(config)
  mesh, info, plan, model = train._setup(config, task)
  config, _ = train.resolve_config(config, info, plan)
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps)
  state, sharding = state_lib.create_train_state(model, tx, plan.input_shape,
                                                 jax.random.key(0), mesh)
  step = train.make_train_step(config, plan, schedule, mesh, sharding)
  batch = next(data.train_batches(config.data, local_batch_size=config.batch_size, seed=0,
                                  start_step=0, scaled=False))
  batch = parallel.to_global(batch, mesh)
  rng = jax.random.key(1)
  start = time.perf_counter()
  box = [step(state, batch, rng)[0]]
  jax.block_until_ready(box[0])
  seconds = time.perf_counter() - start

  def run():
    box[0], metrics = step(box[0], batch, rng)
    return float(metrics["loss"])
  return run, seconds, None


def round_robin(runners: dict, rounds: int) -> dict:
  """{name: median seconds per step}, one step of each runner in turn after one warm-up each."""
  for run, _, _ in runners.values():
    run()
  times = {name: [] for name in runners}
  for _ in range(rounds):
    for name, (run, _, _) in runners.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def versus_torch(models, s: Shapes, rounds: int, torch_compile: bool) -> list[str]:
  """The 'ours vs PyTorch' table's lines."""
  runners, pairs = {}, []
  for name in models:
    ours = jax_runner(name, s)
    runners[f"{name}, ours"] = ours
    theirs = None
    if name == "convlstm_forecaster":
      theirs = torch_forecaster_runner(s, False)
      if torch_compile:
        runners[f"{name}, torch.compile"] = torch_forecaster_runner(s, True)
    elif name in ("predrnn", "predrnn_pp"):
      theirs = torch_predrnn_runner(name, s, ours[2])
    if theirs is not None:
      runners[f"{name}, PyTorch eager"] = theirs
    pairs.append(name)
  times = round_robin(runners, rounds)
  out = ["| model | ours (ms) | PyTorch eager (ms) | PyTorch / ours | our compile (s) |",
         "|---|---:|---:|---:|---:|"]
  for name in pairs:
    ours = times[f"{name}, ours"]
    theirs = times.get(f"{name}, PyTorch eager")
    out.append(f"| {name} | {ours * 1000:.0f} | "
               f"{'-' if theirs is None else f'{theirs * 1000:.0f}'} | "
               f"{'-' if theirs is None else f'{theirs / ours:.2f}'} | "
               f"{runners[f'{name}, ours'][1]:.1f} |")
  if "convlstm_forecaster, torch.compile" in times:
    t = times["convlstm_forecaster, torch.compile"]
    out.append(f"\ntorch.compile of the encoder-forecaster: {t * 1000:.0f} ms a step, compiled "
               f"in {runners['convlstm_forecaster, torch.compile'][1]:.1f} s.")
  return out


def config_steps(models, rounds: int, equal_steps: int) -> list[str]:
  """The 'config steps' table's lines: step time and steps in convlstm_forecaster's time."""
  runners = {name: config_runner(name, equal_steps) for name in models}
  times = round_robin(runners, rounds)
  base = times.get("convlstm_forecaster")
  out = [f"| config | train step (ms) | vs convlstm_forecaster | steps in the time of "
         f"{equal_steps} convlstm_forecaster steps | first step with compile (s) |",
         "|---|---:|---:|---:|---:|"]
  for name, t in times.items():
    ratio = "-" if base is None else f"{t / base:.2f}"
    steps = "-" if base is None else f"{round(equal_steps * base / t)}"
    out.append(f"| {CONFIGS[name]} | {t * 1000:.0f} | {ratio} | {steps} "
               f"| {runners[name][1]:.1f} |")
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--models", default=",".join(MODELS),
                      help="comma-separated; also convlstm_autoregressive (ours only)")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--size", type=int, default=32, help="frame side in pixels")
  parser.add_argument("--patch", type=int, default=4)
  parser.add_argument("--features", type=int, default=32)
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--kernel", type=int, default=3)
  parser.add_argument("--torch-compile", action="store_true",
                      help="also torch.compile the encoder-forecaster (slow to compile)")
  parser.add_argument("--equal-steps", type=int, default=500,
                      help="config table: steps of convlstm_forecaster that set the wall time "
                           "(0: leave the table out)")
  parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
  args = parser.parse_args()
  import torch  # pylint: disable=import-outside-toplevel
  models = [m for m in args.models.split(",") if m]
  s = Shapes(args)
  load = os.getloadavg()[0]
  out = [f"Shapes: {s.describe()}. jax {jax.__version__}, torch {torch.__version__} "
         f"({torch.get_num_threads()} threads), {os.cpu_count()} cores, shared with other jobs; "
         f"median of {args.rounds} rounds.", ""]
  print(out[0], flush=True)
  table = versus_torch(models, s, args.rounds, args.torch_compile)
  print("\n".join(table), flush=True)
  out += table + [""]
  configured = [m for m in models if m in CONFIGS]
  if args.equal_steps > 0 and configured:
    table = config_steps(configured, args.rounds, args.equal_steps)
    print("\n" + "\n".join(table), flush=True)
    out += ["The project's train step of each CPU config (configs/NAME.py):", ""] + table + [""]
  out.append(f"Load average (1 min) at start / end: {load:.1f} / {os.getloadavg()[0]:.1f} "
             "(other processes share the cores; ratios are fairer than absolute figures).")
  print(out[-1], flush=True)
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
