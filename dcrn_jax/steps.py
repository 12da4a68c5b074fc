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


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, schedule,
               label_smoothing: float = 0.0, grad_clip_norm: float = 0.0):
  """One optimizer update. Returns (new state, metrics averaged over the global batch).

  An update whose loss or gradient norm is not finite is not applied (parameters, optimizer
  state and batch statistics stay as they were; the step counter still advances) and the step
  reports `nonfinite` = 1, so the loop can stop with the last good state or skip the step.
  """
  dropout_rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["inputs"], train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    loss = jnp.mean(cross_entropy(logits, batch["label"], label_smoothing))
    return loss, (logits, updates.get("batch_stats", {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
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
  metrics.update({k: jnp.mean(v) for k, v in _correct(logits, batch["label"]).items()})
  return new_state, metrics
