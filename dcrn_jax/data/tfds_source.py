"""TFDS-backed sources: our `moving_digits` and any TFDS image-classification dataset.

Importing this module imports TensorFlow (through `tf_import`, which hides accelerators from it).
"""

from collections.abc import Iterator
import socket
import threading

import numpy as np

from dcrn_jax.data import common
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.data.tf_import import tf, tfds
from dcrn_jax.errors import UserError

MOVING_DIGITS = "moving_digits"
# TFDS fetches prepared datasets from Google Cloud Storage before any source URL.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)
_CONNECT_TIMEOUT_S = 3.0
# Effectively endless: the stream of epochs is cut at this epoch number.
_LAST_EPOCH = 1 << 62


def _input_key(data_config) -> str:
  return "video" if data_config.name == MOVING_DIGITS else "image"


def _host_reachable(host: str, port: int, timeout_s: float) -> bool:
  """True if a TCP connection opens within about timeout_s (DNS included)."""
  result = []

  def connect():
    try:
      socket.create_connection((host, port), timeout=timeout_s).close()
      result.append(True)
    except OSError:
      pass

  # A thread, because name resolution ignores socket timeouts and can stall for much longer.
  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout_s + 0.5)
  return bool(result)


def _builder(data_config):
  """Returns the dataset's TFDS builder, prepared (preparing it first if that is possible)."""
  if data_config.name == MOVING_DIGITS:
    from dcrn_jax.data import moving_digits  # pylint: disable=g-import-not-at-top
    builder = moving_digits.make_builder(data_config)
    if not builder.is_prepared():
      print(f"Preparing moving_digits/{builder.builder_config.name} into {builder.data_dir} "
            "(once per setting; no download).", flush=True)
      try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
      except Exception as e:  # pylint: disable=broad-except
        # Several processes sharing one data dir all prepare; only the first rename wins.
        builder = moving_digits.make_builder(data_config)
        if builder.is_prepared():
          return builder
        if isinstance(e, (OSError, tf.errors.OpError)):
          raise UserError(
              f"Could not write moving_digits into {builder.data_dir} ({e}). Set data.data_dir "
              "to a writable folder with enough space (about 10 MB for the default).") from e
        raise
    return builder

  name = data_config.name
  try:
    builder = tfds.builder(name, data_dir=data_config.data_dir or None)
  except tfds.core.DatasetNotFoundError as e:
    raise UserError(
        f"Unknown dataset name data.name={name!r}: it is neither 'synthetic', 'moving_digits' "
        "nor a TFDS dataset. Use one of those, e.g. cifar10, mnist or fashion_mnist "
        "(tfds.list_builders() lists all TFDS names).") from e
  except ValueError as e:  # A bad config or version part, e.g. 'cifar10:9.9.9'.
    raise UserError(f"data.name={name!r} is not usable with TFDS: {e}") from e
  if not builder.is_prepared():
    root = builder.data_dir_root
    if not _host_reachable(*_DOWNLOAD_HOST, _CONNECT_TIMEOUT_S):
      raise UserError(
          f"The TFDS dataset {name!r} is not prepared in {root}, and it cannot be downloaded "
          f"here ({_DOWNLOAD_HOST[0]} is unreachable: no network). Prepare it on a machine with "
          f"network (`tfds build {name} --data_dir=DIR`) and copy DIR/{name.split(':')[0]} "
          f"into {root}, or set data.data_dir to a folder that holds it.")
    print(f"Downloading and preparing TFDS dataset {name!r} into {root}.", flush=True)
    try:
      builder.download_and_prepare()
    except (OSError, AssertionError) as e:  # Network, disk or manual-download faults.
      raise UserError(
          f"Preparing the TFDS dataset {name!r} into {root} failed ({type(e).__name__}: {e}). "
          f"Fix the cause, or prepare it elsewhere with `tfds build {name}` and copy it in.") from e
  return builder


def _check_features(data_config, builder) -> None:
  features = builder.info.features
  key = _input_key(data_config)
  if key not in features or "label" not in features:
    raise UserError(
        f"The TFDS dataset {data_config.name!r} has features {sorted(features)}; dcrn_jax needs "
        f"an {key!r} uint8 feature and a 'label' class feature (image classification).")
  if not isinstance(features["label"], tfds.features.ClassLabel):
    raise UserError(f"The 'label' feature of {data_config.name!r} is not a class label.")
  shape, dtype = features[key].shape, features[key].np_dtype
  if None in shape or dtype != np.uint8:
    raise UserError(
        f"The {key!r} feature of {data_config.name!r} is {dtype} of shape {shape}; dcrn_jax "
        "reads only fixed-size uint8 images or clips. Pick a dataset whose images share one "
        "size (cifar10, mnist, fashion_mnist, ...).")


def _split_size(data_config, builder, split) -> int:
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError, AssertionError) as e:
    raise UserError(
        f"Split {split!r} of {data_config.name!r} is unusable ({e}). Available splits: "
        f"{sorted(builder.info.splits)}; set data.train_split / data.eval_split to one of them "
        "or a slice such as 'train[:90%]'.") from e


def get_info(data_config) -> DatasetInfo:
  builder = _builder(data_config)
  _check_features(data_config, builder)
  features = builder.info.features
  return DatasetInfo(
      num_classes=features["label"].num_classes,
      input_shape=tuple(features[_input_key(data_config)].shape),
      num_train_examples=_split_size(data_config, builder, data_config.train_split),
      num_eval_examples=_split_size(data_config, builder, data_config.eval_split),
      class_names=tuple(features["label"].names))


def _encoded_records(data_config, builder, split):
  """(still-encoded input, label) pairs of `split`: encoded records keep shuffle buffers small."""
  key = _input_key(data_config)
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={key: tfds.decode.SkipDecoding()})
  # Only these two features travel on; dropping the rest early saves buffer memory.
  return ds.map(lambda ex: (ex[key], ex["label"]))


def _decoder(data_config, builder):
  """Maps (encoded input, label) to (float32 input in [0, 1], int32 label)."""
  feature = builder.info.features[_input_key(data_config)]

  def decode(encoded, label):
    x = tf.cast(feature.decode_example(encoded), tf.float32) / 255.0
    return x, tf.cast(label, tf.int32)

  return decode


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True  # Parallel maps keep their order: resuming needs it.
  return options


def _as_dicts(ds) -> Iterator[dict[str, np.ndarray]]:
  for inputs, labels in tfds.as_numpy(ds):
    yield {"inputs": inputs, "label": labels}


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'inputs': float32 (B, *input_shape) in [0, 1], 'label': int32 (B,)} batches.

  The process reads its even share of the train split (the remainder of N / process_count is
  dropped so every process has equally long epochs). Epoch e is that share shuffled with a seed
  derived from (seed, e) only, and batches are cut from the concatenated epochs, so the stream
  with start_step=s starts with batch s of the start_step=0 stream: it begins at the right epoch
  and skips into it, without replaying earlier epochs.
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  common.check_pipeline_config(data_config)
  builder = _builder(data_config)
  _check_features(data_config, builder)
  split = tfds.split_for_jax_process(data_config.train_split, process_index=process_index,
                                     process_count=process_count, drop_remainder=True)
  per_process = _split_size(data_config, builder, split)
  if per_process == 0:
    raise UserError(
        f"Split {data_config.train_split!r} of {data_config.name!r} has too few examples to give "
        f"each of {process_count} processes one; use a larger split.")
  start_epoch, offset = common.epoch_and_offset(start_step, local_batch_size, per_process)
  records = _encoded_records(data_config, builder, split)
  buffer_size = min(data_config.shuffle_buffer, per_process)
  useed = common.unsigned_seed(seed)
  seed64 = tf.constant(useed - (1 << 64) if useed >= 1 << 63 else useed, tf.int64)

  def epoch(e):
    # A Philox hash of (seed, epoch): nearby seeds and epochs get unrelated shuffles.
    epoch_seed = tf.random.stateless_uniform([], seed=tf.stack([seed64, e]), minval=None,
                                             maxval=None, dtype=tf.int64)
    return records.shuffle(buffer_size, seed=epoch_seed, reshuffle_each_iteration=False)

  ds = tf.data.Dataset.range(start_epoch, _LAST_EPOCH).flat_map(epoch).skip(offset)
  ds = ds.map(_decoder(data_config, builder), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch_size, drop_remainder=True)
  ds = ds.prefetch(data_config.prefetch_batches).with_options(_options())
  return _as_dicts(ds)


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One unshuffled pass over this process's even share of the eval split.

  Yields {'inputs', 'label', 'mask'} batches of exactly local_batch_size rows, the same number
  on every process; see `common.padded_eval_batches`.
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count)
  common.check_pipeline_config(data_config)
  builder = _builder(data_config)
  _check_features(data_config, builder)
  splits = [tfds.split_for_jax_process(data_config.eval_split, process_index=i,
                                       process_count=process_count)
            for i in range(process_count)]
  shares = [_split_size(data_config, builder, s) for s in splits]
  ds = _encoded_records(data_config, builder, splits[process_index])
  ds = ds.map(_decoder(data_config, builder), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch_size).prefetch(data_config.prefetch_batches).with_options(_options())
  batches = ((x["inputs"], x["label"]) for x in _as_dicts(ds))
  return common.padded_eval_batches(
      batches, local_batch_size=local_batch_size,
      num_batches=common.num_eval_batches(shares, local_batch_size),
      input_shape=tuple(builder.info.features[_input_key(data_config)].shape))
