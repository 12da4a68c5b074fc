"""Every `python -m dcrn_jax.*` command: --help and --helpfull print the usage without a config
or workdir and exit 0; a command prints only our lines (library output, which always goes to
stderr, stays hidden: a successful command's stderr is empty, a failed one's is its one
`error:` line)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "old_workdirs"))
import make_fixtures  # pylint: disable=g-import-not-at-top,wrong-import-position

# (module, whether it takes --config; else it reads a trained workdir's config.json)
COMMANDS = [("dcrn_jax.main", True), ("dcrn_jax.prepare", True), ("dcrn_jax.report", False),
            ("dcrn_jax.predict", False), ("dcrn_jax.export", False),
            ("dcrn_jax.data.to_files", False)]
# These import JAX for their flags (~2 s of CPU each): their --helpfull runs with -m slow.
_HEAVY = ("dcrn_jax.report", "dcrn_jax.predict", "dcrn_jax.export")
# Lines of C++ logging (glog/absl: I0000 00:00..., W1205 ...), TensorFlow's and absl's notes.
_FOREIGN = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cpu_feature_guard|Traceback|"
                      r"Warning|WARNING")


def _run(*args, timeout=300):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # As a new user's shell has it.
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("module,reads_config,flag", [
    pytest.param(m, c, f, marks=[pytest.mark.slow] if f == "--helpfull" and m in _HEAVY else [])
    for m, c in COMMANDS for f in ("--help", "--helpfull")])
def test_help_prints_the_usage_and_exits_0(module, reads_config, flag):
  r = _run(module, flag)
  assert r.returncode == 0 and not r.stderr, (r.returncode, r.stderr)
  assert r.stdout.startswith(f"python -m {module.replace('.__main__', '')} "), r.stdout[:200]
  assert "--[no]verbose" in r.stdout and "error:" not in r.stdout
  if flag == "--helpfull":  # Every library's flags too, e.g. absl's own.
    assert "--flagfile" in r.stdout
  fields = r.stdout.strip().splitlines()[-1]
  assert fields.startswith("Config fields: ") and "configs/default.py" in fields, fields
  assert ("--config.FIELD=VALUE" in fields) == reads_config
  assert ("WORKDIR/config.json" in fields) == (not reads_config)


def test_an_offline_tfds_config_prints_only_its_one_line(tmp_path):
  """TensorFlow is imported (a TFDS dataset): none of its start-up notes show."""
  r = _run("dcrn_jax.main", "--config=configs/cifar10_cnn.py", f"--workdir={tmp_path / 'run'}",
           f"--config.data.data_dir={tmp_path / 'tfds'}")
  assert r.returncode == 2 and not r.stdout, r.stdout
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: The TFDS dataset 'cifar10' is not "
                                                 "prepared in"), r.stderr


def _ours(r, stderr_lines=()):
  """stdout; every line of both streams is ours: stderr holds only lines starting with one of
  stderr_lines (the commands whose stdout is data put their summaries there)."""
  assert r.returncode == 0, r.stderr[-3000:]
  foreign = [line for line in (r.stdout + r.stderr).splitlines() if _FOREIGN.search(line)]
  foreign += [line for line in r.stderr.splitlines() if not line.startswith(tuple(stderr_lines))]
  assert not foreign, foreign
  return r.stdout + r.stderr


@pytest.mark.slow
def test_every_command_prints_only_our_lines(tmp_path):
  run = tmp_path / "run"
  flags = [f"--config.{k}={v}".replace(" ", "") for k, v in make_fixtures.TINY.items()]
  main = ["dcrn_jax.main", "--config=configs/video_gru.py", f"--workdir={run}", *flags]
  assert "done: 6 steps" in _ours(_run(*main))
  assert "[eval] step 6" in _ours(_run(*main, "--mode=eval"))
  assert "report of" in _ours(_run("dcrn_jax.report", f"--workdir={run}", "--num_examples=2",
                                   "--profile_clips=4", "--ig_steps=2"))
  assert "exported step 6" in _ours(_run("dcrn_jax.export", f"--workdir={run}",
                                         f"--out={tmp_path / 'exported'}"),
                                    ["exported step 6", "wrote "])
  sys.path.insert(0, str(ROOT / "tests"))
  import video_clips  # pylint: disable=g-import-not-at-top
  clip = tmp_path / "clip.mp4"
  video_clips.write_clip(clip, 6, height=16, width=16)
  assert "predicted 1 of 1 file(s)" in _ours(_run("dcrn_jax.predict", f"--workdir={run}",
                                                  str(clip)), ["cnn_gru of ", "predicted 1 of"])
