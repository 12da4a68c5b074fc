"""Predict throughput: files/s of the default model (configs/video_gru.py) on 100 clip files,
decoding included.

    python benchmarks/bench_predict.py --workdir=runs/video_gru [--repeats=3]

Needs a trained workdir of configs/video_gru.py. Without --workdir, one is trained for
--train_steps steps first (throughput does not depend on accuracy). The clips are the first 100
of the run's moving_digits eval split (10 frames of 64x64), written as H.264 .mp4 (what cameras
write) and as lossless FFV1 .mkv (`dcrn_jax.data.to_files`). Measured, each setting in turn
(round robin, --repeats rounds, the median printed), with the step compiled beforehand:

  predict       Predictor.predict on the folder: listing, decoding (threads), the model, views
                averaged: what `python -m dcrn_jax.predict` does after start-up
  threads=1     the same with one decoding thread
  decode only   data.files.read of every file (the decoding threads alone)
  model only    Predictor.predict_arrays on the 100 preprocessed clips
Then one cold run of the command (`python -m dcrn_jax.predict ... --output=...`): start-up,
restore and compilation included.
"""

import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # pylint: disable=wrong-import-position

from dcrn_jax.data import files, to_files  # pylint: disable=wrong-import-position
from dcrn_jax.media import video_files  # pylint: disable=wrong-import-position

NUM_FILES = 100


def train(workdir: str, steps: int) -> None:
  print(f"training configs/video_gru.py for {steps} steps into {workdir}", flush=True)
  subprocess.run([sys.executable, "-m", "dcrn_jax.main", "--config=configs/video_gru.py",
                  f"--workdir={workdir}", f"--config.num_train_steps={steps}",
                  f"--config.checkpoint_every_steps={steps}", "--config.progress_bar=False"],
                 cwd=ROOT, check=True)


def write_clips(workdir: str, base: str) -> dict[str, str]:
  """{'mkv': folder, 'mp4': folder} of the first NUM_FILES eval clips of the run."""
  mkv = os.path.join(base, "mkv")
  written = to_files.write_examples(workdir, mkv, NUM_FILES)
  mp4 = os.path.join(base, "mp4")
  for path in written:
    frames = np.stack(list(video_files.decode_frames(path, range(10), (64, 64), 1).values()))
    target = os.path.join(mp4, os.path.relpath(path, mkv)[:-4] + ".mp4")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    video_files.write_video(target, np.repeat(frames, 3, axis=-1), lossless=False)
  return {"mkv": mkv, "mp4": mp4}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="")
  parser.add_argument("--train_steps", type=int, default=30)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  base = tempfile.mkdtemp(prefix="bench_predict_")
  workdir = args.workdir or os.path.join(base, "run")
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    train(workdir, args.train_steps)
  folders = write_clips(workdir, base)

  from dcrn_jax.predict import Predictor  # pylint: disable=g-import-not-at-top
  predictor = Predictor.from_workdir(workdir)
  threads = min(16, 2 * (os.cpu_count() or 1))
  print(f"model {predictor.config.model.name} step {predictor.step}, batch "
        f"{predictor.batch_size} rows, {threads} decoding threads, {os.cpu_count()} CPUs, "
        f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
  inputs = {k: np.concatenate([predictor.preprocess(p) for p in files.list_inputs([f])])
            for k, f in folders.items()}
  predictor.predict_arrays(inputs["mkv"][:2])  # Compile the step.

  def decode_only(folder):
    paths = files.list_inputs([folder])
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
      list(pool.map(lambda p: files.read(p, predictor.file_spec), paths))

  settings = {}
  for kind, folder in folders.items():
    settings[f"predict, {kind}"] = lambda f=folder: predictor.predict(f)
    settings[f"predict threads=1, {kind}"] = lambda f=folder: predictor.predict(f, threads=1)
    settings[f"decode only, {kind}"] = lambda f=folder: decode_only(f)
  settings["model only"] = lambda: predictor.predict_arrays(inputs["mkv"])
  times = {name: [] for name in settings}
  for _ in range(args.repeats):
    for name, fn in settings.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)

  print(f"\n| setting ({NUM_FILES} clips of 10x64x64) | files/s | s per pass (median of "
        f"{args.repeats}) |\n|---|---:|---:|")
  for name, t in times.items():
    median = statistics.median(t)
    print(f"| {name} | {NUM_FILES / median:.1f} | {median:.2f} |")

  out = os.path.join(base, "predictions.jsonl")
  start = time.perf_counter()
  subprocess.run([sys.executable, "-m", "dcrn_jax.predict", f"--workdir={workdir}",
                  folders["mp4"], f"--output={out}"], cwd=ROOT, check=True,
                 env=dict(os.environ, PYTHONPATH=ROOT))
  print(f"\ncold command on {NUM_FILES} mp4 clips (start-up, restore, compile included): "
        f"{time.perf_counter() - start:.1f} s; load average after: {os.getloadavg()[0]:.1f}")
  shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
  main()
