"""The command line: config overrides, one-line errors with a non-zero exit, eval output."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from configs import default

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--config.data.name=synthetic", "--config.data.synthetic_shape=(3,16,16,1)",
        "--config.data.synthetic_num_examples=64", "--config.model.stem_stride=2",
        "--config.model.conv_features=(4,8)", "--config.model.embed_dim=16",
        "--config.model.hidden_size=16", "--config.batch_size=8", "--config.eval_batch_size=16",
        "--config.optim.warmup_steps=1"]


def run_main(*args, devices=1, cwd=ROOT):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "dcrn_jax.main", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def test_misspelled_override_fails_and_names_the_right_key(tmp_path):
  r = run_main(f"--config={ROOT}/configs/video_gru.py", f"--workdir={tmp_path}",
               "--config.batch_sizee=16")
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert r.stderr.strip() == (
      "error: unknown config key config.batch_sizee in --config.batch_sizee=16: did you mean "
      "'batch_size'? valid keys of config: " + ", ".join(sorted(default.get_config().keys())))
  assert not (tmp_path / "checkpoints").exists()


def test_missing_config_file_is_one_line_error(tmp_path):
  r = run_main(f"--config={ROOT}/configs/video_gruu.py", f"--workdir={tmp_path}")
  assert r.returncode == 2 and r.stderr.startswith("error: config file") and "Traceback" not in r.stderr


def test_wrong_type_override_fails(tmp_path):
  r = run_main(f"--config={ROOT}/configs/video_gru.py", f"--workdir={tmp_path}",
               "--config.batch_size=many")
  assert r.returncode == 2 and "batch_size" in r.stderr and "Traceback" not in r.stderr


def test_batch_that_does_not_split_over_devices_is_one_line_error(tmp_path):
  r = run_main(f"--config={ROOT}/configs/video_gru.py", f"--workdir={tmp_path}", *TINY,
               "--config.batch_size=6", devices=4)
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1].startswith(
      "error: batch_size=6 must be a positive multiple of the 4 devices")
  assert "Traceback" not in r.stderr


def test_eval_on_empty_workdir_is_one_line_error(tmp_path):
  r = run_main(f"--config={ROOT}/configs/video_gru.py", f"--workdir={tmp_path / 'none'}",
               "--mode=eval", *TINY)
  assert r.returncode == 2 and "error: no checkpoints in" in r.stderr
  assert "Traceback" not in r.stderr


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_train_then_eval_from_another_directory(tmp_path):
  """Config files import configs.default even when run outside the repository root."""
  work = tmp_path / "run"
  r = run_main(f"--config={ROOT}/configs/video_gru.py", f"--workdir={work}", *TINY,
               "--config.num_train_steps=6", "--config.log_every_steps=3",
               "--config.checkpoint_every_steps=3", cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  assert "[train] step 6/6" in r.stdout and "steps/s" in r.stdout and "ETA" in r.stdout
  assert sorted(os.listdir(work / "checkpoints")) == ["3", "6"]
  records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
  assert [(x["step"], x["split"]) for x in records] == [(3, "train"), (6, "train"), (6, "test")]
  assert {"loss", "accuracy", "top5_accuracy", "learning_rate", "steps_per_sec"} <= set(records[0])
  assert list((work / "tensorboard" / "train").glob("events.out.tfevents.*"))

  r = run_main(f"--config={ROOT}/configs/video_gru.py", f"--workdir={work}", "--mode=eval",
               *TINY, cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  assert "[eval] step 6" in r.stdout
  result = json.loads((work / "eval.json").read_text())
  assert result["step"] == 6 and result["num_examples"] == 64
  assert result["accuracy"] == records[-1]["accuracy"]  # Same checkpoint, same examples.
