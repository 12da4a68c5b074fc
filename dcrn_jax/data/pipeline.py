"""The tf.data plumbing every TensorFlow-backed source shares: epochs, seeds, batches, eval views.

A source hands over `records`, a tf.data.Dataset of this process's share of a split (still
encoded: small elements keep shuffle buffers cheap), and a `process` function that turns one
record into an example dict {'inputs': uint8 pixels (...), 'label': int32 ()}.

Training: epoch e is the records shuffled with a seed derived from (config.seed, e); each example
gets a seed pair (epoch key, position in the epoch) for its augmentation, so the stream resumed
at step s equals the uninterrupted stream from batch s on, augmentation included.
"""

import atexit
from collections.abc import Callable, Iterator
import weakref

import numpy as np

from dcrn_jax.data import common
from dcrn_jax.data.tf_import import tf, tfds

# Effectively endless: the stream of epochs is cut at this epoch number.
_LAST_EPOCH = 1 << 62


def options() -> tf.data.Options:
  opts = tf.data.Options()
  opts.deterministic = True  # Parallel maps keep their order: resuming needs it.
  return opts


def _seed64(seed: int):
  useed = common.unsigned_seed(seed)
  return tf.constant(useed - (1 << 64) if useed >= 1 << 63 else useed, tf.int64)


def as_numpy_dicts(ds) -> Iterator[dict[str, np.ndarray]]:
  """The batches of `ds` as dicts of numpy arrays; a stream still open when Python exits is
  closed first (`_close_open_streams`)."""
  stream = _numpy_dicts(ds)
  _OPEN_STREAMS.add(stream)
  return stream


def _numpy_dicts(ds):
  for batch in tfds.as_numpy(ds):
    yield dict(batch)


_OPEN_STREAMS = weakref.WeakSet()


@atexit.register
def _close_open_streams():
  """Closes the streams still open, so their tf.data iterators stop while Python can still
  run their Python calls (tf.numpy_function: decoding videos, reading shards). Left to
  interpreter shutdown, a thread in such a call waits for the GIL forever: the process hung
  at exit or aborted ("terminate called without an active exception")."""
  for stream in list(_OPEN_STREAMS):
    try:
      stream.close()
    except ValueError:  # Running in another thread right now: nothing to do from here.
      pass


def _shuffled_epoch(records, buffer_size: int, seed64, e):
  """(key, records in epoch e's order): the one definition of the training order."""
  # A Philox hash of (seed, epoch): nearby seeds and epochs get unrelated shuffles.
  key = tf.random.stateless_uniform([], seed=tf.stack([seed64, e]), minval=None, maxval=None,
                                    dtype=tf.int64)
  return key, records.shuffle(buffer_size, seed=key, reshuffle_each_iteration=False)


def train_rows(first: int, count: int, *, data_config, local_batch_size: int, seed: int,
               start_step: int) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'index': int32 (local_batch_size,)}: the rows first .. first + count - 1 in the
  order `train_stream` reads the records of those rows, batch for batch.

  The same epochs and shuffles as `train_stream` (a tf.data shuffle's order depends on its
  seed, buffer and length only, not on what it shuffles), without its per-example seeds and
  map: one cast per batch, so the stream keeps up with a step that only gathers these rows.
  """
  start_epoch, offset = common.epoch_and_offset(start_step, local_batch_size, count)
  buffer_size = min(data_config.shuffle_buffer, count)
  seed64 = _seed64(seed)
  rows = tf.data.Dataset.range(first, first + count)
  ds = tf.data.Dataset.range(start_epoch, _LAST_EPOCH).flat_map(
      lambda e: _shuffled_epoch(rows, buffer_size, seed64, e)[1]).skip(offset)
  ds = ds.batch(local_batch_size, drop_remainder=True).map(
      lambda r: {"index": tf.cast(r, tf.int32)})
  return as_numpy_dicts(ds.prefetch(data_config.prefetch_batches).with_options(options()))


def train_stream(records, *, num_records: int, process: Callable | None = None, data_config,
                 local_batch_size: int, seed: int, start_step: int,
                 process_batch: Callable | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches of process(record, example_seed) over reshuffled epochs of `records`.

  Args:
    records: this process's share of the split, num_records elements in a fixed order.
    num_records: its length (epochs are cut at it).
    process: (record, seed int64 (2,)) -> {'inputs': uint8 (...), 'label': int32 ()}.
    data_config: the `data` config (shuffle_buffer, prefetch_batches).
    local_batch_size: rows per batch.
    seed: config.seed; the order and the augmentation depend on it and the epoch only.
    start_step: the first batch yielded is batch number start_step of the start_step=0 stream.
    process_batch: instead of `process`, (records (b,), seeds (b, 2)) -> {'inputs': (b, ...),
      'label': (b,)}: a batch made at once (where an example's fixed costs, such as a Python
      call, would outweigh its work). Row i must depend on record i and seed i only, not on
      the rest of its batch.

  Yields:
    {'inputs': uint8 (local_batch_size, ...), 'label': int32 (local_batch_size,)}.
  """
  start_epoch, offset = common.epoch_and_offset(start_step, local_batch_size, num_records)
  buffer_size = min(data_config.shuffle_buffer, num_records)
  seed64 = _seed64(seed)

  def epoch(e):
    key, shuffled = _shuffled_epoch(records, buffer_size, seed64, e)
    return shuffled.enumerate().map(lambda i, record: (tf.stack([key, i]), record))

  ds = tf.data.Dataset.range(start_epoch, _LAST_EPOCH).flat_map(epoch).skip(offset)
  if (process is None) == (process_batch is None):
    raise ValueError("train_stream: give one of process and process_batch")
  if process_batch is None:
    ds = ds.map(lambda example_seed, record: process(record, example_seed),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(local_batch_size, drop_remainder=True)
  else:
    ds = ds.batch(local_batch_size, drop_remainder=True).map(
        lambda seeds, records: process_batch(records, seeds),
        num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.prefetch(data_config.prefetch_batches).with_options(options())
  return as_numpy_dicts(ds)


def eval_stream(records, *, share: common.Share, views: int, process: Callable, data_config,
                local_batch_size: int, input_shape: tuple[int, ...],
                labels: bool = True) -> Iterator[dict[str, np.ndarray]]:
  """One pass over this process's eval records, every record as `views` views, padded.

  Args:
    records: this process's rows of the eval split (share.count records, in order).
    share: which rows of the split they are: record j is example share.rows()[j].
    views: views per record; process(record, view) makes view number `view`.
    process: (record, view int64 ()) -> {'inputs': uint8 input_shape, 'label': int32 ()}.
    data_config: the `data` config (prefetch_batches).
    local_batch_size: rows per batch.
    input_shape: shape of one example's inputs.
    labels: whether `process` gives a 'label' (False: unlabelled videos).

  Yields:
    {'inputs', 'label', 'mask', 'example_id'} of exactly local_batch_size rows, the same number
    of batches on every process; a record's views are consecutive rows with its example_id. See
    `common.padded_eval_batches`.
  """
  ds = records.enumerate()
  if views == 1:  # No per-record sub-dataset: that costs more than the example itself.
    ds = ds.map(lambda j, record: (j, tf.constant(0, tf.int64), record))
  else:
    ds = ds.flat_map(lambda j, record: tf.data.Dataset.range(views).map(
        lambda view: (j, view, record)))

  def make(j, view, record):
    example = dict(process(record, view))
    example["example_id"] = tf.cast(share.first + j, tf.int32)
    return example

  ds = ds.map(make, num_parallel_calls=tf.data.AUTOTUNE).batch(local_batch_size)
  ds = ds.prefetch(data_config.prefetch_batches).with_options(options())
  return common.padded_eval_batches(
      as_numpy_dicts(ds), local_batch_size=local_batch_size,
      num_batches=share.num_batches(local_batch_size, views), input_shape=input_shape,
      labels=labels)
