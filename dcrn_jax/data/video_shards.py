"""Reading prepared video shards (data.video_cache=True): only the frames a clip needs.

The shards (dcrn_jax/datasets/video_shards/) hold a video's frames in consecutive ArrayRecord
records of frames_per_record frames each, from its `first` record. A clip is cut exactly as the
PyAV path cuts it (`clips.train_view` / `eval_view` from the same seeds), then the records
holding its frames are read by index and only its num_frames JPEGs are decoded, inside the
tf.data graph, and only the crop window of each (`decode_and_crop_jpeg`). So a clip costs the
same wherever it sits in a video, and the clips equal the PyAV path's up to JPEG's error.
Training makes a batch at a time (`train_batch_fn`); eval a view at a time (`clip_fn`).

Importing this module imports TensorFlow.
"""

import threading

import numpy as np

from dcrn_jax.media import clips
from dcrn_jax.data.tf_import import tf, tfds


class FrameReader:
  """Records of one split by their index, from its ArrayRecord shards.

  Thread-safe (tf.data calls it from several threads); a shard's reader opens on first use.
  """

  def __init__(self, filepaths, shard_lengths):
    self._paths = [str(p) for p in filepaths]
    self._ends = np.cumsum(shard_lengths)
    self._starts = self._ends - np.asarray(shard_lengths)
    self._readers = {}
    self._lock = threading.Lock()

  def _reader(self, shard: int):
    with self._lock:
      if shard not in self._readers:
        from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
        # Random access: no read-ahead, and no thread pool per call (tf.data runs the calls in
        # parallel already).
        self._readers[shard] = array_record_module.ArrayRecordReader(
            self._paths[shard], "readahead_buffer_size:0,max_parallelism:0")
      return self._readers[shard]

  def read(self, indices: np.ndarray) -> np.ndarray:
    """object (len(indices),) of serialized records."""
    indices = np.asarray(indices, np.int64)
    shards = np.searchsorted(self._ends, indices, side="right")
    out = np.empty(len(indices), dtype=object)
    for shard in np.unique(shards):
      rows = np.flatnonzero(shards == shard)
      local = [int(i) for i in indices[rows] - self._starts[shard]]
      out[rows] = self._reader(int(shard)).read(local)
    return out


def frame_reader(path: str, split: str) -> FrameReader:
  """The reader of `split` of the prepared shards in folder `path`."""
  info = tfds.builder_from_directory(path).info.splits[split]
  return FrameReader(info.filepaths, info.shard_lengths)


_RECORD_FEATURES = {"images": tf.io.RaggedFeature(tf.string),
                    "first_frame": tf.io.FixedLenFeature([], tf.int64)}


def _view(spec, train, video_len, height, width, seed_or_view):
  """(frame indices (T,), (top, left), flip) of one clip, as the PyAV path cuts it."""
  args = (int(video_len), int(height), int(width), spec)
  if train:
    indices, _, top_left, flip = clips.train_view(*args, seed_or_view)
  else:
    indices, _, top_left, flip = clips.eval_view(*args, int(seed_or_view))
  return indices, top_left, flip


def _plan(reader: FrameReader, spec: clips.ClipSpec, k: int, views):
  """For clips given as (frame indices, (top, left), flip, first record of the video): the
  records holding their frames (R,) and the first frame each must hold (R,); per frame
  (B*T,): the slot of its record, its position there, its crop window [top, left, S, S];
  flips (B,). One read of all the records."""
  wanted, starts, slots, positions, windows, flips = [], [], [], [], [], []
  for indices, top_left, flip, first in views:
    low, high = int(indices.min()) // k, int(indices.max()) // k
    slots.append(len(wanted) + indices // k - low)
    wanted.extend(range(int(first) + low, int(first) + high + 1))
    starts.extend(range(low * k, (high + 1) * k, k))
    positions.append(indices % k)
    windows.append([*top_left, spec.size, spec.size])
    flips.append(bool(flip))
  return (reader.read(np.asarray(wanted, np.int64)), np.asarray(starts, np.int64),
          np.concatenate(slots).astype(np.int64), np.concatenate(positions).astype(np.int64),
          np.repeat(np.asarray(windows, np.int32), spec.num_frames, axis=0),
          np.asarray(flips))


_PLAN_TYPES = [tf.string, tf.int64, tf.int64, tf.int64, tf.int32, tf.bool]


def _decode(planned, spec: clips.ClipSpec):
  """uint8 clips (B, T, S, S, 3) from `_plan`'s tensors: one parse of the records, then a
  decode loop with one step per clip (only each frame's crop window)."""
  flat, starts, slots, positions, windows, flips = planned
  parsed = tf.io.parse_example(tf.ensure_shape(flat, [None]), _RECORD_FEATURES)
  # A record out of place would silently train on wrong frames: check where each one starts.
  check = tf.debugging.assert_equal(parsed["first_frame"], starts,
                                    message="video shards: a record is not the one asked for")
  images = parsed["images"]
  with tf.control_dependencies([check]):
    jpegs = tf.gather(images.flat_values,
                      tf.cast(tf.gather(images.row_splits, slots), tf.int64) + positions)
  t = spec.num_frames
  jpegs = tf.reshape(jpegs, [-1, t])
  windows = tf.reshape(windows, [-1, t, 4])

  def clip(args):
    clip_jpegs, clip_windows, flip = args
    # Unrolled over the clip's frames (num_frames is static); one loop step per clip.
    frames = tf.stack([tf.io.decode_and_crop_jpeg(clip_jpegs[i], clip_windows[i], channels=3)
                       for i in range(t)])
    # Mirrored as rows of (pixel, channel): cheaper than reversing the 4-D clip's axis.
    return tf.cond(flip, lambda: tf.reshape(tf.reverse(tf.reshape(
        frames, [-1, spec.size, 3]), [1]), tf.shape(frames)), lambda: frames)

  return tf.map_fn(clip, (jpegs, windows, tf.reshape(flips, [-1])),
                   fn_output_signature=tf.TensorSpec((t, spec.size, spec.size, 3), tf.uint8))


def clip_fn(reader: FrameReader, spec: clips.ClipSpec, frames_per_record: int, train: bool):
  """(video_len, height, width, first record, seed or view) -> uint8 (T, S, S, 3), cut as the
  PyAV path cuts it (height, width: the source's; the stored frames are resized already)."""

  def plan(video_len, height, width, first, seed_or_view):
    return _plan(reader, spec, frames_per_record,
                 [(*_view(spec, train, video_len, height, width, seed_or_view), first)])

  def clip(video_len, height, width, first, seed_or_view):
    planned = tf.numpy_function(plan, [video_len, height, width, first, seed_or_view],
                                _PLAN_TYPES, stateful=False)
    return _decode(planned, spec)[0]

  return clip


def train_batch_fn(reader: FrameReader, spec: clips.ClipSpec, frames_per_record: int):
  """(records (B,), seeds (B, 2)) -> (uint8 clips (B, T, S, S, 3), labels (B,)): a batch of
  training clips cut as the PyAV path cuts them, from one Python call (the clips' views and
  one read of their records) and one `_decode`."""

  def plan(video_lens, heights, widths, firsts, seeds):
    return _plan(reader, spec, frames_per_record, [
        (*_view(spec, True, *view), first)
        for *view, first in zip(video_lens, heights, widths, seeds, firsts)])

  def batch(records, seeds):
    _, label, video_len, height, width, first = records
    planned = tf.numpy_function(plan, [video_len, height, width, first, seeds], _PLAN_TYPES,
                                stateful=False)
    return _decode(planned, spec), label

  return batch
