"""Durations in steps or in epochs, resolved to steps once, before training.

A run's length is `num_train_steps` or `num_epochs` (exactly one > 0), and each periodic action
(log, eval, checkpoint) is `<action>_every_steps` or `<action>_every_epochs` (not both). A step
is one optimizer update, which takes batch_size x optim.accumulate_steps examples, so

    steps per epoch = examples per epoch / (batch_size x accumulate_steps)     (may be fractional)
    steps           = max(1, round(epochs x steps per epoch))

`resolve` returns a config whose *_steps fields hold the result; nothing after it reads epochs.
"""

import math

from dcrn_jax.errors import UserError

PERIODIC = ("log", "eval", "checkpoint")


def validate(config) -> None:
  """Checks the duration fields by themselves (no dataset needed); raises UserError."""
  steps, epochs = config.num_train_steps, config.num_epochs
  if steps < 0:
    raise UserError(f"num_train_steps={steps} must be positive (or 0 when num_epochs is set)")
  if not math.isfinite(epochs) or epochs < 0:
    raise UserError(f"num_epochs={epochs} must be positive (or 0 when num_train_steps is set)")
  if steps > 0 and epochs > 0:
    raise UserError(f"num_train_steps={steps} and num_epochs={epochs} are both set: give the "
                    "length of the run one way, and set the other to 0 (e.g. "
                    f"--config.num_train_steps=0 --config.num_epochs={epochs})")
  if steps == 0 and epochs == 0:
    raise UserError("neither num_train_steps nor num_epochs is set (both are 0): give one of "
                    "them, e.g. --config.num_train_steps=1000 or --config.num_epochs=10")
  for action in PERIODIC:
    in_steps, in_epochs = config[f"{action}_every_steps"], config[f"{action}_every_epochs"]
    if not math.isfinite(in_epochs) or in_epochs < 0:
      raise UserError(f"{action}_every_epochs={in_epochs} must be >= 0 (0: given in steps)")
    if in_steps > 0 and in_epochs > 0:
      raise UserError(
          f"{action}_every_steps={in_steps} and {action}_every_epochs={in_epochs} are both set: "
          f"give one, and set the other to 0 (e.g. --config.{action}_every_steps=0)")
  if config.log_every_steps <= 0 and config.log_every_epochs <= 0:
    raise UserError(f"log_every_steps={config.log_every_steps} must be positive "
                    "(or set log_every_epochs)")


def examples_per_epoch(num_train_examples: int, process_count: int, shard_by_process: bool) -> int:
  """Training examples one epoch of the data stream holds: with the split divided among
  processes each keeps N // P of them, so that epochs are equally long (data.common)."""
  if shard_by_process and process_count > 1:
    return num_train_examples // process_count * process_count
  return num_train_examples


def resolve(config, examples: int):
  """(config with every duration in steps, lines saying what was derived and from what).

  `examples`: training examples per epoch (`examples_per_epoch`). The input config is left
  as it is; the copy returned is locked like it.
  """
  validate(config)
  per_update = config.batch_size * config.optim.accumulate_steps
  steps_per_epoch = examples / per_update
  to_steps = lambda epochs: max(1, round(epochs * steps_per_epoch))
  how = (f"{steps_per_epoch:g} steps per epoch: {examples} train examples / {per_update} per "
         "update" + (f" ({config.batch_size} x {config.optim.accumulate_steps} micro-batches)"
                     if config.optim.accumulate_steps > 1 else ""))
  resolved = config.copy_and_resolve_references()
  resolved.unlock()
  if config.num_epochs > 0:
    resolved.num_train_steps = to_steps(config.num_epochs)
    notes = [f"num_epochs={config.num_epochs:g} -> num_train_steps={resolved.num_train_steps} "
             f"({how})"]
  else:
    notes = [f"num_train_steps={config.num_train_steps} is "
             f"{config.num_train_steps / steps_per_epoch:.2f} epochs ({how})"]
  for action in PERIODIC:
    epochs = config[f"{action}_every_epochs"]
    if epochs > 0:
      resolved[f"{action}_every_steps"] = to_steps(epochs)
      notes.append(f"{action}_every_epochs={epochs:g} -> {action}_every_steps="
                   f"{resolved[f'{action}_every_steps']}")
  resolved.lock()
  return resolved, notes


def epoch_of(step: int, config, examples: int) -> float:
  """How many epochs of training data `step` updates have read."""
  return step * config.batch_size * config.optim.accumulate_steps / max(examples, 1)
