"""A write into the workdir that fails (a full disk, a read-only or uncreatable workdir) stops the
command with one `error:` line that names the workdir, what could not be written, the free space
and the step the same command resumes from; nothing half-written is left, and the same command
resumes once the problem is fixed.

The full disk is a real one: a small tmpfs mounted for the test (this needs root, as in CI's
container). Where mounting is refused the full-disk test simulates ENOSPC inside Orbax's save
instead (it says so in its skip-free path: `simulated` below), and the read-only test is
skipped.
"""

import contextlib
import errno
import os
import pathlib
import shutil
import subprocess
import sys
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import video_gru
from dcrn_jax import checkpoint, train, write_failures

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "old_workdirs"))
import make_fixtures  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = {**make_fixtures.TINY, "eval_every_steps": 0}


def tiny_config(**overrides):
  c = video_gru.get_config()
  for key, value in {**TINY, **overrides}.items():
    section, _, name = key.rpartition(".")
    (c[section] if section else c)[name] = value
  return c


def _main(workdir, **overrides):
  flags = [f"--config.{k}={v}".replace(" ", "") for k, v in {**TINY, **overrides}.items()]
  return [sys.executable, "-m", "dcrn_jax.main", "--config=configs/video_gru.py",
          f"--workdir={workdir}", *flags]


@contextlib.contextmanager
def mounted(folder: pathlib.Path, size: str):
  """A tmpfs of `size` at folder (yields True), or nothing mounted (yields False)."""
  folder.mkdir(parents=True, exist_ok=True)
  r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                     capture_output=True, check=False)
  try:
    yield r.returncode == 0
  finally:
    if r.returncode == 0:
      subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: pathlib.Path, leave_kib: int) -> pathlib.Path:
  """Fills folder's filesystem up to `leave_kib` KiB free; returns the filler file."""
  filler = folder / "filler"
  free_kib = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize // 1024
  with open(filler, "wb") as f:
    f.write(b"\0" * (free_kib - leave_kib) * 1024)
  return filler


def _error_lines(r):
  return [x for x in (r.stdout + r.stderr).splitlines() if not x.startswith(
      ("note:", "model ", "first ", "[train]", "[test]"))]


def test_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path, capsys, monkeypatch):
  disk = tmp_path / "disk"
  with mounted(disk, "6m") as real:
    workdir = disk / "run"
    train.train_and_evaluate(tiny_config(num_train_steps=3), str(workdir))
    if real:
      # Room for the small files (config.json, metrics), not for the checkpoint of step 6.
      filler = fill(disk, leave_kib=48)
      env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
      r = subprocess.run(_main(workdir), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
      assert r.returncode == 2, r.stderr[-3000:]
      lines = _error_lines(r)
      assert len(lines) == 1, lines
      line = lines[0]
      filler.unlink()
    else:  # Simulated: Orbax's save fails as TensorStore reports a full disk.
      def full(*args, **kwargs):
        raise ValueError("RESOURCE_EXHAUSTED: Failed writing: [os_error_code='28']")
      monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", full)
      with pytest.raises(write_failures.WriteFailed) as e:
        train.train_and_evaluate(tiny_config(), str(workdir))
      line = f"error: {e.value}"
      monkeypatch.undo()
    assert line.startswith(f"error: cannot write the checkpoint of step 6 (checkpoints/6) in the "
                           f"workdir {workdir}: No space left on device ("), line
    assert "free on its filesystem); the checkpoints up to step 3 are intact: the same command " \
           "resumes from step 3 once that is fixed" in line, line
    assert sorted(os.listdir(workdir / "checkpoints")) == ["3"]  # No partial folder left.
    capsys.readouterr()
    train.train_and_evaluate(tiny_config(), str(workdir))
    assert "resuming from step 3" in capsys.readouterr().out
    assert checkpoint.complete_steps(str(workdir)) == [3, 6]


def test_a_read_only_workdir_is_one_line(tmp_path):
  disk = tmp_path / "disk"
  with mounted(disk, "2m") as real:
    if not real:
      pytest.skip("a read-only filesystem needs a tmpfs mount (root)")
    (disk / "run").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with pytest.raises(write_failures.WriteFailed,
                       match=rf"^cannot write the lock file train.lock in the workdir "
                             rf"{disk / 'run'}: Read-only file system \(.* free on its "
                             r"filesystem\); no checkpoint was complete yet"):
      train.train_and_evaluate(tiny_config(), str(disk / "run"))


def test_an_uncreatable_workdir_is_one_line(tmp_path):
  (tmp_path / "a_file").write_text("in the way")
  with pytest.raises(write_failures.WriteFailed,
                     match=rf"^cannot create the workdir {tmp_path}/a_file/run: {tmp_path}/a_file "
                           r"is a file, not a folder \(.* free on its filesystem\); choose "
                           r"another --workdir"):
    train.train_and_evaluate(tiny_config(), str(tmp_path / "a_file" / "run"))


def test_a_workdir_deleted_while_training_is_not_recreated(tmp_path):
  """Orbax would create the folder again and save into it, without config.json, metrics.jsonl
  and the lock: the save stops instead."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  ckpt = checkpoint.Checkpointer(str(workdir))
  shutil.rmtree(workdir)
  with pytest.raises(write_failures.WriteFailed,
                     match=r"^cannot write the checkpoint of step 5 \(checkpoints/5\) in the "
                           r"workdir .*/run: the workdir was deleted or replaced while training"):
    ckpt.save(types.SimpleNamespace(step=np.int32(5)))
  assert not workdir.exists()


def test_reasons_are_read_from_tensorstore_and_os_errors():
  assert write_failures.reason_of(OSError(errno.EROFS, "x")) == os.strerror(errno.EROFS)
  assert write_failures.reason_of(ValueError(
      "RESOURCE_EXHAUSTED: Failed to write 444 bytes: No space left on device "
      "[os_error_code='28']")) == os.strerror(errno.ENOSPC)
  assert write_failures.reason_of(ValueError("shapes differ")) is None  # A bug: not ours.
  with pytest.raises(KeyError):  # Errors that are not write errors keep their type.
    with write_failures.into("/w", "x"):
      raise KeyError("k")


@pytest.mark.slow
@pytest.mark.parametrize("async_save", [False, True])
def test_after_a_full_disk_the_resumed_run_equals_an_uninterrupted_one(tmp_path, async_save):
  """One command throughout: its checkpoint of step 3 fits on the disk, that of step 6 does not
  (one line); space freed, the same command again: its checkpoint 6 is bitwise the
  uninterrupted run's."""
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  flags = {"async_checkpointing": async_save}
  alone = tmp_path / "alone"
  subprocess.run(_main(alone, **flags), cwd=ROOT, env=env, check=True, capture_output=True)
  disk = tmp_path / "disk"
  with mounted(disk, "6m") as real:
    if not real:
      pytest.skip("a full filesystem needs a tmpfs mount (root)")
    workdir = disk / "run"
    # The same command throughout (the schedule depends on num_train_steps): room for the run's
    # small files (~60 KiB) and the checkpoint of step 3 (~180 KiB), not for that of step 6.
    filler = fill(disk, leave_kib=300)
    r = subprocess.run(_main(workdir, **flags), cwd=ROOT, env=env, capture_output=True,
                       text=True, check=False)
    assert r.returncode == 2 and len(_error_lines(r)) == 1, r.stdout + r.stderr
    assert "the same command resumes from step 3" in r.stderr
    filler.unlink()
    r = subprocess.run(_main(workdir, **flags), cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True)
    assert "resuming from step 3" in r.stdout and not r.stderr.strip(), r.stderr
    compared = 0
    for item in ("model", "train"):  # The arrays (files name their chunks by write order).
      with ocp.StandardCheckpointer() as reader:
        a = reader.restore(alone / "checkpoints" / "6" / item)
        b = reader.restore(workdir / "checkpoints" / "6" / item)
      assert jax.tree.structure(a) == jax.tree.structure(b)
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        compared += 1
    assert compared > 10
