"""Orbax checkpoints under WORKDIR/checkpoints: save, resume the latest, restore for eval.

Each step's checkpoint has two items so eval can restore the model alone, and a third when
the run keeps a moving average of the weights:
  model: {'params', 'batch_stats'}          what eval needs
  train: {'opt_state', 'step'}              what resuming training needs besides the model
  ema:   {'params'}                         the averaged parameters (optim.ema_decay > 0)
Checkpoints written without EMA have no `ema` item and restore as before.

With best_metric, the checkpoints saved with eval metrics are also ranked by Orbax (best_fn,
best_mode; the BestN preservation policy beside LatestN): the best one is kept besides the
latest max_to_keep, and `step_to_restore('best')` finds it, also after a restart.
Saves are synchronous by default, so a kill never costs more than one checkpoint interval;
with async_save the write overlaps the next steps and `close` waits for the last one.

A step is written into a temporary folder and renamed only once complete, so a process killed
mid-write leaves the previous steps intact; the partial folder is ignored and removed at the
next start. Restoring checks the saved shapes against the model first, so an incompatible or
damaged checkpoint is a UserError naming the step and what differs.
"""

import contextlib
import logging as py_logging
import os
import shutil
import sys
import tempfile
import time

import jax
import orbax.checkpoint as ocp
from absl import logging

from dcrn_jax import write_failures
from dcrn_jax.errors import UserError

_ITEMS = ("model", "train", "ema")
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


_PARTIAL = ".orbax-checkpoint-tmp"  # Orbax writes step N into N.orbax-checkpoint-tmp[-...].


def partial_saves(workdir: str) -> list[str]:
  """The folders of saves that did not complete (a failed write, a kill mid-save)."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                if _PARTIAL in name)


def complete_steps(workdir: str) -> list[int]:
  """The steps whose checkpoint folder is complete on disk (renamed from its partial one)."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def discard_partial(workdir: str) -> list[str]:
  """Removes the folders of saves that did not complete; returns them. Complete checkpoints
  are untouched."""
  removed = partial_saves(workdir)
  for path in removed:
    shutil.rmtree(path, ignore_errors=True)
  return removed


class _OrbaxErrors(py_logging.Filter):
  """On absl's logger: keeps the text of the errors Orbax logs from its threads (an
  asynchronous save's failure is only logged there); passes them on only when verbose."""

  def __init__(self, verbose: bool):
    super().__init__()
    self.verbose, self.texts = verbose, []

  def filter(self, record):
    if record.levelno < py_logging.ERROR or "orbax" not in record.pathname:
      return True
    self.texts.append(record.getMessage() + (str(record.exc_info[1]) if record.exc_info else ""))
    return self.verbose


class _SaveNoise:
  """While a save runs (an asynchronous one: until it is checked), what Orbax's and
  TensorStore's threads print is held back: fd 2 goes to a temporary file and Orbax's error
  records are kept (for the reason of a failure). Afterwards the held output is shown if the
  save succeeded, or with --verbose; a failed write is then one line, not hundreds."""

  def __init__(self, verbose: bool):
    self.errors = _OrbaxErrors(verbose)
    self._held = self._saved = None

  def start(self):
    if self._held is not None:
      return
    sys.stderr.flush()
    self._held, self._saved = tempfile.TemporaryFile(), os.dup(2)
    os.dup2(self._held.fileno(), 2)
    py_logging.getLogger("absl").addFilter(self.errors)

  def stop(self, ok: bool):
    if self._held is None:
      return
    if not ok:
      # TensorStore's threads print their tracebacks a moment after the failure surfaces:
      # give them time to land in the held file rather than on the terminal.
      time.sleep(0.5)
    sys.stderr.flush()
    os.dup2(self._saved, 2)
    os.close(self._saved)
    py_logging.getLogger("absl").removeFilter(self.errors)
    held, self._held = self._held, None
    if ok or self.errors.verbose:
      held.seek(0)
      sys.stderr.write(held.read().decode(errors="replace"))
      sys.stderr.flush()
    held.close()


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
               async_save: bool = False, best_metric: str = "", best_mode: str = "max"):
    """best_metric: rank the checkpoints saved with metrics by this one (best_mode 'max' or
    'min') and keep the best besides the latest max_to_keep; "" = keep the latest only."""
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.best_metric = best_metric
    best = {}
    if best_metric:
      # A checkpoint saved with metrics that lack the name (an earlier run's) ranks last.
      worst = float("-inf") if best_mode == "max" else float("inf")
      best_fn = lambda metrics: float(metrics.get(best_metric, worst))
      best = dict(best_fn=best_fn, best_mode=best_mode)
      if not read_only:
        policies = ocp.checkpoint_managers
        best["preservation_policy"] = policies.AnyPreservationPolicy([
            policies.LatestN(n=max_to_keep),
            policies.BestN(get_metric_fn=best_fn, reverse=best_mode == "min", n=1,
                           keep_checkpoints_without_metrics=False)])
    # A reader (eval) neither creates the directory nor deletes old steps or partial writes.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only or best_metric else max_to_keep, create=not read_only,
        cleanup_tmp_directories=not read_only, enable_async_checkpointing=async_save, **best)
    self.workdir = os.path.abspath(workdir)
    self._async = async_save
    self._pending = None  # The step of an asynchronous save not yet checked.
    # Orbax would recreate a deleted workdir and go on saving into it: it is checked first.
    self._workdir_stat = os.stat(self.workdir) if os.path.isdir(self.workdir) else None
    # Library output while saving is shown with --verbose (absl at INFO) only.
    self._noise = _SaveNoise(verbose=logging.level_info())
    try:
      self._manager = ocp.CheckpointManager(
          self.directory, options=options,
          item_handlers={name: ocp.StandardCheckpointHandler() for name in _ITEMS})
    except OSError as e:
      if read_only:
        raise UserError(f"cannot use the checkpoint directory {self.directory} "
                        f"({e.strerror or _first_line(e)}); choose a writable --workdir") from e
      raise (self._failed(None, e) or e) from e

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def _failed(self, step: int | None, e: Exception | None = None):
    """The WriteFailed of the save of `step` that raised `e` (None: that did not complete);
    None when `e` is not a write error (a bug keeps its traceback)."""
    logged = "\n".join(self._noise.errors.texts)
    reason = write_failures.reason_of(e or UserError(""), logged)
    if reason is None and e is None:
      reason = "the save did not complete"
    what = (f"the checkpoint of step {step} (checkpoints/{step})" if step is not None
            else "the checkpoints folder (checkpoints/)")
    return None if reason is None else write_failures.WriteFailed(self.workdir, what, reason)

  def _check_write(self, action, step, *, still_saving: bool = False):
    """Runs a save or a wait with the library output held back (_SaveNoise); a write that
    fails (a full disk, a read-only or vanished workdir) becomes WriteFailed.
    still_saving: an asynchronous save goes on after `action`: keep holding until its check."""
    self._noise.start()
    ok = False
    try:
      result = action()
      ok = True
      return result
    except write_failures.WriteFailed:
      raise
    except Exception as e:  # pylint: disable=broad-except
      failed = self._failed(step, e)
      if failed is None:
        raise
      raise failed from e
    finally:
      if not (ok and still_saving):
        self._noise.stop(ok)

  def _check_complete(self, step: int):
    """A save that returned (or an asynchronous one that ended) without its step folder failed:
    Orbax's thread only logged why."""
    if step not in complete_steps(self.workdir):
      raise self._failed(step)

  def _check_workdir(self, step: int):
    """A workdir deleted (or replaced) while training took config.json, metrics.jsonl and the
    lock with it: saving into a new folder of that name would leave a run without them."""
    if self._workdir_stat is None:
      return
    try:
      same = os.path.samestat(os.stat(self.workdir), self._workdir_stat)
    except OSError:
      same = False
    if not same:
      raise write_failures.WriteFailed(
          self.workdir, f"the checkpoint of step {step} (checkpoints/{step})",
          "the workdir was deleted or replaced while training (its config.json, metrics.jsonl "
          "and lock went with it)")

  def release(self):
    """Stops holding back stderr (an asynchronous save in flight) after an error elsewhere."""
    self._noise.stop(ok=True)

  def best_step(self) -> int | None:
    """The step of the best checkpoint by best_metric among those kept, or None."""
    # Orbax ranks only the checkpoints saved with metrics (None when there is none).
    return self._manager.best_step() if self.best_metric else None

  def step_to_restore(self, which) -> int:
    """The step that `which` names: "latest" (or -1), "best", or a step number; a UserError
    saying what exists when there is no such checkpoint."""
    steps = self.all_steps()
    if not steps:
      raise UserError(f"no checkpoint in {self.directory}: train first "
                      "(--mode=train with the same --workdir), or point --workdir at a run")
    if which in ("latest", -1):
      return max(steps)
    if which == "best":
      if not self.best_metric:
        raise UserError("the best checkpoint is ranked by best_metric, which is not set: give "
                        "the one the run was trained with, e.g. --config.best_metric=accuracy")
      step = self.best_step()
      if step is None:
        raise UserError(
            f"no best checkpoint in {self.directory}: no checkpoint there was saved with eval "
            f"metrics (the run was trained without best_metric); available steps: {steps}, or "
            "use --config.eval_checkpoint_step=latest")
      return step
    if int(which) not in steps:
      raise UserError(f"no checkpoint for step {which} in {self.directory}; "
                      f"available steps: {steps}")
    return int(which)

  def save(self, state, *, force: bool = False, metrics: dict | None = None) -> bool:
    """Saves `state` at its step (in the background with async_save); returns whether it did.

    metrics: the eval metrics of this step, which rank it for best_metric (None: unranked).
    A previous save still in flight is finished first, so its errors surface here.
    """
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return False
    self._check_workdir(step)
    items = dict(
        model=ocp.args.StandardSave({"params": state.params, "batch_stats": state.batch_stats}),
        train=ocp.args.StandardSave({"opt_state": state.opt_state, "step": state.step}))
    if state.ema_params:
      items["ema"] = ocp.args.StandardSave({"params": state.ema_params})
    if metrics is not None:
      metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    self.wait()  # A previous asynchronous save's failure surfaces before this one starts.

    def save():
      saved = self._manager.save(step, force=force, args=ocp.args.Composite(**items),
                                 metrics=metrics)
      if saved and not self._async:
        self._check_complete(step)
      return saved

    saved = self._check_write(save, step, still_saving=self._async)
    if saved and self._async:
      self._pending = step  # Checked once it ends (the next save, wait or close).
    elif self._async:
      self._noise.stop(ok=True)
    return saved

  def has_ema(self, step: int) -> bool:
    """Whether the checkpoint of `step` holds averaged parameters."""
    try:
      with _stderr_held_back():
        return "ema" in self._manager.item_metadata(step).keys()
    except Exception:  # pylint: disable=broad-except
      return False  # A damaged checkpoint: the restore that follows names the problem.

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
    """The full TrainState at `step`, placed with the shardings carried by `abstract_state`.

    When the state keeps a moving average that the checkpoint lacks (EMA turned on when
    resuming), the average starts from the restored parameters.
    """
    s = abstract_state
    wanted = {"model": {"params": s.params, "batch_stats": s.batch_stats},
              "train": {"opt_state": s.opt_state, "step": s.step}}
    if s.ema_params and self.has_ema(step):
      wanted["ema"] = {"params": s.ema_params}
    restored = self._restore(step, wanted)
    ema = restored["ema"]["params"] if "ema" in wanted else {}
    if s.ema_params and "ema" not in wanted:
      ema = jax.tree.map(lambda x: x.copy(), restored.model["params"])
    return abstract_state.replace(
        params=restored.model["params"], batch_stats=restored.model["batch_stats"],
        opt_state=restored.train["opt_state"], step=restored.train["step"], ema_params=ema)

  def restore_variables(self, step, abstract_variables, *, ema: bool = False) -> tuple[int, dict]:
    """(step, {'params', 'batch_stats'}) without reading the optimizer state.

    step: as `step_to_restore` takes it ("latest", -1, "best" or a step; None: the latest).
    ema: the averaged parameters in place of the trained ones.
    """
    step = self.step_to_restore("latest" if step is None else step)
    if not ema:
      return step, dict(self._restore(step, {"model": abstract_variables}).model)
    if not self.has_ema(step):
      raise UserError(
          f"the checkpoint of step {step} in {self.directory} has no averaged weights (its run "
          "had optim.ema_decay=0): evaluate its trained weights with "
          "--config.optim.ema_eval=False, or train with optim.ema_decay > 0")
    restored = self._restore(step, {"model": abstract_variables,
                                    "ema": {"params": abstract_variables["params"]}})
    return step, dict(restored.model, params=restored["ema"]["params"])

  def discard_partial(self) -> list[str]:  # pylint: disable=missing-function-docstring
    """Removes the temporary folders of saves that did not complete (after an abort or a failed
    write), so that nothing half-written is left behind; complete checkpoints are untouched."""
    return discard_partial(self.workdir)

  def wait(self):
    """Waits for an asynchronous save; its failure is a WriteFailed."""
    pending, self._pending = self._pending, None

    def wait():
      self._manager.wait_until_finished()
      if pending is not None:
        self._check_complete(pending)

    self._check_write(wait, pending)

  def close(self):
    self.wait()
    self._manager.close()
