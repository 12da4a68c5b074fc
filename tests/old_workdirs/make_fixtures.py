"""Regenerates the workdirs under tests/old_workdirs/ from older commits of this repository.

    python tests/old_workdirs/make_fixtures.py [COMMIT ...]

For each commit: a `git worktree` of it in a temporary folder, a tiny cnn_gru run on the
`synthetic` source there (that commit's own code, 6 steps, a checkpoint every 3), then that
commit's --mode=eval, whose printed line and metrics.jsonl record are the metrics the current
code must reproduce. The workdir is copied to tests/old_workdirs/<commit>/ (checkpoints,
config.json, metrics.jsonl; a few hundred KB) with old_eval.json: the old eval's metrics.
tests/test_workdirs.py evaluates and resumes each with the current code.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
# df19e1b: before the training features, video layouts and forecasting (no
# optim.accumulate_steps, ema_decay, best_metric, model.patch_size, task, ...);
# d63208e: training features and video shards merged, forecasting not yet (no model.patch_size,
# task, forecast.*, data.input_frames).
# Workdirs from before e030366 (the fast recurrent layers) keep flax's GRUCell/LSTMCell
# parameters, which the current layers do not read: the restore refuses them with one line
# naming the arrays (checkpoint.py), and no fixture is kept for them.
COMMITS = ("df19e1b", "d63208e")
# The same fields are given to the current code by tests/test_workdirs.py.
TINY = {"data.name": "synthetic", "data.synthetic_shape": (4, 16, 16, 1),
        "data.synthetic_num_classes": 3, "data.synthetic_num_examples": 64,
        "model.conv_features": (4,), "model.stem_stride": 2, "model.embed_dim": 8,
        "model.hidden_size": 8, "batch_size": 8, "eval_batch_size": 16, "num_train_steps": 6,
        "log_every_steps": 3, "eval_every_steps": 6, "checkpoint_every_steps": 3,
        "progress_bar": False, "optim.warmup_steps": 2}


def _run(worktree: pathlib.Path, workdir: str, *extra: str) -> str:
  env = {**os.environ, "PYTHONPATH": str(worktree)}
  overrides = [f"--config.{k}={v}" for k, v in TINY.items()]
  cmd = [sys.executable, "-m", "dcrn_jax.main", "--config=configs/video_gru.py",
         f"--workdir={workdir}", *overrides, *extra]
  r = subprocess.run(cmd, cwd=worktree, env=env, capture_output=True, text=True, check=False)
  if r.returncode:
    sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
  return r.stdout


def make(commit: str) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    worktree = pathlib.Path(tmp, "src")
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), commit], cwd=ROOT,
                   check=True, capture_output=True)
    try:
      workdir = os.path.join(tmp, "run")
      print(_run(worktree, workdir), end="")
      printed = _run(worktree, workdir, "--mode=eval")
      print(printed, end="")
    finally:
      subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT,
                     check=True)
    records = [json.loads(x) for x in pathlib.Path(workdir, "metrics.jsonl").read_text()
               .splitlines()]
    old_eval = [r for r in records if r["split"] == "eval"][-1]  # The --mode=eval line.
    target = HERE / commit
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(workdir, target, ignore=shutil.ignore_patterns("*.tmp", "events.*"))
    (target / "old_eval.json").write_text(json.dumps(
        {"commit": commit, "printed": printed.strip().splitlines(), "record": old_eval},
        indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
  for c in sys.argv[1:] or COMMITS:
    make(c)
