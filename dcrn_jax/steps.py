"""The train step: a pure function (state, batch, rng) -> (state, metrics), jitted by train.py.

Batches are dicts: 'inputs' (B, ...) float32, 'label' (B,) int32. Evaluation has its own step
in evaluation.py.
"""

import jax
import jax.numpy as jnp
import optax

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


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, schedule,
               label_smoothing: float = 0.0, grad_clip_norm: float = 0.0,
               ema_decay: float = 0.0):
  """One micro-batch: one optimizer update, or with accumulation (`state.opt_state` of
  optax.MultiSteps) one of the micro-batches an update averages. Returns (new state, metrics
  averaged over the global batch).

  `state.step` counts updates: it advances on the micro-batch that completes one. Metrics of
  the update (grad_norm, clipped, learning_rate) are final on that micro-batch.

  A non-finite loss or gradient norm: without accumulation the update is not applied
  (parameters, optimizer state and batch statistics stay as they were; the step counter still
  advances); with it, that micro-batch enters its update as a zero gradient, so every update
  still takes accumulate_steps micro-batches. Either way the batch statistics are kept and the
  step reports `nonfinite` = 1, so the loop can stop with the last good state or skip the step.
  """
  accumulating = isinstance(state.opt_state, optax.MultiStepsState)
  dropout_rng = jax.random.fold_in(rng, state.step)
  if accumulating:  # A key of its own for every micro-batch.
    dropout_rng = jax.random.fold_in(dropout_rng, state.opt_state.mini_step)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["inputs"], train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    loss = jnp.mean(cross_entropy(logits, batch["label"], label_smoothing))
    return loss, (logits, updates.get("batch_stats", {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
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
  metrics.update({k: jnp.mean(v) for k, v in _correct(logits, batch["label"]).items()})
  return new_state, metrics
