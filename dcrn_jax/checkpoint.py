"""Orbax checkpoints under WORKDIR/checkpoints: save, resume the latest, restore for eval.

Each step's checkpoint has two items so eval can restore the model alone:
  model: {'params', 'batch_stats'}          what eval needs
  train: {'opt_state', 'step'}              what resuming training needs besides the model
Saves are synchronous by default, so a kill never costs more than one checkpoint interval;
with async_save the write overlaps the next steps and `close` waits for the last one.

A step is written into a temporary folder and renamed only once complete, so a process killed
mid-write leaves the previous steps intact; the partial folder is ignored and removed at the
next start. Restoring checks the saved shapes against the model first, so an incompatible or
damaged checkpoint is a UserError naming the step and what differs.
"""

import contextlib
import errno
import os
import shutil
import sys
import tempfile
import time

import jax
import orbax.checkpoint as ocp

from dcrn_jax.errors import UserError

_ITEMS = ("model", "train")
_SHOWN = 4  # Differences listed in a mismatch message.


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def _path_name(path) -> str:
  """'opt_state/1/0/mu/conv/kernel': the same for a namedtuple field and the dict key Orbax
  stores it under."""
  parts = []
  for entry in path:
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
    else:
      parts.append(str(entry))
  return "/".join(parts)


def _shapes(tree) -> dict[str, tuple]:
  return {_path_name(path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def describe_mismatch(saved_tree, wanted_tree) -> list[str]:
  """Human-readable differences between saved array metadata and the arrays a model needs."""
  saved, wanted = _shapes(saved_tree), _shapes(wanted_tree)
  problems = [f"{k}: saved {saved[k]}, model needs {wanted[k]}"
              for k in sorted(saved.keys() & wanted.keys()) if saved[k] != wanted[k]]
  missing = sorted(wanted.keys() - saved.keys())
  extra = sorted(saved.keys() - wanted.keys())
  if missing:
    problems.append(f"{len(missing)} array(s) the model needs are not saved, e.g. "
                    + ", ".join(missing[:_SHOWN]))
  if extra:
    problems.append(f"{len(extra)} saved array(s) the model does not have, e.g. "
                    + ", ".join(extra[:_SHOWN]))
  return problems


@contextlib.contextmanager
def _stderr_held_back():
  """Holds back what C++ threads print to stderr (fd 2) inside the block; shows it afterwards
  only if the block succeeded. Reading a damaged checkpoint makes TensorStore's threads print
  tracebacks of an event loop Orbax already closed: noise that would bury the real message."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    ok = False
    try:
      yield
      ok = True
    finally:
      if not ok:
        # TensorStore's threads print their tracebacks a moment after the failure surfaces
        # here: give them time to land in the held file rather than on the terminal.
        time.sleep(0.5)
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if ok:
        held.seek(0)
        sys.stderr.write(held.read().decode(errors="replace"))


class Checkpointer:

  def __init__(self, workdir: str, *, max_to_keep: int = 3, read_only: bool = False,
               async_save: bool = False):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    # A reader (eval) neither creates the directory nor deletes old steps or partial writes.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, create=not read_only,
        cleanup_tmp_directories=not read_only, enable_async_checkpointing=async_save)
    try:
      self._manager = ocp.CheckpointManager(
          self.directory, options=options,
          item_handlers={name: ocp.StandardCheckpointHandler() for name in _ITEMS})
    except OSError as e:
      raise UserError(f"cannot use the checkpoint directory {self.directory} "
                      f"({e.strerror or _first_line(e)}); choose a writable --workdir") from e

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def _check_write(self, action, step):
    """Runs a save or wait; a full or failing disk becomes a UserError with what is intact."""
    try:
      return action()
    except OSError as e:
      intact = [s for s in self.all_steps() if s != step]
      reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or _first_line(e))
      raise UserError(
          f"writing the checkpoint of step {step} to {self.directory} failed: {reason}. "
          f"Intact checkpoints: {intact or 'none'}; free space (or fix the path) and run the "
          "same command to resume") from e

  def save(self, state, *, force: bool = False) -> bool:
    """Saves `state` at its step (in the background with async_save); returns whether it did.

    A previous save still in flight is finished first, so its errors surface here.
    """
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return False
    args = ocp.args.Composite(
        model=ocp.args.StandardSave({"params": state.params, "batch_stats": state.batch_stats}),
        train=ocp.args.StandardSave({"opt_state": state.opt_state, "step": state.step}))
    return self._check_write(lambda: self._manager.save(step, force=force, args=args), step)

  def _restore(self, step: int, wanted: dict):
    """Restores the items in `wanted` (name -> abstract tree) after checking their shapes."""
    step_dir = os.path.join(self.directory, str(step))

    def damaged(e):
      # The manager stays open: TensorStore may still complete the failed reads on its loop.
      return UserError(
          f"the checkpoint of step {step} in {self.directory} is damaged ({_first_line(e)}); "
          f"delete the folder {step_dir} to fall back to an earlier step, or use a new --workdir")

    try:
      with _stderr_held_back():
        metadata = self._manager.item_metadata(step)
      saved = {name: metadata[name] if name in metadata.keys() else None for name in wanted}
    except Exception as e:  # pylint: disable=broad-except
      raise damaged(e) from e
    problems = []
    for name, tree in wanted.items():
      if saved[name] is None:
        problems.append(f"item '{name}' is missing")
      else:
        problems += describe_mismatch(saved[name], tree)
    if problems:
      self._manager.close()
      more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
      raise UserError(
          f"the checkpoint of step {step} in {self.directory} does not fit this model/config: "
          + "; ".join(problems[:_SHOWN]) + more
          + ". Use the config it was trained with, or a new --workdir")
    try:
      with _stderr_held_back():
        return self._manager.restore(step, args=ocp.args.Composite(
            **{name: ocp.args.StandardRestore(tree) for name, tree in wanted.items()}))
    except Exception as e:  # pylint: disable=broad-except
      raise damaged(e) from e

  def restore_train_state(self, step: int, abstract_state):
    """The full TrainState at `step`, placed with the shardings carried by `abstract_state`."""
    s = abstract_state
    restored = self._restore(step, {
        "model": {"params": s.params, "batch_stats": s.batch_stats},
        "train": {"opt_state": s.opt_state, "step": s.step}})
    return abstract_state.replace(
        params=restored.model["params"], batch_stats=restored.model["batch_stats"],
        opt_state=restored.train["opt_state"], step=restored.train["step"])

  def restore_variables(self, step: int | None, abstract_variables) -> tuple[int, dict]:
    """(step, {'params', 'batch_stats'}) without reading the optimizer state.

    step=None takes the latest checkpoint.
    """
    steps = self.all_steps()
    if not steps:
      raise UserError(f"no checkpoint in {self.directory}: train first "
                      "(--mode=train with the same --workdir), or point --workdir at a run")
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise UserError(f"no checkpoint for step {step} in {self.directory}; "
                      f"available steps: {steps}")
    return step, dict(self._restore(step, {"model": abstract_variables}).model)

  def discard_partial(self):
    """Removes the temporary folders of saves that did not complete (after an abort), so that
    nothing half-written is left behind; complete checkpoints are untouched."""
    if not os.path.isdir(self.directory):
      return
    for name in os.listdir(self.directory):
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def wait(self):
    self._check_write(self._manager.wait_until_finished, self.latest_step())

  def close(self):
    self.wait()
    self._manager.close()
