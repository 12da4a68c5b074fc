"""Durations in steps or in epochs, resolved to steps once, before training.

A run's length is `num_train_steps` or `num_epochs` (exactly one > 0), and each periodic action
(log, eval, checkpoint) is `<action>_every_steps` or `<action>_every_epochs` (not both). A step
is one optimizer update, which takes batch_size x optim.accumulate_steps examples, so

    steps per epoch = examples per epoch / (batch_size x accumulate_steps)     (may be fractional)
    steps           = max(1, round(epochs x steps per epoch))

`Lengths` holds the config's duration fields (train.py reads them once; this room reads no
config); `resolve` returns the `Lengths` whose *_steps fields hold the result, which train.py
writes back into the run's config: nothing after it reads epochs.
"""

import dataclasses
import math

from dcrn_jax.errors import UserError

PERIODIC = ("log", "eval", "checkpoint")


@dataclasses.dataclass(frozen=True)
class Lengths:
  """A run's length and its periodic actions, as the config's fields of the same names give
  them: each in steps or in epochs (0: not given that way)."""

  num_train_steps: int
  num_epochs: float
  log_every_steps: int
  log_every_epochs: float
  eval_every_steps: int
  eval_every_epochs: float
  checkpoint_every_steps: int
  checkpoint_every_epochs: float

  def every(self, action: str, unit: str):
    """<action>_every_<unit>: unit 'steps' or 'epochs'."""
    return getattr(self, f"{action}_every_{unit}")


def validate(lengths: Lengths) -> None:
  """Checks the duration fields by themselves (no dataset needed); raises UserError."""
  steps, epochs = lengths.num_train_steps, lengths.num_epochs
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
    in_steps, in_epochs = lengths.every(action, "steps"), lengths.every(action, "epochs")
    if not math.isfinite(in_epochs) or in_epochs < 0:
      raise UserError(f"{action}_every_epochs={in_epochs} must be >= 0 (0: given in steps)")
    if in_steps > 0 and in_epochs > 0:
      raise UserError(
          f"{action}_every_steps={in_steps} and {action}_every_epochs={in_epochs} are both set: "
          f"give one, and set the other to 0 (e.g. --config.{action}_every_steps=0)")
  if lengths.log_every_steps <= 0 and lengths.log_every_epochs <= 0:
    raise UserError(f"log_every_steps={lengths.log_every_steps} must be positive "
                    "(or set log_every_epochs)")


def examples_per_epoch(num_train_examples: int, process_count: int, shard_by_process: bool) -> int:
  """Training examples one epoch of the data stream holds: with the split divided among
  processes each keeps N // P of them, so that epochs are equally long (data.common)."""
  if shard_by_process and process_count > 1:
    return num_train_examples // process_count * process_count
  return num_train_examples


def resolve(lengths: Lengths, examples: int, batch_size: int, accumulate_steps: int):
  """(the Lengths with every duration in steps, lines saying what was derived and from what).

  `examples`: training examples per epoch (`examples_per_epoch`); an update takes batch_size x
  accumulate_steps of them (optim.accumulate_steps micro-batches). The *_epochs fields are
  kept as given.
  """
  validate(lengths)
  per_update = batch_size * accumulate_steps
  steps_per_epoch = examples / per_update
  to_steps = lambda epochs: max(1, round(epochs * steps_per_epoch))
  how = (f"{steps_per_epoch:g} steps per epoch: {examples} train examples / {per_update} per "
         "update" + (f" ({batch_size} x {accumulate_steps} micro-batches)"
                     if accumulate_steps > 1 else ""))
  resolved = {}
  if lengths.num_epochs > 0:
    resolved["num_train_steps"] = to_steps(lengths.num_epochs)
    notes = [f"num_epochs={lengths.num_epochs:g} -> num_train_steps="
             f"{resolved['num_train_steps']} ({how})"]
  else:
    notes = [f"num_train_steps={lengths.num_train_steps} is "
             f"{lengths.num_train_steps / steps_per_epoch:.2f} epochs ({how})"]
  for action in PERIODIC:
    epochs = lengths.every(action, "epochs")
    if epochs > 0:
      resolved[f"{action}_every_steps"] = to_steps(epochs)
      notes.append(f"{action}_every_epochs={epochs:g} -> {action}_every_steps="
                   f"{resolved[f'{action}_every_steps']}")
  return dataclasses.replace(lengths, **resolved), notes


def epoch_of(step: int, per_update: int, examples: int) -> float:
  """How many epochs of training data `step` updates of per_update examples have read."""
  return step * per_update / max(examples, 1)
