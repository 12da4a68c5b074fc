"""Workdirs you can trust: runs of older releases evaluate and resume; one training run per
workdir (WORKDIR/train.lock), and a lock left by a killed run is taken over."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from configs import video_gru
from dcrn_jax import UserError, lock, train, upgrades, workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
OLD = ROOT / "tests" / "old_workdirs"
sys.path.insert(0, str(OLD))
import make_fixtures  # pylint: disable=g-import-not-at-top,wrong-import-position


def tiny_config(**overrides):
  c = video_gru.get_config()
  for key, value in {**make_fixtures.TINY, **overrides}.items():
    section, _, name = key.rpartition(".")
    (c[section] if section else c)[name] = value
  return c


def _old(commit, tmp_path) -> str:
  workdir = tmp_path / commit
  shutil.copytree(OLD / commit, workdir)
  return str(workdir)


# The older fixture has more absent fields; the other (~15 s) runs with -m slow.
@pytest.mark.parametrize("commit", [c if c == "df19e1b" else pytest.param(c, marks=pytest.mark.slow)
                                    for c in make_fixtures.COMMITS])
def test_old_workdir_evaluates_to_its_metrics_and_resumes(commit, tmp_path, capsys):
  workdir = _old(commit, tmp_path)
  saved = json.loads(pathlib.Path(workdir, "config.json").read_text())
  assert upgrades.VERSION_KEY not in saved and "patch_size" not in saved["model"]
  old = json.loads((OLD / commit / "old_eval.json").read_text())["record"]
  config = tiny_config()
  results = train.evaluate(config, workdir)
  assert results["step"] == old["step"] == 6
  np.testing.assert_allclose([results["loss"], results["accuracy"]],
                             [old["loss"], old["accuracy"]], rtol=1e-5)
  # Tools that read only the workdir see the fields the old config.json lacks.
  assert workdir_lib.read_config(workdir).model.patch_size == 1

  config.num_train_steps = 9
  train.train_and_evaluate(config, workdir)
  assert "resuming from step 6" in capsys.readouterr().out
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "9"))
  rewritten = json.loads(pathlib.Path(workdir, "config.json").read_text())
  assert rewritten[upgrades.VERSION_KEY] == upgrades.version() == "0.2.0"
  assert not os.path.getsize(os.path.join(workdir, lock.LOCK_FILE))  # Released: emptied.


def test_an_absent_field_that_cannot_be_resolved_is_named(tmp_path, monkeypatch):
  workdir = _old("d63208e", tmp_path)
  workdir_lib.check_same_run(workdir, tiny_config())  # Resolved by the table: same run.
  with pytest.raises(UserError, match=r"another config \(model.patch_size: 1 -> 2\)"):
    workdir_lib.check_same_run(workdir, tiny_config(**{"model.patch_size": 2}))
  table = dict(upgrades.WHEN_ABSENT)
  del table["model.patch_size"]
  monkeypatch.setattr(upgrades, "WHEN_ABSENT", table)
  with pytest.raises(UserError, match=r"written by dcrn_jax before 0.2.0\) does not record "
                     r"model.patch_size.*'patch_size' under 'model'"):
    workdir_lib.check_same_run(workdir, tiny_config())


def test_pyproject_reads_the_version_config_json_records():
  text = (ROOT / "pyproject.toml").read_text()
  assert 'version = {attr = "dcrn_jax.__version__"}' in text
  assert 'dynamic = ["version"]' in text


_HOLDER = textwrap.dedent("""
    import sys, time
    from dcrn_jax import lock
    with lock.hold(sys.argv[1]):
      print("held", flush=True)
      time.sleep(120)
""")


def _start_holder(workdir):
  p = subprocess.Popen([sys.executable, "-c", _HOLDER, workdir], stdout=subprocess.PIPE,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
  assert p.stdout.readline().strip() == "held"
  return p


def test_a_second_writer_is_refused_and_a_killed_ones_lock_taken_over(tmp_path):
  workdir = str(tmp_path / "run")
  holder = _start_holder(workdir)
  try:
    with pytest.raises(UserError, match=rf"is being trained by pid {holder.pid} on host "
                       r".* since .*: wait for that run to end"):
      with lock.hold(workdir):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  notes = []
  with lock.hold(workdir, note=notes.append):
    held = json.loads(pathlib.Path(workdir, lock.LOCK_FILE).read_text())
    assert held["pid"] == os.getpid()
  assert len(notes) == 1 and f"from pid {holder.pid}" in notes[0], notes
  assert "no longer holds it" in notes[0]
  with lock.hold(workdir, note=notes.append):  # Released cleanly: nothing to take over.
    pass
  assert len(notes) == 1


def _main(workdir, *extra):
  overrides = [f"--config.{k}={v}" for k, v in make_fixtures.TINY.items()]
  return [sys.executable, "-m", "dcrn_jax.main", "--config=configs/video_gru.py",
          f"--workdir={workdir}", *overrides, *extra]


@pytest.mark.slow
def test_two_training_runs_on_one_workdir(tmp_path):
  """The second is refused at once with one line; the first's checkpoints are bitwise those
  of an undisturbed run."""
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  alone, shared = str(tmp_path / "alone"), str(tmp_path / "shared")
  subprocess.run(_main(alone), cwd=ROOT, env=env, check=True, capture_output=True)
  first = subprocess.Popen(_main(shared), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  while not os.path.exists(os.path.join(shared, lock.LOCK_FILE)) or not os.path.getsize(
      os.path.join(shared, lock.LOCK_FILE)):
    assert first.poll() is None, first.communicate()
    time.sleep(0.1)
  start = time.monotonic()
  second = subprocess.run(_main(shared), cwd=ROOT, env=env, capture_output=True, text=True)
  took = time.monotonic() - start
  out, err = first.communicate(timeout=300)
  assert first.returncode == 0, err
  assert second.returncode != 0 and took < 30, (second.returncode, took)
  lines = (second.stdout + second.stderr).strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {shared} is being trained by pid "
                                                 f"{first.pid}"), lines
  compared = 0
  for step in ("3", "6"):
    for folder, _, files in os.walk(os.path.join(alone, "checkpoints", step)):
      for name in files:
        a = pathlib.Path(folder, name)
        b = pathlib.Path(shared, os.path.relpath(a, alone))
        # These two hold the save's wall-clock time and the workdir's path.
        if name not in ("_CHECKPOINT_METADATA", "commit_success.txt"):
          assert a.read_bytes() == b.read_bytes(), a
          compared += 1
  assert compared > 10
  del out


def test_help_prints_the_usage_without_a_config():
  r = subprocess.run([sys.executable, "-m", "dcrn_jax.main", "--help"], cwd=ROOT,
                     capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
  out = r.stdout + r.stderr
  assert "error:" not in out and "--workdir" in out, out
  assert "Every config field is listed, with what it does, in configs/default.py" in out
