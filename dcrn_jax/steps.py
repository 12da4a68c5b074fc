"""The train steps: pure functions (state, batch, rng) -> (state, metrics), jitted by train.py.

Classification (`train_step`): batches of 'inputs' (B, ...) float32 and 'label' (B,) int32.
Forecasting (`forecast_train_step`): batches of sequences 'inputs' (B, T, H, W, C). Evaluation
has its own steps, in evaluation.py and forecast_evaluation.py.
"""

import jax
import jax.numpy as jnp
import optax

from dcrn_jax import forecast_evaluation
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


def _apply(state: TrainState, loss, grads, batch_stats, *, schedule, grad_clip_norm: float):
  """The update of one step and its metrics: what every task's train step shares.

  An update whose loss or gradient norm is not finite is not applied (parameters, optimizer
  state and batch statistics stay as they were; the step counter still advances) and the step
  reports `nonfinite` = 1, so the loop can stop with the last good state or skip the step.
  """
  grad_norm = optax.global_norm(grads)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  new_state = state.replace(
      step=state.step + 1,
      params=keep(optax.apply_updates(state.params, updates), state.params),
      opt_state=keep(opt_state, state.opt_state),
      batch_stats=keep(batch_stats, state.batch_stats))
  metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
             "nonfinite": 1.0 - finite.astype(jnp.float32)}
  if grad_clip_norm > 0:  # Fraction of steps whose gradient was scaled down by clipping.
    metrics["clipped"] = (grad_norm > grad_clip_norm).astype(jnp.float32)
  return new_state, metrics


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, schedule,
               label_smoothing: float = 0.0, grad_clip_norm: float = 0.0):
  """One optimizer update of a classifier. Returns (new state, metrics averaged over the global
  batch); a non-finite update is not applied (`_apply`)."""
  dropout_rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["inputs"], train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    loss = jnp.mean(cross_entropy(logits, batch["label"], label_smoothing))
    return loss, (logits, updates.get("batch_stats", {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state, metrics = _apply(state, loss, grads, batch_stats, schedule=schedule,
                              grad_clip_norm=grad_clip_norm)
  metrics.update({k: jnp.mean(v) for k, v in _correct(logits, batch["label"]).items()})
  return new_state, metrics


def sampling_probability(step, *, start: float, decay: float, stop_step: int):
  """Scheduled sampling as OpenSTL runs it: the probability that a step after the input frames
  reads the true frame rather than the model's own prediction, at (0-based) update `step`:
  max(start - decay * (step + 1), 0) before stop_step, 0 from it on."""
  p = jnp.maximum(start - decay * (jnp.asarray(step, jnp.float32) + 1), 0.0)
  return jnp.where(step < stop_step, p, 0.0)


def forecast_train_step(state: TrainState, batch: dict, rng: jax.Array, *, schedule,
                        input_frames: int, output_frames: int, l1_weight: float = 0.0,
                        sampling=(1.0, 2e-5, 50_000), grad_clip_norm: float = 0.0):
  """One optimizer update of a forecaster on batch['inputs'] (B, T, H, W, C) sequences: the
  first input_frames in, the next output_frames to predict.

  `sampling` = (start, decay, stop_step) of `sampling_probability`: the teacher-forcing mask
  (B, output_frames - 1) is drawn from `rng` folded with the step (a resumed run draws the same),
  for the models that read it. Metrics: 'loss' (forecast_evaluation.forecast_loss), 'mse' as
  the evaluation defines it (of the future frames, teacher forcing as drawn), and
  'sampling_probability'.
  """
  step_rng = jax.random.fold_in(rng, state.step)
  inputs, targets, frames = forecast_evaluation.split(batch["inputs"], input_frames,
                                                      output_frames)
  start, decay, stop_step = sampling
  probability = sampling_probability(state.step, start=start, decay=decay, stop_step=stop_step)
  forcing = jax.random.bernoulli(jax.random.fold_in(step_rng, 1), probability,
                                 (inputs.shape[0], output_frames - 1))

  def loss_fn(params):
    predictions, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, inputs, targets=targets,
        teacher_forcing=forcing, train=True, rngs={"dropout": step_rng},
        mutable=["batch_stats"])
    loss = jnp.mean(forecast_evaluation.forecast_loss(predictions, frames, l1_weight))
    return loss, (predictions, updates.get("batch_stats", {}))

  (loss, (predictions, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  new_state, metrics = _apply(state, loss, grads, batch_stats, schedule=schedule,
                              grad_clip_norm=grad_clip_norm)
  future = predictions[:, predictions.shape[1] - output_frames:]
  metrics["mse"] = jnp.mean(jnp.sum((future - targets) ** 2, axis=(2, 3, 4)))
  metrics["sampling_probability"] = probability
  return new_state, metrics
