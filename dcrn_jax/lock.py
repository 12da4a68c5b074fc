"""One training run per workdir: WORKDIR/train.lock, held with an OS lock while training.

The file says who holds it (one JSON line: host, pid, start time); the OS lock (flock) says
whether that holder is still alive. The kernel drops an flock when its process ends in any way
(exit, SIGKILL, a machine restart), so a file with a holder but no lock is a run that was
killed: the next training run takes it over and says so. A run that ends normally empties the
file. The file is never deleted: unlinking a locked file lets a third process lock a new file
of the same name while the second still holds the old one.

Only training takes the lock (process 0 of a multi-process run: the others write nothing the
lock guards). Eval, report, predict and export only read a workdir, or write their outputs
whole and renamed (workdir.write_json), so they run beside a training run.
"""

import contextlib
import datetime
import fcntl
import functools
import json
import os
import socket

from dcrn_jax import write_failures
from dcrn_jax.errors import UserError

LOCK_FILE = "train.lock"


def _holder_text(holder: dict) -> str:
  return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
          f"since {holder.get('started', '?')}")


def _read_holder(fd: int) -> dict | None:
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 4096).decode("utf-8", "replace").strip()
  if not text:
    return None
  try:
    holder = json.loads(text)
  except json.JSONDecodeError:
    return {"host": "?", "pid": "?", "started": "?"}
  return holder if isinstance(holder, dict) else {}


def _write_holder(fd: int, holder: dict | None) -> None:
  os.ftruncate(fd, 0)
  if holder is not None:
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
  os.fsync(fd)


@contextlib.contextmanager
def hold(workdir: str, *, note=functools.partial(print, flush=True)):
  """Holds WORKDIR/train.lock for the block (WORKDIR is created first).

  Raises UserError at once if another live process holds it; takes over (calling note with a
  line) a lock file whose holder is gone.
  """
  path = os.path.join(workdir, LOCK_FILE)
  write_failures.create_workdir(workdir)
  with write_failures.into(workdir, f"the lock file {LOCK_FILE}"):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd) or {}
      raise UserError(
          f"{workdir} is being trained by {_holder_text(holder)} (it holds {path}): wait for "
          "that run to end, stop it, or train in another --workdir (eval, report, predict and "
          "export may run beside it)") from None
    stale = _read_holder(fd)
    if stale is not None:
      note(f"note: took over {path} from {_holder_text(stale)}, which no longer holds it "
           "(killed, or its machine restarted)")
    _write_holder(fd, {"host": socket.gethostname(), "pid": os.getpid(),
                       "started": datetime.datetime.now(datetime.timezone.utc)
                       .isoformat(timespec="seconds")})
    try:
      yield path
    finally:
      with contextlib.suppress(OSError):
        _write_holder(fd, None)
  finally:
    os.close(fd)  # Also drops the flock.
