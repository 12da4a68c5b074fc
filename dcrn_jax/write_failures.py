"""A write into the workdir that fails is one line that loses nothing.

A full disk, a read-only, vanished or uncreatable workdir, a missing permission: whichever
file could not be written (a checkpoint, metrics.jsonl, eval.json, ...), the command stops
with one `error:` line naming the workdir, what could not be written and why, the free space
on that filesystem, and (added by train.py, which knows it) the step the same command resumes
from. The writers wrap their OSErrors with `into`; Orbax's errors, which arrive as ValueErrors
of TensorStore naming an OS error code, are read by `reason_of`.
"""

import contextlib
import errno
import os
import re
import shutil

from dcrn_jax.errors import UserError

# The errors that mean "this filesystem or folder cannot take the write" (not a bug of ours).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EIO, errno.EFBIG)
# TensorStore writes "[os_error_code='28']" (or 28 unquoted) into its messages.
_OS_CODE = re.compile(r"os_error_code='?(\d+)")


class WriteFailed(UserError):
  """WORKDIR/WHAT could not be written (reason); `then` says what the user's work is now."""

  def __init__(self, workdir: str, what: str | None, reason: str, then: str = ""):
    """what: the file or folder in WORKDIR; None: the workdir itself."""
    self.workdir, self.what, self.reason, self.then = workdir, what, reason, then
    super().__init__(self._line())

  def _line(self) -> str:
    target = (f"create the workdir {self.workdir}" if self.what is None
              else f"write {self.what} in the workdir {self.workdir}")
    line = f"cannot {target}: {self.reason} ({free_space(self.workdir)})"
    return f"{line}; {self.then}" if self.then else line

  def with_then(self, then: str) -> "WriteFailed":
    """The same failure with what happens next said (where the same command resumes)."""
    return WriteFailed(self.workdir, self.what, self.reason, then)


def _existing(path: str) -> str:
  path = os.path.abspath(path)
  while not os.path.isdir(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def free_space(path: str) -> str:
  """'12.3 MiB free on its filesystem' for PATH (or its nearest existing parent)."""
  try:
    free = shutil.disk_usage(_existing(path)).free
  except OSError:
    return "free space unknown"
  size, unit = float(free), "B"
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if size < 1024 or unit == "TiB":
      break
    size /= 1024
  shown = f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
  return f"{shown} free on its filesystem"


def _chain(e: BaseException):
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def reason_of(e: BaseException, logged: str = "") -> str | None:
  """The OS error behind a failed write ('No space left on device'), from an OSError or the
  text of a TensorStore error (or of what Orbax logged); None when it is not a write error."""
  texts = [logged]
  for link in _chain(e):
    if isinstance(link, OSError) and link.errno in _WRITE_ERRNOS:
      return os.strerror(link.errno)
    texts.append(str(link))
  text = "\n".join(texts)
  code = _OS_CODE.search(text)
  if code:
    return os.strerror(int(code.group(1)))
  for number in _WRITE_ERRNOS:
    if os.strerror(number) in text:
      return os.strerror(number)
  return None


@contextlib.contextmanager
def into(workdir: str, what: str):
  """Inside the block an OSError of a write (no space, read-only, ...) becomes WriteFailed."""
  try:
    yield
  except OSError as e:
    reason = reason_of(e)
    if reason is None:
      raise
    raise WriteFailed(workdir, what, reason) from e


def create_workdir(workdir: str) -> None:
  """Creates WORKDIR (and its parents); WriteFailed naming why not (a file in the way, a
  read-only parent, ...)."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    reason = reason_of(e)
    if reason is None:
      raise
    blocker = next((p for p in _parents(workdir) if os.path.exists(p) and not os.path.isdir(p)),
                   None)
    if blocker:
      reason = f"{blocker} is a file, not a folder"
    raise WriteFailed(workdir, None, reason) from e


def _parents(path: str):
  path = os.path.abspath(path)
  while os.path.dirname(path) != path:
    yield path
    path = os.path.dirname(path)


def resume_note(steps) -> str:
  """What the same training command does next, given the complete checkpoints' steps."""
  if not steps:
    return ("no checkpoint was complete yet: the same command starts again from step 0 once "
            "that is fixed")
  return (f"the checkpoints up to step {max(steps)} are intact: the same command resumes from "
          f"step {max(steps)} once that is fixed")
