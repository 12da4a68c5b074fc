"""Starting JAX's distributed runtime when the launch environment asks for it.

One JAX program spans every process: after `jax.distributed.initialize`, `jax.devices()` lists the
devices of all hosts and the mesh in parallel.py covers them all. A single-process run never
calls it.
"""

import os
import signal
from typing import Sequence

import jax
from jax.experimental import multihost_utils

from dcrn_jax.errors import UserError

MODES = ("auto", "on", "off")


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise UserError(f"environment variable {name}={value!r} must be an integer") from None


def cluster_detected() -> str | None:
  """The name of a multi-process cluster environment JAX can configure itself from, if any."""
  if (_env_int("SLURM_NTASKS") or 1) > 1:
    return "SLURM"
  if len([h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
    return "Cloud TPU pod"
  return None


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: Sequence[int] | None = None) -> bool:
  """Calls jax.distributed.initialize when asked; returns whether it did.

  Explicit settings (arguments, else JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID,
  JAX_LOCAL_DEVICE_IDS) win. Without them, mode 'auto' lets JAX configure itself on a detected
  SLURM job or Cloud TPU pod of several processes, 'on' always does (other clusters JAX knows),
  and 'off' never does.
  """
  if mode not in MODES:
    raise UserError(f"--distributed={mode!r}: choose one of {list(MODES)}")
  if mode == "off":
    return False
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
  process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
  if coordinator_address:
    if num_processes is None or process_id is None:
      raise UserError("a coordinator address needs the number of processes and this process's "
                      "id too: --num_processes=N --process_id=I (or JAX_NUM_PROCESSES, "
                      "JAX_PROCESS_ID)")
    if not 0 <= process_id < num_processes:
      raise UserError(f"process id {process_id} must be in [0, {num_processes})")
    if num_processes == 1:
      return False
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               local_device_ids=local_device_ids)
    return True
  if mode == "on" or cluster_detected():
    jax.distributed.initialize(local_device_ids=local_device_ids)
    return True
  return False


class StopWatch:
  """Tells every process, at the same step, that the run should stop and save: on SIGTERM (a
  scheduler preempting the job) or on a first Ctrl-C (SIGINT). A second Ctrl-C raises
  KeyboardInterrupt at once (abort without writing).

  With the distributed runtime, JAX's coordination service receives SIGTERM on any process and
  `reached_preemption_sync_point` turns True on all of them at one agreed step; a Ctrl-C is
  turned into that same SIGTERM. A single process catches both signals itself and stops after
  the step in flight. `should_stop(step)` returns None, "preempted" or "interrupted".
  """

  def __init__(self):
    self._multiprocess = jax.process_count() > 1
    self._reason = None
    self._previous = {}
    wanted = {signal.SIGINT: self._on_sigint}
    if not self._multiprocess:
      wanted[signal.SIGTERM] = self._on_sigterm
    for signum, handler in wanted.items():
      try:
        self._previous[signum] = signal.signal(signum, handler)
      except ValueError:  # Not the main thread (e.g. a notebook worker): no watch.
        pass

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._reason = self._reason or "preempted"

  def _on_sigint(self, signum, frame):
    del signum, frame
    if self._reason == "interrupted":  # The second Ctrl-C: stop now, write nothing more.
      raise KeyboardInterrupt
    self._reason = "interrupted"
    if self._multiprocess:  # Every process then stops at one agreed step, as for preemption.
      os.kill(os.getpid(), signal.SIGTERM)

  def should_stop(self, step: int) -> str | None:
    if self._multiprocess:
      if multihost_utils.reached_preemption_sync_point(step):
        return self._reason or "preempted"
      return None
    return self._reason

  def close(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
