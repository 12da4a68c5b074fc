"""Fault injection: the bad-input catalogue, then random SIGKILL-and-resume trials.

    python benchmarks/faults.py [--trials 10] [--seed 0] [--skip-catalogue | --predict-only]

Catalogue: every user-caused fault in tests/fault_catalogue.py must print one `error:` line
that says what is wrong (no traceback) and exit non-zero.
Trials: a tiny moving_digits run (tests/kill_worker.py: 36 steps, a checkpoint every 6, dropout
on) is SIGKILLed at a random point — while a step is in flight, while a checkpoint is being
written, right after a save, or a random time after training starts — then the same command is run
again. Each trial reports the steps lost (last step reached before the kill minus the step the
rerun resumed from) and whether the final parameters are bitwise equal to an uninterrupted run.
"""

import argparse
import os
import pathlib
import random
import sys
import tempfile

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fault_catalogue  # pylint: disable=g-import-not-at-top,wrong-import-position
import kill_worker  # pylint: disable=g-import-not-at-top,wrong-import-position
import test_reliability as rel  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcrn_jax import data  # pylint: disable=g-import-not-at-top,wrong-import-position

CHECKPOINT_EVERY = kill_worker.tiny_config("").checkpoint_every_steps
NUM_STEPS = kill_worker.tiny_config("").num_train_steps


def run_catalogue(base: str, predict_only: bool = False) -> list[tuple]:
  rows = []
  for fault in () if predict_only else fault_catalogue.FAULTS:
    ok, detail = fault_catalogue.run_fault(base, *fault)
    rows.append((fault[0], "ok" if ok else "FAILED", detail[:150]))
    print(f"  {fault[0]}: {'ok' if ok else 'FAILED'}", flush=True)
  trained = fault_catalogue.trained_for_predict(base)
  for fault in fault_catalogue.PREDICT_FAULTS:
    ok, detail = fault_catalogue.run_predict_fault(base, trained, *fault)
    rows.append((fault[0], "ok" if ok else "FAILED", detail[:150]))
    print(f"  {fault[0]}: {'ok' if ok else 'FAILED'}", flush=True)
  runs = fault_catalogue.trained_forecaster(base)
  for fault in fault_catalogue.FORECAST_PREDICT_FAULTS:
    ok, detail = fault_catalogue.run_predict_fault(base, runs, *fault)
    rows.append((fault[0], "ok" if ok else "FAILED", detail[:150]))
    print(f"  {fault[0]}: {'ok' if ok else 'FAILED'}", flush=True)
  return rows


def random_kill(rng: random.Random) -> tuple[str, int]:
  mode = rng.choice(["step", "step", "checkpoint", "after_save", "time", "time"])
  if mode == "step":
    return mode, rng.randint(1, NUM_STEPS - 1)
  if mode in ("checkpoint", "after_save"):
    return mode, CHECKPOINT_EVERY * rng.randint(1, NUM_STEPS // CHECKPOINT_EVERY - 1)
  return mode, rng.randint(100, 6000)  # Milliseconds after training starts (about 2-5 s long).


def run_trial(base: str, data_dir: str, mode: str, n: int, reference) -> tuple:
  workdir = pathlib.Path(tempfile.mkdtemp(dir=base))
  killed = rel.worker(workdir, data_dir, mode, n)
  if killed.returncode != -9:
    return (f"{mode} {n}", "finished before the kill" if killed.returncode == 0
            else f"crashed ({killed.returncode})", "-", "-")
  metrics = workdir / "metrics.jsonl"
  reached = rel.last_logged_step(workdir) if metrics.exists() and metrics.read_text() else 0
  resumed = rel.worker(workdir, data_dir)
  if resumed.returncode != 0:
    return (f"{mode} {n}", f"resume failed: {resumed.stderr.strip().splitlines()[-1]}", "-", "-")
  start = (int(resumed.stdout.split("resuming from step ")[1].split()[0])
           if "resuming from step" in resumed.stdout else 0)
  _, variables = rel.params_at_end(workdir, data_dir)
  equal = all(np.array_equal(a, b) for a, b in
              zip(jax.tree.leaves(variables), jax.tree.leaves(reference[1])))
  return (f"{mode} {n}", f"killed at step {reached}, resumed from {start}", reached - start,
          "bitwise equal" if equal else "MISMATCH")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--trials", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--skip-catalogue", action="store_true")
  parser.add_argument("--predict-only", action="store_true",
                      help="only the catalogue's predict and export faults, no trials")
  args = parser.parse_args()
  base = tempfile.mkdtemp(prefix="dcrn_faults_")
  if not args.skip_catalogue:
    print("bad-input catalogue:", flush=True)
    rows = run_catalogue(base, args.predict_only)
    print("\n| fault | outcome | what the user sees |\n|---|---|---|")
    for name, outcome, detail in rows:
      print(f"| {name} | {outcome} | `{detail}` |")
  if args.predict_only:
    return
  data_dir = os.path.join(base, "tfds")
  data.get_info(kill_worker.tiny_config(data_dir).data)
  reference_dir = os.path.join(base, "reference")
  ref = rel.worker(reference_dir, data_dir)
  assert ref.returncode == 0, ref.stderr[-2000:]
  reference = rel.params_at_end(reference_dir, data_dir)
  rng = random.Random(args.seed)
  print(f"\nkill-and-resume trials ({NUM_STEPS} steps, a checkpoint every {CHECKPOINT_EVERY}):",
        flush=True)
  trials = []
  for i in range(args.trials):
    trials.append(run_trial(base, data_dir, *random_kill(rng), reference))
    print(f"  trial {i + 1}: {trials[-1]}", flush=True)
  print("\n| kill point | outcome | steps lost | final parameters |\n|---|---|---:|---|")
  for row in trials:
    print("| " + " | ".join(str(x) for x in row) + " |")
  killed = [t for t in trials if isinstance(t[2], int)]
  print(f"\n{len(killed)} of {len(trials)} trials killed mid-run; "
        f"{sum(t[3] == 'bitwise equal' for t in killed)} resumed to bitwise-equal parameters; "
        f"most steps lost: {max((t[2] for t in killed), default=0)} "
        f"(checkpoint_every_steps={CHECKPOINT_EVERY})")


if __name__ == "__main__":
  main()
