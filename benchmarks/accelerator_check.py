"""A check of one accelerator machine in minutes: is the train step fed, and do the tests pass?

For each case (configs/video_gru.py at batch 32 and 256 on `synthetic` clips, the ConvLSTM
classifier of the GPU benchmark on `synthetic` clips, the OpenSTL-sized forecaster
configs/forecast_mfmnist_convlstm.py on `moving_digits_seq`), in float32 and bfloat16:

  step alone   steps/s of the jitted train step (built as train.py builds it) on one batch
               already in device memory, `--steps` steps back to back, median of 3 rounds;
  loop         steps/s of train.train_and_evaluate, the loop `python -m dcrn_jax.main` runs
               (same config, a temporary workdir, `--loop_steps` steps), read from its
               metrics.jsonl: the median of the logged windows after the first, and the first
               window alone (the one that holds the first log, save and import);
  fed %        loop / step alone: 100 % means the loop never waits on the host.

Then it runs the tests that need no TensorFlow (`-m "not needs_tf"`, with
tests/without_tf/ on PYTHONPATH so `import tensorflow` fails as on such a machine), on
pytest-xdist workers when xdist is installed.

Everything needs only the in-memory sources, so it runs where TensorFlow is absent. Where
the config has `data.on_device` (device-resident datasets), the loop runs with it on; where it
does not, the column says `n/a` and the loop reads batches on the host.

    python benchmarks/accelerator_check.py                 # the full check (GPU/TPU sizes)
    python benchmarks/accelerator_check.py --tiny          # small shapes, few steps (any CPU)
    python benchmarks/accelerator_check.py --budget 420    # stop starting work after 420 s

--budget is wall-clock seconds for the whole run: a case starts only when the time left covers
the slowest case so far (plus the reserve for the tests), and pytest gets what is left, under
`timeout`; skipped parts are printed as such, never silently dropped.
"""

import argparse
import contextlib
import functools
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_START = [time.monotonic()]  # main() restarts the clock when it is called in-process.


def elapsed() -> float:
  return time.monotonic() - _START[0]


# ------------------------------------------------------------------------------------- cases

def _video_gru(batch_size, tiny):
  from configs import video_gru  # pylint: disable=g-import-not-at-top
  config = video_gru.get_config()
  config.data.name = "synthetic"
  config.batch_size = batch_size
  if tiny:
    config.batch_size = 4 if batch_size <= 32 else 8
    config.data.synthetic_shape = (4, 16, 16, 1)
    config.data.synthetic_num_examples = 32
    config.model.stem_stride, config.model.conv_features = 2, (4, 8)
    config.model.embed_dim, config.model.hidden_size = 16, 16
  return config


def _convlstm(tiny):
  """The ConvLSTM classifier of the GPU benchmark: batch 32 of 16x64x64x3 clips, a stride-2
  stem, two ConvLSTM layers of 64 features on 32x32 maps."""
  from configs import convlstm  # pylint: disable=g-import-not-at-top
  config = convlstm.get_config()
  config.data.name = "synthetic"
  config.data.synthetic_shape = (16, 64, 64, 3)
  config.model.convlstm_features, config.model.stem_stride = (64, 64), 2
  config.batch_size = 32
  if tiny:
    config.data.synthetic_shape, config.data.synthetic_num_examples = (4, 16, 16, 3), 32
    config.model.convlstm_features, config.batch_size = (4, 4), 4
  return config


def _forecast(tiny):
  """configs/forecast_mfmnist_convlstm.py (OpenSTL's ConvLSTM-S size) on moving_digits_seq,
  which needs no Fashion-MNIST files."""
  from configs import forecast_mfmnist_convlstm  # pylint: disable=g-import-not-at-top
  config = forecast_mfmnist_convlstm.get_config()
  config.data.name = "moving_digits_seq"
  config.data.num_train_examples, config.data.num_test_examples = 2048, 64
  config.eval_batch_size, config.forecast.num_shown = 16, 0
  if tiny:
    d = config.data
    d.image_size, d.num_frames, d.input_frames, d.output_frames = 16, 4, 2, 2
    d.num_train_examples, d.num_test_examples = 32, 8
    config.model.convlstm_features, config.model.convlstm_kernel = (4, 4), 3
    config.batch_size, config.eval_batch_size = 4, 8
  return config


CASES = {
    "video_gru_b32": lambda tiny: _video_gru(32, tiny),
    "video_gru_b256": lambda tiny: _video_gru(256, tiny),
    "convlstm_b32": _convlstm,
    "forecast_openstl": _forecast,
}
DTYPES = ("float32", "bfloat16")


def make_config(case: str, dtype: str, tiny: bool, loop_steps: int):
  """The case's config with the check's durations: train loop_steps, log 4-6 windows (the
  first window starts after the compiling first step), one save and one (small) eval at the
  end, no progress bar."""
  config = CASES[case](tiny)
  config.model.dtype = dtype
  config.num_train_steps = loop_steps
  config.num_epochs = 0
  config.log_every_steps = max(2, loop_steps // 6)
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 0
  config.optim.warmup_steps = min(config.optim.warmup_steps, max(1, loop_steps // 10))
  config.progress_bar = False
  return config


def set_on_device(config, value) -> str:
  """Sets data.on_device where the config has the field; returns what the table shows."""
  if "on_device" not in config.data:  # The field arrives with device-resident datasets.
    return "n/a"
  config.data.on_device = value
  return str(value)


# ----------------------------------------------------------------------------- measurements

def step_alone(config, steps: int, rounds: int = 3) -> float:
  """Steps/s of the train step as train.py builds it, on one device-resident batch."""
  import jax  # pylint: disable=g-import-not-at-top
  from dcrn_jax import data, optim, parallel, train  # pylint: disable=g-import-not-at-top
  from dcrn_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  set_on_device(config, False)  # The step alone reads a whole batch, as the host path feeds it.
  task = train.validate_config(config)
  mesh, info, plan, model = train._setup(config, task)  # pylint: disable=protected-access
  config, _ = train.resolve_config(config, info, plan)
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps)
  state, sharding = state_lib.create_train_state(
      model, tx, plan.input_shape, jax.random.key(config.seed), mesh,
      ema=config.optim.ema_decay > 0)
  fn = train.make_train_step(config, plan, schedule, mesh, sharding)
  batches = train._host_batches(functools.partial(data.train_batches, config.data),  # pylint: disable=protected-access
                                config.data.shard_by_process, config.batch_size,
                                seed=config.seed, start_step=0)
  batch = parallel.to_global(next(batches), mesh)
  rng = jax.random.key(1)
  state, metrics = fn(state, batch, rng)  # Compiles.
  jax.block_until_ready((state, metrics))
  rates = []
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = fn(state, batch, rng)
    jax.block_until_ready((state, metrics))
    rates.append(steps / (time.perf_counter() - start))
  return statistics.median(rates)


def loop_rates(config, workdir: str) -> tuple[float, float, str]:
  """(median steps/s of the logged windows after the first, first window's, last line printed)
  of train.train_and_evaluate on config in a fresh workdir."""
  from dcrn_jax import train  # pylint: disable=g-import-not-at-top
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rates = [r["steps_per_sec"] for r in map(json.loads, f) if r["split"] == "train"]
  later = rates[1:] or rates
  return statistics.median(later), rates[0], out.getvalue().strip().splitlines()[-1]


def run_case(case, dtype, args) -> dict:
  config = make_config(case, dtype, args.tiny, args.loop_steps)
  row = {"case": case, "dtype": dtype, "batch": config.batch_size, "data": config.data.name}
  row["on_device"] = set_on_device(config, True)
  start = time.monotonic()
  row["alone"] = step_alone(config, args.steps)
  workdir = tempfile.mkdtemp(prefix=f"accel_{case}_{dtype}_")
  try:
    row["loop"], row["first_window"], row["last_line"] = loop_rates(config, workdir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  row["fed_pct"] = 100.0 * row["loop"] / row["alone"]
  row["seconds"] = time.monotonic() - start
  return row


# ------------------------------------------------------------------------------------ tests

def run_tests(seconds: float, workers: int) -> int:
  """Runs the tests that need no TensorFlow as on a machine without it; pytest's exit code
  (124: stopped at the time limit)."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.join(ROOT, "tests", "without_tf"), ROOT, os.environ.get("PYTHONPATH", "")]))
  cmd = ["timeout", str(int(seconds)), sys.executable, "-m", "pytest", "-q", "--no-header",
         "-m", "not needs_tf and not slow", "-rfE", "--tb=line", "-p", "no:cacheprovider",
         os.path.join(ROOT, "tests")]
  has_xdist = subprocess.run([sys.executable, "-c", "import xdist"], env=env,
                             capture_output=True, check=False).returncode == 0
  if has_xdist and workers > 1:
    cmd[5:5] = ["-n", str(workers)]
    # Each worker is a JAX process: share the accelerator's memory instead of taking 75 % each.
    env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.8 / workers:.3f}"
  print(f"$ {' '.join(cmd)}", flush=True)
  return subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode


# ------------------------------------------------------------------------------------- main

def table(rows) -> str:
  lines = ["| case | dtype | batch | data | on_device | step alone steps/s | loop steps/s "
           "(median) | first window | fed % |", "|---|---|---:|---|---|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['case']} | {r['dtype']} | {r['batch']} | {r['data']} | {r['on_device']}"
                 f" | {r['alone']:.1f} | {r['loop']:.1f} | {r['first_window']:.1f} | "
                 f"{r['fed_pct']:.0f} |")
  return "\n".join(lines)


def parse_args(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--tiny", action="store_true", help="small shapes and few steps (any CPU)")
  ap.add_argument("--budget", type=float, default=450.0,
                  help="wall-clock seconds for everything (default 450, under 8 minutes)")
  ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated of {list(CASES)}")
  ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated of float32,bfloat16")
  ap.add_argument("--steps", type=int, default=None, help="timed steps per round of the step alone")
  ap.add_argument("--loop_steps", type=int, default=None, help="steps of each loop run")
  ap.add_argument("--test_seconds", type=float, default=None,
                  help="seconds kept for the tests (default: 40 %% of the budget; 0: no tests)")
  ap.add_argument("--workers", type=int, default=8, help="pytest-xdist workers where installed")
  args = ap.parse_args(argv)
  args.steps = args.steps or (3 if args.tiny else 50)
  args.loop_steps = args.loop_steps or (8 if args.tiny else 240)
  if args.test_seconds is None:
    args.test_seconds = 0.4 * args.budget
  bad = [c for c in args.cases.split(",") if c not in CASES]
  bad += [d for d in args.dtypes.split(",") if d not in DTYPES]
  if bad:
    ap.error(f"unknown case or dtype {bad}; cases: {list(CASES)}, dtypes: {list(DTYPES)}")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  if __name__ != "__main__":
    _START[0] = time.monotonic()
  import jax  # pylint: disable=g-import-not-at-top
  print(f"jax {jax.__version__} | backend {jax.default_backend()} | devices {jax.devices()} | "
        f"budget {args.budget:.0f} s (tests {args.test_seconds:.0f} s)"
        + (" | tiny" if args.tiny else ""), flush=True)
  rows, slowest = [], 0.0
  for case in args.cases.split(","):
    for dtype in args.dtypes.split(","):
      left = args.budget - args.test_seconds - elapsed()
      if left < slowest * 1.2 or left <= 0:
        print(f"skipped {case} {dtype}: {left:.0f} s left before the tests' reserve, the "
              f"slowest case so far took {slowest:.0f} s", flush=True)
        continue
      row = run_case(case, dtype, args)
      slowest = max(slowest, row["seconds"])
      rows.append(row)
      print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v)
                        for k, v in row.items()}), flush=True)
  print("\n" + table(rows), flush=True)
  print(f"cases took {elapsed():.0f} s", flush=True)
  code = 0
  if args.test_seconds > 0:
    seconds = args.budget - elapsed()
    if seconds < 10:
      print(f"skipped the tests: {seconds:.0f} s left of the budget", flush=True)
    else:
      code = run_tests(seconds, args.workers)
      print(f"tests: pytest exit code {code}" + (" (stopped at the time limit)"
                                                 if code == 124 else ""), flush=True)
  print(f"total {elapsed():.0f} s", flush=True)
  return code


if __name__ == "__main__":
  sys.exit(main())
