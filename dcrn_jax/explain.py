"""Where and when a classifier's evidence is: frame occlusion, gradient x input, integrated
gradients. Each function takes the Flax module, its variables and a batch, and is jitted and
batched; models are run as in evaluation (`train=False`).

    model, variables          create_model(...) and {'params': ..., 'batch_stats': ...}
    inputs                    float32 clips (B, T, H, W, C) or images (B, H, W, C), as the data
                              pipeline gives them
    targets                   int (B,): the class each explanation is about

    drop = occlusion_importance(model, variables, clips, targets)          # (B, T)
    attr = integrated_gradients(model, variables, inputs, targets)         # inputs' shape
    frame_mass(gradient_x_input(model, variables, clips, targets))         # (B, T), sums to 1
    saliency_map(attr)                                                     # (B, [T,] H, W)

Occlusion measures the target class's *probability*: how much it drops when one frame is
replaced. The gradient methods attribute the target class's *logit*: the softmax probability
saturates on confident predictions (its gradient goes to 0 as p -> 1), the logit does not, and
integrated gradients then add up to logit(inputs) - logit(baseline) (their completeness).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

FILLS = ("neighbours", "mean")


def _logits(model, variables, inputs):
  return model.apply(variables, inputs, train=False).astype(jnp.float32)


def _target_prob(model, variables, inputs, targets):
  probs = jax.nn.softmax(_logits(model, variables, inputs))
  return jnp.take_along_axis(probs, targets[:, None], axis=1)[:, 0]


def fill_frame(clips: jax.Array, t, fill: str = "neighbours") -> jax.Array:
  """clips (B, T, H, W, C) with frame t replaced by the mean of frames t-1 and t+1 (the one
  neighbour at either end) for fill='neighbours', or by the clip's mean frame for fill='mean'."""
  num_frames = clips.shape[1]
  if fill == "neighbours":
    before = jnp.where(t > 0, t - 1, t + 1)
    after = jnp.where(t < num_frames - 1, t + 1, t - 1)
    replacement = 0.5 * (jnp.take(clips, before, axis=1) + jnp.take(clips, after, axis=1))
  else:
    replacement = clips.mean(axis=1)
  is_t = (jnp.arange(num_frames) == t).reshape(1, num_frames, *([1] * (clips.ndim - 2)))
  return jnp.where(is_t, replacement[:, None], clips)


@functools.partial(jax.jit, static_argnames=("model", "fill"))
def _occlusion(model, variables, clips, targets, fill):
  full = _target_prob(model, variables, clips, targets)

  def one_frame(_, t):
    return None, full - _target_prob(model, variables, fill_frame(clips, t, fill), targets)

  _, drops = jax.lax.scan(one_frame, None, jnp.arange(clips.shape[1]))
  return drops.T


def occlusion_importance(model, variables, clips, targets, *, fill: str = "neighbours"):
  """float32 (B, T): the drop of the target class's probability when frame t is occluded.

  fill: what replaces the frame, 'neighbours' (the mean of frames t-1 and t+1: the frame's own
  information goes, the motion around it stays) or 'mean' (the clip's mean frame). Positive:
  the frame held evidence for the class; negative: it held evidence against it.
  """
  clips = jnp.asarray(clips, jnp.float32)
  if clips.ndim != 5 or clips.shape[1] < 2:
    raise ValueError(f"occlusion needs clips (B, T, H, W, C) of 2+ frames, got {clips.shape}")
  if fill not in FILLS:
    raise ValueError(f"fill={fill!r}: one of {FILLS}")
  return np.asarray(_occlusion(model, variables, clips, jnp.asarray(targets, jnp.int32), fill))


def _target_logit_sum(model, variables, inputs, targets):
  logits = _logits(model, variables, inputs)
  return jnp.take_along_axis(logits, targets[:, None], axis=1).sum()


@functools.partial(jax.jit, static_argnames=("model",))
def _gradient(model, variables, inputs, targets):
  return jax.grad(_target_logit_sum, argnums=2)(model, variables, inputs, targets)


def gradient_x_input(model, variables, inputs, targets):
  """float32, inputs' shape: d logit[target] / d input, times the input."""
  inputs = jnp.asarray(inputs, jnp.float32)
  return np.asarray(_gradient(model, variables, inputs, jnp.asarray(targets, jnp.int32))
                    * inputs)


# Inputs per gradient call of integrated gradients: the path points of several steps go
# through the model as one batch (a loop of single-step gradients inside jit ran ~3x slower per
# step on XLA:CPU than the same gradients batched).
_PATH_BATCH_BYTES = 32 << 20


@functools.partial(jax.jit, static_argnames=("model",))
def _path_gradients(model, variables, inputs, baseline, targets, alphas, weights):
  """sum_k weights[k] * d logit / d x at baseline + alphas[k] * (inputs - baseline)."""
  k, batch = len(alphas), inputs.shape[0]
  shape = (k,) + (1,) * inputs.ndim
  points = baseline[None] + alphas.reshape(shape) * (inputs - baseline)[None]
  grads = jax.grad(_target_logit_sum, argnums=2)(
      model, variables, points.reshape(k * batch, *inputs.shape[1:]), jnp.tile(targets, k))
  return jnp.tensordot(weights, grads.reshape(k, *inputs.shape), axes=1)


def integrated_gradients(model, variables, inputs, targets, *, steps: int = 32, baseline=None):
  """float32, inputs' shape: integrated gradients of the target class's logit (Sundararajan et
  al., 2017) along the straight path from `baseline` (default: zeros, a black clip) to the
  inputs, with `steps` midpoint-rule steps; they sum to about logit(inputs) - logit(baseline)."""
  if steps < 1:
    raise ValueError(f"steps={steps} must be positive")
  inputs = jnp.asarray(inputs, jnp.float32)
  baseline = jnp.zeros_like(inputs) if baseline is None else jnp.broadcast_to(
      jnp.asarray(baseline, jnp.float32), inputs.shape)
  targets = jnp.asarray(targets, jnp.int32)
  per_call = int(np.clip(_PATH_BATCH_BYTES // max(inputs.nbytes, 1), 1, steps))
  alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps  # Midpoint rule.
  total = jnp.zeros_like(inputs)
  for lo in range(0, steps, per_call):
    chunk = alphas[lo:lo + per_call]
    weights = np.zeros(per_call, np.float32)
    weights[:len(chunk)] = 1.0 / steps  # The last call is padded with weight-0 points.
    chunk = np.pad(chunk, (0, per_call - len(chunk)), mode="edge")
    total = total + _path_gradients(model, variables, inputs, baseline, targets,
                                    jnp.asarray(chunk), jnp.asarray(weights))
  return np.asarray(total * (inputs - baseline))


def frame_mass(attributions) -> np.ndarray:
  """float (B, T): each frame's share of the clip's total |attribution|."""
  attributions = np.abs(np.asarray(attributions, np.float64))
  per_frame = attributions.reshape(*attributions.shape[:2], -1).sum(axis=2)
  return per_frame / np.maximum(per_frame.sum(axis=1, keepdims=True), 1e-30)


def saliency_map(attributions) -> np.ndarray:
  """float (B, [T,] H, W): |attribution| summed over channels."""
  return np.abs(np.asarray(attributions, np.float64)).sum(axis=-1)
