"""Input pipelines: `data.name` picks a source.

  synthetic       random arrays in memory (no TensorFlow)
  video_folder    <data.video_dir>/<split>/<class>/*.{mp4,avi,mkv,webm}, decoded with PyAV
  moving_digits, moving_fashion   our TFDS builders, prepared offline
  anything else   a TFDS dataset by name: images (cifar10, fashion_mnist, ...) or videos (ucf101)

Importing this package does not import TensorFlow: the TensorFlow-backed sources are imported
only when such a dataset is requested, so the `synthetic` source runs on machines without it.

Every source yields numpy batches, channels-last:
  train: endless {'inputs': float32 (B, *input_shape), 'label': int32 (B,)}
  eval:  one pass of the same plus 'mask' float32 (B,): 1 for real rows, 0 for zero padding;
         video sources add 'video_id' and 'view' int32 (B,) (-1 on padding): each eval video is
         info.eval_views consecutive rows whose scores are to be averaged (dcrn_jax/multiclip.py).
Inputs are in [0, 1] unless data.normalize_mean/std are set.
"""

from collections.abc import Iterator
import json
import os
import types

import numpy as np

from dcrn_jax.data import synthetic
from dcrn_jax.data.info import DatasetInfo

__all__ = ["DatasetInfo", "get_info", "train_batches", "eval_batches", "write_label_map"]

LABEL_MAP_FILE = "label_map.json"


def _source(data_config) -> types.ModuleType:
  if data_config.name == "synthetic":
    return synthetic
  if data_config.name == "video_folder":
    from dcrn_jax.data import video_folder  # pylint: disable=g-import-not-at-top
    return video_folder
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


def write_label_map(info: DatasetInfo, workdir: str) -> str:
  """Writes WORKDIR/label_map.json, {"0": class name, ...}, and returns its path.

  Call it on process 0 once the workdir exists; it replaces the file atomically.
  """
  path = os.path.join(workdir, LABEL_MAP_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump({str(i): name for i, name in enumerate(info.class_names)}, f, indent=1)
  os.replace(tmp, path)
  return path
