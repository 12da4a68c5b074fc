"""`video_folder`: the user's own videos, <data.video_dir>/<split>/<class_name>/*.{mp4,avi,...}.

Files are decoded with PyAV inside tf.data (`tf.numpy_function` in a parallel map), clips are
sampled as `clips` says, and batches are cut and padded like every other source. A split's
rows are its files taken round robin over the classes (the first file of every class, then the
second, ...), so the contiguous block each process reads (`common.process_share`) mixes the
classes; an eval video's views are consecutive rows, and its example_id indexes
info.eval_ids, the file paths in that order.

Importing this module imports TensorFlow.
"""

from collections.abc import Iterator
import dataclasses
import os

import numpy as np

from dcrn_jax.data import augment, clips, common, pipeline, preprocess, video_files
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
  return _round_robin(result)


def _round_robin(videos: video_files.VideoSplit) -> video_files.VideoSplit:
  """The videos reordered: every class's first file (by name), then every class's second, ..."""
  labels = np.asarray(videos.labels)
  rank = np.zeros(len(labels), np.int64)
  for label in np.unique(labels):
    rank[labels == label] = np.arange(np.sum(labels == label))
  order = np.lexsort((labels, rank))
  columns = ("paths", "labels", "num_frames", "heights", "widths")
  return dataclasses.replace(videos, **{c: tuple(getattr(videos, c)[i] for i in order)
                                        for c in columns})


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
      class_names=train.class_names, eval_views=spec.views, eval_ids=evals.paths)


def _records(videos: video_files.VideoSplit, rows: np.ndarray):
  """tf.data of (path, label, num_frames, height, width) for the videos at `rows`."""
  columns = (videos.paths, videos.labels, videos.num_frames, videos.heights, videos.widths)
  return tf.data.Dataset.from_tensor_slices(
      tuple(np.asarray(c)[rows] for c in columns))


def _process_fn(data_config, spec: clips.ClipSpec, train: bool):
  """(record, seed or view) -> {'inputs': float32 (T, S, S, 3), 'label': int32}.

  Pixels become model inputs in `preprocess.to_model_input`, as predict's do."""

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
    return preprocess.to_model_input(clip, data_config)

  def process(record, seed_or_view):
    path, label, video_len, height, width = record
    x = tf.numpy_function(load, [path, video_len, height, width, seed_or_view], tf.float32,
                          stateful=False)
    x = tf.ensure_shape(x, (spec.num_frames, spec.size, spec.size, _CHANNELS))
    return {"inputs": x, "label": tf.cast(label, tf.int32)}

  return process


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'inputs': float32 (B, T, S, S, 3), 'label': int32 (B,)} batches.

  The process reads its block of the split's videos (`common.process_share`).
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  spec = _check(data_config)
  videos = _scan(data_config, data_config.train_split)
  share = common.process_share(
      len(videos.paths), process_index=process_index, process_count=process_count, train=True,
      split=f"The readable train videos in {_split_dir(data_config, data_config.train_split)}")
  return pipeline.train_stream(
      _records(videos, share.rows()), num_records=share.count,
      process=_process_fn(data_config, spec, train=True), data_config=data_config,
      local_batch_size=local_batch_size, seed=seed, start_step=start_step)


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass of this process's eval videos, each as spec.views rows sharing its example_id."""
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count)
  spec = _check(data_config)
  videos = _scan(data_config, data_config.eval_split)
  share = common.process_share(len(videos.paths), process_index=process_index,
                               process_count=process_count, train=False)
  return pipeline.eval_stream(
      _records(videos, share.rows()), share=share, views=spec.views,
      process=_process_fn(data_config, spec, train=False), data_config=data_config,
      local_batch_size=local_batch_size,
      input_shape=(spec.num_frames, spec.size, spec.size, _CHANNELS))
