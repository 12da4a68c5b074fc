"""The train loop's ceiling: steps/s and clips/s of the CLI's own loop with a near-zero model.

    python benchmarks/bench_loop.py [--rounds=2] [--steps=60] [--base=/tmp/feed_base]

For each source (synthetic and moving_digits clips of 10x64x64x1, batch 256) it runs
`python -m dcrn_jax.main` with a model of a few hundred parameters, streamed from the host
(data.on_device=False) and resident on the device (True), round robin over `rounds` rounds;
with --base=DIR also the same command in DIR, another checkout (e.g. `git worktree add DIR
main`: the loop as it was, without these fields). A figure is the median of the train log
lines' steps/s after the first window (which holds the compilation), over every round.
"""

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH = 256
MODEL = ["--config.model.stem_stride=8", "--config.model.conv_features=(1,)",
         "--config.model.embed_dim=4", "--config.model.hidden_size=4"]
SOURCES = {
    "synthetic": ["--config.data.name=synthetic", "--config.data.synthetic_num_examples=2048"],
    "moving_digits": ["--config.data.name=moving_digits",
                      "--config.data.num_train_examples=2048",
                      "--config.data.num_test_examples=256"],
}
_RATE = re.compile(r"^\[train\] step (\d+)/.*\| ([0-9.]+) steps/s")


def run(root, source, mode, steps, data_dir):
  """steps/s of the windows after the first, from the log of one CLI run."""
  flags = [f"--config={root}/configs/video_gru.py", f"--config.batch_size={BATCH}",
           f"--config.eval_batch_size={BATCH}", f"--config.num_train_steps={steps}",
           f"--config.log_every_steps={steps // 6}", "--config.eval_every_steps=0",
           "--config.checkpoint_every_steps=0", "--config.progress_bar=False",
           f"--config.data.data_dir={data_dir}", *MODEL, *SOURCES[source]]
  if mode != "today":
    flags.append(f"--config.data.on_device={mode == 'on_device'}")
  env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
  with tempfile.TemporaryDirectory() as work:
    r = subprocess.run([sys.executable, "-m", "dcrn_jax.main", *flags, f"--workdir={work}"],
                       cwd=root, env=env, capture_output=True, text=True, check=False)
  if r.returncode:
    raise SystemExit(f"{source}/{mode} failed:\n{r.stderr[-3000:]}")
  rates = [float(m.group(2)) for m in map(_RATE.match, r.stdout.splitlines()) if m]
  return rates[1:]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--base", default="")
  args = parser.parse_args()
  modes = (["today"] if args.base else []) + ["host", "on_device"]
  rates = {(s, m): [] for s in SOURCES for m in modes}
  data_dir = tempfile.mkdtemp(prefix="bench_loop_tfds")
  for _ in range(args.rounds):
    for source in SOURCES:
      for mode in modes:
        root = args.base if mode == "today" else ROOT
        rates[source, mode] += run(root, source, mode, args.steps, data_dir)
        print(f"{source} {mode}: {rates[source, mode]}", flush=True)
  print(f"\n| source | feeding | steps/s (median) | clips/s | vs host |")
  print("|---|---|---:|---:|---:|")
  for source in SOURCES:
    host = statistics.median(rates[source, "host"])
    for mode in modes:
      sps = statistics.median(rates[source, mode])
      name = {"today": "streamed, before (main)", "host": "streamed (uint8, thread)",
              "on_device": "on_device"}[mode]
      print(f"| {source} | {name} | {sps:.2f} | {sps * BATCH:,.0f} | {sps / host:.2f}x |")


if __name__ == "__main__":
  main()
