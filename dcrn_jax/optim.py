"""config.optim -> an optax learning-rate schedule and gradient transformation.

With optim.accumulate_steps = k > 1 the transformation is `optax.MultiSteps`: it takes one
micro-batch gradient per call and updates every k-th call with their mean; the wrapped optimizer
(clipping, weight decay, the schedule) sees only those means, so schedules count updates.
"""

import math

import optax

from dcrn_jax.errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "piecewise", "onecycle")


# A warmup longer than this fraction of the run is shortened to it (and a line says so), so that
# a config tried for a few steps (--config.num_train_steps=5) runs instead of failing.
MAX_WARMUP_FRACTION = 0.5


def warmup_steps(optim_config, num_train_steps: int) -> tuple[int, str | None]:
  """(the warmup the schedule uses, a note for the user if it is shorter than configured)."""
  c = optim_config
  if c.warmup_steps < 0:
    raise UserError(f"optim.warmup_steps={c.warmup_steps} must be >= 0")
  cap = int(num_train_steps * MAX_WARMUP_FRACTION)
  if c.schedule != "warmup_cosine" or c.warmup_steps <= cap:
    return c.warmup_steps, None
  return cap, (f"optim.warmup_steps={c.warmup_steps} is more than half of num_train_steps="
               f"{num_train_steps}: warming up over {cap} step(s) instead")


def schedule_notes(optim_config, num_train_steps: int) -> list[str]:
  """Lines to show the user where the schedule differs from what the config seems to say."""
  c = optim_config
  notes = [warmup_steps(c, num_train_steps)[1]]
  if c.schedule == "piecewise":
    late = [b for b in c.boundaries if b >= num_train_steps]
    if late:
      notes.append(f"optim.boundaries {tuple(late)} are at or past num_train_steps="
                   f"{num_train_steps}: those rate changes never happen in this run")
  return [n for n in notes if n]


def _check_boundaries(boundaries) -> None:
  bounds = list(boundaries)
  if not bounds or bounds != sorted(bounds) or bounds[0] <= 0:
    raise UserError(f"optim.boundaries={tuple(bounds)} must be positive increasing steps for "
                    "schedule 'piecewise', e.g. --config.optim.boundaries='(3000, 6000)'")


def validate(optim_config) -> None:
  """Value checks of config.optim that need no dataset; raises UserError."""
  c = optim_config
  if c.optimizer not in OPTIMIZERS:
    raise UserError(f"unknown optim.optimizer={c.optimizer!r}; choose one of {list(OPTIMIZERS)}")
  if c.schedule not in SCHEDULES:
    raise UserError(f"unknown optim.schedule={c.schedule!r}; choose one of {list(SCHEDULES)}")
  if c.learning_rate <= 0:
    raise UserError(f"optim.learning_rate={c.learning_rate} must be positive")
  if c.grad_clip_norm < 0 or c.weight_decay < 0:
    raise UserError("optim.grad_clip_norm and optim.weight_decay must be >= 0")
  if c.warmup_steps < 0:
    raise UserError(f"optim.warmup_steps={c.warmup_steps} must be >= 0")
  if c.schedule == "piecewise":
    _check_boundaries(c.boundaries)
  if c.accumulate_steps < 1:
    raise UserError(f"optim.accumulate_steps={c.accumulate_steps} must be >= 1 (micro-batches "
                    "per update; 1 = no accumulation)")
  if not (math.isfinite(c.ema_decay) and 0.0 <= c.ema_decay < 1.0):
    raise UserError(f"optim.ema_decay={c.ema_decay} must be in [0, 1) (0 = no moving average; "
                    "typical: 0.999)")


def evaluates_ema(optim_config) -> bool:
  """Whether evaluation, predict and export use the moving average of the weights."""
  return optim_config.ema_decay > 0 and optim_config.ema_eval


def create_schedule(optim_config, num_train_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step, peaking at `learning_rate`."""
  c = optim_config
  lr = c.learning_rate
  if c.schedule == "constant":
    return optax.constant_schedule(lr)
  if c.schedule == "cosine":
    return optax.cosine_decay_schedule(lr, max(num_train_steps, 1), alpha=c.end_lr_factor)
  if c.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup_steps(c, num_train_steps)[0],
        decay_steps=num_train_steps, end_value=lr * c.end_lr_factor)
  if c.schedule == "piecewise":
    _check_boundaries(c.boundaries)
    return optax.piecewise_constant_schedule(lr, {b: c.decay_factor for b in c.boundaries})
  if c.schedule == "onecycle":  # PyTorch's OneCycleLR defaults, which OpenSTL trains with.
    return optax.cosine_onecycle_schedule(max(num_train_steps, 1), lr, pct_start=0.3,
                                          div_factor=25.0, final_div_factor=1e4)
  raise UserError(f"unknown optim.schedule={c.schedule!r}; choose one of {list(SCHEDULES)}")


def create_optimizer(optim_config, num_train_steps: int):
  """Returns (optax transformation, schedule). Clipping comes first, then weight decay; with
  accumulation all of it applies to the mean gradient of an update's micro-batches."""
  c = optim_config
  validate(c)
  schedule = create_schedule(c, num_train_steps)
  parts = []
  if c.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(c.grad_clip_norm))
  if c.optimizer == "adamw":
    parts.append(optax.adamw(schedule, weight_decay=c.weight_decay))
  else:
    if c.weight_decay > 0:  # Plain L2: the decay term is added to the gradient.
      parts.append(optax.add_decayed_weights(c.weight_decay))
    if c.optimizer == "adam":
      parts.append(optax.adam(schedule))
    elif c.optimizer == "sgd":
      parts.append(optax.sgd(schedule, momentum=c.momentum or None))
    else:
      parts.append(optax.rmsprop(schedule, momentum=c.momentum))
  tx = optax.chain(*parts)
  if c.accumulate_steps > 1:
    # Without accumulation the plain chain is kept: its state (and so every earlier checkpoint)
    # keeps its structure.
    tx = optax.MultiSteps(tx, every_k_schedule=c.accumulate_steps).gradient_transformation()
  return tx, schedule
