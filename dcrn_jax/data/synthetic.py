"""The `synthetic` source: random clips or images from numpy, nothing read from disk.

It exists to time the train loop on machines without TensorFlow or data, so it must stay free
of TensorFlow imports and cheap: each split is one pre-generated uint8 pool that batches index.
Labels are random, so nothing can be learnt from it.
"""

from collections.abc import Iterator
import zlib

import numpy as np

from dcrn_jax.data import common
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.errors import UserError

# The pools are the same for every run, like a dataset on disk; only the order depends on `seed`.
_POOL_SEED = 20_250_101


def _check(data_config) -> tuple[int, ...]:
  """Returns data.synthetic_shape as a tuple after checking the synthetic fields."""
  shape = tuple(data_config.synthetic_shape)
  if not shape or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
    raise UserError(
        f"data.synthetic_shape is {data_config.synthetic_shape!r}; give the shape of one "
        "example as positive ints, channels-last, e.g. (10, 64, 64, 1) or (32, 32, 3).")
  if data_config.synthetic_num_classes < 1:
    raise UserError(
        f"data.synthetic_num_classes is {data_config.synthetic_num_classes}; set it to 1 or more.")
  if data_config.synthetic_num_examples < 1:
    raise UserError(
        f"data.synthetic_num_examples is {data_config.synthetic_num_examples}; set it to 1 or "
        "more.")
  return tuple(int(d) for d in shape)


def get_info(data_config) -> DatasetInfo:
  shape = _check(data_config)
  n = int(data_config.synthetic_num_classes)
  return DatasetInfo(
      num_classes=n,
      input_shape=shape,
      num_train_examples=int(data_config.synthetic_num_examples),
      num_eval_examples=int(data_config.synthetic_num_examples),
      class_names=tuple(f"class_{k}" for k in range(n)))


def _pool(data_config, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns the split's examples: uint8 (N, *synthetic_shape) and int32 labels (N,).

  uint8 keeps the pool 4x smaller than float32; batches carry it as it is (uint8).
  """
  shape = _check(data_config)
  # crc32, not hash(): the split's pool must not change between Python processes.
  rng = np.random.default_rng([_POOL_SEED, zlib.crc32(split.encode())])
  num = int(data_config.synthetic_num_examples)
  inputs = rng.integers(0, 256, size=(num, *shape), dtype=np.uint8)
  labels = rng.integers(0, data_config.synthetic_num_classes, size=(num,)).astype(np.int32)
  return inputs, labels


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'inputs': uint8 (B, *shape), 'label': int32 (B,)} batches.

  The process owns its rows of the pool (`common.process_share`); each epoch permutes them with
  a generator seeded by (seed, epoch) alone.
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  inputs, labels = _pool(data_config, data_config.train_split)
  share = common.process_share(len(labels), process_index=process_index,
                               process_count=process_count, train=True,
                               split="The synthetic train split (data.synthetic_num_examples)")
  return _pixels_of(_index_stream(share, local_batch_size, seed, start_step), inputs, labels)


def _pixels_of(indices, inputs, labels):
  for batch in indices:
    index = batch["index"]
    yield {"inputs": inputs[index], "label": labels[index]}


def _index_stream(share, local_batch_size, seed, start_step):
  epoch, offset = common.epoch_and_offset(start_step, local_batch_size, share.count)
  seed, rows = common.unsigned_seed(seed), share.rows()
  pending = np.zeros((0,), np.int64)
  while True:
    while len(pending) < local_batch_size:
      order = rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]
      pending = np.concatenate([pending, order[offset:]])
      epoch, offset = epoch + 1, 0
    index, pending = pending[:local_batch_size], pending[local_batch_size:]
    yield {"index": index.astype(np.int32)}


def resident_reason(data_config, *, train: bool) -> None:
  del data_config, train  # Both pools can live on the device.


def split_pixels(data_config, *, train: bool, start: int, stop: int) -> dict[str, np.ndarray]:
  inputs, labels = _pool(data_config, data_config.train_split if train else
                         data_config.eval_split)
  return {"inputs": inputs[start:stop], "label": labels[start:stop]}


def train_indices(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0, process_count: int = 1):
  """The rows `train_batches` yields: {'index': int32 (local_batch_size,)}."""
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  share = common.process_share(int(data_config.synthetic_num_examples),
                               process_index=process_index, process_count=process_count,
                               train=True,
                               split="The synthetic train split (data.synthetic_num_examples)")
  return _index_stream(share, local_batch_size, seed, start_step)


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass over this process's rows of the eval pool (`common.process_share`).

  Yields {'inputs', 'label', 'mask', 'example_id'} batches of exactly local_batch_size rows;
  see `common.padded_eval_batches`.
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count)
  inputs, labels = _pool(data_config, data_config.eval_split)
  share = common.process_share(len(labels), process_index=process_index,
                               process_count=process_count, train=False)
  rows = share.rows()

  def batches():
    for lo in range(0, len(rows), local_batch_size):
      index = rows[lo:lo + local_batch_size]
      yield {"inputs": inputs[index], "label": labels[index],
             "example_id": index.astype(np.int32)}

  return common.padded_eval_batches(
      batches(), local_batch_size=local_batch_size,
      num_batches=share.num_batches(local_batch_size), input_shape=inputs.shape[1:])
