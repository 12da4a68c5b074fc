"""Pixels -> model input in numpy, for batches read on the host: `data.train_batches` and
`data.eval_batches` with scaled=True (their default, for tools and tests that look at batches).

    uint8 pixels  ->  float32 in [0, 1]  ->  (x - data.normalize_mean) / data.normalize_std

Everything that feeds a model -- the train and eval steps, predict, streaming, the report --
scales on the device with dcrn_jax/input_scaling.py instead; this numpy form of its arithmetic
stays only because the data room never touches jax arrays (tests/test_feed.py checks that the
two agree).
"""

import numpy as np


def normalization(data_config) -> tuple[np.ndarray, np.ndarray] | None:
  """(mean, std) float32 (1 or C,) of data.normalize_mean/std, or None when they are empty."""
  if not tuple(data_config.normalize_mean):
    return None
  return (np.asarray(data_config.normalize_mean, np.float32),
          np.asarray(data_config.normalize_std, np.float32))


def normalize(x, data_config):
  """(x - mean) / std over the last (channel) axis of float32 x in [0, 1]; x if none is set.

  x may be a numpy array or a TensorFlow tensor (the result is of the same kind).
  """
  stats = normalization(data_config)
  if stats is None:
    return x
  mean, std = stats
  return (x - mean) / std


def to_model_input(pixels: np.ndarray, data_config) -> np.ndarray:
  """uint8 pixels (..., C) -> float32 model input (..., C): scaled to [0, 1], normalised."""
  return normalize(np.asarray(pixels).astype(np.float32) / np.float32(255.0), data_config)
