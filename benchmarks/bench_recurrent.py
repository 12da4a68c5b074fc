"""Train-step speed of the recurrent models: our layers vs Flax's cells under nn.RNN, PyTorch
(eager and torch.compile) and Keras 3 on its JAX backend, side by side in one process, with
each step's FLOPs and the fraction of the machine's measured matmul peak it reaches.

    python benchmarks/bench_recurrent.py [--steps 5] [--workloads convlstm,cnn_gru] [--write]
    python benchmarks/bench_recurrent.py --configure [...]   # after dcrn_jax.host.configure()

By default nothing process-wide is set, and our step is a plain `jax.jit` with XLA's default
options: what a user who imports the layers and jits their own step gets. `--configure` first
calls `dcrn_jax.host.configure()` (as `python -m dcrn_jax.main` does); it applies to the whole
process, PyTorch included.

Workloads (fixed shapes; one train step = forward, backward and an Adam update, float32):
  convlstm        ConvLSTMClassifier with its defaults (stride-2 conv stem, two ConvLSTM layers
                  of 32 features, 3x3) on clips of 16 frames 32x32x3, batch 8 (the issue's shapes).
  cnn_gru         FrameRNNClassifier of configs/video_gru.py (stride-4 stem, conv blocks 32, 64,
                  embedding 128, GRU 128), clips of 10 frames 64x64x1, batch 32 (the default run).
  convlstm_layer  one ConvLSTM layer (32 features, 3x3) on the raw 32x32x3 frames, batch 8,
                  16 frames, then its last map averaged and a dense head: the issue's measurement.
  gru_layer       one GRU (512 -> 256), batch 32, 32 steps, last state and a dense head: the
                  issue's dense measurement.
Every implementation of a workload has the same layers, sizes and FLOPs. Steps are timed round
robin (one step of each implementation in turn, and two large float32 matmuls, XLA's and
PyTorch's, whose better rate is the "matmul peak"), so a change of machine load hits all alike;
the figure is the median. FLOPs: XLA's cost analysis of the step of Flax's cells with the time
loop unrolled (a loop body is otherwise counted once), the same count for every implementation.
Compile: JAX lower + compile of the step; torch.compile: its first step, with an empty compile
cache, in mode max-autotune if that compiles within --compile-limit seconds (tried in a child
process first), else the default mode.
Peak memory: JAX, XLA's buffer assignment for the step (parameters, optimizer state, batch,
temporaries; state donated as in training); PyTorch, parameters + optimizer state + batch + the
peak of tensor bytes allocated during a step (torch.profiler). Then the compile time of our step
at 8 and 64 frames. --write puts the tables into benchmarks/RESULTS.md (its own section).
"""

import argparse
import functools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras 3 must pick its backend before import.
# PyTorch's OpenMP threads spin-wait by default: on a machine whose cores are shared (this one,
# with other jobs) that makes its eager steps 2-20x slower and erratic. Passive waiting gives
# PyTorch its best figures here; it must be set before torch starts its threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# torch.compile keeps compiled kernels on disk: a fresh cache makes its compile time a cold one.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_inductor_"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax  # pylint: disable=wrong-import-position
import flax.linen as nn  # pylint: disable=wrong-import-position
import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import optax  # pylint: disable=wrong-import-position

from dcrn_jax import host  # pylint: disable=wrong-import-position
from dcrn_jax.models import classifiers  # pylint: disable=wrong-import-position

CONFIGURED = {}  # What host.configure() applied (--configure), for the machine line.
MATMUL = 2048  # n of the n x n x n float32 matmul that measures the machine's peak.

WORKLOADS = {  # name: (input shape (B, T, ...), model sizes)
    "convlstm": ((8, 16, 32, 32, 3), dict(convlstm_features=(32, 32), kernel_size=3,
                                          stem_stride=2)),
    "cnn_gru": ((32, 10, 64, 64, 1), dict(conv_features=(16, 32, 64), stem_stride=4,
                                          embed_dim=128, hidden_size=128)),
    "convlstm_layer": ((8, 16, 32, 32, 3), dict(features=32, kernel_size=3)),
    "gru_layer": ((32, 32, 512), dict(hidden_size=256)),
}
NUM_CLASSES = 8


# --- JAX: ours, and Flax's cells under nn.RNN through the same classifier --------------------


class FlaxConvLSTM(nn.Module):
  """What recurrent.ConvLSTM was before the fast layers: nn.RNN over Flax's ConvLSTMCell."""
  features: int
  kernel_size: int = 3
  return_carry: bool = False  # the classifiers stack their layers with Stack, which needs it
  dtype: object = jnp.float32
  unroll: int = 1  # FLOP counting unrolls the loop (XLA counts a loop body once)

  @nn.compact
  def __call__(self, x, initial_carry=None):
    k = (self.kernel_size, self.kernel_size)
    return nn.RNN(nn.ConvLSTMCell(self.features, k, dtype=self.dtype),
                  return_carry=self.return_carry, unroll=self.unroll)(
                      x, initial_carry=initial_carry)


class FlaxGRU(nn.Module):
  """nn.RNN over Flax's GRUCell."""
  hidden_size: int
  return_carry: bool = False
  dtype: object = jnp.float32
  unroll: int = 1

  @nn.compact
  def __call__(self, x, initial_carry=None):
    return nn.RNN(nn.GRUCell(self.hidden_size, dtype=self.dtype),
                  return_carry=self.return_carry, unroll=self.unroll)(
                      x, initial_carry=initial_carry)


class LayerClassifier(nn.Module):
  """One recurrent layer, its last step (averaged over space for maps) and a dense head. The
  layer class is looked up in `classifiers` at call time, like the classifiers do."""
  kind: str  # convlstm or gru
  size: int
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x, *, train=False):
    if self.kind == "convlstm":
      x = classifiers.ConvLSTM(self.size, self.kernel_size)(x)[:, -1].mean((1, 2))
    else:
      x = classifiers.GRU(self.size)(x)[:, -1]
    return nn.Dense(NUM_CLASSES)(x)


def _model(workload):
  kw = WORKLOADS[workload][1]
  if workload == "convlstm":
    return classifiers.ConvLSTMClassifier(num_classes=NUM_CLASSES, **kw)
  if workload == "cnn_gru":
    return classifiers.FrameRNNClassifier(num_classes=NUM_CLASSES, cell="gru", **kw)
  if workload == "convlstm_layer":
    return LayerClassifier("convlstm", kw["features"], kw["kernel_size"])
  return LayerClassifier("gru", kw["hidden_size"])


def _with_flax_layers(fn, unroll=1):
  """Runs fn with the classifiers built on Flax's cells (the module globals they look up)."""
  saved = classifiers.ConvLSTM, classifiers.GRU
  classifiers.ConvLSTM = functools.partial(FlaxConvLSTM, unroll=unroll)
  classifiers.GRU = functools.partial(FlaxGRU, unroll=unroll)
  try:
    return fn()
  finally:
    classifiers.ConvLSTM, classifiers.GRU = saved


def _jax_step(apply_fn, params, x, y, compiler_options=None):
  """(compiled step, state, compile seconds, peak bytes) for a pure apply_fn(params, x)."""
  tx = optax.adam(1e-3)

  def step(params, opt_state, x, y):
    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, x), y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  state = (params, tx.init(params))
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1),
                     compiler_options=compiler_options).lower(*state, x, y).compile()
  seconds = time.perf_counter() - start
  mem = compiled.memory_analysis()
  peak = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes \
      - mem.alias_size_in_bytes

  box = [state]

  def run():
    p, o, loss = compiled(*box[0], x, y)
    box[0] = (p, o)
    return float(loss)  # Waits for the step.
  return run, seconds, peak


def _batch(shape):
  x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  return x, jnp.arange(shape[0]) % NUM_CLASSES


def flax_runner(workload, ours: bool, shape=None, main_options=False):
  """Our layers (ours) or Flax's cells in the workload's model, in a plain `jax.jit` step;
  main_options: compiled with the XLA options `python -m dcrn_jax.main` uses."""
  shape = shape or WORKLOADS[workload][0]
  x, y = _batch(shape)

  def build():
    model = _model(workload)
    params = jax.jit(model.init)(jax.random.key(0), x[:1])["params"]
    options = host.compiler_options() if main_options else None
    return _jax_step(lambda p, v: model.apply({"params": p}, v, train=True), params, x, y,
                     options)
  return build() if ours else _with_flax_layers(build)


def step_flops(workload):
  """FLOPs of one train step: XLA's cost analysis of the step of Flax's cells (the plain
  formulation) with the time loop unrolled, before XLA's optimizations. The same count is used
  for every implementation of the workload."""
  shape = WORKLOADS[workload][0]
  x, y = _batch(shape)
  tx = optax.adam(1e-3)

  def count():
    model = _model(workload)
    params = jax.eval_shape(model.init, jax.random.key(0), x[:1])["params"]

    def step(params, opt_state, x, y):
      def loss_fn(p):
        logits = model.apply({"params": p}, x, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      grads = jax.grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state
    opt_state = jax.eval_shape(tx.init, params)
    return jax.jit(step).lower(params, opt_state, x, y).cost_analysis()["flops"]
  return _with_flax_layers(count, unroll=shape[1])


def matmul_runners():
  """The machine's peak, as two libraries reach it: XLA's and PyTorch's (MKL) float32 matmul."""
  import torch  # pylint: disable=import-outside-toplevel
  a = jnp.asarray(np.random.default_rng(0).standard_normal((MATMUL, MATMUL)), jnp.float32)
  mm = jax.jit(lambda a: a @ a).lower(a).compile()
  ta = torch.randn(MATMUL, MATMUL)
  return {"matmul, XLA": lambda: mm(a).block_until_ready(),
          "matmul, PyTorch": lambda: ta @ ta}


def keras_runner(workload):
  """Keras 3 (JAX backend) model of the same shape, trained through jax.grad + optax."""
  import keras  # pylint: disable=import-outside-toplevel
  shape, kw = WORKLOADS[workload]
  layers = keras.layers
  if workload == "convlstm":
    s = kw["stem_stride"]
    body = [layers.TimeDistributed(layers.Conv2D(kw["convlstm_features"][0], max(3, s), s,
                                                 padding="same", activation="relu"))]
    for i, f in enumerate(kw["convlstm_features"]):
      last = i == len(kw["convlstm_features"]) - 1
      body.append(layers.ConvLSTM2D(f, kw["kernel_size"], padding="same",
                                    return_sequences=not last))
    body.append(layers.GlobalAveragePooling2D())
  elif workload == "cnn_gru":
    cnn = [layers.Conv2D(kw["conv_features"][0], kw["stem_stride"], kw["stem_stride"],
                         padding="same", activation="relu")]
    for f in kw["conv_features"][1:]:
      cnn += [layers.Conv2D(f, 3, padding="same", activation="relu"), layers.MaxPooling2D(2)]
    cnn += [layers.Flatten(), layers.Dense(kw["embed_dim"], activation="relu")]
    body = [layers.TimeDistributed(keras.Sequential(cnn)), layers.GRU(kw["hidden_size"])]
  elif workload == "convlstm_layer":
    body = [layers.ConvLSTM2D(kw["features"], kw["kernel_size"], padding="same"),
            layers.GlobalAveragePooling2D()]
  else:
    body = [layers.GRU(kw["hidden_size"])]
  model = keras.Sequential([keras.Input(shape[1:])] + body + [layers.Dense(NUM_CLASSES)])
  non_trainable = [v.value for v in model.non_trainable_variables]

  def apply_fn(trainable, v):
    return model.stateless_call(trainable, non_trainable, v, training=True)[0]
  x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  y = jnp.arange(shape[0]) % NUM_CLASSES
  return _jax_step(apply_fn, [v.value for v in model.trainable_variables], x, y)


# --- PyTorch: the same models, NCHW (PyTorch's default layout) -------------------------------


def torch_runner(workload, compiled: bool, mode: str = "default"):
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn as tnn  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  shape, kw = WORKLOADS[workload]

  class ConvLSTM(tnn.Module):
    """Input convolution of all frames hoisted out of the loop, as in our layer."""

    def __init__(self, cin, f, k):
      super().__init__()
      self.ih = tnn.Conv2d(cin, 4 * f, k, padding=k // 2)
      self.hh = tnn.Conv2d(f, 4 * f, k, padding=k // 2, bias=False)

    def forward(self, x):  # (B, T, C, H, W)
      b, t = x.shape[:2]
      xg = self.ih(x.flatten(0, 1)).unflatten(0, (b, t))
      h = torch.zeros((b, self.hh.in_channels) + x.shape[3:])
      c, hs = torch.zeros_like(h), []
      for xg_t in xg.unbind(1):  # unbind, not xg[:, i]: one backward op, not T zero-filled grads
        gi, gf, gg, go = (xg_t + self.hh(h)).chunk(4, 1)
        c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
        h = torch.sigmoid(go) * torch.tanh(c)
        hs.append(h)
      return torch.stack(hs, 1)

  class ConvLSTMNet(tnn.Module):
    def __init__(self):
      super().__init__()
      s, feats, k = kw["stem_stride"], kw["convlstm_features"], kw["kernel_size"]
      self.stem = tnn.Conv2d(shape[-1], feats[0], max(3, s), s, padding=1)
      self.rnns = tnn.ModuleList(ConvLSTM(a, b, k) for a, b in zip(feats[:1] + feats, feats))
      self.head = tnn.Linear(feats[-1], NUM_CLASSES)

    def forward(self, x):
      b, t = x.shape[:2]
      x = torch.relu(self.stem(x.flatten(0, 1))).unflatten(0, (b, t))
      for rnn in self.rnns:
        x = rnn(x)
      return self.head(x[:, -1].mean((2, 3)))

  class LayerNet(tnn.Module):
    def __init__(self):
      super().__init__()
      if workload == "convlstm_layer":
        self.rnn = ConvLSTM(shape[-1], kw["features"], kw["kernel_size"])
        self.head = tnn.Linear(kw["features"], NUM_CLASSES)
      else:
        self.rnn = tnn.GRU(shape[-1], kw["hidden_size"], batch_first=True)
        self.head = tnn.Linear(kw["hidden_size"], NUM_CLASSES)

    def forward(self, x):
      if workload == "convlstm_layer":
        return self.head(self.rnn(x)[:, -1].mean((2, 3)))
      return self.head(self.rnn(x)[0][:, -1])

  class CNNGRUNet(tnn.Module):
    def __init__(self):
      super().__init__()
      f, s = kw["conv_features"], kw["stem_stride"]
      size = shape[2] // s // 2 ** (len(f) - 1)
      self.cnn = tnn.Sequential(
          tnn.Conv2d(shape[-1], f[0], s, s), tnn.ReLU(),
          *[m for a, b in zip(f, f[1:]) for m in (tnn.Conv2d(a, b, 3, padding=1), tnn.ReLU(),
                                                  tnn.MaxPool2d(2))],
          tnn.Flatten(), tnn.Linear(f[-1] * size * size, kw["embed_dim"]), tnn.ReLU())
      self.gru = tnn.GRU(kw["embed_dim"], kw["hidden_size"], batch_first=True)
      self.head = tnn.Linear(kw["hidden_size"], NUM_CLASSES)

    def forward(self, x):
      b, t = x.shape[:2]
      e = self.cnn(x.flatten(0, 1)).unflatten(0, (b, t))
      return self.head(self.gru(e)[0][:, -1])

  model = {"convlstm": ConvLSTMNet, "cnn_gru": CNNGRUNet}.get(workload, LayerNet)()
  opt = torch.optim.Adam(model.parameters(), 1e-3)
  x = torch.randn(shape[:2] + shape[-1:] + shape[2:-1])  # frames channels-first
  y = torch.arange(shape[0]) % NUM_CLASSES
  forward = torch.compile(model, mode=mode) if compiled else model

  def run():
    opt.zero_grad(set_to_none=True)
    loss = tnn.functional.cross_entropy(forward(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())

  start = time.perf_counter()
  run()  # torch.compile compiles here; eager allocates the optimizer state.
  seconds = time.perf_counter() - start if compiled else None
  return run, seconds, _torch_peak(torch, run, model, opt, x)


def _torch_peak(torch, run, model, opt, x):
  """Bytes alive before a step (params, optimizer state, batch) + the step's peak allocations."""
  from torch.profiler import ProfilerActivity, profile  # pylint: disable=import-outside-toplevel
  params = list(model.parameters())
  tensors = params + [p.grad for p in params if p.grad is not None] + [x] + [
      v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
  resident = sum(t.numel() * t.element_size() for t in tensors)
  with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    run()
  live = peak = 0
  events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]")
  for _, nbytes in events:
    live += nbytes
    peak = max(peak, live)
  return resident + peak


# --- Measurement, tables, RESULTS.md -----------------------------------------------------------

def _probe_max_autotune(workload, limit):
  """Compile seconds of torch.compile(mode="max-autotune") on the workload, measured in a child
  process (its compiled kernels land in the shared TORCHINDUCTOR_CACHE_DIR), or None if it did
  not finish within `limit` seconds."""
  child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--probe-max-autotune",
                            workload], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, start_new_session=True)
  try:
    out, _ = child.communicate(timeout=limit)
  except subprocess.TimeoutExpired:
    os.killpg(child.pid, 9)  # Its compile workers too.
    child.communicate()
    return None
  lines = [l for l in out.splitlines() if l.startswith("{")]
  return json.loads(lines[-1])["compile_s"] if child.returncode == 0 and lines else None


def torch_compile_runner(workload, limit):
  """(run, compile seconds, peak bytes, mode): max-autotune if it compiles within `limit`
  seconds, else the default mode."""
  seconds = _probe_max_autotune(workload, limit)
  if seconds is not None:  # From the warm cache now; the cold compile time is the child's.
    run, _, peak = torch_runner(workload, compiled=True, mode="max-autotune")
    return run, seconds, peak, "max-autotune"
  run, seconds, peak = torch_runner(workload, compiled=True)
  return run, seconds, peak, f"default mode; max-autotune not compiled in {limit:.0f} s"


IMPLS = {  # name: runner(workload, args) -> (run, compile seconds or None, peak bytes[, note])
    "ours (dcrn_jax)": lambda w, a: flax_runner(w, ours=True),
    "ours with dcrn_jax.main's XLA options": lambda w, a: flax_runner(w, True, main_options=True),
    "Flax nn.RNN(cell)": lambda w, a: flax_runner(w, ours=False),
    "PyTorch eager": lambda w, a: torch_runner(w, compiled=False),
    "torch.compile": lambda w, a: torch_compile_runner(w, a.compile_limit),
    "Keras 3 (JAX)": lambda w, a: keras_runner(w),
}


def measure(workload, args):
  """-> (rows (impl, sequences/s, median s/step, compile s, peak bytes), matmul peak FLOP/s by
  library). Failures are reported and left out."""
  batch = WORKLOADS[workload][0][0]
  runners = {}
  for name in args.impls.split(","):
    if name == "ours with dcrn_jax.main's XLA options" and not host.compiler_options():
      continue  # main compiles with XLA's defaults here: the same as "ours".
    try:
      run, seconds, peak, *note = IMPLS[name](workload, args)
      run()  # One warm-up step each.
      runners[name + (f" ({note[0]})" if note else "")] = (run, seconds, peak)
    except Exception as e:  # pylint: disable=broad-except
      print(f"  {name}: not measured ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
  matmuls = matmul_runners()
  for run in matmuls.values():
    run()
  clocks = {name: run for name, (run, _, _) in runners.items()}
  clocks.update(matmuls)
  times = {name: [] for name in clocks}
  for _ in range(args.steps):
    for name, run in clocks.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  rows = [(name, batch / statistics.median(times[name]), statistics.median(times[name]),
           seconds, peak) for name, (_, seconds, peak) in runners.items()]
  peaks = {name: 2 * MATMUL ** 3 / statistics.median(times[name]) for name in matmuls}
  return rows, peaks


def compile_scaling(workload, frames=(8, 64), repeats=5):
  """Our train step's compile time at each number of frames (other shapes as the workload):
  the least of `repeats` compilations, alternating, since load on the machine only adds."""
  shape = WORKLOADS[workload][0]
  seconds = {t: [] for t in frames}
  for _ in range(repeats):
    for t in frames:
      seconds[t].append(flax_runner(workload, True, shape[:1] + (t,) + shape[2:])[1])
  return [(t, min(seconds[t])) for t in frames]


def table(workload, rows, flops, peaks, load):
  shape = WORKLOADS[workload][0]
  ours = next((r for r in rows if r[0].startswith("ours")), None)
  eager = next((r for r in rows if r[0] == "PyTorch eager"), None)
  peak = max(peaks.values())
  dims = "(B, T, H, W, C)" if len(shape) == 5 else "(B, T, D)"
  lines = [f"{workload}: inputs {shape} {dims}, float32; {flops / 1e9:.2f} GFLOP per train step; "
           f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end", "",
           "| implementation | sequences/s | step (ms) | GFLOP/s | of matmul peak | compile (s) "
           "| peak memory (MB) | ours is x faster | vs PyTorch eager |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for name, rate, t, seconds, mem in rows:
    comp = "-" if seconds is None else f"{seconds:.1f}"
    vs_ours = f"{ours[1] / rate:.2f}" if ours else "-"
    vs_eager = f"{rate / eager[1]:.2f}" if eager else "-"
    lines.append(f"| {name} | {rate:.1f} | {t * 1000:.0f} | {flops / t / 1e9:.0f} "
                 f"| {flops / t / peak:.0%} | {comp} | {mem / 2**20:.0f} | {vs_ours} | {vs_eager} |")
  lines += ["", "Matmul peak, timed in the same round robin (" + f"{MATMUL}x{MATMUL} float32): "
            + ", ".join(f"{name.split(', ')[1]} {rate / 1e9:.0f} GFLOP/s"
                        for name, rate in peaks.items()) + "; the higher is the peak above."]
  return "\n".join(lines)


def machine():
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  import torch  # pylint: disable=import-outside-toplevel
  import keras  # pylint: disable=import-outside-toplevel
  return (f"{cpu}, {os.cpu_count()} cores, {jax.devices()[0].platform}; jax {jax.__version__}, "
          f"flax {flax.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), keras {keras.__version__}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(none)'}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
          + (f"dcrn_jax.host.configure() applied: {CONFIGURED}" if CONFIGURED else
             "nothing process-wide set (no dcrn_jax.host.configure()); our step: a plain "
             "jax.jit with XLA's default options, as a user writes it"))


def write_results(text, section, path=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "RESULTS.md")):
  """Replaces this script's section of RESULTS.md (between its markers), keeping the rest."""
  start, end = f"<!-- {section}: start -->", f"<!-- {section}: end -->"
  old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
  block = f"{start}\n{text}\n{end}"
  if start in old and end in old:
    new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
  else:
    new = old.rstrip("\n") + "\n\n" + block + "\n"
  with open(path, "w") as f:
    f.write(new)


def _probe_child(workload):
  """--probe-max-autotune: compile (first step) with max-autotune and print its seconds."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(os.cpu_count())
  _, seconds, _ = torch_runner(workload, compiled=True, mode="max-autotune")
  print(json.dumps({"compile_s": seconds}), flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--workloads", default=",".join(WORKLOADS))
  parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated, of: "
                      + ", ".join(IMPLS))
  parser.add_argument("--configure", action="store_true",
                      help="call dcrn_jax.host.configure() first (process-wide settings)")
  parser.add_argument("--compile-limit", type=float, default=180.0,
                      help="seconds torch.compile's max-autotune may take, else default mode")
  parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
  parser.add_argument("--probe-max-autotune", metavar="WORKLOAD", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.probe_max_autotune:
    return _probe_child(args.probe_max_autotune)
  if args.configure:  # Before JAX or PyTorch computes anything.
    CONFIGURED.update(host.configure())
  load = os.getloadavg()
  out = [f"Machine: {machine()}.", ""]
  print(out[0], flush=True)
  for workload in args.workloads.split(","):
    print(f"\n== {workload}", flush=True)
    start_load = os.getloadavg()[0]
    flops = step_flops(workload)
    rows, peaks = measure(workload, args)
    out += [table(workload, rows, flops, peaks, (start_load, os.getloadavg()[0])), ""]
    print(out[-2], flush=True)
    scaling = compile_scaling(workload)
    (t0, c0), (t1, c1) = scaling
    line = (f"Compile time of our train step: {c0:.1f} s at T={t0}, {c1:.1f} s at T={t1} "
            f"(ratio {c1 / c0:.2f}).")
    out += [line, ""]
    print(line, flush=True)
  out.append(f"Load average (1, 5, 15 min) at start: {load[0]:.1f}, {load[1]:.1f}, "
             f"{load[2]:.1f}; at end: " + ", ".join(f"{v:.1f}" for v in os.getloadavg())
             + " (other processes share the 2 cores; ratios are fairer than absolute figures).")
  print(out[-1])
  command = "python benchmarks/bench_recurrent.py " + shlex.join(sys.argv[1:])
  if args.write:
    title = ("after `dcrn_jax.host.configure()`" if args.configure else
             "as a user jits it (nothing process-wide)")
    write_results("\n".join([f"## Recurrent layers: train step {title} "
                              f"(`{command.strip()}`)", ""] + out),
                  "bench_recurrent configure" if args.configure else "bench_recurrent")


if __name__ == "__main__":
  main()
