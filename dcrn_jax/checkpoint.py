"""Orbax checkpoints under WORKDIR/checkpoints: save, resume the latest, restore for eval.

Each step's checkpoint has two items so eval can restore the model alone:
  model: {'params', 'batch_stats'}          what eval needs
  train: {'opt_state', 'step'}              what resuming training needs besides the model
Saves are asynchronous (the write overlaps the next steps); `close` waits for the last one.
"""

import os

import jax
import orbax.checkpoint as ocp

from dcrn_jax.errors import UserError


class Checkpointer:

  def __init__(self, workdir: str, *, max_to_keep: int = 3, read_only: bool = False,
               async_save: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    # A reader (eval) neither creates the directory nor deletes old steps.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, create=not read_only,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("model", "train"))

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, state, *, force: bool = False) -> bool:
    """Starts an asynchronous save of `state` at its step; returns whether one was started."""
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return False
    return self._manager.save(step, force=force, args=ocp.args.Composite(
        model=ocp.args.StandardSave({"params": state.params, "batch_stats": state.batch_stats}),
        train=ocp.args.StandardSave({"opt_state": state.opt_state, "step": state.step})))

  def restore_train_state(self, step: int, abstract_state):
    """The full TrainState at `step`, placed with the shardings carried by `abstract_state`."""
    s = abstract_state
    restored = self._manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore({"params": s.params, "batch_stats": s.batch_stats}),
        train=ocp.args.StandardRestore({"opt_state": s.opt_state, "step": s.step})))
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
                      f"available steps: {sorted(steps)}")
    restored = self._manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore(abstract_variables)))
    return step, dict(restored.model)

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
