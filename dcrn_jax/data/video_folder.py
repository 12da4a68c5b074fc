"""`video_folder`: videos as they are distributed, decoded with PyAV.

Which file belongs to which split and class is `video_layouts.resolve`'s table (every layout:
split folders, class folders with a hash split, UCF101/HMDB51/Kinetics/MMAction2 lists). Files
are decoded with PyAV inside tf.data (`tf.numpy_function` in a parallel map), clips are sampled
as `clips` says, and batches are cut and padded like every other source. A split's rows are its
files taken round robin over the classes (the first file of every class, then the second, ...),
so the contiguous block each process reads (`common.process_share`) mixes the classes; an eval
video's views are consecutive rows, and its example_id indexes info.eval_ids, the file paths in
that order.

Importing this module imports TensorFlow.
"""

from collections.abc import Iterator
import dataclasses

import numpy as np

from dcrn_jax.data import augment, common, pipeline
from dcrn_jax.media import clips, video_files, video_layouts
from dcrn_jax.data import video_shards
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.data.tf_import import tf
from dcrn_jax.errors import UserError

_CHANNELS = 3  # Frames are decoded as RGB.


@dataclasses.dataclass(frozen=True)
class _Videos:
  """A split's usable videos, one entry per video in row order (round robin over classes).

  Attributes:
    columns: path, label, num_frames, height, width (the source's), first (the video's first
      record in the shards; 0 when decoding files).
    class_names: label i is class_names[i].
    shards: the prepared shards' folder, or "" when decoding files with PyAV.
    frames_per_record: of the shards.
  """

  columns: dict
  class_names: tuple[str, ...]
  shards: str = ""
  frames_per_record: int = 0

  def __len__(self):
    return len(self.columns["path"])


def _videos(data_config, split: str) -> _Videos:
  """A split's usable videos: from the prepared shards (data.video_cache), else the layout's
  table probed file by file."""
  if data_config.video_cache:
    from dcrn_jax.datasets.video_shards import builder  # pylint: disable=g-import-not-at-top
    prepared = builder.ensure(data_config)
    for name in (data_config.train_split, split):
      if name not in prepared.videos:
        raise UserError(f"The video shards in {prepared.path} have no split {name!r}; splits: "
                        f"{', '.join(sorted(prepared.videos))}.")
    cols = prepared.videos[split]
    return _round_robin(_Videos({c: cols[c] for c in _COLUMNS}, prepared.class_names,
                                prepared.path, prepared.frames_per_record))
  video_files.require_av()
  table = video_layouts.resolve(data_config)
  table.rows(data_config.train_split)  # Both splits must exist, whichever is asked for.
  rows = table.rows(split)
  where = f"the {split!r} split of {table.root} ({table.layout})"
  found = video_files.probe_all(
      tuple(table.paths[i] for i in rows), tuple(table.labels[i] for i in rows),
      table.class_names, where=where, warn_empty=split == data_config.train_split)
  if not found.paths:
    raise UserError(f"No readable video in {where} (skipped: {len(found.skipped)}); see the "
                    "warnings above.")
  return _round_robin(_Videos(
      dict(path=found.paths, label=found.labels, num_frames=found.num_frames,
           height=found.heights, width=found.widths, first=(0,) * len(found.paths)),
      found.class_names))


_COLUMNS = ("path", "label", "num_frames", "height", "width", "first")


def _round_robin(videos: _Videos) -> _Videos:
  """The videos reordered: every class's first file (in table order), then every class's
  second, ..."""
  labels = np.asarray(videos.columns["label"])
  rank = np.zeros(len(labels), np.int64)
  for label in np.unique(labels):
    rank[labels == label] = np.arange(np.sum(labels == label))
  order = np.lexsort((labels, rank))
  return dataclasses.replace(videos, columns={c: tuple(videos.columns[c][i] for i in order)
                                              for c in _COLUMNS})


def _check(data_config) -> clips.ClipSpec:
  common.check_pipeline_config(data_config)
  augment.check(data_config, _CHANNELS)
  return clips.spec_from_config(data_config)


def get_info(data_config) -> DatasetInfo:
  spec = _check(data_config)
  train = _videos(data_config, data_config.train_split)
  evals = _videos(data_config, data_config.eval_split)
  return DatasetInfo(
      num_classes=len(train.class_names),
      input_shape=(spec.num_frames, spec.size, spec.size, _CHANNELS),
      num_train_examples=len(train), num_eval_examples=len(evals),
      class_names=train.class_names, eval_views=spec.views, eval_ids=evals.columns["path"])


def _records(videos: _Videos, rows: np.ndarray):
  """tf.data of (path, label, num_frames, height, width, first) for the videos at `rows`."""
  return tf.data.Dataset.from_tensor_slices(
      tuple(np.asarray(videos.columns[c])[rows] for c in _COLUMNS))


def _process_fn(data_config, spec: clips.ClipSpec, videos: _Videos, split: str, train: bool):
  """(record, seed or view) -> {'inputs': uint8 (T, S, S, 3), 'label': int32}: pixels,
  scaled on the device (dcrn_jax/input_scaling.py)."""
  if videos.shards:
    clip_from_shards = video_shards.clip_fn(video_shards.frame_reader(videos.shards, split),
                                            spec, videos.frames_per_record, train)

  def load(path, video_len, height, width, seed_or_view):
    args = (int(video_len), int(height), int(width), spec)
    if train:
      indices, hw, top_left, flip = clips.train_view(*args, seed_or_view)
    else:
      indices, hw, top_left, flip = clips.eval_view(*args, int(seed_or_view))
    clip, ok = video_files.decode_clip(path.decode(), indices, hw, top_left, spec.size, flip,
                                       seek=data_config.video_seek)
    if not ok:
      print(f"warning: no frame of {path.decode()} decoded; using a black clip",
            flush=True)
    return clip

  def process(record, seed_or_view):
    path, label, video_len, height, width, first = record
    if videos.shards:
      clip = clip_from_shards(video_len, height, width, first, seed_or_view)
    else:
      clip = tf.numpy_function(load, [path, video_len, height, width, seed_or_view], tf.uint8,
                               stateful=False)
      clip = tf.ensure_shape(clip, (spec.num_frames, spec.size, spec.size, _CHANNELS))
    return {"inputs": clip, "label": tf.cast(label, tf.int32)}

  return process


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'inputs': uint8 (B, T, S, S, 3), 'label': int32 (B,)} batches.

  The process reads its block of the split's videos (`common.process_share`).
  """
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  spec = _check(data_config)
  videos = _videos(data_config, data_config.train_split)
  share = common.process_share(
      len(videos), process_index=process_index, process_count=process_count, train=True,
      split=f"The readable {data_config.train_split!r} videos in {data_config.video_dir}")
  records = _records(videos, share.rows())
  if videos.shards:  # A batch at a time: one Python call, one parse, one decode loop.
    clips_of = video_shards.train_batch_fn(
        video_shards.frame_reader(videos.shards, data_config.train_split), spec,
        videos.frames_per_record)

    def process_batch(records, seeds):
      frames, label = clips_of(records, seeds)
      return {"inputs": frames, "label": tf.cast(label, tf.int32)}
    return pipeline.train_stream(
        records, num_records=share.count, process_batch=process_batch, data_config=data_config,
        local_batch_size=local_batch_size, seed=seed, start_step=start_step)
  return pipeline.train_stream(
      records, num_records=share.count,
      process=_process_fn(data_config, spec, videos, data_config.train_split, train=True),
      data_config=data_config, local_batch_size=local_batch_size, seed=seed,
      start_step=start_step)


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass of this process's eval videos, each as spec.views rows sharing its example_id."""
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count)
  spec = _check(data_config)
  videos = _videos(data_config, data_config.eval_split)
  share = common.process_share(len(videos), process_index=process_index,
                               process_count=process_count, train=False)
  return pipeline.eval_stream(
      _records(videos, share.rows()), share=share, views=spec.views,
      process=_process_fn(data_config, spec, videos, data_config.eval_split, train=False),
      data_config=data_config,
      local_batch_size=local_batch_size,
      input_shape=(spec.num_frames, spec.size, spec.size, _CHANNELS))


def resident_reason(data_config, *, train: bool) -> str:
  del train
  return (f"video_folder cuts each clip from a whole video at random (data.video_dir="
          f"{data_config.video_dir!r}): there is no fixed array of clips to keep")
