"""`video_folder`: the user's own videos, <data.video_dir>/<split>/<class_name>/*.{mp4,avi,...}.

Files are decoded with PyAV inside tf.data (`tf.numpy_function` in a parallel map), clips are
sampled as `clips` says, and batches are cut and padded like every other source. Training
splits the sorted file list over processes by striding (every process sees every class); eval
splits it into contiguous blocks and keeps each video's views together.

Importing this module imports TensorFlow.
"""

from collections.abc import Iterator
import os

import numpy as np

from dcrn_jax.data import augment, clips, common, pipeline, video_files
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.data.tf_import import tf
from dcrn_jax.errors import UserError

_CHANNELS = 3  # Frames are decoded as RGB.


def _split_dir(data_config, split: str) -> str:
  if not data_config.video_dir:
    raise UserError("data.name='video_folder' needs data.video_dir: the folder holding "
                    "<split>/<class_name>/*.mp4 for data.train_split and data.eval_split.")
  return os.path.join(data_config.video_dir, split)


def _scan(data_config, split: str) -> video_files.VideoSplit:
  """A split's readable videos, labelled by the train split's class folders."""
  video_files.require_av()
  train = video_files.scan(_split_dir(data_config, data_config.train_split))
  if split == data_config.train_split:
    result = train
  else:
    result = video_files.scan(_split_dir(data_config, split), train.class_names)
  if not result.paths:
    raise UserError(f"No readable video in {_split_dir(data_config, split)} (skipped: "
                    f"{len(result.skipped)}); see the warnings above.")
  return result


def _check(data_config) -> clips.ClipSpec:
  common.check_pipeline_config(data_config)
  augment.check(data_config, _CHANNELS)
  return clips.spec_from_config(data_config)


def get_info(data_config) -> DatasetInfo:
  spec = _check(data_config)
  train = _scan(data_config, data_config.train_split)
  evals = _scan(data_config, data_config.eval_split)
  return DatasetInfo(
      num_classes=len(train.class_names),
      input_shape=(spec.num_frames, spec.size, spec.size, _CHANNELS),
      num_train_examples=len(train.paths), num_eval_examples=len(evals.paths),
      class_names=train.class_names, eval_views=spec.views)


def _records(videos: video_files.VideoSplit, rows: np.ndarray):
  """tf.data of (path, label, num_frames, height, width) for the videos at `rows`."""
  columns = (videos.paths, videos.labels, videos.num_frames, videos.heights, videos.widths)
  return tf.data.Dataset.from_tensor_slices(
      tuple(np.asarray(c)[rows] for c in columns))


def _process_fn(data_config, spec: clips.ClipSpec, train: bool):
  """(record, seed or view) -> {'inputs': float32 (T, S, S, 3), 'label': int32}."""

  def load(path, video_len, height, width, seed_or_view):
    args = (int(video_len), int(height), int(width), spec)
    if train:
      indices, hw, top_left, flip = clips.train_view(*args, seed_or_view)
    else:
      indices, hw, top_left, flip = clips.eval_view(*args, int(seed_or_view))
    clip, ok = video_files.decode_clip(path.decode(), indices, hw, top_left, spec.size, flip)
    if not ok:
      print(f"warning: no frame of {path.decode()} decoded; using a black clip",
            flush=True)
    return clip

  def process(record, seed_or_view):
    path, label, video_len, height, width = record
    clip = tf.numpy_function(load, [path, video_len, height, width, seed_or_view], tf.uint8,
                             stateful=False)
    clip = tf.ensure_shape(clip, (spec.num_frames, spec.size, spec.size, _CHANNELS))
    x = augment.normalize(tf.cast(clip, tf.float32) / 255.0, data_config)
    return {"inputs": x, "label": tf.cast(label, tf.int32)}

  return process


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'inputs': float32 (B, T, S, S, 3), 'label': int32 (B,)} batches.

  Process i reads videos i, i + P, ... of the sorted list, N // P of them (equal epochs).
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  spec = _check(data_config)
  videos = _scan(data_config, data_config.train_split)
  per_process = len(videos.paths) // process_count
  if per_process == 0:
    raise UserError(f"{len(videos.paths)} readable train videos cannot give each of "
                    f"{process_count} processes one; add videos or use fewer processes.")
  rows = np.arange(process_index, len(videos.paths), process_count)[:per_process]
  return pipeline.train_stream(
      _records(videos, rows), num_records=per_process,
      process=_process_fn(data_config, spec, train=True), data_config=data_config,
      local_batch_size=local_batch_size, seed=seed, start_step=start_step)


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass of every eval video as spec.views rows with 'video_id' and 'view', padded."""
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count)
  spec = _check(data_config)
  videos = _scan(data_config, data_config.eval_split)
  shares = common.even_shares(len(videos.paths), process_count)
  first = sum(shares[:process_index])
  rows = np.arange(first, first + shares[process_index])
  return pipeline.eval_stream(
      _records(videos, rows), shares=shares, process_index=process_index, views=spec.views,
      process=_process_fn(data_config, spec, train=False), data_config=data_config,
      local_batch_size=local_batch_size,
      input_shape=(spec.num_frames, spec.size, spec.size, _CHANNELS), with_ids=True)
