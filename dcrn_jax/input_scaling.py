"""Pixels -> model input, on the device: the one rule of train, eval, predict and export.

    integer pixels p (uint8)  ->  x = p / 255 in [0, 1]  ->  (x - data.normalize_mean) / data.normalize_std

Sources hand over their native integer pixels (uint8: a quarter of float32's bytes through
tf.data, numpy, the host-to-device copy and device memory); the jitted steps call
`model_input` first. Float input is taken to be in [0, 1] already (scaled elsewhere) and is
only normalised. Pure jax.numpy: no files, no devices, no config: the two tuples
(data.normalize_mean/std) come from feeding.Spec.scale in training and evaluation, and from
feeding.scaling for the tools that read a run's saved config.
"""

import jax.numpy as jnp

PIXEL_MAX = 255.0


def model_input(x, mean: tuple = (), std: tuple = ()):
  """float32 model input (..., C) from integer pixels or float values in [0, 1] (..., C).

  Args:
    x: uint8 (or any integer dtype) pixels in [0, 255], or float values in [0, 1].
    mean, std: per-channel (1 or C values) normalisation; empty: none.

  Returns:
    float32 (x' - mean) / std per channel (last axis), x' = x / 255 for integers, else x.
  """
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.integer):
    x = x.astype(jnp.float32) / jnp.float32(PIXEL_MAX)
  else:
    x = x.astype(jnp.float32)
  if mean:
    x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
  return x


def scale_batch(batch: dict, mean: tuple = (), std: tuple = ()) -> dict:
  """The batch with 'inputs' made model input (`model_input`); other keys as they are."""
  return dict(batch, inputs=model_input(batch["inputs"], mean, std))
