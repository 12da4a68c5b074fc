"""config.optim -> an optax learning-rate schedule and gradient transformation."""

import optax

from dcrn_jax.errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "piecewise")


def create_schedule(optim_config, num_train_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step, peaking at `learning_rate`."""
  c = optim_config
  lr = c.learning_rate
  if c.schedule == "constant":
    return optax.constant_schedule(lr)
  if c.schedule == "cosine":
    return optax.cosine_decay_schedule(lr, max(num_train_steps, 1), alpha=c.end_lr_factor)
  if c.schedule == "warmup_cosine":
    if c.warmup_steps >= num_train_steps:
      raise UserError(f"optim.warmup_steps={c.warmup_steps} must be smaller than "
                      f"num_train_steps={num_train_steps}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=c.warmup_steps,
        decay_steps=num_train_steps, end_value=lr * c.end_lr_factor)
  if c.schedule == "piecewise":
    bounds = list(c.boundaries)
    if not bounds or bounds != sorted(bounds) or bounds[0] <= 0:
      raise UserError(f"optim.boundaries={tuple(bounds)} must be positive increasing steps for "
                      "schedule 'piecewise', e.g. --config.optim.boundaries='(3000, 6000)'")
    return optax.piecewise_constant_schedule(lr, {b: c.decay_factor for b in bounds})
  raise UserError(f"unknown optim.schedule={c.schedule!r}; choose one of {list(SCHEDULES)}")


def create_optimizer(optim_config, num_train_steps: int):
  """Returns (optax transformation, schedule). Clipping comes first, then weight decay."""
  c = optim_config
  if c.optimizer not in OPTIMIZERS:
    raise UserError(f"unknown optim.optimizer={c.optimizer!r}; choose one of {list(OPTIMIZERS)}")
  if c.learning_rate <= 0:
    raise UserError(f"optim.learning_rate={c.learning_rate} must be positive")
  if c.grad_clip_norm < 0 or c.weight_decay < 0:
    raise UserError("optim.grad_clip_norm and optim.weight_decay must be >= 0")
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
  return optax.chain(*parts), schedule
