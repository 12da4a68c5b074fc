"""The TFDS source: our builders (dcrn_jax/datasets/) and any TFDS dataset by name.

Three kinds of input feature are read (a dataset without labels only if it holds videos, e.g.
moving_mnist: its batches carry no 'label', for forecasting):
  image: a fixed-size `Image` (cifar10, mnist, fashion_mnist, ...): augmented for training.
  clip:  a fixed-size uint8 (T, H, W, C) `Tensor` as supervised input (our moving_digits and
         moving_fashion): read as stored.
  video: a TFDS `Video` (ucf101, ...): clips sampled as in `clips`, frames decoded on demand.

The table in dcrn_jax/data says which names are ours (prepared here once, offline) and which
TFDS datasets can be written from local files; any other name is looked up in TFDS.
Importing this module imports TensorFlow (through `tf_import`, which hides accelerators from it).
"""

from collections.abc import Iterator
import functools
import socket
import threading

import numpy as np

import dcrn_jax.data as data_lib
from dcrn_jax.data import augment, common, pipeline
from dcrn_jax.media import clips
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.data.tf_import import tf, tfds
from dcrn_jax.errors import UserError

# TFDS fetches prepared datasets from Google Cloud Storage before any source URL.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)
_CONNECT_TIMEOUT_S = 3.0


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


def _is_prepared(builder) -> bool:
  # TFDS's is_prepared() logs a warning for a variant folder without dataset_info.json, which
  # every missing folder is; a missing folder is simply not prepared.
  return builder.data_path.exists() and builder.is_prepared()


def _prepared_ours(data_config, make_builder):
  """Our builder for data_config, prepared into data.data_dir first if this setting is not."""
  builder = make_builder(data_config)
  if _is_prepared(builder):
    return builder
  builder.check_sources()
  print(f"Preparing {data_config.name}/{builder.builder_config.name} into {builder.data_dir} "
        "(once per setting; no download).", flush=True)
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  except Exception as e:  # pylint: disable=broad-except
    # Several processes sharing one data dir all prepare; only the first rename wins.
    builder = make_builder(data_config)
    if _is_prepared(builder):
      return builder
    if isinstance(e, (OSError, tf.errors.OpError)):
      raise UserError(
          f"Could not write {data_config.name} into {builder.data_dir} ({e}). Set "
          "data.data_dir to a writable folder with enough space.") from e
    raise
  return builder


def _builder(data_config):
  """Returns the dataset's TFDS builder, prepared (preparing it first if that is possible)."""
  name = data_config.name
  entry = data_lib.lookup(name)
  if entry.builder:
    return _prepared_ours(data_config, data_lib.load(entry.builder).make_builder)
  try:
    builder = tfds.builder(name, data_dir=data_config.data_dir or None)
  except tfds.core.DatasetNotFoundError as e:
    raise UserError(
        f"Unknown dataset name data.name={name!r}: it is neither in dcrn_jax's table of sources "
        f"({', '.join(data_lib.names())}) nor a TFDS dataset. Use one of those, or a TFDS name "
        "such as cifar10, mnist or ucf101 (tfds.list_builders() lists them all).") from e
  except ValueError as e:  # A bad config or version part, e.g. 'cifar10:9.9.9'.
    raise UserError(f"data.name={name!r} is not usable with TFDS: {e}") from e
  if _is_prepared(builder):
    return builder
  offline = data_lib.load(entry.offline) if entry.offline else None
  if offline and offline.prepare_offline(data_config, builder):
    return tfds.builder(name, data_dir=data_config.data_dir or None)
  root = builder.data_dir_root
  if not _host_reachable(*_DOWNLOAD_HOST, _CONNECT_TIMEOUT_S):
    raise UserError(
        f"The TFDS dataset {name!r} is not prepared in {root}, and it cannot be downloaded "
        f"here ({_DOWNLOAD_HOST[0]} is unreachable: no network). Prepare it on a machine with "
        f"network (`tfds build {name} --data_dir=DIR`) and copy DIR/{name.split(':')[0]} "
        f"into {root}, or set data.data_dir to a folder that holds it."
        + (offline.OFFLINE_HINT if offline else ""))
  print(f"Downloading and preparing TFDS dataset {name!r} into {root}.", flush=True)
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=data_config.manual_dir or None))
  except (OSError, AssertionError) as e:  # Network, disk or manual-download faults.
    raise UserError(
        f"Preparing the TFDS dataset {name!r} into {root} failed ({type(e).__name__}: {e}). "
        f"Fix the cause (datasets that need a manual download read it from data.manual_dir; "
        f"ucf101 needs `ffmpeg` on PATH), or prepare it elsewhere with `tfds build {name}` and "
        "copy it in.") from e
  return builder


def _stored_clip_key(builder) -> str | None:
  """The supervised input's key if it is a fixed-size uint8 (T, H, W, C) Tensor, else None."""
  keys = builder.info.supervised_keys
  key = keys[0] if keys and isinstance(keys[0], str) else None
  feature = builder.info.features[key] if key in builder.info.features.keys() else None
  if (isinstance(feature, tfds.features.Tensor) and len(feature.shape) == 4
      and None not in feature.shape and feature.np_dtype == np.uint8):
    return key
  return None


def _has_labels(builder) -> bool:
  features = builder.info.features
  return "label" in features and isinstance(features["label"], tfds.features.ClassLabel)


def _video_key(data_config, builder) -> str | None:
  """The key of the dataset's first Video feature, if it has one (checked)."""
  for key, feature in builder.info.features.items():
    if isinstance(feature, tfds.features.Video):
      if feature.shape[-1] is None:
        raise UserError(f"The video feature {key!r} of {data_config.name!r} has no fixed "
                        "number of channels; dcrn_jax cannot batch it.")
      return key
  return None


def _input_feature(data_config, builder) -> tuple[str, str]:
  """(kind, feature key) of the dataset's input; UserError if dcrn_jax cannot read it.

  A dataset without a 'label' class feature is read only if it holds videos (moving_mnist):
  as unlabelled sequences, for forecasting.
  """
  features = builder.info.features
  if not _has_labels(builder):
    key = _video_key(data_config, builder)
    if key:
      return "video", key
    raise UserError(
        f"The TFDS dataset {data_config.name!r} has no 'label' class feature and no video "
        f"(features: {sorted(features)}): dcrn_jax classifies labelled examples and forecasts "
        f"videos. For clips with a class label, use one of ours (offline): "
        f"{', '.join(data_lib.names(ours=True))}.")
  clip_key = _stored_clip_key(builder)
  if clip_key:
    return "clip", clip_key
  video_key = _video_key(data_config, builder)
  if video_key:
    return "video", video_key
  image = features["image"] if "image" in features else None
  if not isinstance(image, tfds.features.Image):
    raise UserError(
        f"The TFDS dataset {data_config.name!r} has features {sorted(features)}; dcrn_jax needs "
        "an 'image' (Image) or a Video feature with a 'label' class feature.")
  if None in image.shape or image.np_dtype != np.uint8:
    raise UserError(
        f"The 'image' feature of {data_config.name!r} is {image.np_dtype} of shape "
        f"{image.shape}; dcrn_jax reads only fixed-size uint8 images. Pick a dataset whose "
        "images share one size (cifar10, mnist, fashion_mnist, ...).")
  return "image", "image"


def _input_shape(data_config, builder, kind, key) -> tuple[int, ...]:
  shape = tuple(builder.info.features[key].shape)
  if kind == "video":
    spec = clips.spec_from_config(data_config)
    return (spec.num_frames, spec.size, spec.size, shape[-1])
  return shape


def _split_size(data_config, builder, split) -> int:
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError, AssertionError) as e:
    raise UserError(
        f"Split {split!r} of {data_config.name!r} is unusable ({e}). Available splits: "
        f"{sorted(builder.info.splits)}; set data.train_split / data.eval_split to one of them "
        "or a slice such as 'train[:90%]'.") from e


def _open(data_config):
  """(builder, kind, key, input_shape), all checked."""
  common.check_pipeline_config(data_config)
  builder = _builder(data_config)
  kind, key = _input_feature(data_config, builder)
  shape = _input_shape(data_config, builder, kind, key)
  augment.check(data_config, shape[-1])
  return builder, kind, key, shape


def get_info(data_config) -> DatasetInfo:
  """Shapes and sizes; an unlabelled dataset (videos to forecast) has 0 classes."""
  builder, kind, _, shape = _open(data_config)
  label = builder.info.features["label"] if _has_labels(builder) else None
  views = clips.spec_from_config(data_config).views if kind == "video" else 1
  return DatasetInfo(
      num_classes=label.num_classes if label else 0, input_shape=shape,
      num_train_examples=_split_size(data_config, builder, data_config.train_split),
      num_eval_examples=_split_size(data_config, builder, data_config.eval_split),
      class_names=tuple(label.names) if label else (), eval_views=views)


def _process_split(split, *, process_index: int, process_count: int, train: bool):
  """This process's block of `split` (`common.process_share`), as TFDS names it."""
  if process_count == 1:
    return split
  return tfds.split_for_jax_process(split, process_index=process_index,
                                    process_count=process_count, drop_remainder=train)


def _records(builder, key, split, *, process_index: int, process_count: int, train: bool):
  """(still-encoded input, label) pairs of this process's block of `split`
  (`common.process_share`): encoded records keep shuffle buffers small. TFDS reads only the
  block's part of the files."""
  split = _process_split(split, process_index=process_index, process_count=process_count,
                         train=train)
  # No auto-cache: a train stream is always stopped mid-epoch, and TF then warns that the
  # cache was discarded; the page cache serves repeated reads anyway.
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={key: tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(try_autocache=False))
  # Only these two features travel on; dropping the rest early saves buffer memory. Unlabelled
  # videos carry -1, which `_process_fn` drops.
  if _has_labels(builder):
    return ds.map(lambda ex: (ex[key], ex["label"]))
  return ds.map(lambda ex: (ex[key], tf.constant(-1, tf.int64)))


def _serialized_records(builder, split):
  """The split's serialized tf.train.Example records in the order `builder.as_dataset` reads them
  (shuffle_files=False), or None where that order is not the files one after another (TFDS
  interleaves several files of a dataset written shuffled) or the files are not TFRecords.

  `split` is a split name, slice or `tfds.split_for_jax_process` part; TFDS's file instructions
  say which records of which file it holds.
  """
  if builder.info.file_format != tfds.core.FileFormat.TFRECORD:
    return None
  files = builder.info.splits[split].file_instructions
  if len(files) > 1 and not builder.info.disable_shuffling:
    return None
  parts = [tf.data.TFRecordDataset(f.filename).skip(f.skip).take(f.take) for f in files]
  ds = parts[0]
  for part in parts[1:]:
    ds = ds.concatenate(part)
  return ds


def _batch_clip_decoder(builder, key, shape):
  """(serialized records (b,) -> {'inputs': uint8 (b, *shape), 'label': int32 (b,)}) for a
  stored (labelled) clip written as one byte string (TFDS Tensor encodings 'zlib' and 'bytes'), or None
  for any other encoding.

  The same bytes as the feature's own per-example decode_example; a batch is parsed and
  decompressed in three ops instead of TFDS's per-example parse and decode (tf.data's cost
  per element is ~50 us, as much as decompressing the clip), and only these two features are
  parsed.
  """
  encoding = builder.info.features[key].to_json_content().encoding
  if encoding not in ("zlib", "bytes"):
    return None
  spec = {key: tf.io.FixedLenFeature([], tf.string),
          "label": tf.io.FixedLenFeature([], tf.int64)}  # _fast_clips: labelled only.

  def decode(serialized):
    example = tf.io.parse_example(serialized, spec)
    raw = example[key]
    if encoding == "zlib":
      raw = tf.io.decode_compressed(raw, compression_type="ZLIB")
    x = tf.reshape(tf.io.decode_raw(raw, tf.uint8), (-1,) + tuple(shape))
    return {"inputs": x, "label": tf.cast(example["label"], tf.int32)}
  return decode


def _fast_clips(builder, kind, key, shape, split):
  """(serialized records, batch decoder) of a labelled stored-clip split where both exist, else
  None (unlabelled clips take TFDS's own path)."""
  if kind != "clip" or not _has_labels(builder):
    return None
  decode = _batch_clip_decoder(builder, key, shape)
  records = _serialized_records(builder, split) if decode else None
  return (records, decode) if records is not None else None


def _video_frames(encoded, channels, spec, sample, seed_or_view):
  """Decodes only the frames a clip needs from a TFDS video's encoded frames (T,) string.

  sample(video_len, height, width, seed_or_view) returns int64 (num_frames + 5,): frame
  indices, then resized height and width, crop top and left, and flip (0/1). The indices do not
  depend on the frame size, so they are drawn first (with a stand-in size) and the sampled
  frames alone are decoded; their size then places the crop.
  Returns uint8 (num_frames, size, size, C): resized (antialiased), rounded back to pixels.
  """
  video_len = tf.shape(encoded, out_type=tf.int64)[0]
  one = tf.constant(1, tf.int64)
  indices = tf.numpy_function(sample, [video_len, one, one, seed_or_view], tf.int64,
                              stateful=False)[:spec.num_frames]
  frames = tf.map_fn(
      lambda b: tf.io.decode_image(b, channels=channels, expand_animations=False),
      tf.gather(encoded, tf.ensure_shape(indices, [spec.num_frames])),
      fn_output_signature=tf.uint8)
  hw = tf.shape(frames, out_type=tf.int64)[1:3]
  plan = tf.numpy_function(sample, [video_len, hw[0], hw[1], seed_or_view], tf.int64,
                           stateful=False)
  plan = tf.ensure_shape(plan, [spec.num_frames + 5])
  rh, rw, top, left, flip = tf.unstack(tf.cast(plan[spec.num_frames:], tf.int32))
  frames = tf.image.resize(tf.cast(frames, tf.float32), tf.stack([rh, rw]), antialias=True)
  frames = frames[:, top:top + spec.size, left:left + spec.size]
  frames = tf.cond(flip > 0, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
  frames = tf.saturate_cast(tf.round(frames), tf.uint8)
  return tf.ensure_shape(frames, (spec.num_frames, spec.size, spec.size, channels))


def _plan(indices, hw, top_left, flip) -> np.ndarray:
  return np.concatenate([indices, hw, top_left, [int(flip)]]).astype(np.int64)


def _process_fn(data_config, builder, kind, key, shape, train: bool):
  """(record, seed or view) -> {'inputs': uint8 shape, 'label': int32} ('inputs' only for
  unlabelled videos): pixels, scaled on the device (dcrn_jax/input_scaling.py)."""
  feature = builder.info.features[key]
  labelled = _has_labels(builder)

  def finish(x, label):
    if not labelled:
      return {"inputs": x}
    return {"inputs": x, "label": tf.cast(label, tf.int32)}

  if kind == "video":
    spec = clips.spec_from_config(data_config)

    def process(record, seed_or_view):
      encoded, label = record

      def sample(video_len, height, width, key):
        if train:
          return _plan(*clips.train_view(int(video_len), int(height), int(width), spec, key))
        return _plan(*clips.eval_view(int(video_len), int(height), int(width), spec, int(key)))

      return finish(_video_frames(encoded, shape[-1], spec, sample, seed_or_view), label)
    return process

  def process(record, seed_or_view):
    encoded, label = record
    x = feature.decode_example(encoded)
    if train and kind == "image" and augment.is_active(data_config):
      x = augment.train_augment(x, seed_or_view, data_config)
    return finish(x, label)
  return process


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'inputs': uint8 (B, *input_shape), 'label': int32 (B,)} batches.

  The process reads its rows of the train split (`common.process_share`); see
  `pipeline.train_stream` for the order.
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  builder, kind, key, shape = _open(data_config)
  split = data_config.train_split
  share = common.process_share(
      _split_size(data_config, builder, split), process_index=process_index,
      process_count=process_count, train=True,
      split=f"The train split {split!r} of {data_config.name!r}")
  stream = functools.partial(pipeline.train_stream, num_records=share.count,
                             data_config=data_config, local_batch_size=local_batch_size,
                             seed=seed, start_step=start_step)
  fast = _fast_clips(builder, kind, key, shape, _process_split(
      split, process_index=process_index, process_count=process_count, train=True))
  if fast:  # Stored clips are not augmented: a batch is decoded at once.
    records, decode = fast
    return stream(records, process_batch=lambda serialized, seeds: decode(serialized))
  return stream(_records(builder, key, split, process_index=process_index,
                         process_count=process_count, train=True),
                process=_process_fn(data_config, builder, kind, key, shape, train=True))


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One unshuffled pass over this process's rows of the eval split (`common.process_share`).

  Yields {'inputs', 'label', 'mask', 'example_id'} batches of exactly local_batch_size rows, the
  same number on every process; video datasets yield each video as `eval_views` consecutive
  rows (see `pipeline.eval_stream`).
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count)
  builder, kind, key, shape = _open(data_config)
  split = data_config.eval_split
  share = common.process_share(
      _split_size(data_config, builder, split), process_index=process_index,
      process_count=process_count, train=False)
  views = clips.spec_from_config(data_config).views if kind == "video" else 1
  return pipeline.eval_stream(
      _records(builder, key, split, process_index=process_index,
               process_count=process_count, train=False), share=share, views=views,
      process=_process_fn(data_config, builder, kind, key, shape, train=False),
      data_config=data_config, local_batch_size=local_batch_size, input_shape=shape,
      labels=_has_labels(builder))


def resident_reason(data_config, *, train: bool) -> str | None:
  """None for stored clips and images (rotation aside); TFDS videos are cut at random."""
  _, kind, _, _ = _open(data_config)
  if kind == "video":
    return (f"{data_config.name!r} holds videos, cut into clips at random: there is no fixed "
            "array of clips to keep")
  if train and kind == "image" and data_config.augment_rotation_degrees:
    return ("data.augment_rotation_degrees rotates images in tf.data only (on the device: "
            "crop and flip)")
  return None


def split_pixels(data_config, *, train: bool, start: int, stop: int) -> dict[str, np.ndarray]:
  """Rows [start, stop) of the split, decoded to uint8 as the streams decode them."""
  builder, _, key, _ = _open(data_config)
  split = data_config.train_split if train else data_config.eval_split
  feature = builder.info.features[key]
  labelled = _has_labels(builder)
  ds = _records(builder, key, split, process_index=0, process_count=1, train=train)
  ds = ds.skip(start).take(max(stop - start, 0))
  ds = ds.map(lambda encoded, label: {"inputs": feature.decode_example(encoded),
                                      "label": tf.cast(label, tf.int32)},
              num_parallel_calls=tf.data.AUTOTUNE).batch(1024).with_options(pipeline.options())
  parts = list(pipeline.as_numpy_dicts(ds))
  shape = tuple(feature.shape)
  out = {"inputs": np.concatenate([p["inputs"] for p in parts]) if parts
         else np.zeros((0,) + shape, np.uint8)}
  if labelled:
    out["label"] = (np.concatenate([p["label"] for p in parts]) if parts
                    else np.zeros((0,), np.int32))
  return out


def train_indices(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0, process_count: int = 1):
  """{'index': int32 (local_batch_size,)}: the rows `train_batches` yields, batch for batch
  (`pipeline.train_rows`: the same epochs and shuffles over the row numbers)."""
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  builder, _, _, _ = _open(data_config)
  split = data_config.train_split
  share = common.process_share(
      _split_size(data_config, builder, split), process_index=process_index,
      process_count=process_count, train=True,
      split=f"The train split {split!r} of {data_config.name!r}")
  return pipeline.train_rows(share.first, share.count, data_config=data_config,
                             local_batch_size=local_batch_size, seed=seed, start_step=start_step)
