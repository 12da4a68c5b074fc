"""User-caused faults and the one-line error each must give (shared by tests and
benchmarks/faults.py). Each fault runs `python -m dcrn_jax.main` in a fresh workdir.

A fault is (name, extra flags, text the `error:` line must contain, setup), where setup(workdir)
prepares the workdir first (or is None) and may return replacement flags.
"""

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"--config={ROOT}/configs/video_gru.py"
# A tiny run on in-memory data: no TensorFlow import, a few seconds.
TINY = ["--config.data.name=synthetic", "--config.data.synthetic_shape=(3,16,16,1)",
        "--config.data.synthetic_num_examples=64", "--config.model.stem_stride=2",
        "--config.model.conv_features=(4,8)", "--config.model.embed_dim=16",
        "--config.model.hidden_size=16", "--config.batch_size=8", "--config.eval_batch_size=16",
        "--config.optim.warmup_steps=1", "--config.num_train_steps=4",
        "--config.log_every_steps=2", "--config.checkpoint_every_steps=2",
        "--config.progress_bar=False"]


def run_main(workdir, *flags, devices=1, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return subprocess.run([sys.executable, "-m", "dcrn_jax.main", CONFIG, f"--workdir={workdir}",
                         *flags], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


def _trained(workdir):
  r = run_main(workdir, *TINY)
  assert r.returncode == 0, r.stderr[-2000:]


def _trained_then_model_changed(workdir):
  _trained(workdir)
  return ["--config.model.hidden_size=24"]


def _trained_then_config_lost(workdir):
  _trained(workdir)  # Without config.json nothing can tell the runs apart before the restore.
  os.remove(os.path.join(workdir, "config.json"))
  return ["--config.model.hidden_size=24"]


def _trained_then_damaged(workdir):
  _trained(workdir)
  for path in pathlib.Path(workdir, "checkpoints", "4", "model").rglob("*"):
    if path.is_file() and path.parent.name == "d":  # The array data, not the metadata.
      path.write_bytes(b"\0garbage")
  return []


def _trained_then_truncated(workdir):
  _trained(workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4", "model"))
  return []


def _unreadable_videos(workdir):
  """A video folder whose only files are not videos."""
  root = pathlib.Path(workdir + "_videos")
  for split in ("train", "test"):
    for label in ("left", "right"):
      (root / split / label).mkdir(parents=True, exist_ok=True)
      (root / split / label / "clip.mp4").write_bytes(b"not a video at all")
  return [f"--config.data.video_dir={root}"]


def _broken_idx_files(workdir):
  """A Fashion-MNIST manual dir whose four idx files are garbage."""
  root = pathlib.Path(workdir + "_idx")
  root.mkdir(parents=True, exist_ok=True)
  for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"):
    (root / name).write_bytes(b"\x00\x01garbage")
  return [f"--config.data.manual_dir={root}"]


def _file_in_the_way(workdir):
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  pathlib.Path(workdir).write_text("a file where the workdir should be")


FAULTS = [
    ("misspelled config key", ["--config.batch_sizee=8"], "did you mean 'batch_size'", None),
    ("wrong type", ["--config.batch_size=eight"], "batch_size", None),
    ("zero batch size", ["--config.batch_size=0"], "batch_size=0 must be positive", None),
    ("negative steps", ["--config.num_train_steps=-1"], "num_train_steps=-1 must be positive",
     None),
    ("batch not divisible by devices", ["--config.batch_size=6"],
     "must be a positive multiple of the 4 devices", None),
    ("unknown model", ["--config.model.name=transformer"], "unknown model.name='transformer'",
     None),
    ("unknown optimizer", ["--config.optim.optimizer=adagrad"],
     "unknown optim.optimizer='adagrad'", None),
    ("unknown dataset", ["--config.data.name=no_such_dataset"], "no_such_dataset", None),
    ("dataset not prepared, offline", ["--config.data.name=mnist"], "not prepared", None),
    ("video folder not set", ["--config.data.name=video_folder"], "needs data.video_dir", None),
    ("video folder with no readable video", ["--config.data.name=video_folder"],
     "No readable video in", _unreadable_videos),
    ("corrupt Fashion-MNIST idx files", ["--config.data.name=fashion_mnist",
                                         "--config.model.name=cnn"], "idx", _broken_idx_files),
    ("workdir not writable", [], "workdir", _file_in_the_way),
    ("eval on empty workdir", ["--mode=eval"], "no checkpoints in", None),
    ("eval of a missing step", ["--mode=eval", "--config.eval_checkpoint_step=3"],
     "no checkpoint for step 3", _trained),
    ("other model in a trained workdir", [], "holds checkpoints of a run with another config",
     _trained_then_model_changed),
    ("incompatible checkpoint", [], "does not fit this model/config", _trained_then_config_lost),
    ("damaged checkpoint", [], "checkpoint of step 4 in", _trained_then_damaged),
    ("checkpoint missing an item", [], "checkpoint of step 4", _trained_then_truncated),
    ("forecasting with a classifier", ["--config.task=forecast"],
     "is a model for task='classify'", None),
    ("forecast frames that do not add up", ["--config.task=forecast",
                                            "--config.model.name=convlstm_forecaster"],
     "data.num_frames=10 must be data.input_frames + data.output_frames", None),
    ("classifying unlabelled sequences", ["--config.data.name=moving_digits_seq"],
     "has no labels", None),
]


def run_fault(base_dir, name, flags, expected, setup):
  """Returns (ok, detail): one `error:` line containing `expected`, non-zero exit, no
  traceback."""
  workdir = os.path.join(base_dir, name.replace(" ", "_").replace(",", ""))
  extra = (setup(workdir) if setup else None) or []
  devices = 4 if "divisible" in name else 1
  data_dir = os.path.join(base_dir, "tfds_empty")
  os.makedirs(data_dir, exist_ok=True)
  r = run_main(workdir, *TINY, f"--config.data.data_dir={data_dir}", *flags, *extra,
               devices=devices)
  lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
  last = lines[-1] if lines else ""
  problems = []
  if r.returncode == 0:
    problems.append("exit code 0")
  if "Traceback" in r.stderr:
    problems.append("traceback shown")
  if expected not in r.stderr:
    problems.append(f"message lacks {expected!r}")
  return not problems, (last if not problems else "; ".join(problems) + f" | {last}")
