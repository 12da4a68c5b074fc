"""User-caused faults and the one-line error each must give (shared by tests and
benchmarks/faults.py). Each fault runs `python -m dcrn_jax.main` in a fresh workdir.

A fault is (name, extra flags, text the `error:` line must contain, setup), where setup(workdir)
prepares the workdir first (or is None) and may return replacement flags.
"""

import atexit
import json
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


def _trained_then_field_unrecorded(workdir):
  """A config.json (as an older release might have written) without a run-defining field that
  upgrades.WHEN_ABSENT cannot resolve."""
  _trained(workdir)
  path = pathlib.Path(workdir, "config.json")
  saved = json.loads(path.read_text())
  del saved["model"]["hidden_size"]
  path.write_text(json.dumps(saved))
  return []


# Holds the workdir's lock for 60 s, then exits (releasing it), so no process outlives the run.
_HOLDER = ("import sys, time\nfrom dcrn_jax import lock\nwith lock.hold(sys.argv[1]):\n"
           "  print('held', flush=True)\n  time.sleep(60)\n")


def _held_by_another_run(workdir):
  holder = subprocess.Popen([sys.executable, "-c", _HOLDER, workdir], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
  assert holder.stdout.readline().strip() == "held"
  return []


def _unreadable_videos(workdir):
  """A video folder whose only files are not videos."""
  root = pathlib.Path(workdir + "_videos")
  for split in ("train", "test"):
    for label in ("left", "right"):
      (root / split / label).mkdir(parents=True, exist_ok=True)
      (root / split / label / "clip.mp4").write_bytes(b"not a video at all")
  return [f"--config.data.video_dir={root}"]


def _unparsable_split_list(workdir):
  """A UCF101 list folder whose train list has a line without a class index."""
  root = pathlib.Path(workdir + "_ucf")
  (root / "lists").mkdir(parents=True, exist_ok=True)
  (root / "videos").mkdir(exist_ok=True)
  (root / "lists" / "classInd.txt").write_text("1 Archery\n")
  (root / "lists" / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 1\n"
                                                  "Archery/v_Archery_g02_c01.avi\n")
  (root / "lists" / "testlist01.txt").write_text("Archery/v_Archery_g03_c01.avi\n")
  return [f"--config.data.video_dir={root / 'videos'}", "--config.data.split_format=ucf101",
          f"--config.data.split_lists={root / 'lists'}"]


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


def _tmpfs(folder: str, size: str) -> bool:
  """Mounts a tmpfs of `size` at folder, unmounted when this process exits; False where mounting
  is refused (not root)."""
  os.makedirs(folder, exist_ok=True)
  r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                     capture_output=True, check=False)
  if r.returncode == 0:
    atexit.register(subprocess.run, ["umount", "-l", folder], check=False)
  return r.returncode == 0


def _disk_full_after_step_2(workdir):
  """Trained to step 2 on a small tmpfs, then filled to 48 KiB free: the checkpoint of step 4
  cannot be written. Without a mount (not root): its checkpoints folder made unwritable."""
  disk = workdir + "_disk"
  real = _tmpfs(disk, "6m")
  run = os.path.join(disk, "run")
  r = run_main(run, *TINY, "--config.num_train_steps=2")
  assert r.returncode == 0, r.stderr[-2000:]
  if real:
    stat = os.statvfs(disk)
    with open(os.path.join(disk, "filler"), "wb") as f:
      f.write(b"\0" * (stat.f_bavail * stat.f_frsize - 48 * 1024))
  else:
    os.chmod(os.path.join(run, "checkpoints"), 0o555)
  return [f"--workdir={run}"]


def _read_only_workdir(workdir):
  """A workdir on a read-only filesystem (a tmpfs remounted read-only); without a mount (not
  root): a folder without write permission."""
  if _tmpfs(workdir, "1m"):
    subprocess.run(["mount", "-o", "remount,ro", workdir], check=True)
  else:
    os.chmod(workdir, 0o555)


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
    ("video split fraction out of range", ["--config.data.name=video_folder",
                                           "--config.data.video_dir=/nonexistent",
                                           "--config.data.eval_fraction=1.5"],
     "data.eval_fraction is 1.5; it must be in (0, 1)", None),
    ("video split list that does not parse", ["--config.data.name=video_folder"],
     "trainlist01.txt line 2", _unparsable_split_list),
    ("video shards with a bad JPEG quality", ["--config.data.name=video_folder",
                                              "--config.data.video_dir=/nonexistent",
                                              "--config.data.video_cache=True",
                                              "--config.data.jpeg_quality=0"],
     "data.jpeg_quality is 0; use 1-100", None),
    ("corrupt Fashion-MNIST idx files", ["--config.data.name=fashion_mnist",
                                         "--config.model.name=cnn"], "idx", _broken_idx_files),
    ("workdir not writable", [], "cannot create the workdir", _file_in_the_way),
    ("read-only workdir", [], "cannot write the lock file train.lock in the workdir",
     _read_only_workdir),
    ("full disk at a checkpoint save", [], "cannot write the checkpoint of step 4",
     _disk_full_after_step_2),
    ("eval on empty workdir", ["--mode=eval"], "no checkpoints in", None),
    ("eval of a missing step", ["--mode=eval", "--config.eval_checkpoint_step=3"],
     "no checkpoint for step 3", _trained),
    ("other model in a trained workdir", [], "holds checkpoints of a run with another config",
     _trained_then_model_changed),
    ("workdir held by another training run", [], "is being trained by pid",
     _held_by_another_run),
    ("older workdir without a run-defining field", [],
     "does not record model.hidden_size, and its value in that run is not known",
     _trained_then_field_unrecorded),
    ("incompatible checkpoint", [], "does not fit this model/config", _trained_then_config_lost),
    ("damaged checkpoint", [], "checkpoint of step 4 in", _trained_then_damaged),
    ("checkpoint missing an item", [], "checkpoint of step 4", _trained_then_truncated),
    ("both durations set", ["--config.num_epochs=2"],
     "num_train_steps=4 and num_epochs=2.0 are both set", None),
    ("neither duration set", ["--config.num_train_steps=0"],
     "neither num_train_steps nor num_epochs is set", None),
    ("accumulate_steps below 1", ["--config.optim.accumulate_steps=0"],
     "optim.accumulate_steps=0 must be >= 1", None),
    ("ema_decay outside [0, 1)", ["--config.optim.ema_decay=1.0"],
     "optim.ema_decay=1.0 must be in [0, 1)", None),
    ("best_metric not among the eval metrics", ["--config.best_metric=view_accuracy"],
     "best_metric='view_accuracy' is not among the eval metrics of this dataset", None),
    ("negative profile steps", ["--profile_steps=-1"], "--profile_steps=-1 must be >= 0", None),

    ("unknown task", ["--config.task=segment"],
     "task='segment' must be one of ['classify', 'forecast']", None),
    ("forecasting with a classifier", ["--config.task=forecast"],
     "is a model for task='classify'", None),
    ("forecast frames that do not add up", ["--config.task=forecast",
                                            "--config.model.name=convlstm_forecaster"],
     "data.num_frames=10 must be data.input_frames + data.output_frames", None),
    ("split over the on-device budget", ["--config.data.on_device=True",
                                         "--config.data.on_device_max_bytes=1000"],
     "over the 1,000 of data.on_device_max_bytes", None),
    ("on-device budget not positive", ["--config.data.on_device_max_bytes=0"],
     "data.on_device_max_bytes=0 must be", None),
    ("source that cannot be device-resident", ["--config.data.on_device=True",
                                               "--config.data.name=moving_digits_seq",
                                               "--config.task=forecast",
                                               "--config.model.name=convlstm_forecaster",
                                               "--config.data.num_frames=20"],
     "moving_digits_seq draws new training sequences every epoch", None),
    ("unknown forecasting model", ["--config.task=forecast", "--config.model.name=predrnn_v3"],
     "unknown model.name='predrnn_v3'", None),
    ("predrnn_v2 field on another model", ["--config.task=forecast",
                                           "--config.model.name=predrnn",
                                           "--config.model.decouple_beta=0.1"],
     "model.decouple_beta=0.1 is a predrnn_v2 field but model.name='predrnn'", None),
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
  return judge(r, expected)


def judge(r, expected, *, error_last: bool = False):
  """(ok, detail) of a finished command: a non-zero exit, no traceback, `expected` in stderr
  (and with error_last, stderr's last line an `error:` line); detail is that last line, or the
  problems found before it."""
  lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
  last = lines[-1] if lines else ""
  problems = []
  if r.returncode == 0:
    problems.append("exit code 0")
  if "Traceback" in r.stderr:
    problems.append("traceback shown")
  if error_last and not last.startswith("error: "):
    problems.append("last line is not an error: line")
  if expected not in r.stderr:
    problems.append(f"message lacks {expected!r}")
  return not problems, (last if not problems else "; ".join(problems) + f" | {last}")


# `python -m dcrn_jax.report` faults: (name, flags, text the `error:` line must contain). In the
# flags, {run} is a trained workdir, {empty} an empty folder and {file} a plain file.
REPORT_FAULTS = [
    ("report: no workdir flag", [], "--workdir=DIR is required"),
    ("report: workdir without config.json", ["--workdir={empty}"], "config.json is missing"),
    ("report: negative gallery size", ["--workdir={run}", "--num_examples=-1"],
     "num_examples=-1"),
    ("report: zero integrated-gradients steps", ["--workdir={run}", "--ig_steps=0"],
     "ig_steps=0"),
    ("report: unknown occlusion fill", ["--workdir={run}", "--occlusion_fill=blur"], "'blur'"),
    ("report: a count that is not an integer", ["--workdir={run}", "--num_examples=many"],
     "num_examples"),
    ("report: output folder not writable", ["--workdir={run}", "--out={file}/report"],
     "cannot write the report"),
]

# ------------------------------------------------------------------ predict and export
# Faults of `python -m dcrn_jax.predict` and `python -m dcrn_jax.export`, all on one tiny trained
# run (`trained_for_predict`). A fault is (name, argv(base, trained) -> command line after the
# module, text stderr must contain); the last stderr line must be `error: ...`.


def run_command(module, *args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def trained_for_predict(base):
  """A TINY run (checkpoints 2 and 4, clips of (3, 16, 16, 1)) and a video it can read."""
  workdir = os.path.join(base, "predict_run")
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    _trained(workdir)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dcrn_jax.media import video_files  # pylint: disable=g-import-not-at-top
  video_files.write_video(_clip(workdir), np.zeros((5, 16, 16, 1), np.uint8))
  return workdir


def _clip(trained):
  """The video trained_for_predict wrote beside the run."""
  return os.path.join(os.path.dirname(trained), "clip.mkv")


def _without(base, trained, name):
  copy = os.path.join(base, f"run_without_{name}")
  shutil.copytree(trained, copy)
  target = os.path.join(copy, name)
  shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
  return copy


def _junk(base, name, content=b"not a video"):
  path = os.path.join(base, name)
  pathlib.Path(path).write_bytes(content)
  return path


def _non_empty(base):
  os.makedirs(os.path.join(base, "full"), exist_ok=True)
  pathlib.Path(base, "full", "x").write_text("x")
  return os.path.join(base, "full")


def _truncated_video(base):
  """A 30-frame Matroska video cut in half: its header promises more frames than decode."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dcrn_jax.media import video_files  # pylint: disable=g-import-not-at-top
  path = os.path.join(base, "cut.mkv")
  video_files.write_video(path, np.random.default_rng(0).integers(
      0, 256, (30, 16, 16, 1), dtype=np.uint8), lossless=False)
  data = pathlib.Path(path).read_bytes()
  pathlib.Path(path).write_bytes(data[:len(data) // 2])
  return path


_P, _E = "dcrn_jax.predict", "dcrn_jax.export"
PREDICT_FAULTS = [
    ("predict: a path that does not exist",
     lambda b, t: [_P, f"--workdir={t}", os.path.join(b, "nope.mp4")], "nope.mp4 does not exist"),
    ("predict: no readable file",
     lambda b, t: [_P, f"--workdir={t}", _junk(b, "junk.mp4")],
     "none of the 1 file(s) could be read"),
    ("predict: an image for a clip model",
     lambda b, t: [_P, f"--workdir={t}", _junk(b, "photo.png", b"\x89PNG")],
     "an image, but this model takes clips"),
    ("predict: a workdir without checkpoints",
     lambda b, t: [_P, f"--workdir={_without(b, t, 'checkpoints')}", _clip(t)],
     "no checkpoints in"),
    ("predict: a workdir without config.json",
     lambda b, t: [_P, f"--workdir={_without(b, t, 'config.json')}", _clip(t)],
     "config.json is missing"),
    ("predict: a workdir without label_map.json",
     lambda b, t: [_P, f"--workdir={_without(b, t, 'label_map.json')}",
                   _clip(t)], "label_map.json is missing"),
    ("predict: a step that does not exist",
     lambda b, t: [_P, f"--workdir={t}", "--step=3", _clip(t)],
     "available steps: [2, 4]"),
    ("predict: a flag of the wrong type",
     lambda b, t: [_P, f"--workdir={t}", "--top_k=five", _clip(t)],
     "flag --top_k=five: invalid literal for int()"),
    ("predict: an --output of another format",
     lambda b, t: [_P, f"--workdir={t}", "--output=p.txt", _clip(t)],
     "give a .jsonl or .csv file"),
    ("predict --stream: a video that breaks off",
     lambda b, t: [_P, f"--workdir={t}", f"--stream={_truncated_video(b)}"],
     "frame(s) were scored"),
    ("export --stream with --saved_model",
     lambda b, t: [_E, f"--workdir={t}", f"--out={b}/exported", "--stream", "--saved_model"],
     "the per-frame step is exported for JAX only"),
    ("export: an --out that holds files",
     lambda b, t: [_E, f"--workdir={t}", f"--out={_non_empty(b)}"], "exists and is not empty"),
    ("export: a step that does not exist",
     lambda b, t: [_E, f"--workdir={t}", f"--out={b}/exported", "--step=3"],
     "no checkpoint for step 3"),
]


def run_predict_fault(base_dir, trained, name, argv, expected):
  """Returns (ok, detail) as run_fault does, for a PREDICT_FAULTS entry."""
  base = os.path.join(base_dir, name.replace(" ", "_").replace(":", "").replace(".", ""))
  os.makedirs(base, exist_ok=True)
  return judge(run_command(*argv(base, trained)), expected, error_last=True)

# ------------------------------------------------------------------ predict on a forecasting run
# Faults of `python -m dcrn_jax.predict` on a tiny forecasting run (`trained_forecaster`), and of
# a forecasting option on the classifier of `trained_for_predict`. Entries as PREDICT_FAULTS',
# argv(base, (forecaster, classifier)).

FORECAST_TINY = [
    f"--config={ROOT}/configs/forecast_moving_digits.py", "--config.data.image_size=16",
    "--config.data.num_frames=4", "--config.data.input_frames=2",
    "--config.data.output_frames=2", "--config.data.num_train_examples=32",
    "--config.data.num_test_examples=4", "--config.model.convlstm_features=(4,)",
    "--config.model.patch_size=1", "--config.batch_size=4", "--config.eval_batch_size=4",
    "--config.num_train_steps=2", "--config.checkpoint_every_steps=1",
    "--config.log_every_steps=1", "--config.optim.warmup_steps=1",
    "--config.progress_bar=False"]


def trained_forecaster(base):
  """(forecasting run, classifier run): a FORECAST_TINY run (2 input frames of 16x16x1, 2
  predicted) with a 1-frame clip beside it, and trained_for_predict's run."""
  workdir = os.path.join(base, "forecast_run")
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    r = run_command("dcrn_jax.main", f"--workdir={workdir}", *FORECAST_TINY)
    assert r.returncode == 0, r.stderr[-2000:]
  import numpy as np  # pylint: disable=g-import-not-at-top
  np.save(_short_clip(workdir), np.zeros((1, 16, 16), np.uint8))
  return workdir, trained_for_predict(base)


def _short_clip(forecaster):
  return os.path.join(os.path.dirname(forecaster), "one_frame.npy")


FORECAST_PREDICT_FAULTS = [
    ("predict: a clip shorter than a forecaster's input frames",
     lambda b, t: [_P, f"--workdir={t[0]}", _short_clip(t[0])],
     "1 frame(s), fewer than the 2 input frames"),
    ("predict: a classifier's option on a forecasting run",
     lambda b, t: [_P, f"--workdir={t[0]}", "--top_k=2", _short_clip(t[0])],
     "--top_k: an option for classifiers, but this run is of task='forecast'"),
    ("predict: a forecaster's option on a classifier's run",
     lambda b, t: [_P, f"--workdir={t[1]}", f"--out={b}/frames", _clip(t[1])],
     "--out: an option for forecasters, but this run is of task='classify'"),
]
