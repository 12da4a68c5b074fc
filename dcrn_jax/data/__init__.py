"""Input pipelines: `data.name` picks synthetic, moving_digits or any TFDS image dataset.

Importing this package does not import TensorFlow: the TFDS-backed sources live in
`tfds_source`, imported only when such a dataset is requested, so the `synthetic` source runs on
machines without TensorFlow.

Every source yields numpy batches, channels-last:
  train: endless {'inputs': float32 (B, *input_shape) in [0, 1], 'label': int32 (B,)}
  eval:  one pass of the same plus 'mask' float32 (B,): 1 for real rows, 0 for zero padding.
"""

from collections.abc import Iterator
import types

import numpy as np

from dcrn_jax.data import synthetic
from dcrn_jax.data.info import DatasetInfo

__all__ = ["DatasetInfo", "get_info", "train_batches", "eval_batches"]


def _source(data_config) -> types.ModuleType:
  if data_config.name == "synthetic":
    return synthetic
  # Deferred: this imports TensorFlow, which only TFDS-backed datasets need.
  from dcrn_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  return tfds_source


def get_info(data_config) -> DatasetInfo:
  """Shapes, sizes and class names of the configured dataset.

  Prepares `moving_digits` first if this setting is not yet in data.data_dir (printing a line
  saying so); raises UserError for unknown names and TFDS datasets that are not prepared and
  cannot be downloaded.
  """
  return _source(data_config).get_info(data_config)


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless training batches of this process's share of data.train_split.

  Args:
    data_config: the `data` sub-config.
    local_batch_size: rows per batch on this process.
    seed: the order depends only on (seed, epoch); each epoch is reshuffled.
    start_step: the first batch is batch number start_step of the start_step=0 stream.
    process_index, process_count: each process reads a disjoint, equal share of the split.

  Yields:
    {'inputs': float32 (local_batch_size, *input_shape) in [0, 1],
     'label': int32 (local_batch_size,)}.
  """
  return _source(data_config).train_batches(
      data_config, local_batch_size=local_batch_size, seed=seed, start_step=start_step,
      process_index=process_index, process_count=process_count)


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One unshuffled pass over this process's share of data.eval_split.

  Every process yields the same number of batches, each of exactly local_batch_size rows; over
  all processes every eval example appears exactly once with mask 1.

  Yields:
    {'inputs': float32 (local_batch_size, *input_shape) in [0, 1],
     'label': int32 (local_batch_size,), 'mask': float32 (local_batch_size,)}.
  """
  return _source(data_config).eval_batches(
      data_config, local_batch_size=local_batch_size, process_index=process_index,
      process_count=process_count)
