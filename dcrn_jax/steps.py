"""The train steps: pure functions (state, batch, rng) -> (state, metrics), jitted by train.py.

`fed` puts in front of a step what the batch needs on the device first: with a device-resident
split the gather of the batch's rows (and its augmentation), then the scaling of its pixels
(dcrn_jax/input_scaling.py), so the host sends uint8 pixels or only row indices.

Classification (`train_step`): batches of 'inputs' (B, ...) float32 and 'label' (B,) int32.
Forecasting (`forecast_train_step`): batches of sequences 'inputs' (B, T, H, W, C). Evaluation
has its own steps, in evaluation.py and tasks/forecast_evaluation.py.
"""

import jax
import jax.numpy as jnp
import optax

from dcrn_jax import input_scaling
from dcrn_jax.models import sampling as schedules
from dcrn_jax.tasks import forecast_evaluation
from dcrn_jax.evaluation import TOP_K
from dcrn_jax.state import TrainState


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Per-example softmax cross-entropy (B,), with optional label smoothing."""
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return optax.softmax_cross_entropy(logits, targets)


def _correct(logits, labels):
  """Per-example top-1 and (with 5+ classes) top-5 hits, float32, by evaluation.py's rule: the
  label is in the top k when fewer than k classes score strictly higher."""
  hits = {"accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}
  if logits.shape[-1] >= TOP_K:
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    hits["top5_accuracy"] = (jnp.sum(logits > true, axis=-1) < TOP_K).astype(jnp.float32)
  return hits


def _update_gradient(state: TrainState, grads):
  """The gradient the optimizer applies: this batch's, or with accumulation the mean over this
  update's micro-batches so far (optax.MultiSteps keeps the mean of the earlier ones in
  acc_grads), which is the update's whole gradient at its last micro-batch."""
  if not isinstance(state.opt_state, optax.MultiStepsState):
    return grads
  seen = state.opt_state.mini_step
  return jax.tree.map(lambda acc, g: acc + (g - acc) / (seen + 1), state.opt_state.acc_grads,
                      grads)


def _step_rng(state: TrainState, rng: jax.Array) -> jax.Array:
  """The key of this (micro-)batch: rng folded with the update, and with accumulation with the
  micro-batch too, so every micro-batch draws its own (a resumed run draws the same)."""
  key = jax.random.fold_in(rng, state.step)
  if isinstance(state.opt_state, optax.MultiStepsState):
    key = jax.random.fold_in(key, state.opt_state.mini_step)
  return key


def _apply(state: TrainState, loss, grads, batch_stats, *, schedule, grad_clip_norm: float,
           ema_decay: float):
  """The update of one (micro-)batch and its metrics: what every task's train step shares.

  `state.step` counts updates: it advances on the micro-batch that completes one. Metrics of
  the update (grad_norm, clipped, learning_rate) are final on that micro-batch.

  A non-finite loss or gradient norm: without accumulation the update is not applied
  (parameters, optimizer state and batch statistics stay as they were; the step counter still
  advances); with it, that micro-batch enters its update as a zero gradient, so every update
  still takes accumulate_steps micro-batches. Either way the batch statistics are kept and the
  step reports `nonfinite` = 1, so the loop can stop with the last good state or skip the step.
  """
  accumulating = isinstance(state.opt_state, optax.MultiStepsState)
  finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
  if accumulating:
    grads = jax.tree.map(lambda g: jnp.where(finite, g, jnp.zeros_like(g)), grads)
  grad_norm = optax.global_norm(_update_gradient(state, grads))
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  applied = jnp.bool_(True) if accumulating else finite
  completes = opt_state.mini_step == 0 if accumulating else jnp.bool_(True)
  keep = lambda cond, new, old: jax.tree.map(lambda n, o: jnp.where(cond, n, o), new, old)
  params = keep(applied, optax.apply_updates(state.params, updates), state.params)
  ema_params = state.ema_params
  if ema_decay > 0:  # Moves once per applied update, towards the updated parameters.
    ema_params = keep(applied & completes,
                      optax.incremental_update(params, state.ema_params, 1.0 - ema_decay),
                      state.ema_params)
  new_state = state.replace(
      step=state.step + completes.astype(state.step.dtype),
      params=params,
      opt_state=keep(applied, opt_state, state.opt_state),
      batch_stats=keep(finite, batch_stats, state.batch_stats),
      ema_params=ema_params)
  metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
             "nonfinite": 1.0 - finite.astype(jnp.float32)}
  if grad_clip_norm > 0:  # Fraction of updates whose gradient was scaled down by clipping.
    metrics["clipped"] = (grad_norm > grad_clip_norm).astype(jnp.float32)
  return new_state, metrics


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, schedule,
               label_smoothing: float = 0.0, grad_clip_norm: float = 0.0,
               ema_decay: float = 0.0):
  """One micro-batch of a classifier: one optimizer update, or with accumulation (`state.opt_state`
  of optax.MultiSteps) one of the micro-batches an update averages (`_apply`). Returns (new
  state, metrics averaged over the global batch)."""
  dropout_rng = _step_rng(state, rng)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["inputs"], train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    loss = jnp.mean(cross_entropy(logits, batch["label"], label_smoothing))
    return loss, (logits, updates.get("batch_stats", {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state, metrics = _apply(state, loss, grads, batch_stats, schedule=schedule,
                              grad_clip_norm=grad_clip_norm, ema_decay=ema_decay)
  metrics.update({k: jnp.mean(v) for k, v in _correct(logits, batch["label"]).items()})
  return new_state, metrics


# fold_in constants of the step key's streams besides dropout (forecasting's forcing is 1).
AUGMENT_STREAM = 2


def fed(step_fn, *, mean: tuple = (), std: tuple = (), gather=None, augment=None):
  """step_fn taking the batch as the loop feeds it: (state, batch, rng, resident).

  Args:
    step_fn: (state, batch of model inputs, rng) -> (state, metrics).
    mean, std: data.normalize_mean/std (`input_scaling.model_input`).
    gather: (resident, batch) -> batch of pixels, for a device-resident split: batch holds the
      rows' 'index' (B,), resident the split's arrays. None: the batch holds its pixels.
    augment: (pixels (B, ...), key) -> pixels, drawn from the step's key (`_step_rng` folded
      with AUGMENT_STREAM), so a resumed run draws the same.
  """

  def step(state, batch, rng, resident):
    if gather is not None:
      batch = gather(resident, batch)
    if augment is not None:
      key = jax.random.fold_in(_step_rng(state, rng), AUGMENT_STREAM)
      batch = dict(batch, inputs=augment(batch["inputs"], key))
    return step_fn(state, input_scaling.scale_batch(batch, mean, std), rng)
  # Named as the step it feeds (what profiles and compile logs show).
  step.__name__ = getattr(getattr(step_fn, "func", step_fn), "__name__", "step")
  return step


class Bound:
  """A jitted (state, batch, rng, resident) step with its resident arrays bound: called, traced
  and lowered as (state, batch, rng)."""

  def __init__(self, jitted, resident):
    self._jitted, self._resident = jitted, resident

  def __call__(self, state, batch, rng):
    return self._jitted(state, batch, rng, self._resident)

  def trace(self, state, batch, rng):
    return self._jitted.trace(state, batch, rng, self._resident)

  def lower(self, state, batch, rng):
    return self._jitted.lower(state, batch, rng, self._resident)


sampling_probability = schedules.sampling_probability  # Kept here for callers.


def forecast_train_step(state: TrainState, batch: dict, rng: jax.Array, *, schedule,
                        input_frames: int, output_frames: int, l1_weight: float = 0.0,
                        sampling=(1.0, 2e-5, 50_000), reverse=None,
                        grad_clip_norm: float = 0.0, ema_decay: float = 0.0):
  """One optimizer update of a forecaster on batch['inputs'] (B, T, H, W, C) sequences: the
  first input_frames in, the next output_frames to predict.

  `sampling` = (start, decay, stop_step) of `sampling_probability`: the teacher-forcing mask
  (B, output_frames - 1) is drawn from `rng` folded with the step (a resumed run draws the same),
  for the models that read it; `reverse` = (step_1, step_2, alpha) draws the reverse schedule
  instead (models/sampling.py). Loss terms a model sows into its 'losses' collection
  (PredRNN-V2's decoupling loss) are added to the loss. Metrics: 'loss'
  (forecast_evaluation.forecast_loss), 'mse' as the evaluation defines it (of the future
  frames, teacher forcing as drawn), and 'sampling_probability'.
  """
  step_rng = _step_rng(state, rng)
  inputs, targets, frames = forecast_evaluation.split(batch["inputs"], input_frames,
                                                      output_frames)
  forcing, probability = schedules.teacher_forcing(
      jax.random.fold_in(step_rng, 1), state.step, batch=inputs.shape[0],
      input_frames=input_frames, output_frames=output_frames, sampling=sampling, reverse=reverse)

  def loss_fn(params):
    predictions, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, inputs, targets=targets,
        teacher_forcing=forcing, train=True, rngs={"dropout": step_rng},
        mutable=["batch_stats", "losses"])
    loss = jnp.mean(forecast_evaluation.forecast_loss(predictions, frames, l1_weight))
    loss = loss + sum(jnp.sum(x) for x in jax.tree.leaves(updates.get("losses", {})))
    return loss, (predictions, updates.get("batch_stats", {}))

  (loss, (predictions, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  new_state, metrics = _apply(state, loss, grads, batch_stats, schedule=schedule,
                              grad_clip_norm=grad_clip_norm, ema_decay=ema_decay)
  future = predictions[:, predictions.shape[1] - output_frames:]
  metrics["mse"] = jnp.mean(jnp.sum((future - targets) ** 2, axis=(2, 3, 4)))
  metrics["sampling_probability"] = probability
  return new_state, metrics
